/* The escape suite: run INSIDE a corral sandbox, it tries to break out in
 * every way we could think of and asserts that each attempt fails.
 *
 *   escape              run every check, TAP output, exit 1 if any failed
 *   escape --list       print the check names
 *   escape NAME...      run only the named checks
 *
 * Each check runs in a forked child (with an alarm), so a crash or a hang
 * fails that check only.  A check passes by returning, fails with fail()
 * and can skip with skip(); details travel back through a pipe.
 *
 * The host-side harness (tests/e2e/test_escape.py) sets up bait and passes
 * it in environment variables:
 *   ESCAPE_HOST_SECRET   path of a host file that must not be readable
 *   ESCAPE_HOST_PID      pid of a host process that must stay invisible
 *   ESCAPE_HOST_PORT     TCP port of a listener on the host's 127.0.0.1
 *   ESCAPE_ABSTRACT      name of a host abstract unix socket (no leading @)
 *   ESCAPE_LEAKED_FD     an fd the caller leaked without CLOEXEC
 * and afterwards verifies on the host that nothing reached the bait.
 *
 * Syscalls are made raw with harmless arguments: where a call slipped past
 * the filter, the arguments make the kernel reject it anyway (bad magic,
 * invalid time, fd -1), so a hole shows as a wrong errno, not as damage. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/if_ether.h>
#include <linux/securebits.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef SYS_open_tree
#define SYS_open_tree 428
#define SYS_move_mount 429
#define SYS_fsopen 430
#define SYS_fsconfig 431
#define SYS_fsmount 432
#define SYS_fspick 433
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif
#ifndef SYS_process_madvise
#define SYS_process_madvise 440
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef SYS_memfd_secret
#define SYS_memfd_secret 447
#endif
#ifndef SYS_io_uring_setup
#define SYS_io_uring_setup 425
#define SYS_io_uring_enter 426
#define SYS_io_uring_register 427
#endif
#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif
#ifndef AF_ALG
#define AF_ALG 38
#endif
#ifndef AF_XDP
#define AF_XDP 44
#endif
#ifndef AF_MCTP
#define AF_MCTP 45
#endif
#define X32_SYSCALL_BIT 0x40000000L

/* ------------------------------------------------------------------ */
/* Check plumbing                                                       */

static int detail_fd = -1;       /* in a check child: where details go */
static int startup_fds[64];      /* fds >= 3 open when we started */
static int n_startup_fds;
static int startup_tmp = -1, startup_shm = -1, startup_home = -1, startup_pts = -1;

static void __attribute__((noreturn, format(printf, 2, 0))) finish(int code, const char *fmt, va_list ap)
{
  char buf[1024];
  int n = vsnprintf(buf, sizeof(buf), fmt, ap);
  if (n > 0 && detail_fd >= 0)
    {
      size_t len = (size_t) n < sizeof(buf) ? (size_t) n : sizeof(buf) - 1;
      for (size_t i = 0; i < len; i++)
        if (buf[i] == '\n')
          buf[i] = ' ';
      if (write(detail_fd, buf, len) < 0)
        { /* nothing to do */ }
    }
  _exit(code);
}

static void __attribute__((noreturn, format(printf, 1, 2))) fail(const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  finish(1, fmt, ap);
}

static void __attribute__((noreturn, format(printf, 1, 2))) skip(const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  finish(77, fmt, ap);
}

/* A passing check may leave a note (printed as a TAP comment). */
static void __attribute__((format(printf, 1, 2))) note(const char *fmt, ...)
{
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  if (n > 0 && detail_fd >= 0 && write(detail_fd, buf, (size_t) n < sizeof(buf) ? (size_t) n : sizeof(buf) - 1) < 0)
    { /* ignore */ }
}

static const char *ename(int e)
{
  const char *s = strerrorname_np(e);
  return s ? s : "E?";
}

/* The call must fail with errno `want`. */
static void expect_errno(long r, int e, int want, const char *what)
{
  if (r != -1)
    fail("%s succeeded (returned %ld)", what, r);
  if (e != want)
    fail("%s: errno %s, expected %s", what, ename(e), ename(want));
}

/* The call must fail with one of the errnos in the 0-terminated list. */
static void expect_errno_in(long r, int e, const int *ok, const char *what)
{
  char list[256] = "";
  if (r != -1)
    fail("%s succeeded (returned %ld)", what, r);
  for (const int *p = ok; *p; p++)
    {
      if (e == *p)
        return;
      snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", p == ok ? "" : "/", ename(*p));
    }
  fail("%s: errno %s, expected %s", what, ename(e), list);
}

#define EXPECT(want, call)                                                                                             \
  do                                                                                                                   \
    {                                                                                                                  \
      errno = 0;                                                                                                       \
      long r_ = (long) (call);                                                                                         \
      expect_errno(r_, errno, (want), #call);                                                                          \
    }                                                                                                                  \
  while (0)

#define EXPECT_IN(call, ...)                                                                                           \
  do                                                                                                                   \
    {                                                                                                                  \
      static const int ok_[] = { __VA_ARGS__, 0 };                                                                     \
      errno = 0;                                                                                                       \
      long r_ = (long) (call);                                                                                         \
      expect_errno_in(r_, errno, ok_, #call);                                                                          \
    }                                                                                                                  \
  while (0)

/* Seccomp answers EPERM for the attack-surface calls. */
#define DENIED(call) EXPECT(EPERM, call)
/* A write the kernel must refuse: DAC, read-only mount or LSM may answer first. */
#define WRITE_DENIED(call) EXPECT_IN(call, EACCES, EROFS, EPERM)

static const char *env_or_skip(const char *name)
{
  const char *v = getenv(name);
  if (v == NULL || *v == '\0')
    skip("%s not set", name);
  return v;
}

static ssize_t read_small(const char *path, char *buf, size_t size)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0)
    return -1;
  ssize_t n = read(fd, buf, size - 1);
  int e = errno;
  close(fd);
  errno = e;
  if (n >= 0)
    buf[n] = '\0';
  return n;
}

