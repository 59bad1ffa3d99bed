/* Dropping privileges: rlimits, ids, capabilities, inherited fds. */
#define _GNU_SOURCE
#include <grp.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include "isolate.h"
#include "../common/utils.h"

static int set_limit(int res, rlim_t soft, rlim_t hard, const char *name, corral_error_t *err)
{
  struct rlimit rl = { .rlim_cur = soft, .rlim_max = hard };
  if (setrlimit(res, &rl) < 0)
    return corral_error_set(err, errno, "setrlimit %s", name);
  return 0;
}

int corral__set_rlimits(const corral_config_t *cfg, corral_error_t *err)
{
  /* Core dumps could write sandbox memory somewhere unexpected; none. */
  if (set_limit(RLIMIT_CORE, 0, 0, "core", err) < 0)
    return -1;
  if (set_limit(RLIMIT_NOFILE, 4096, 4096, "nofile", err) < 0)
    return -1;
  /* A backstop for writable binds, which the tmpfs sizes do not cover.
   * Twice the scratch size, so that filling /tmp ends in ENOSPC (what
   * programs handle) rather than SIGXFSZ. */
  rlim_t fsize = cfg->disk_bytes > RLIM_INFINITY / 2 ? RLIM_INFINITY : cfg->disk_bytes * 2;
  if (set_limit(RLIMIT_FSIZE, fsize, fsize, "fsize", err) < 0)
    return -1;
  /* nproc counts per host uid, and every sandbox has its own uids: a
   * backstop behind the pids cgroup, generous enough never to bind first. */
  rlim_t nproc = cfg->pids ? cfg->pids * 2 + 64 : 65536;
  if (set_limit(RLIMIT_NPROC, nproc, nproc, "nproc", err) < 0)
    return -1;
  if (cfg->cpu_time_s && set_limit(RLIMIT_CPU, cfg->cpu_time_s, cfg->cpu_time_s + 1, "cpu", err) < 0)
    return -1;
  return 0;
}

static int last_cap(void)
{
  char buf[16];
  if (corral__read_file_at(-100 /* AT_FDCWD */, "/proc/sys/kernel/cap_last_cap", buf, sizeof(buf)) > 0)
    return atoi(buf);
  return CAP_LAST_CAP;
}

int corral__drop_privileges(uid_t uid, gid_t gid, corral_error_t *err)
{
  struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
  struct __user_cap_data_struct data[2];
  int top = last_cap();

  /* Bounding set first (needs CAP_SETPCAP, which we still hold): nothing
   * exec'd later can regain a capability, setuid-root binaries included. */
  for (int c = 0; c <= top; c++)
    if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL)
      return corral_error_set(err, errno, "drop capability %d from the bounding set", c);
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
    return corral_error_set(err, errno, "clear ambient capabilities");
  /* uid 0 inside gains nothing from exec either, and this cannot be undone. */
  if (prctl(PR_SET_SECUREBITS, SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP_LOCKED
                                   | SECBIT_KEEP_CAPS_LOCKED | SECBIT_NO_CAP_AMBIENT_RAISE
                                   | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED, 0, 0, 0) < 0)
    return corral_error_set(err, errno, "set securebits");
  if (setgroups(0, NULL) < 0)
    return corral_error_set(err, errno, "setgroups");
  if (setresgid(gid, gid, gid) < 0)
    return corral_error_set(err, errno, "setresgid %u", gid);
  if (setresuid(uid, uid, uid) < 0)
    return corral_error_set(err, errno, "setresuid %u", uid);
  /* Leaving uid 0 already cleared the sets; for --root clear them here. */
  memset(data, 0, sizeof(data));
  if (syscall(SYS_capset, &hdr, data) < 0)
    return corral_error_set(err, errno, "capset");
  return 0;
}

int corral__close_fds_from(int lowfd)
{
  if (syscall(SYS_close_range, (unsigned) lowfd, ~0U, 0) == 0)
    return 0;
  for (int fd = lowfd; fd < 65536; fd++)
    close(fd);
  return 0;
}
