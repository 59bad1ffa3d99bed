/* Privilege: capabilities, no_new_privs, seccomp, uids and gids, scheduling. */
#include "escape.h"

/* ------------------------------------------------------------------ */
/* Privilege                                                            */

void esc_chk_caps_zero(void)
{
  static const char *const keys[] = { "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", NULL };
  for (int i = 0; keys[i]; i++)
    {
      char v[64];
      if (!esc_status_field(keys[i], v, sizeof(v)))
        esc_fail("no %s in /proc/self/status", keys[i]);
      if (strtoull(v, NULL, 16) != 0)
        esc_fail("%s is %s", keys[i], v);
    }
  for (int c = 0; c < 64; c++)
    if (prctl(PR_CAPBSET_READ, c, 0, 0, 0) == 1)
      esc_fail("capability %d is in the bounding set", c);
}

void esc_chk_no_new_privs(void)
{
  char v[32];
  if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1)
    esc_fail("PR_GET_NO_NEW_PRIVS is not 1");
  if (!esc_status_field("NoNewPrivs", v, sizeof(v)) || strcmp(v, "1") != 0)
    esc_fail("NoNewPrivs: %s", v);
  EXPECT(EINVAL, prctl(PR_SET_NO_NEW_PRIVS, 0, 0, 0, 0));
}

void esc_chk_seccomp_mode(void)
{
  char v[32];
  if (!esc_status_field("Seccomp", v, sizeof(v)) || strcmp(v, "2") != 0)
    esc_fail("Seccomp: %s", v);
  EXPECT(EINVAL, prctl(PR_SET_SECCOMP, 0 /* SECCOMP_MODE_DISABLED */, 0, 0, 0));
  if (!esc_status_field("Seccomp", v, sizeof(v)) || strcmp(v, "2") != 0)
    esc_fail("Seccomp after disabling attempt: %s", v);
}

void esc_chk_securebits_locked(void)
{
  int bits = prctl(PR_GET_SECUREBITS, 0, 0, 0, 0);
  if (bits < 0)
    esc_fail("PR_GET_SECUREBITS: %s", strerror(errno));
  if (!(bits & SECBIT_NOROOT) || !(bits & SECBIT_NOROOT_LOCKED))
    esc_fail("securebits %#x lack NOROOT(+LOCKED)", bits);
  DENIED(prctl(PR_SET_SECUREBITS, 0, 0, 0, 0));
}

void esc_chk_capset_raise(void)
{
  struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
  struct __user_cap_data_struct d[2];
  memset(d, 0, sizeof(d));
  d[0].effective = d[0].permitted = d[0].inheritable = 1u << CAP_SYS_ADMIN;
  DENIED(syscall(SYS_capset, &h, d));
  memset(d, 0, sizeof(d));
  d[0].inheritable = 1u << CAP_NET_RAW;
  DENIED(syscall(SYS_capset, &h, d));
}

void esc_chk_ambient_raise(void)
{
  DENIED(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_RAW, 0, 0));
}

void esc_chk_prctl_set_mm(void)
{
  DENIED(prctl(PR_SET_MM, PR_SET_MM_ARG_START, (unsigned long) &startup_fds, 0, 0));
}

static void check_caps_still_zero(const char *when)
{
  char v[64];
  if (!esc_status_field("CapEff", v, sizeof(v)) || strtoull(v, NULL, 16) != 0)
    esc_fail("CapEff %s after %s", v, when);
  if (!esc_status_field("CapPrm", v, sizeof(v)) || strtoull(v, NULL, 16) != 0)
    esc_fail("CapPrm %s after %s", v, when);
}

void esc_chk_setuid_root(void)
{
  if (geteuid() != 0)
    {
      DENIED(setuid(0));
      DENIED(setresuid(0, 0, 0));
      DENIED(setreuid(-1, 0));
      return;
    }
  /* --root: uid 0 already, but of a user namespace; it brings no power. */
  if (setuid(0) < 0)
    esc_fail("setuid(0) as root: %s", strerror(errno));
  check_caps_still_zero("setuid(0)");
}

/* Without CAP_SETUID no other identity is reachable, down or up: sandbox
 * root cannot become another user (e.g. to reach files of a bind mount). */
void esc_chk_change_uid(void)
{
  uid_t other = geteuid() == 0 ? 1000 : 0;
  DENIED(setuid(other));
  DENIED(setresuid(other, other, other));
  DENIED(setresuid(-1, -1, 12345));
  DENIED(setreuid(12345, -1));
  check_caps_still_zero("setresuid");
}

void esc_chk_setgroups(void)
{
  gid_t g[1] = { 0 };
  DENIED(setgroups(1, g));
  if (getegid() != 0)
    {
      DENIED(setgid(0));
      DENIED(setresgid(0, 0, 0));
    }
  else
    EXPECT(EPERM, setresgid(1000, 1000, 1234));
}

void esc_chk_chown_other(void)
{
  const char *p = "/tmp/escape-chown";
  int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0)
    esc_fail("create %s: %s", p, strerror(errno));
  close(fd);
  uid_t other = geteuid() == 0 ? 1000 : 0;
  DENIED(chown(p, other, other));
  EXPECT_IN(chown("/usr/bin/env", geteuid(), getegid()), EROFS, EPERM);
}