/* The value of a "Key:\t..." line of /proc/self/status. */
static bool status_field(const char *key, char *out, size_t size)
{
  char buf[8192];
  if (read_small("/proc/self/status", buf, sizeof(buf)) < 0)
    return false;
  size_t kl = strlen(key);
  for (char *line = buf; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
    if (strncmp(line, key, kl) == 0 && line[kl] == ':')
      {
        char *v = line + kl + 1;
        while (*v == ' ' || *v == '\t')
          v++;
        size_t n = strcspn(v, "\n");
        snprintf(out, size, "%.*s", (int) n, v);
        return true;
      }
  return false;
}

static int count_entries(const char *dir, const char *except)
{
  DIR *d = opendir(dir);
  struct dirent *de;
  int n = 0;
  if (d == NULL)
    return -1;
  while ((de = readdir(d)) != NULL)
    if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") && !(except && strcmp(de->d_name, except) == 0))
      n++;
  closedir(d);
  return n;
}

/* Run fn in a grandchild; return its wait status. */
static int in_child(void (*fn)(void))
{
  pid_t p = fork();
  int st;
  if (p < 0)
    fail("fork: %s", strerror(errno));
  if (p == 0)
    {
      fn();
      _exit(0);
    }
  while (waitpid(p, &st, 0) < 0)
    if (errno != EINTR)
      fail("waitpid: %s", strerror(errno));
  return st;
}

static void expect_sigsys(int st, const char *what)
{
  if (WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS)
    return;
  if (WIFSIGNALED(st))
    fail("%s: killed by signal %d, expected SIGSYS", what, WTERMSIG(st));
  if (WEXITSTATUS(st) == 0)
    fail("%s: the call succeeded", what);
  fail("%s: exited %d (the call failed without killing), expected SIGSYS", what, WEXITSTATUS(st));
}

static pid_t spawn_sleeper(void)
{
  pid_t p = fork();
  if (p < 0)
    fail("fork: %s", strerror(errno));
  if (p == 0)
    {
      for (;;)
        pause();
    }
  return p;
}

static void reap(pid_t p)
{
  kill(p, SIGKILL);
  waitpid(p, NULL, 0);
}

/* ------------------------------------------------------------------ */
/* Namespaces                                                           */

static void try_clone(unsigned long flag, const char *name)
{
  errno = 0;
  long r = syscall(SYS_clone, flag | SIGCHLD, NULL, NULL, NULL, 0);
  int e = errno;
  if (r == 0)
    _exit(0);
  if (r > 0)
    {
      waitpid((pid_t) r, NULL, 0);
      fail("clone(%s) succeeded", name);
    }
  if (e != EPERM)
    fail("clone(%s): errno %s, expected EPERM", name, ename(e));
}

static void chk_unshare_user(void) { DENIED(unshare(CLONE_NEWUSER)); }
static void chk_unshare_mount(void) { DENIED(unshare(CLONE_NEWNS)); }

static void chk_unshare_other(void)
{
  DENIED(unshare(CLONE_NEWPID));
  DENIED(unshare(CLONE_NEWNET));
  DENIED(unshare(CLONE_NEWIPC));
  DENIED(unshare(CLONE_NEWUTS));
  DENIED(unshare(CLONE_NEWCGROUP));
  DENIED(unshare(CLONE_NEWTIME));
}

static void chk_clone_newuser(void) { try_clone(CLONE_NEWUSER, "CLONE_NEWUSER"); }
static void chk_clone_newns(void) { try_clone(CLONE_NEWNS, "CLONE_NEWNS"); }
static void chk_clone_newpid(void) { try_clone(CLONE_NEWPID, "CLONE_NEWPID"); }
static void chk_clone_newnet(void) { try_clone(CLONE_NEWNET, "CLONE_NEWNET"); }

static void chk_clone_other_ns(void)
{
  try_clone(CLONE_NEWIPC, "CLONE_NEWIPC");
  try_clone(CLONE_NEWUTS, "CLONE_NEWUTS");
  try_clone(CLONE_NEWCGROUP, "CLONE_NEWCGROUP");
  try_clone(CLONE_NEWTIME, "CLONE_NEWTIME");
  /* Hiding the flag among others changes nothing. */
  try_clone(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID, "CLONE_NEWUSER|NEWNS|NEWPID");
}

struct esc_clone_args
{
  uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup;
};

static void chk_clone3(void)
{
  struct esc_clone_args a = { .flags = CLONE_NEWUSER, .exit_signal = SIGCHLD };
  errno = 0;
  long r = syscall(SYS_clone3, &a, sizeof(a));
  int e = errno;
  if (r == 0)
    _exit(0);
  if (r > 0)
    {
      waitpid((pid_t) r, NULL, 0);
      fail("clone3(CLONE_NEWUSER) succeeded");
    }
  expect_errno(r, e, ENOSYS, "clone3(CLONE_NEWUSER)");
}

static void chk_setns(void)
{
  static const char *const ns[] = { "user", "mnt", "pid", "net", "ipc", "uts", "cgroup", "time", NULL };
  int tried = 0;
  for (int i = 0; ns[i]; i++)
    {
      char p[64];
      snprintf(p, sizeof(p), "/proc/self/ns/%s", ns[i]);
      int fd = open(p, O_RDONLY | O_CLOEXEC);
      if (fd < 0)
        continue;
      tried++;
      errno = 0;
      long r = setns(fd, 0);
      char what[80];
      snprintf(what, sizeof(what), "setns(%s)", p);
      expect_errno(r, errno, EPERM, what);
      close(fd);
    }
  if (tried == 0)
    fail("could not open any /proc/self/ns entry");
}

static void chk_setns_pidfd_init(void)
{
  int pfd = (int) syscall(SYS_pidfd_open, 1, 0);
  if (pfd < 0)
    skip("pidfd_open(1): %s", strerror(errno));
  DENIED(setns(pfd, CLONE_NEWNS | CLONE_NEWNET));
}

/* ------------------------------------------------------------------ */
/* Denied syscalls (seccomp EPERM)                                      */

static void chk_ptrace_traceme(void) { DENIED(syscall(SYS_ptrace, 0 /* PTRACE_TRACEME */, 0, 0, 0)); }
static void chk_ptrace_attach_init(void) { DENIED(syscall(SYS_ptrace, 16 /* PTRACE_ATTACH */, 1, 0, 0)); }

static void chk_ptrace_sibling(void)
{
  pid_t p = spawn_sleeper();
  errno = 0;
  long r = syscall(SYS_ptrace, 0x4206 /* PTRACE_SEIZE */, p, 0, 0);
  int e = errno;
  reap(p);
  expect_errno(r, e, EPERM, "ptrace(PTRACE_SEIZE, child)");
}

static void chk_process_vm_readv(void)
{
  char buf[16];
  struct iovec local = { buf, sizeof(buf) }, remote = { (void *) 0x400000, sizeof(buf) };
  DENIED(syscall(SYS_process_vm_readv, 1, &local, 1, &remote, 1, 0));
}

static void chk_process_vm_writev(void)
{
  char buf[16] = "x";
  pid_t p = spawn_sleeper();
  struct iovec local = { buf, sizeof(buf) }, remote = { (void *) buf, sizeof(buf) };
  errno = 0;
  long r = syscall(SYS_process_vm_writev, p, &local, 1, &remote, 1, 0);
  int e = errno;
  reap(p);
  expect_errno(r, e, EPERM, "process_vm_writev(child)");
}

static void chk_kcmp(void) { DENIED(syscall(SYS_kcmp, getpid(), 1, 0 /* KCMP_FILE */, 0, 0)); }

static void chk_pidfd_getfd_init(void)
{
  int pfd = (int) syscall(SYS_pidfd_open, 1, 0);
  if (pfd < 0)
    skip("pidfd_open(1): %s", strerror(errno));
  /* PID 1 holds the supervisor socket as fd 3. */
  DENIED(syscall(SYS_pidfd_getfd, pfd, 3, 0));
}

static void chk_mount_tmpfs(void) { DENIED(mount("none", "/tmp", "tmpfs", 0, "size=1m")); }
static void chk_mount_remount_root_rw(void) { DENIED(mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND, NULL)); }
static void chk_mount_bind(void) { DENIED(mount("/proc", "/tmp", NULL, MS_BIND | MS_REC, NULL)); }
static void chk_mount_proc(void) { DENIED(mount("proc", "/tmp", "proc", 0, NULL)); }
static void chk_mount_cgroup2(void) { DENIED(mount("cgroup2", "/tmp", "cgroup2", 0, NULL)); }
static void chk_mount_sysfs(void) { DENIED(mount("sysfs", "/tmp", "sysfs", 0, NULL)); }
static void chk_umount_proc(void) { DENIED(umount2("/proc", MNT_DETACH)); }
static void chk_umount_root(void) { DENIED(umount2("/", MNT_DETACH)); }
static void chk_pivot_root(void) { DENIED(syscall(SYS_pivot_root, "/tmp", "/tmp")); }
static void chk_chroot(void) { DENIED(chroot("/tmp")); }
static void chk_open_tree(void) { DENIED(syscall(SYS_open_tree, AT_FDCWD, "/", 1 /* OPEN_TREE_CLONE */)); }
static void chk_fsopen(void) { DENIED(syscall(SYS_fsopen, "tmpfs", 0)); }
static void chk_fsmount(void) { DENIED(syscall(SYS_fsmount, -1, 0, 0)); }
static void chk_fsconfig(void) { DENIED(syscall(SYS_fsconfig, -1, 0, NULL, NULL, 0)); }
static void chk_fspick(void) { DENIED(syscall(SYS_fspick, AT_FDCWD, "/", 0)); }
static void chk_move_mount(void) { DENIED(syscall(SYS_move_mount, -1, "", AT_FDCWD, "/tmp", 0)); }

struct esc_mount_attr
{
  uint64_t attr_set, attr_clr, propagation, userns_fd;
};

static void chk_mount_setattr(void)
{
  struct esc_mount_attr a = { .attr_clr = 0x1 /* MOUNT_ATTR_RDONLY */ };
  DENIED(syscall(SYS_mount_setattr, AT_FDCWD, "/", 0x8000 /* AT_RECURSIVE */, &a, sizeof(a)));
}

static void chk_keyctl(void) { DENIED(syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, -3 /* session */, 0)); }
static void chk_add_key(void) { DENIED(syscall(SYS_add_key, "user", "escape", "x", 1, -2 /* process keyring */)); }
static void chk_request_key(void) { DENIED(syscall(SYS_request_key, "user", "escape", NULL, 0)); }

static void chk_bpf(void)
{
  char attr[128] = { 0 };
  DENIED(syscall(SYS_bpf, 0 /* BPF_MAP_CREATE */, attr, sizeof(attr)));
}

static void chk_perf_event_open(void)
{
  uint32_t attr[32] = { 0 };
  attr[0] = 1;                 /* PERF_TYPE_SOFTWARE */
  attr[1] = sizeof(attr);      /* size */
  DENIED(syscall(SYS_perf_event_open, attr, 0, -1, -1, 0));
}

static void chk_userfaultfd(void) { DENIED(syscall(SYS_userfaultfd, O_CLOEXEC)); }

static void chk_io_uring_setup(void)
{
  char params[120] = { 0 };
  DENIED(syscall(SYS_io_uring_setup, 1, params));
}

static void chk_io_uring_enter_register(void)
{
  DENIED(syscall(SYS_io_uring_enter, -1, 0, 0, 0, NULL, 0));
  DENIED(syscall(SYS_io_uring_register, -1, 0, NULL, 0));
}

static void chk_open_by_handle_at(void)
{
  /* The "shocker" container escape: forge a handle to the host's root. */
  struct { unsigned int bytes; int type; unsigned char f[8]; } h = { 8, 1, { 2, 0, 0, 0, 0, 0, 0, 0 } };
  DENIED(syscall(SYS_open_by_handle_at, AT_FDCWD, &h, O_RDONLY));
}

static void chk_name_to_handle_at(void)
{
  struct { unsigned int bytes; int type; unsigned char f[128]; } h = { 128, 0, { 0 } };
  int mnt_id;
  DENIED(syscall(SYS_name_to_handle_at, AT_FDCWD, "/", &h, &mnt_id, 0));
}

static void chk_kexec_load(void) { DENIED(syscall(SYS_kexec_load, 0, 0, NULL, 0xdead0000UL)); }
static void chk_kexec_file_load(void) { DENIED(syscall(SYS_kexec_file_load, -1, -1, 0, NULL, 0xdead0000UL)); }
static void chk_init_module(void) { DENIED(syscall(SYS_init_module, NULL, 0, "")); }
static void chk_finit_module(void) { DENIED(syscall(SYS_finit_module, -1, "", 0)); }
static void chk_delete_module(void) { DENIED(syscall(SYS_delete_module, "corral_escape_none", O_NONBLOCK)); }

/* Bad magic: even if the call got through, the kernel would say EINVAL. */
static void chk_reboot(void) { DENIED(syscall(SYS_reboot, 0, 0, 0 /* CAD_OFF */, NULL)); }
static void chk_swapon(void) { DENIED(syscall(SYS_swapon, "/tmp/corral-escape-none", 0)); }
static void chk_swapoff(void) { DENIED(syscall(SYS_swapoff, "/tmp/corral-escape-none")); }
static void chk_acct(void) { DENIED(syscall(SYS_acct, NULL)); }

static void chk_clock_settime(void)
{
  struct timespec ts = { .tv_sec = 1, .tv_nsec = 2000000000L }; /* invalid */
  DENIED(syscall(SYS_clock_settime, CLOCK_REALTIME, &ts));
}

static void chk_settimeofday(void)
{
  struct timeval tv = { .tv_sec = 1, .tv_usec = 2000000 }; /* invalid */
  DENIED(syscall(SYS_settimeofday, &tv, NULL));
}

static void chk_adjtimex(void)
{
  char tx[256] = { 0 }; /* modes 0: a pure read */
  DENIED(syscall(SYS_adjtimex, tx));
  DENIED(syscall(SYS_clock_adjtime, CLOCK_REALTIME, tx));
}

