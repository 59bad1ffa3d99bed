/* Landlock: a second, independent fence around the filesystem.
 *
 * Mount namespaces already decide what the sandbox can see; Landlock
 * decides, in the kernel's LSM layer, what it may do with what it sees: read
 * and execute everywhere in its own root, write only to its scratch areas
 * (/tmp, /home/user, /dev/shm, writable binds) and devices.  If a mount
 * mistake ever exposed a host path, this layer still refuses writes.
 * From ABI 6 it also scopes abstract unix sockets and signals to the
 * sandbox.  ABI 1 cannot allow renames across directories, which breaks
 * ordinary programs, so Landlock is used from ABI 2 on. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/landlock.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include "isolate.h"
#include "../common/utils.h"

#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif
#ifndef LANDLOCK_ACCESS_FS_IOCTL_DEV
#define LANDLOCK_ACCESS_FS_IOCTL_DEV (1ULL << 15)
#endif
#ifndef LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET
#define LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET (1ULL << 0)
#define LANDLOCK_SCOPE_SIGNAL (1ULL << 1)
#endif

/* The ruleset attr as of ABI 6; older kernels get a shorter size. */
struct ruleset_attr
{
  uint64_t handled_access_fs;
  uint64_t handled_access_net;
  uint64_t scoped;
};

#define READ_ACCESS (LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR)

int corral__landlock_abi(void)
{
  long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
  return abi < 0 ? 0 : (int) abi;
}

static uint64_t fs_rights(int abi)
{
  uint64_t all = (LANDLOCK_ACCESS_FS_MAKE_SYM << 1) - 1; /* ABI 1 */
  if (abi >= 2)
    all |= LANDLOCK_ACCESS_FS_REFER;
  if (abi >= 3)
    all |= LANDLOCK_ACCESS_FS_TRUNCATE;
  if (abi >= 5)
    all |= LANDLOCK_ACCESS_FS_IOCTL_DEV;
  return all;
}

static int allow(int ruleset, const char *path, uint64_t access, corral_error_t *err)
{
  struct landlock_path_beneath_attr pb = { .allowed_access = access };
  pb.parent_fd = open(path, O_PATH | O_CLOEXEC);
  if (pb.parent_fd < 0)
    return errno == ENOENT ? 0 : corral_error_set(err, errno, "landlock: open `%s`", path);
  int r = (int) syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &pb, 0);
  int saved = errno;
  close(pb.parent_fd);
  if (r < 0)
    return corral_error_set(err, saved, "landlock: rule for `%s`", path);
  return 0;
}

int corral__landlock_apply(const corral_config_t *cfg, corral_error_t *err)
{
  int abi = corral__landlock_abi();
  struct ruleset_attr attr = { 0 };
  size_t size = sizeof(attr.handled_access_fs);
  static const char *const writable[] = { "/tmp", "/home/user", "/dev/shm", NULL };

  if (abi < 2)
    return 0;
  uint64_t all = fs_rights(abi);
  attr.handled_access_fs = all;
  if (abi >= 6)
    {
      attr.scoped = LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | LANDLOCK_SCOPE_SIGNAL;
      size = sizeof(attr);
    }
  cleanup_close int rs = (int) syscall(SYS_landlock_create_ruleset, &attr, size, 0);
  if (rs < 0)
    return corral_error_set(err, errno, "landlock: create ruleset");

  uint64_t devices = READ_ACCESS | LANDLOCK_ACCESS_FS_WRITE_FILE | (abi >= 3 ? LANDLOCK_ACCESS_FS_TRUNCATE : 0)
                     | (abi >= 5 ? LANDLOCK_ACCESS_FS_IOCTL_DEV : 0);
  if (allow(rs, "/", READ_ACCESS, err) < 0 || allow(rs, "/dev", devices, err) < 0
      || allow(rs, "/proc", READ_ACCESS | LANDLOCK_ACCESS_FS_WRITE_FILE, err) < 0)
    return -1;
  for (int i = 0; writable[i]; i++)
    if (allow(rs, writable[i], all, err) < 0)
      return -1;
  for (size_t i = 0; i < cfg->n_binds; i++)
    if (!cfg->binds[i].read_only && allow(rs, cfg->binds[i].dst, all, err) < 0)
      return -1;
  if (syscall(SYS_landlock_restrict_self, rs, 0) < 0)
    return corral_error_set(err, errno, "landlock: restrict self");
  return abi;
}
