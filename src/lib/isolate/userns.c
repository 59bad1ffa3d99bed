/* User namespace id ranges.
 *
 * Each running sandbox gets its own block of 65536 host ids, far above any
 * real user (and above the usual /etc/subuid ranges), so sandbox root is an
 * unprivileged host id that owns no host file, and two sandboxes never share
 * a host uid (which would let them signal each other's processes if they
 * ever met).  A block is held by an flock on a file under the run dir: the
 * kernel drops it when the supervisor dies, so a crash frees the block. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include "isolate.h"
#include "../common/utils.h"

#define ID_BASE 2000000000u
#define ID_SLOTS 2048u /* 2000000000 + 2048 * 65536 < 2^31 */

static const char *run_dir(void)
{
  const char *d = getenv("CORRAL_RUN_DIR");
  return d && *d ? d : "/run/corral";
}

int corral__idrange_acquire(struct corral__idrange *r, corral_error_t *err)
{
  char dir[4096], path[4200];
  unsigned start = (unsigned) getpid() % ID_SLOTS;

  r->lock_fd = -1;
  snprintf(dir, sizeof(dir), "%s/ids", run_dir());
  if (corral__mkdir_p(dir, 0700, err) < 0)
    return corral_error_wrap(err, "id range lock directory");
  for (unsigned i = 0; i < ID_SLOTS; i++)
    {
      unsigned slot = (start + i) % ID_SLOTS;
      snprintf(path, sizeof(path), "%s/%u", dir, slot);
      int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
      if (fd < 0)
        return corral_error_set(err, errno, "open `%s`", path);
      if (flock(fd, LOCK_EX | LOCK_NB) == 0)
        {
          r->lock_fd = fd;
          r->host_base = ID_BASE + slot * CORRAL__ID_RANGE;
          return 0;
        }
      close(fd);
    }
  return corral_error_set(err, EAGAIN, "all %u uid ranges are in use", ID_SLOTS);
}

void corral__idrange_release(struct corral__idrange *r)
{
  if (r->lock_fd >= 0)
    close(r->lock_fd);
  r->lock_fd = -1;
}

int corral__write_id_maps(pid_t pid, const struct corral__idrange *r, corral_error_t *err)
{
  char path[64], map[64];
  int n = snprintf(map, sizeof(map), "0 %u %u\n", r->host_base, CORRAL__ID_RANGE);

  snprintf(path, sizeof(path), "/proc/%d/uid_map", pid);
  if (corral__write_file(path, map, (size_t) n, err) < 0)
    return corral_error_wrap(err, "write uid map");
  snprintf(path, sizeof(path), "/proc/%d/gid_map", pid);
  if (corral__write_file(path, map, (size_t) n, err) < 0)
    return corral_error_wrap(err, "write gid map");
  return 0;
}