static void chk_iopl(void) { DENIED(syscall(SYS_iopl, 3)); }
static void chk_ioperm(void) { DENIED(syscall(SYS_ioperm, 0x80, 1, 1)); }
static void chk_syslog(void) { DENIED(syscall(SYS_syslog, 10 /* SIZE_BUFFER */, NULL, 0)); }

static void chk_modify_ldt(void)
{
  char buf[64];
  DENIED(syscall(SYS_modify_ldt, 0, buf, sizeof(buf)));
}

static void chk_quotactl(void) { DENIED(syscall(SYS_quotactl, 0x800004 /* Q_GETFMT */, "/usr", 0, NULL)); }
static void chk_fanotify_init(void) { DENIED(syscall(SYS_fanotify_init, 0, O_RDONLY)); }
static void chk_memfd_secret(void) { DENIED(syscall(SYS_memfd_secret, 0)); }
static void chk_vhangup(void) { DENIED(syscall(SYS_vhangup)); }

static void chk_move_pages_init(void)
{
  DENIED(syscall(SYS_migrate_pages, 1, 64, NULL, NULL));
  DENIED(syscall(SYS_move_pages, 1, 0, NULL, NULL, NULL, 0));
}

static void chk_process_madvise(void)
{
  char buf[4096];
  struct iovec iov = { buf, sizeof(buf) };
  int pfd = (int) syscall(SYS_pidfd_open, 1, 0);
  DENIED(syscall(SYS_process_madvise, pfd, &iov, 1, 20 /* MADV_COLD */, 0));
}

static void chk_personality(void)
{
  static const unsigned long bad[] = { ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC, MMAP_PAGE_ZERO, ADDR_COMPAT_LAYOUT,
                                       PER_LINUX | ADDR_NO_RANDOMIZE | (1UL << 32) };
  for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
    {
      errno = 0;
      long r = syscall(SYS_personality, bad[i]);
      if (r != -1)
        fail("personality(%#lx) succeeded (returned %#lx)", bad[i], r);
    }
  long cur = syscall(SYS_personality, 0xffffffffUL);
  if (cur != 0)
    fail("personality is now %#lx, expected 0", cur);
}

/* ------------------------------------------------------------------ */
/* Terminals                                                            */

static void chk_tiocsti_stdin(void)
{
  char c = 'x';
  DENIED(ioctl(0, TIOCSTI, &c));
}

/* A pty that is our controlling terminal: only seccomp stands between
 * TIOCSTI and input injection here. */
static int open_ctty_pty(void)
{
  int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (m < 0)
    fail("posix_openpt: %s", strerror(errno));
  if (grantpt(m) < 0 || unlockpt(m) < 0)
    fail("grantpt/unlockpt: %s", strerror(errno));
  const char *name = ptsname(m);
  if (name == NULL)
    fail("ptsname: %s", strerror(errno));
  setsid();
  int s = open(name, O_RDWR | O_CLOEXEC); /* no O_NOCTTY: becomes our ctty */
  if (s < 0)
    fail("open %s: %s", name, strerror(errno));
  ioctl(s, TIOCSCTTY, 0);
  return s;
}

static void chk_tiocsti_pty(void)
{
  int s = open_ctty_pty();
  char c = 'x';
  DENIED(ioctl(s, TIOCSTI, &c));
}

static void chk_tiocsti_highbits(void)
{
  int s = open_ctty_pty();
  char c = 'x';
  DENIED(syscall(SYS_ioctl, s, 0x100000000UL | TIOCSTI, &c));
  DENIED(syscall(SYS_ioctl, 0, 0xffffffff00000000UL | TIOCSTI, &c));
}

static void chk_tioclinux(void)
{
  int s = open_ctty_pty();
  char sub = 7; /* TIOCL_GETSHIFTSTATE: a read */
  DENIED(ioctl(s, TIOCLINUX, &sub));
  sub = 7;
  DENIED(syscall(SYS_ioctl, s, 0x100000000UL | TIOCLINUX, &sub));
}

static void chk_dev_tty_no_ctty(void)
{
  /* The sandbox is a new session: the host's terminal is out of reach. */
  EXPECT(ENXIO, open("/dev/tty", O_RDWR | O_CLOEXEC));
}

static void chk_devpts_private(void)
{
  if (startup_pts < 0)
    fail("/dev/pts missing or unreadable");
  if (startup_pts > 0)
    fail("/dev/pts held %d terminals at startup (host's devpts?)", startup_pts);
}

/* The realistic TIOCSTI attack (CVE-2017-5226): the sandbox's stdin is the
 * user's terminal.  The harness runs one pass with a host pty as stdin,
 * the controlling terminal of corral's session. */
static void chk_stdin_tty_hijack(void)
{
  if (!isatty(0))
    skip("stdin is not a terminal");
  char c = 'x';
  /* Steal the host session's terminal: refused (another session's ctty;
   * forcing it needs CAP_SYS_ADMIN). */
  EXPECT(EPERM, ioctl(0, TIOCSCTTY, 0));
  EXPECT(EPERM, ioctl(0, TIOCSCTTY, 1));
  /* Make our group the foreground one, to read the user's typing. */
  pid_t pg = getpgrp();
  EXPECT_IN(ioctl(0, TIOCSPGRP, &pg), ENOTTY, EPERM);
  DENIED(ioctl(0, TIOCSTI, &c));
  DENIED(syscall(SYS_ioctl, 0, 0x100000000UL | TIOCSTI, &c));
  char sub = 7;
  DENIED(ioctl(0, TIOCLINUX, &sub));
  /* Redirect the console to it. */
  DENIED(ioctl(0, TIOCCONS, 0));
}

/* Line disciplines are kernel attack surface (n_gsm, n_hdlc CVEs). */
static void chk_tty_ldisc(void)
{
  int s = open_ctty_pty();
  int ld = 21; /* N_GSM */
  EXPECT_IN(ioctl(s, TIOCSETD, &ld), EPERM, EINVAL);
  ld = 13; /* N_HDLC */
  EXPECT_IN(ioctl(s, TIOCSETD, &ld), EPERM, EINVAL);
}

/* ------------------------------------------------------------------ */
/* Sockets and network                                                  */

static void chk_raw_inet(void)
{
  DENIED(socket(AF_INET, SOCK_RAW, IPPROTO_RAW));
  DENIED(socket(AF_INET, SOCK_RAW, IPPROTO_ICMP));
  DENIED(socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_TCP));
}

static void chk_raw_inet6(void)
{
  DENIED(socket(AF_INET6, SOCK_RAW, IPPROTO_RAW));
  DENIED(socket(AF_INET6, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMPV6));
}

static void chk_raw_highbits(void)
{
  EXPECT_IN(syscall(SYS_socket, AF_INET | (1UL << 32), SOCK_RAW, IPPROTO_RAW), ENOSYS, EPERM);
  DENIED(syscall(SYS_socket, AF_INET, SOCK_RAW | (1UL << 32), IPPROTO_RAW));
}

static void chk_af_packet(void) { EXPECT(ENOSYS, socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL))); }

/* The obsolete (PF_INET, SOCK_PACKET) is turned into PF_PACKET by the kernel. */
static void chk_inet_sock_packet(void)
{
  EXPECT_IN(socket(AF_INET, SOCK_PACKET, htons(ETH_P_ALL)), EPERM, EAFNOSUPPORT, ESOCKTNOSUPPORT, EINVAL, ENOSYS);
}

static void chk_af_vsock(void) { EXPECT(ENOSYS, socket(AF_VSOCK, SOCK_STREAM, 0)); }

static void chk_other_families(void)
{
  static const int fam[] = { AF_ALG, AF_KEY, AF_BLUETOOTH, AF_CAN, AF_TIPC, AF_RDS, AF_LLC, AF_PPPOX, AF_XDP,
                             AF_APPLETALK, AF_X25, AF_AX25, AF_NFC, AF_IEEE802154, AF_SMC, AF_QIPCRTR, AF_MCTP,
                             AF_IB, AF_PHONET, AF_CAIF, AF_ISDN, AF_KCM, 255 };
  static const int types[] = { SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET, SOCK_RAW };
  for (size_t i = 0; i < sizeof(fam) / sizeof(*fam); i++)
    for (size_t t = 0; t < sizeof(types) / sizeof(*types); t++)
      {
        errno = 0;
        int fd = socket(fam[i], types[t], 0);
        if (fd >= 0)
          fail("socket(%d, %d) succeeded", fam[i], types[t]);
        if (errno != ENOSYS)
          fail("socket(%d, %d): errno %s, expected ENOSYS", fam[i], types[t], ename(errno));
      }
}

static void connect_to(int family, const char *addr, int port, int type, const int *ok, const char *what)
{
  int fd = socket(family, type | SOCK_CLOEXEC, 0);
  if (fd < 0)
    fail("socket: %s", strerror(errno));
  struct sockaddr_storage ss;
  socklen_t len;
  memset(&ss, 0, sizeof(ss));
  if (family == AF_INET)
    {
      struct sockaddr_in *a = (struct sockaddr_in *) &ss;
      a->sin_family = AF_INET;
      a->sin_port = htons((uint16_t) port);
      inet_pton(AF_INET, addr, &a->sin_addr);
      len = sizeof(*a);
    }
  else
    {
      struct sockaddr_in6 *a = (struct sockaddr_in6 *) &ss;
      a->sin6_family = AF_INET6;
      a->sin6_port = htons((uint16_t) port);
      inet_pton(AF_INET6, addr, &a->sin6_addr);
      len = sizeof(*a);
    }
  errno = 0;
  long r = connect(fd, (struct sockaddr *) &ss, len);
  expect_errno_in(r, errno, ok, what);
  close(fd);
}

static void chk_host_tcp_port(void)
{
  static const int ok[] = { ECONNREFUSED, 0 };
  int port = atoi(env_or_skip("ESCAPE_HOST_PORT"));
  connect_to(AF_INET, "127.0.0.1", port, SOCK_STREAM, ok, "connect(127.0.0.1:host port)");
}