void esc_chk_uid_map(void)
{
  char buf[512];
  if (esc_read_small("/proc/self/uid_map", buf, sizeof(buf)) < 0)
    esc_fail("read uid_map: %s", strerror(errno));
  unsigned long long in, out, count;
  char *p = buf;
  int n = 0, used;
  while (sscanf(p, "%llu %llu %llu%n", &in, &out, &count, &used) == 3)
    {
      if (out <= 65535)
        esc_fail("uid_map maps host uid %llu (host root / real users): %s", out, buf);
      if (count > 65536)
        esc_fail("uid_map maps %llu ids", count);
      p += used;
      n++;
    }
  if (n == 0)
    esc_fail("cannot parse uid_map: %s", buf);
}

/* A setuid-root program must not gain anything: the mounts are nosuid and
 * no_new_privs is set.  Watch su's credentials right after its exec. */
void esc_chk_setuid_exec(void)
{
  static const char *const cands[] = { "/usr/bin/su", "/usr/bin/passwd", "/usr/bin/newgrp", "/usr/bin/chsh",
                                       "/usr/bin/mount", "/bin/su", NULL };
  const char *bin = NULL;
  struct stat st;
  for (int i = 0; cands[i] && !bin; i++)
    if (stat(cands[i], &st) == 0 && (st.st_mode & S_ISUID))
      bin = cands[i];
  if (bin == NULL)
    esc_skip("no setuid binary found");
  struct statvfs sv;
  if (statvfs(bin, &sv) < 0 || !(sv.f_flag & ST_NOSUID))
    esc_fail("%s is on a mount without nosuid", bin);

  int in[2];
  if (pipe(in) < 0)
    esc_fail("pipe: %s", strerror(errno));
  pid_t p = fork();
  if (p == 0)
    {
      dup2(in[0], 0);
      int devnull = open("/dev/null", O_WRONLY);
      dup2(devnull, 1);
      dup2(devnull, 2);
      execl(bin, bin, "root", "-c", "true", (char *) NULL);
      _exit(127);
    }
  close(in[0]);
  char path[64], base[64];
  snprintf(path, sizeof(path), "/proc/%d/status", p);
  snprintf(base, sizeof(base), "Name:\t%.32s\n", strrchr(bin, '/') + 1);
  int seen = 0;
  for (int i = 0; i < 2000 && seen < 20; i++)
    {
      char buf[8192];
      if (esc_read_small(path, buf, sizeof(buf)) < 0)
        break;
      if (strncmp(buf, base, strlen(base)) != 0)
        {
          usleep(500);
          continue;
        }
      seen++;
      char *uid = strstr(buf, "\nUid:"), *cap = strstr(buf, "\nCapEff:");
      unsigned r, e, s, f;
      if (uid && sscanf(uid, "\nUid: %u %u %u %u", &r, &e, &s, &f) == 4 && (e != geteuid() || s != geteuid()))
        {
          esc_reap(p);
          esc_fail("%s runs with euid %u/suid %u (we are %u)", bin, e, s, geteuid());
        }
      if (cap && strtoull(cap + 8, NULL, 16) != 0)
        {
          esc_reap(p);
          esc_fail("%s gained capabilities: %.30s", bin, cap + 1);
        }
      usleep(200);
    }
  close(in[1]);
  esc_reap(p);
  esc_note("%s observed %d time(s) after exec", bin, seen);
}

void esc_chk_realtime_sched(void)
{
  struct sched_param sp = { .sched_priority = 1 };
  DENIED(sched_setscheduler(0, SCHED_FIFO, &sp));
  DENIED(sched_setscheduler(0, SCHED_RR, &sp));
}

void esc_chk_nice_negative(void)
{
  EXPECT_IN(setpriority(PRIO_PROCESS, 0, -20), EACCES, EPERM);
}

void esc_chk_ioprio_realtime(void)
{
  /* IOPRIO_WHO_PROCESS, class RT (1) level 0 */
  DENIED(syscall(SYS_ioprio_set, 1, 0, (1 << 13) | 0));
}

/* Syscalls the policy does not know - newer than it, or never meant for
 * sandboxes - fail closed with ENOSYS. */
void esc_chk_unknown_syscalls_enosys(void)
{
  static const long nrs[] = { 457 /* statmount */, 458 /* listmount */, 459 /* lsm_get_self_attr */,
                              461 /* lsm_list_modules */, 467 /* open_tree_attr */,
                              100000, 0x3fffffffL };
  for (size_t i = 0; i < sizeof(nrs) / sizeof(*nrs); i++)
    {
      char what[64];
      snprintf(what, sizeof(what), "syscall(%ld)", nrs[i]);
      errno = 0;
      long r = syscall(nrs[i], 0, 0, 0, 0, 0, 0);
      esc_expect_errno(r, errno, ENOSYS, what);
    }
}

/* uretprobe (x86-64, 6.11+) bypasses seccomp by design: the kernel itself
 * kills a caller that is not its uprobe trampoline (SIGILL). */
static void do_uretprobe(void)
{
  errno = 0;
  long r = syscall(335);
  _exit(r == -1 && errno == ENOSYS ? 3 : 0);
}

void esc_chk_uretprobe(void)
{
  int st = esc_in_child(do_uretprobe);
  if (WIFSIGNALED(st) && WTERMSIG(st) == SIGILL)
    return;
  if (WIFEXITED(st) && WEXITSTATUS(st) == 3)
    return;
  esc_fail("syscall(uretprobe): status %#x", st);
}