static void chk_host_tcp_port6(void)
{
  static const int ok[] = { ECONNREFUSED, EADDRNOTAVAIL, ENETUNREACH, 0 };
  int port = atoi(env_or_skip("ESCAPE_HOST_PORT"));
  int fd = socket(AF_INET6, SOCK_STREAM, 0);
  if (fd < 0)
    skip("no IPv6: %s", strerror(errno));
  close(fd);
  connect_to(AF_INET6, "::1", port, SOCK_STREAM, ok, "connect([::1]:host port)");
  connect_to(AF_INET6, "::ffff:127.0.0.1", port, SOCK_STREAM, ok, "connect([::ffff:127.0.0.1]:host port)");
}

static void chk_abstract_unix(void)
{
  const char *name = env_or_skip("ESCAPE_ABSTRACT");
  struct sockaddr_un a = { .sun_family = AF_UNIX };
  size_t n = strlen(name);
  if (n + 1 > sizeof(a.sun_path))
    fail("abstract name too long");
  memcpy(a.sun_path + 1, name, n);
  static const int types[] = { SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET };
  for (size_t i = 0; i < 3; i++)
    {
      int fd = socket(AF_UNIX, types[i] | SOCK_CLOEXEC, 0);
      if (fd < 0)
        fail("socket(AF_UNIX): %s", strerror(errno));
      EXPECT_IN(connect(fd, (struct sockaddr *) &a, (socklen_t) (offsetof(struct sockaddr_un, sun_path) + 1 + n)),
                ECONNREFUSED, EPERM, EPROTOTYPE);
      close(fd);
    }
}

static void chk_host_unix_sockets(void)
{
  static const char *const paths[] = { "/run/docker.sock", "/var/run/docker.sock", "/run/containerd/containerd.sock",
                                       "/run/systemd/private", "/run/dbus/system_bus_socket",
                                       "/run/systemd/journal/socket", "/dev/log", "/run/podman/podman.sock", NULL };
  for (int i = 0; paths[i]; i++)
    {
      struct sockaddr_un a = { .sun_family = AF_UNIX };
      snprintf(a.sun_path, sizeof(a.sun_path), "%s", paths[i]);
      int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd < 0)
        fail("socket(AF_UNIX): %s", strerror(errno));
      errno = 0;
      long r = connect(fd, (struct sockaddr *) &a, sizeof(a));
      char what[128];
      snprintf(what, sizeof(what), "connect(%s)", paths[i]);
      expect_errno(r, errno, ENOENT, what);
      close(fd);
    }
}

static void chk_net_only_loopback(void)
{
  char buf[8192];
  if (read_small("/proc/net/dev", buf, sizeof(buf)) < 0)
    fail("read /proc/net/dev: %s", strerror(errno));
  int n = 0;
  char *save = NULL;
  for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
    {
      char *colon = strchr(line, ':');
      if (colon == NULL || strchr(line, '|'))
        continue;
      *colon = '\0';
      while (*line == ' ')
        line++;
      if (strcmp(line, "lo") != 0)
        fail("interface `%s` is visible", line);
      n++;
    }
  if (n != 1)
    fail("expected exactly `lo`, found %d interfaces", n);
  if (if_nametoindex("eth0") != 0)
    fail("eth0 exists");
}

static void chk_no_route_public(void)
{
  static const int ok[] = { ENETUNREACH, 0 };
  connect_to(AF_INET, "8.8.8.8", 53, SOCK_STREAM, ok, "connect(8.8.8.8:53)");
  connect_to(AF_INET, "8.8.8.8", 53, SOCK_DGRAM, ok, "connect(udp 8.8.8.8:53)");
}

static void chk_no_route_private(void)
{
  static const int ok[] = { ENETUNREACH, 0 };
  connect_to(AF_INET, "10.0.0.1", 80, SOCK_STREAM, ok, "connect(10.0.0.1:80)");
  connect_to(AF_INET, "192.168.1.1", 80, SOCK_STREAM, ok, "connect(192.168.1.1:80)");
  connect_to(AF_INET, "169.254.169.254", 80, SOCK_STREAM, ok, "connect(169.254.169.254:80 metadata)");
}

static void chk_no_route_ipv6(void)
{
  static const int ok[] = { ENETUNREACH, EADDRNOTAVAIL, EAFNOSUPPORT, 0 };
  int fd = socket(AF_INET6, SOCK_STREAM, 0);
  if (fd < 0)
    skip("no IPv6: %s", strerror(errno));
  close(fd);
  connect_to(AF_INET6, "2001:4860:4860::8888", 53, SOCK_STREAM, ok, "connect([2001:4860:4860::8888]:53)");
}

static void chk_udp_sendto_public(void)
{
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(53) };
  inet_pton(AF_INET, "8.8.8.8", &a.sin_addr);
  EXPECT(ENETUNREACH, sendto(fd, "x", 1, 0, (struct sockaddr *) &a, sizeof(a)));
}

static void chk_netdev_config(void)
{
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  struct ifreq ifr;
  memset(&ifr, 0, sizeof(ifr));
  strcpy(ifr.ifr_name, "lo");
  if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
    fail("SIOCGIFFLAGS lo: %s", strerror(errno));
  ifr.ifr_flags &= ~IFF_UP;
  DENIED(ioctl(fd, SIOCSIFFLAGS, &ifr));
  struct sockaddr_in *sin = (struct sockaddr_in *) &ifr.ifr_addr;
  memset(&ifr.ifr_ifru, 0, sizeof(ifr.ifr_ifru));
  sin->sin_family = AF_INET;
  inet_pton(AF_INET, "10.99.0.1", &sin->sin_addr);
  DENIED(ioctl(fd, SIOCSIFADDR, &ifr));
}

/* ------------------------------------------------------------------ */
/* Devices                                                              */

static void chk_mknod_char(void) { DENIED(mknod("/tmp/escape-mem", S_IFCHR | 0666, makedev(1, 1))); }
static void chk_mknod_block(void) { DENIED(mknodat(AT_FDCWD, "/tmp/escape-vda", S_IFBLK | 0666, makedev(253, 0))); }

static void chk_mknod_highbits(void)
{
  DENIED(syscall(SYS_mknod, "/tmp/escape-mem2", (1UL << 32) | S_IFCHR | 0666, makedev(1, 1)));
  DENIED(syscall(SYS_mknodat, AT_FDCWD, "/tmp/escape-mem3", (1UL << 32) | S_IFBLK | 0666, makedev(8, 0)));
}

static void expect_absent(const char *const *paths)
{
  for (int i = 0; paths[i]; i++)
    {
      struct stat st;
      errno = 0;
      long r = lstat(paths[i], &st);
      char what[128];
      snprintf(what, sizeof(what), "stat(%s)", paths[i]);
      expect_errno(r, errno, ENOENT, what);
    }
}

static void chk_dev_mem_absent(void)
{
  static const char *const p[] = { "/dev/mem", "/dev/kmem", "/dev/port", NULL };
  expect_absent(p);
  EXPECT(ENOENT, open("/dev/mem", O_RDONLY | O_CLOEXEC));
}

static void chk_dev_kmsg_absent(void)
{
  static const char *const p[] = { "/dev/kmsg", "/dev/console", "/dev/tty0", "/dev/tty1", "/dev/vcs", NULL };
  expect_absent(p);
}

static void chk_dev_disks_absent(void)
{
  static const char *const p[] = { "/dev/sda", "/dev/vda", "/dev/nvme0n1", "/dev/xvda", "/dev/loop0",
                                   "/dev/loop-control", "/dev/mapper", "/dev/dm-0", "/dev/disk", NULL };
  expect_absent(p);
}

static void chk_dev_misc_absent(void)
{
  static const char *const p[] = { "/dev/kvm", "/dev/fuse", "/dev/net", "/dev/userfaultfd", "/dev/autofs",
                                   "/dev/btrfs-control", "/dev/cpu", "/dev/hwrng", "/dev/vhost-net", "/dev/vsock",
                                   "/dev/uinput", "/dev/snapshot", NULL };
  expect_absent(p);
}

/* Walk /dev: no block device anywhere, only the harmless character ones. */
static void chk_dev_nodes_minimal(void)
{
  static const char *const ok[] = { "null", "zero", "full", "random", "urandom", "tty", "ptmx", NULL };
  static const char *const dirs[] = { "/dev", "/dev/pts", "/dev/shm", NULL };
  for (int d = 0; dirs[d]; d++)
    {
      DIR *dir = opendir(dirs[d]);
      struct dirent *de;
      if (dir == NULL)
        fail("opendir %s: %s", dirs[d], strerror(errno));
      while ((de = readdir(dir)) != NULL)
        {
          char p[300];
          struct stat st;
          snprintf(p, sizeof(p), "%s/%s", dirs[d], de->d_name);
          if (lstat(p, &st) < 0)
            continue;
          if (S_ISBLK(st.st_mode))
            fail("block device %s", p);
          if (!S_ISCHR(st.st_mode))
            continue;
          bool allowed = false;
          for (int i = 0; ok[i]; i++)
            allowed |= strcmp(de->d_name, ok[i]) == 0;
          /* Our own pty slaves live under /dev/pts. */
          if (!allowed && !(d == 1 && major(st.st_rdev) >= 136 && major(st.st_rdev) <= 143))
            fail("unexpected device %s (%u:%u)", p, major(st.st_rdev), minor(st.st_rdev));
        }
      closedir(dir);
    }
}

/* ------------------------------------------------------------------ */
/* /proc and /sys                                                       */

#define OPEN_W(path) open(path, O_WRONLY | O_CLOEXEC)

static void chk_proc_sys_hostname(void) { WRITE_DENIED(OPEN_W("/proc/sys/kernel/hostname")); }
static void chk_proc_sys_core_pattern(void) { WRITE_DENIED(OPEN_W("/proc/sys/kernel/core_pattern")); }
/* Absent (kernel built without modules or sysrq) is as good as refused. */
#define WRITE_DENIED_OR_ABSENT(call) EXPECT_IN(call, EACCES, EROFS, EPERM, ENOENT)
static void chk_proc_sys_modprobe(void) { WRITE_DENIED_OR_ABSENT(OPEN_W("/proc/sys/kernel/modprobe")); }
static void chk_proc_sys_drop_caches(void) { WRITE_DENIED(OPEN_W("/proc/sys/vm/drop_caches")); }
static void chk_proc_sys_net(void) { WRITE_DENIED(OPEN_W("/proc/sys/net/ipv4/ip_forward")); }
static void chk_proc_sysrq_trigger(void)
{
  WRITE_DENIED_OR_ABSENT(OPEN_W("/proc/sysrq-trigger"));
  WRITE_DENIED_OR_ABSENT(OPEN_W("/proc/sys/kernel/sysrq"));
}

static void chk_proc_sys_writable_none(void)
{
  struct statvfs sv;
  if (statvfs("/proc/sys", &sv) < 0)
    fail("statvfs /proc/sys: %s", strerror(errno));
  if (!(sv.f_flag & ST_RDONLY))
    fail("/proc/sys is not mounted read-only");
}

static void chk_proc_binfmt_misc(void)
{
  EXPECT_IN(OPEN_W("/proc/sys/fs/binfmt_misc/register"), ENOENT, EACCES, EROFS, EPERM);
}

static void chk_proc_self_exe_write(void)
{
  /* CVE-2019-5736: overwrite the binary that runs us, through /proc. */
  EXPECT_IN(OPEN_W("/proc/self/exe"), ETXTBSY, EACCES, EROFS, EPERM);
  EXPECT_IN(open("/proc/self/exe", O_RDWR | O_CLOEXEC), ETXTBSY, EACCES, EROFS, EPERM);
}

static void chk_proc_init_exe_write(void)
{
  EXPECT_IN(OPEN_W("/proc/1/exe"), EACCES, EPERM, ETXTBSY, EROFS);
}

static void chk_proc_init_exe_open(void)
{
  /* PID 1 is corral, made non-dumpable: not even a read-only handle. */
  EXPECT(EACCES, open("/proc/1/exe", O_RDONLY | O_CLOEXEC));
  char buf[256];
  EXPECT(EACCES, readlink("/proc/1/exe", buf, sizeof(buf)));
}

static void chk_proc_init_environ(void) { EXPECT(EACCES, open("/proc/1/environ", O_RDONLY | O_CLOEXEC)); }
static void chk_proc_init_mem(void) { EXPECT(EACCES, open("/proc/1/mem", O_RDONLY | O_CLOEXEC)); }
static void chk_proc_init_fd(void)
{
  EXPECT(EACCES, open("/proc/1/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  /* fd 3 of PID 1 is its socket to the host supervisor. */
  EXPECT(EACCES, open("/proc/1/fd/3", O_RDWR | O_CLOEXEC));
  EXPECT(EACCES, open("/proc/1/fdinfo/3", O_RDONLY | O_CLOEXEC));
}

static void chk_proc_init_root(void)
{
  EXPECT(EACCES, open("/proc/1/root/", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  EXPECT(EACCES, open("/proc/1/cwd/", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
}

static void expect_empty_or_absent(const char *path)
{
  char buf[256];
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0)
    {
      if (errno == ENOENT || errno == EACCES || errno == EPERM)
        return;
      fail("open %s: %s", path, strerror(errno));
    }
  ssize_t n = read(fd, buf, sizeof(buf));
  int e = errno;
  close(fd);
  if (n > 0)
    fail("%s is readable (%zd bytes)", path, n);
  if (n < 0 && e != EAGAIN && e != EPERM && e != EACCES && e != EINVAL)
    fail("read %s: %s", path, strerror(e));
}

static void chk_proc_kcore(void) { expect_empty_or_absent("/proc/kcore"); }
static void chk_proc_kmsg(void) { expect_empty_or_absent("/proc/kmsg"); }

static void chk_proc_kallsyms(void)
{
  char buf[4096];
  ssize_t n = read_small("/proc/kallsyms", buf, sizeof(buf));
  if (n <= 0)
    return; /* masked (empty) or absent */
  /* If visible at all, the addresses must be censored. */
  for (char *line = buf; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
    {
      unsigned long long addr = strtoull(line, NULL, 16);
      if (addr != 0)
        fail("/proc/kallsyms shows real addresses (%llx)", addr);
    }
}

static void chk_proc_masked_misc(void)
{
  static const char *const p[] = { "/proc/keys", "/proc/key-users", "/proc/timer_list", "/proc/sched_debug",
                                   "/proc/kpagecount", "/proc/kpageflags", "/proc/kpagecgroup", NULL };
  for (int i = 0; p[i]; i++)
    expect_empty_or_absent(p[i]);
}

static void chk_proc_oom_score_adj(void)
{
  int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
  if (fd < 0)
    fail("open oom_score_adj: %s", strerror(errno));
  /* Lowering it (becoming unkillable by the OOM killer) needs CAP_SYS_RESOURCE. */
  EXPECT(EACCES, write(fd, "-1000", 5));
}

static void chk_proc_uid_map_write(void)
{
  int fd = open("/proc/self/uid_map", O_WRONLY | O_CLOEXEC);
  if (fd < 0)
    {
      if (errno == EACCES || errno == EPERM || errno == EROFS)
        return;
      fail("open uid_map: %s", strerror(errno));
    }
  EXPECT(EPERM, write(fd, "0 0 4294967295\n", 15));
}

static void chk_mountinfo_no_host_fs(void)
{
  static const char *const bad[] = { " - sysfs ", " - cgroup ", " - cgroup2 ", " - debugfs ", " - tracefs ",
                                     " - securityfs ", " - bpf ", " - configfs ", " - fusectl ", " - pstore ",
                                     " - efivarfs ", " - binfmt_misc ", " - hugetlbfs ", " - overlay ", NULL };
  char buf[65536];
  if (read_small("/proc/self/mountinfo", buf, sizeof(buf)) < 0)
    fail("read mountinfo: %s", strerror(errno));
  for (int i = 0; bad[i]; i++)
    if (strstr(buf, bad[i]))
      fail("a `%s` filesystem is mounted", bad[i] + 3);
  if (strstr(buf, " /oldroot") || strstr(buf, " /newroot"))
    fail("setup mounts are still attached");
}

/* Walk /proc (but not /proc/sys, tested above, nor per-process dirs) and
 * open every regular file for writing: only the PSI trigger files may open
 * (unprivileged triggers are a kernel feature; writes are validated). */
static int proc_writable(const char *dir, int depth, char *found, size_t size)
{
  DIR *d = opendir(dir);
  struct dirent *de;
  int n = 0;
  if (d == NULL)
    return 0;
  while ((de = readdir(d)) != NULL)
    {
      char p[512];
      struct stat st;
      if (de->d_name[0] == '.' || (depth == 0 && ((de->d_name[0] >= '0' && de->d_name[0] <= '9')
                                                  || !strcmp(de->d_name, "self") || !strcmp(de->d_name, "thread-self")
                                                  || !strcmp(de->d_name, "sys"))))
        continue;
      snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
      if (lstat(p, &st) < 0)
        continue;
      if (S_ISDIR(st.st_mode))
        {
          if (depth < 6)
            n += proc_writable(p, depth + 1, found, size);
          continue;
        }
      if (!S_ISREG(st.st_mode) || strncmp(p, "/proc/pressure/", 15) == 0)
        continue;
      int fd = open(p, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
      if (fd >= 0)
        {
          close(fd);
          snprintf(found + strlen(found), size - strlen(found), " %s", p);
          n++;
        }
    }
  closedir(d);
  return n;
}

static void chk_proc_writable_files(void)
{
  char found[1024] = "";
  if (proc_writable("/proc", 0, found, sizeof(found)) > 0)
    fail("writable:%s", found);
}

/* File capabilities and trusted xattrs need CAP_SETFCAP / CAP_SYS_ADMIN. */
static void chk_privileged_xattrs(void)
{
  const char *p = "/tmp/escape-xattr";
  int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0755);
  if (fd < 0)
    fail("create %s: %s", p, strerror(errno));
  close(fd);
  /* VFS_CAP_REVISION_2 granting CAP_SYS_ADMIN, effective. */
  uint32_t caps[5] = { 0x02000001, 1u << CAP_SYS_ADMIN, 1u << CAP_SYS_ADMIN, 0, 0 };
  EXPECT_IN(syscall(SYS_setxattr, p, "security.capability", caps, sizeof(caps), 0), EPERM, EOPNOTSUPP);
  EXPECT_IN(syscall(SYS_setxattr, p, "trusted.overlay.opaque", "y", 1, 0), EPERM, EOPNOTSUPP);
}

/* A host file handed in as stdin read-only must not be reopened for
 * writing through the /proc/self/fd magic link (Landlock: it is not under
 * any writable sandbox path), nor stdout for reading. */
static void chk_reopen_stdin_write(void)
{
  struct stat st;
  if (fstat(0, &st) < 0 || !S_ISREG(st.st_mode))
    skip("stdin is not a regular file");
  EXPECT_IN(open("/proc/self/fd/0", O_WRONLY | O_CLOEXEC), EACCES, EPERM);
  EXPECT_IN(open("/proc/self/fd/0", O_RDWR | O_TRUNC | O_CLOEXEC), EACCES, EPERM);
  EXPECT_IN(truncate("/proc/self/fd/0", 0), EACCES, EPERM);
  EXPECT_IN(fchmod(0, 0777), EPERM, EACCES);
}

static void chk_reopen_stdout_read(void)
{
  struct stat st;
  if (fstat(1, &st) < 0 || !S_ISREG(st.st_mode))
    skip("stdout is not a regular file");
  EXPECT_IN(open("/proc/self/fd/1", O_RDONLY | O_CLOEXEC), EACCES, EPERM);
  char c;
  EXPECT(EBADF, read(1, &c, 1));
}

static void chk_sys_absent_or_ro(void)
{
  struct stat st;
  if (stat("/sys", &st) < 0)
    {
      if (errno != ENOENT)
        fail("stat /sys: %s", strerror(errno));
      return;
    }
  struct statvfs sv;
  if (statvfs("/sys", &sv) == 0 && !(sv.f_flag & ST_RDONLY))
    fail("/sys is mounted read-write");
  WRITE_DENIED(OPEN_W("/sys/kernel/uevent_helper"));
}

static void chk_sys_fs_cgroup(void)
{
  struct stat st;
  if (stat("/sys/fs/cgroup", &st) == 0)
    {
      WRITE_DENIED(open("/sys/fs/cgroup/cgroup.procs", O_WRONLY | O_CLOEXEC));
      WRITE_DENIED(mkdir("/sys/fs/cgroup/escape", 0755));
    }
  char buf[512];
  if (read_small("/proc/self/cgroup", buf, sizeof(buf)) < 0)
    fail("read /proc/self/cgroup: %s", strerror(errno));
  /* Every hierarchy (v1 or v2) is rooted at our own cgroup. */
  char *save = NULL;
  for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
    {
      char *path = strrchr(line, ':');
      if (path == NULL || strcmp(path, ":/") != 0)
        fail("/proc/self/cgroup shows a host path: %s", line);
    }
}

static void chk_ipc_namespace_private(void)
{
  static const char *const p[] = { "/proc/sysvipc/shm", "/proc/sysvipc/msg", "/proc/sysvipc/sem", NULL };
  for (int i = 0; p[i]; i++)
    {
      char buf[4096];
      if (read_small(p[i], buf, sizeof(buf)) < 0)
        continue;
      char *nl = strchr(buf, '\n');
      if (nl && nl[1] != '\0')
        fail("%s shows host IPC objects", p[i]);
    }
}

/* ------------------------------------------------------------------ */
/* Filesystem                                                           */

static void chk_write_usr_bin(void)
{
  EXPECT(EROFS, open("/usr/bin/corral-escape", O_WRONLY | O_CREAT | O_CLOEXEC, 0755));
}

static void chk_write_etc_passwd(void)
{
  WRITE_DENIED(OPEN_W("/etc/passwd"));
  WRITE_DENIED(open("/etc/passwd", O_WRONLY | O_APPEND | O_CLOEXEC));
}

static void chk_etc_ld_so_preload(void)
{
  EXPECT(EROFS, open("/etc/ld.so.preload", O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
}

static void chk_write_root(void)
{
  EXPECT(EROFS, open("/x", O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
  EXPECT(EROFS, mkdir("/escape", 0755));
  EXPECT(EROFS, symlink("/tmp", "/escape-link"));
}

static void chk_modify_usr_binary(void)
{
  WRITE_DENIED(truncate("/usr/bin/env", 0));
  WRITE_DENIED(chmod("/usr/bin/env", 04755));
  WRITE_DENIED(unlink("/usr/bin/env"));
}

static void chk_hardlink_host_file(void)
{
  EXPECT_IN(link("/usr/bin/env", "/tmp/escape-env"), EXDEV, EPERM, EACCES);
}

static void chk_mount_flags(void)
{
  static const struct { const char *path; unsigned long must; } m[] = {
    { "/", ST_RDONLY | ST_NOSUID }, { "/usr", ST_RDONLY | ST_NOSUID }, { "/etc", ST_RDONLY | ST_NOSUID },
    { "/dev", ST_RDONLY | ST_NOSUID }, { "/tmp", ST_NOSUID | ST_NODEV }, { "/home/user", ST_NOSUID | ST_NODEV },
    { "/dev/shm", ST_NOSUID | ST_NODEV | ST_NOEXEC }, { "/proc", ST_NOSUID | ST_NODEV | ST_NOEXEC },
  };
  for (size_t i = 0; i < sizeof(m) / sizeof(*m); i++)
    {
      struct statvfs sv;
      if (statvfs(m[i].path, &sv) < 0)
        fail("statvfs %s: %s", m[i].path, strerror(errno));
      if ((sv.f_flag & m[i].must) != m[i].must)
        fail("%s mount flags %#lx lack %#lx", m[i].path, sv.f_flag, m[i].must & ~sv.f_flag);
    }
}

static void chk_etc_shadow_absent(void)
{
  EXPECT(ENOENT, open("/etc/shadow", O_RDONLY | O_CLOEXEC));
  EXPECT(ENOENT, open("/etc/gshadow", O_RDONLY | O_CLOEXEC));
}

static void chk_etc_secrets_absent(void)
{
  static const char *const p[] = { "/etc/ssh", "/etc/sudoers", "/etc/sudoers.d", "/etc/ssl/private",
                                   "/etc/machine-id", "/etc/subuid", "/etc/pam.d", "/etc/security", NULL };
  expect_absent(p);
}

static void chk_host_secret_file(void)
{
  const char *path = env_or_skip("ESCAPE_HOST_SECRET");
  EXPECT(ENOENT, open(path, O_RDONLY | O_CLOEXEC));
  struct stat st;
  EXPECT(ENOENT, stat(path, &st));
}

static void chk_host_root_home(void)
{
  int n = count_entries("/root", NULL);
  if (n > 0)
    fail("/root holds %d entries (host's /root?)", n);
  n = count_entries("/home", "user");
  if (n > 0)
    fail("/home holds %d entries besides user", n);
  if (startup_home > 0)
    fail("/home/user held %d entries at startup", startup_home);
}

static void chk_host_dirs_absent(void)
{
  static const char *const p[] = { "/var", "/boot", "/srv", "/mnt", "/media", "/lost+found", "/snap", NULL };
  expect_absent(p);
}

static void chk_run_corral_absent(void)
{
  static const char *const p[] = { "/run/corral", "/var/run/corral", "/run", NULL };
  expect_absent(p);
}

static void chk_tmp_private(void)
{
  if (startup_tmp != 0)
    fail("/tmp held %d entries at startup (host's /tmp?)", startup_tmp);
}

static void chk_dev_shm_private(void)
{
  if (startup_shm != 0)
    fail("/dev/shm held %d entries at startup (host's /dev/shm?)", startup_shm);
}

/* ------------------------------------------------------------------ */
/* Privilege                                                            */

static void chk_caps_zero(void)
{
  static const char *const keys[] = { "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", NULL };
  for (int i = 0; keys[i]; i++)
    {
      char v[64];
      if (!status_field(keys[i], v, sizeof(v)))
        fail("no %s in /proc/self/status", keys[i]);
      if (strtoull(v, NULL, 16) != 0)
        fail("%s is %s", keys[i], v);
    }
  for (int c = 0; c < 64; c++)
    if (prctl(PR_CAPBSET_READ, c, 0, 0, 0) == 1)
      fail("capability %d is in the bounding set", c);
}

static void chk_no_new_privs(void)
{
  char v[32];
  if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1)
    fail("PR_GET_NO_NEW_PRIVS is not 1");
  if (!status_field("NoNewPrivs", v, sizeof(v)) || strcmp(v, "1") != 0)
    fail("NoNewPrivs: %s", v);
  EXPECT(EINVAL, prctl(PR_SET_NO_NEW_PRIVS, 0, 0, 0, 0));
}

static void chk_seccomp_mode(void)
{
  char v[32];
  if (!status_field("Seccomp", v, sizeof(v)) || strcmp(v, "2") != 0)
    fail("Seccomp: %s", v);
  EXPECT(EINVAL, prctl(PR_SET_SECCOMP, 0 /* SECCOMP_MODE_DISABLED */, 0, 0, 0));
  if (!status_field("Seccomp", v, sizeof(v)) || strcmp(v, "2") != 0)
    fail("Seccomp after disabling attempt: %s", v);
}

static void chk_securebits_locked(void)
{
  int bits = prctl(PR_GET_SECUREBITS, 0, 0, 0, 0);
  if (bits < 0)
    fail("PR_GET_SECUREBITS: %s", strerror(errno));
  if (!(bits & SECBIT_NOROOT) || !(bits & SECBIT_NOROOT_LOCKED))
    fail("securebits %#x lack NOROOT(+LOCKED)", bits);
  DENIED(prctl(PR_SET_SECUREBITS, 0, 0, 0, 0));
}

static void chk_capset_raise(void)
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

static void chk_ambient_raise(void)
{
  DENIED(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_RAW, 0, 0));
}

static void chk_prctl_set_mm(void)
{
  DENIED(prctl(PR_SET_MM, PR_SET_MM_ARG_START, (unsigned long) &startup_fds, 0, 0));
}

static void check_caps_still_zero(const char *when)
{
  char v[64];
  if (!status_field("CapEff", v, sizeof(v)) || strtoull(v, NULL, 16) != 0)
    fail("CapEff %s after %s", v, when);
  if (!status_field("CapPrm", v, sizeof(v)) || strtoull(v, NULL, 16) != 0)
    fail("CapPrm %s after %s", v, when);
}

static void chk_setuid_root(void)
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
    fail("setuid(0) as root: %s", strerror(errno));
  check_caps_still_zero("setuid(0)");
}

/* Without CAP_SETUID no other identity is reachable, down or up: sandbox
 * root cannot become another user (e.g. to reach files of a bind mount). */
static void chk_change_uid(void)
{
  uid_t other = geteuid() == 0 ? 1000 : 0;
  DENIED(setuid(other));
  DENIED(setresuid(other, other, other));
  DENIED(setresuid(-1, -1, 12345));
  DENIED(setreuid(12345, -1));
  check_caps_still_zero("setresuid");
}

static void chk_setgroups(void)
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

static void chk_chown_other(void)
{
  const char *p = "/tmp/escape-chown";
  int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0)
    fail("create %s: %s", p, strerror(errno));
  close(fd);
  uid_t other = geteuid() == 0 ? 1000 : 0;
  DENIED(chown(p, other, other));
  EXPECT_IN(chown("/usr/bin/env", geteuid(), getegid()), EROFS, EPERM);
}

static void chk_uid_map(void)
{
  char buf[512];
  if (read_small("/proc/self/uid_map", buf, sizeof(buf)) < 0)
    fail("read uid_map: %s", strerror(errno));
  unsigned long long in, out, count;
  char *p = buf;
  int n = 0, used;
  while (sscanf(p, "%llu %llu %llu%n", &in, &out, &count, &used) == 3)
    {
      if (out <= 65535)
        fail("uid_map maps host uid %llu (host root / real users): %s", out, buf);
      if (count > 65536)
        fail("uid_map maps %llu ids", count);
      p += used;
      n++;
    }
  if (n == 0)
    fail("cannot parse uid_map: %s", buf);
}

/* A setuid-root program must not gain anything: the mounts are nosuid and
 * no_new_privs is set.  Watch su's credentials right after its exec. */
static void chk_setuid_exec(void)
{
  static const char *const cands[] = { "/usr/bin/su", "/usr/bin/passwd", "/usr/bin/newgrp", "/usr/bin/chsh",
                                       "/usr/bin/mount", "/bin/su", NULL };
  const char *bin = NULL;
  struct stat st;
  for (int i = 0; cands[i] && !bin; i++)
    if (stat(cands[i], &st) == 0 && (st.st_mode & S_ISUID))
      bin = cands[i];
  if (bin == NULL)
    skip("no setuid binary found");
  struct statvfs sv;
  if (statvfs(bin, &sv) < 0 || !(sv.f_flag & ST_NOSUID))
    fail("%s is on a mount without nosuid", bin);

  int in[2];
  if (pipe(in) < 0)
    fail("pipe: %s", strerror(errno));
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
      if (read_small(path, buf, sizeof(buf)) < 0)
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
          reap(p);
          fail("%s runs with euid %u/suid %u (we are %u)", bin, e, s, geteuid());
        }
      if (cap && strtoull(cap + 8, NULL, 16) != 0)
        {
          reap(p);
          fail("%s gained capabilities: %.30s", bin, cap + 1);
        }
      usleep(200);
    }
  close(in[1]);
  reap(p);
  note("%s observed %d time(s) after exec", bin, seen);
}

static void chk_realtime_sched(void)
{
  struct sched_param sp = { .sched_priority = 1 };
  DENIED(sched_setscheduler(0, SCHED_FIFO, &sp));
  DENIED(sched_setscheduler(0, SCHED_RR, &sp));
}

static void chk_nice_negative(void)
{
  EXPECT_IN(setpriority(PRIO_PROCESS, 0, -20), EACCES, EPERM);
}

static void chk_ioprio_realtime(void)
{
  /* IOPRIO_WHO_PROCESS, class RT (1) level 0 */
  DENIED(syscall(SYS_ioprio_set, 1, 0, (1 << 13) | 0));
}

/* Syscalls the policy does not know - newer than it, or never meant for
 * sandboxes - fail closed with ENOSYS. */
static void chk_unknown_syscalls_enosys(void)
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
      expect_errno(r, errno, ENOSYS, what);
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

static void chk_uretprobe(void)
{
  int st = in_child(do_uretprobe);
  if (WIFSIGNALED(st) && WTERMSIG(st) == SIGILL)
    return;
  if (WIFEXITED(st) && WEXITSTATUS(st) == 3)
    return;
  fail("syscall(uretprobe): status %#x", st);
}

/* ------------------------------------------------------------------ */
/* Processes, signals, fds                                              */

static void chk_host_pid_invisible(void)
{
  pid_t pid = (pid_t) atoi(env_or_skip("ESCAPE_HOST_PID"));
  errno = 0;
  long r = kill(pid, 0);
  if (r == 0 || errno != ESRCH)
    {
      /* A sandbox process may happen to have the same number: not the host's
       * sleep, though. */
      char p[64], comm[64] = "";
      snprintf(p, sizeof(p), "/proc/%d/comm", pid);
      read_small(p, comm, sizeof(comm));
      if (strncmp(comm, "sleep", 5) == 0)
        fail("host process %d (sleep) is visible", pid);
      note("pid %d exists inside but is `%.20s`", pid, comm);
    }
  char p[64];
  snprintf(p, sizeof(p), "/proc/%d", pid);
  struct stat st;
  if (stat(p, &st) == 0)
    {
      char comm[64] = "";
      snprintf(p, sizeof(p), "/proc/%d/comm", pid);
      read_small(p, comm, sizeof(comm));
      if (strncmp(comm, "sleep", 5) == 0)
        fail("host process %d visible in /proc", pid);
    }
}

static void chk_pid_namespace(void)
{
  DIR *d = opendir("/proc");
  struct dirent *de;
  int n = 0;
  if (d == NULL)
    fail("opendir /proc: %s", strerror(errno));
  while ((de = readdir(d)) != NULL)
    if (de->d_name[0] >= '1' && de->d_name[0] <= '9')
      n++;
  closedir(d);
  /* PID 1, the suite, this check. */
  if (n > 8)
    fail("%d processes visible in /proc", n);
  if (getpid() > 1000)
    fail("pid %d: not in a fresh pid namespace?", getpid());
  char buf[64];
  if (read_small("/proc/1/comm", buf, sizeof(buf)) > 0 && (strstr(buf, "systemd") || strstr(buf, "init\n")))
    fail("PID 1 is the host's init (%s)", buf);
}

/* The suite ignores these: kill(-1, sig) then hits every process this one
 * can reach, which must all be inside the sandbox (the harness checks a
 * host process survives). */
static const int broadcast_sigs[] = { SIGTERM, SIGHUP, SIGINT, SIGUSR1, SIGUSR2, SIGQUIT, 0 };

static void chk_kill_all(void)
{
  for (int i = 0; broadcast_sigs[i]; i++)
    {
      errno = 0;
      if (kill(-1, broadcast_sigs[i]) < 0 && errno != ESRCH && errno != EPERM)
        fail("kill(-1, %d): %s", broadcast_sigs[i], strerror(errno));
    }
  /* Anyone who died was in here; now also SIGKILL from a child whose
   * siblings are only its own. */
  pid_t p = fork();
  if (p == 0)
    {
      setsid();
      pid_t sleeper = spawn_sleeper();
      (void) sleeper;
      /* Our parent (this check) and the suite would die: only target our
       * own process group, which is what a careless fork bomb cleanup does. */
      kill(0, SIGKILL);
      _exit(1);
    }
  int st;
  waitpid(p, &st, 0);
  if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL))
    fail("kill(0, SIGKILL) child: status %#x", st);
}

/* PID 1 is corral's init: the kernel ignores fatal signals sent to it from
 * inside its namespace; it may forward what it receives to the command's
 * process group (ours), hence the SIG_IGN here. */
static void chk_kill_init(void)
{
  signal(SIGTERM, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
  static const int sigs[] = { SIGKILL, SIGSTOP, SIGTERM, SIGHUP, 0 };
  for (int i = 0; sigs[i]; i++)
    {
      errno = 0;
      if (kill(1, sigs[i]) < 0 && errno != EPERM)
        fail("kill(1, %d): %s", sigs[i], strerror(errno));
      usleep(20000);
      char buf[512];
      if (read_small("/proc/1/stat", buf, sizeof(buf)) <= 0)
        fail("PID 1 is gone after signal %d", sigs[i]);
      char *rp = strrchr(buf, ')');
      if (rp && (rp[2] == 'T' || rp[2] == 't' || rp[2] == 'Z' || rp[2] == 'X'))
        fail("PID 1 is in state %c after signal %d", rp[2], sigs[i]);
    }
  int pfd = (int) syscall(SYS_pidfd_open, 1, 0);
  if (pfd >= 0)
    {
      errno = 0;
      if (syscall(SYS_pidfd_send_signal, pfd, SIGKILL, NULL, 0) < 0 && errno != EPERM)
        fail("pidfd_send_signal(1, SIGKILL): %s", strerror(errno));
      usleep(20000);
      struct stat st;
      if (stat("/proc/1", &st) < 0)
        fail("PID 1 is gone after pidfd_send_signal");
    }
}

static void chk_leaked_fd(void)
{
  int fd = atoi(env_or_skip("ESCAPE_LEAKED_FD"));
  EXPECT(EBADF, fcntl(fd, F_GETFD));
}

static void chk_no_inherited_fds(void)
{
  if (n_startup_fds > 0)
    {
      char list[256] = "";
      for (int i = 0; i < n_startup_fds; i++)
        snprintf(list + strlen(list), sizeof(list) - strlen(list), " %d", startup_fds[i]);
      fail("fds open at startup:%s", list);
    }
}

static void chk_setsid_done(void)
{
  /* corral made the command a session leader with no terminal. */
  if (getsid(0) != getpgid(getppid()) && getsid(0) != getppid())
    fail("suite session %d unexpected (parent %d)", getsid(0), getppid());
  int pg;
  EXPECT_IN(ioctl(0, TIOCGPGRP, &pg), ENOTTY, ENXIO, EINVAL);
}

/* ------------------------------------------------------------------ */
/* Host identity                                                        */

static void chk_sethostname_private(void)
{
  const char *name = "corral-escape-probe";
  char before[256] = "", after[256] = "";
  gethostname(before, sizeof(before));
  errno = 0;
  if (sethostname(name, strlen(name)) == 0)
    {
      gethostname(after, sizeof(after));
      if (strcmp(after, name) != 0)
        fail("sethostname succeeded but gethostname says %s", after);
      note("hostname inside changed %s -> %s; the harness checks the host's", before, after);
      return;
    }
  if (errno != EPERM)
    fail("sethostname: %s", strerror(errno));
  note("sethostname refused (EPERM); hostname inside is %s", before);
}

static void chk_setdomainname_private(void)
{
  errno = 0;
  if (setdomainname("escape", 6) == 0)
    {
      note("domain name changed inside the sandbox's UTS namespace");
      return;
    }
  if (errno != EPERM)
    fail("setdomainname: %s", strerror(errno));
}

/* ------------------------------------------------------------------ */
/* Foreign syscall ABIs: killed outright                                */

static void do_x32_getpid(void)
{
  long r = syscall(X32_SYSCALL_BIT | SYS_getpid);
  _exit(r > 0 ? 0 : 3);
}

static void do_x32_unshare(void)
{
  long r = syscall(X32_SYSCALL_BIT | SYS_unshare, CLONE_NEWUSER);
  _exit(r == 0 ? 0 : 3);
}

static void do_int80_getpid(void)
{
  long r;
  __asm__ volatile("int $0x80" : "=a"(r) : "a"(20L) : "memory", "cc");
  _exit(r > 0 ? 0 : 3);
}

static void do_int80_unshare(void)
{
  long r;
  /* i386 unshare is 310. */
  __asm__ volatile("int $0x80" : "=a"(r) : "a"(310L), "b"((long) CLONE_NEWUSER) : "memory", "cc");
  _exit(r == 0 ? 0 : 3);
}

static void chk_x32_getpid(void) { expect_sigsys(in_child(do_x32_getpid), "x32 getpid"); }
static void chk_x32_unshare(void) { expect_sigsys(in_child(do_x32_unshare), "x32 unshare"); }
/* With ia32 emulation off (ia32_emulation=0) int 0x80 faults instead:
 * SIGSEGV, no syscall made - as good. */
static void expect_int80_dead(int st, const char *what)
{
  if (WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV)
    {
      note("SIGSEGV: ia32 emulation is off in this kernel");
      return;
    }
  expect_sigsys(st, what);
}

static void chk_int80_getpid(void) { expect_int80_dead(in_child(do_int80_getpid), "int 0x80 getpid"); }
static void chk_int80_unshare(void) { expect_int80_dead(in_child(do_int80_unshare), "int 0x80 unshare"); }

/* ------------------------------------------------------------------ */
/* The list                                                             */

struct check
{
  const char *name;
  void (*fn)(void);
};

#define C(n) { #n, chk_##n }
static const struct check checks[] = {
  /* namespaces */
  C(unshare_user), C(unshare_mount), C(unshare_other), C(clone_newuser), C(clone_newns), C(clone_newpid),
  C(clone_newnet), C(clone_other_ns), C(clone3), C(setns), C(setns_pidfd_init),
  /* denied syscalls */
  C(ptrace_traceme), C(ptrace_attach_init), C(ptrace_sibling), C(process_vm_readv), C(process_vm_writev), C(kcmp),
  C(pidfd_getfd_init), C(mount_tmpfs), C(mount_remount_root_rw), C(mount_bind), C(mount_proc), C(mount_cgroup2),
  C(mount_sysfs), C(umount_proc), C(umount_root), C(pivot_root), C(chroot), C(open_tree), C(fsopen), C(fsmount),
  C(fsconfig), C(fspick), C(move_mount), C(mount_setattr), C(keyctl), C(add_key), C(request_key), C(bpf),
  C(perf_event_open), C(userfaultfd), C(io_uring_setup), C(io_uring_enter_register), C(open_by_handle_at),
  C(name_to_handle_at), C(kexec_load), C(kexec_file_load), C(init_module), C(finit_module), C(delete_module),
  C(reboot), C(swapon), C(swapoff), C(acct), C(clock_settime), C(settimeofday), C(adjtimex), C(iopl), C(ioperm),
  C(syslog), C(modify_ldt), C(quotactl), C(fanotify_init), C(memfd_secret), C(vhangup), C(move_pages_init),
  C(process_madvise), C(personality),
  /* terminals */
  C(tiocsti_stdin), C(tiocsti_pty), C(tiocsti_highbits), C(tioclinux), C(dev_tty_no_ctty), C(devpts_private), C(stdin_tty_hijack), C(tty_ldisc),
  /* sockets and network */
  C(raw_inet), C(raw_inet6), C(raw_highbits), C(af_packet), C(inet_sock_packet), C(af_vsock), C(other_families),
  C(host_tcp_port), C(host_tcp_port6), C(abstract_unix), C(host_unix_sockets), C(net_only_loopback),
  C(no_route_public), C(no_route_private), C(no_route_ipv6), C(udp_sendto_public), C(netdev_config),
  /* devices */
  C(mknod_char), C(mknod_block), C(mknod_highbits), C(dev_mem_absent), C(dev_kmsg_absent), C(dev_disks_absent),
  C(dev_misc_absent), C(dev_nodes_minimal),
  /* /proc and /sys */
  C(proc_sys_hostname), C(proc_sys_core_pattern), C(proc_sys_modprobe), C(proc_sys_drop_caches), C(proc_sys_net),
  C(proc_sysrq_trigger), C(proc_sys_writable_none), C(proc_binfmt_misc), C(proc_self_exe_write),
  C(proc_init_exe_write), C(proc_init_exe_open), C(proc_init_environ), C(proc_init_mem), C(proc_init_fd),
  C(proc_init_root), C(proc_kcore), C(proc_kmsg), C(proc_kallsyms), C(proc_masked_misc), C(proc_oom_score_adj),
  C(proc_uid_map_write), C(mountinfo_no_host_fs), C(proc_writable_files), C(sys_absent_or_ro), C(sys_fs_cgroup), C(ipc_namespace_private),
  /* filesystem and host data */
  C(write_usr_bin), C(write_etc_passwd), C(etc_ld_so_preload), C(write_root), C(modify_usr_binary),
  C(hardlink_host_file), C(privileged_xattrs), C(reopen_stdin_write), C(reopen_stdout_read), C(mount_flags), C(etc_shadow_absent), C(etc_secrets_absent), C(host_secret_file),
  C(host_root_home), C(host_dirs_absent), C(run_corral_absent), C(tmp_private), C(dev_shm_private),
  /* privilege */
  C(caps_zero), C(no_new_privs), C(seccomp_mode), C(securebits_locked), C(capset_raise), C(ambient_raise),
  C(prctl_set_mm), C(realtime_sched), C(nice_negative), C(ioprio_realtime),
  C(unknown_syscalls_enosys), C(uretprobe), C(setuid_root), C(change_uid), C(setgroups), C(chown_other), C(uid_map), C(setuid_exec),
  /* processes and fds */
  C(host_pid_invisible), C(pid_namespace), C(kill_all), C(kill_init), C(leaked_fd), C(no_inherited_fds),
  C(setsid_done),
  /* host identity */
  C(sethostname_private), C(setdomainname_private),
  /* foreign ABIs */
  C(x32_getpid), C(x32_unshare), C(int80_getpid), C(int80_unshare),
};
#define N_CHECKS (sizeof(checks) / sizeof(*checks))

/* Record what the environment looked like before any check touched it. */
static void snapshot(void)
{
  for (int fd = 3; fd < 1024; fd++)
    if (fcntl(fd, F_GETFD) >= 0 && n_startup_fds < 64)
      startup_fds[n_startup_fds++] = fd;
  startup_tmp = count_entries("/tmp", NULL);
  startup_shm = count_entries("/dev/shm", NULL);
  startup_home = count_entries("/home/user", NULL);
  startup_pts = count_entries("/dev/pts", "ptmx");
}

static int run_one(int num, const struct check *c)
{
  int p[2];
  char detail[1100] = "";
  if (pipe2(p, O_CLOEXEC) < 0)
    {
      printf("not ok %d - %s # pipe: %s\n", num, c->name, strerror(errno));
      return 1;
    }
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0)
    {
      printf("not ok %d - %s # fork: %s\n", num, c->name, strerror(errno));
      close(p[0]);
      close(p[1]);
      return 1;
    }
  if (pid == 0)
    {
      close(p[0]);
      detail_fd = p[1];
      for (int i = 0; broadcast_sigs[i]; i++)
        signal(broadcast_sigs[i], SIG_DFL);
      alarm(20);
      c->fn();
      _exit(0);
    }
  close(p[1]);
  size_t len = 0;
  ssize_t n;
  while (len < sizeof(detail) - 1 && ((n = read(p[0], detail + len, sizeof(detail) - 1 - len)) > 0 || (n < 0 && errno == EINTR)))
    if (n > 0)
      len += (size_t) n;
  detail[len] = '\0';
  close(p[0]);
  int st;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR)
      {
        printf("not ok %d - %s # waitpid: %s\n", num, c->name, strerror(errno));
        return 1;
      }
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
    {
      printf("ok %d - %s%s%s\n", num, c->name, *detail ? " # " : "", detail);
      return 0;
    }
  if (WIFEXITED(st) && WEXITSTATUS(st) == 77)
    {
      printf("ok %d - %s # SKIP %s\n", num, c->name, detail);
      return 0;
    }
  if (WIFSIGNALED(st))
    printf("not ok %d - %s # killed by signal %d (%s)%s%s\n", num, c->name, WTERMSIG(st), strsignal(WTERMSIG(st)),
           *detail ? ": " : "", detail);
  else
    printf("not ok %d - %s # %s\n", num, c->name, *detail ? detail : "failed");
  return 1;
}

int main(int argc, char **argv)
{
  const struct check *sel[N_CHECKS];
  size_t n = 0;

  if (argc > 1 && (strcmp(argv[1], "--list") == 0 || strcmp(argv[1], "-l") == 0))
    {
      for (size_t i = 0; i < N_CHECKS; i++)
        printf("%s\n", checks[i].name);
      return 0;
    }
  if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0))
    {
      printf("usage: %s [--list | NAME...]\n", argv[0]);
      return 0;
    }
  snapshot();
  if (argc > 1)
    {
      for (int a = 1; a < argc; a++)
        {
          size_t i;
          for (i = 0; i < N_CHECKS; i++)
            if (strcmp(argv[a], checks[i].name) == 0)
              break;
          if (i == N_CHECKS)
            {
              fprintf(stderr, "escape: no check named `%s` (see --list)\n", argv[a]);
              return 2;
            }
          sel[n++] = &checks[i];
        }
    }
  else
    for (size_t i = 0; i < N_CHECKS; i++)
      sel[n++] = &checks[i];

  /* kill(-1, ...) from the kill_all check must not end the suite. */
  for (int i = 0; broadcast_sigs[i]; i++)
    signal(broadcast_sigs[i], SIG_IGN);
  setvbuf(stdout, NULL, _IOLBF, 0);
  printf("1..%zu\n", n);
  int failed = 0;
  for (size_t i = 0; i < n; i++)
    failed += run_one((int) i + 1, sel[i]);
  if (failed)
    printf("# %d of %zu checks FAILED\n", failed, n);
  return failed ? 1 : 0;
}
