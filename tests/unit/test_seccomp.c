/* The seccomp policy of src/lib/isolate/seccomp.c, loaded for real.
 *
 * Every probe runs in its own forked child, which sets no_new_privs, loads
 * the two filters built by corral__seccomp_build and makes one system call;
 * the return value and errno come back through a pipe (or the child dies
 * from SIGSYS).  Where it is harmless the same probe also runs once without
 * the filter, to show that the kernel alone would answer differently - a
 * denial that the kernel would give anyway proves little about the filter. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if_ether.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/netlink.h>
#include "isolate/isolate.h"
#include "tap.h"

#ifndef SOCK_PACKET
#define SOCK_PACKET 10
#endif
#define X32_SYSCALL_BIT 0x40000000L

static char tmpdir[] = "/tmp/corral-test-seccomp-XXXXXX";

struct ctx
{
  int pfd[2];        /* a pipe with 3 bytes waiting in it */
  char path[256];    /* a fresh name in tmpdir */
};

struct outcome
{
  long ret;
  int err;
};

typedef long (*probe_fn) (struct ctx *);

enum expect { EXPECT_OK, EXPECT_ERRNO, EXPECT_FAIL, EXPECT_SIGSYS };

struct probe
{
  const char *name;
  probe_fn fn;
  enum expect expect;
  int err;            /* EXPECT_ERRNO */
  bool baseline;      /* safe to run without the filter too */
};

/* ---- probes: each makes (mostly) one system call ---- */

static long p_getpid(struct ctx *c) { (void) c; return syscall(SYS_getpid); }
static long p_ptrace(struct ctx *c) { (void) c; return syscall(SYS_ptrace, 0 /* PTRACE_TRACEME */, 0, 0, 0); }
static long p_unshare_user(struct ctx *c) { (void) c; return syscall(SYS_unshare, CLONE_NEWUSER); }
static long p_unshare_ns(struct ctx *c) { (void) c; return syscall(SYS_unshare, CLONE_NEWNS); }
static long p_setns(struct ctx *c) { (void) c; return syscall(SYS_setns, -1, 0); }
static long p_mount(struct ctx *c) { return syscall(SYS_mount, "none", c->path, "tmpfs", 0, NULL); }
static long p_chroot(struct ctx *c) { (void) c; return syscall(SYS_chroot, "/nonexistent-corral"); }
static long p_bpf(struct ctx *c) { (void) c; return syscall(SYS_bpf, -1, NULL, 0); }
static long p_io_uring(struct ctx *c) { (void) c; return syscall(SYS_io_uring_setup, 0, NULL); }
static long p_userfaultfd(struct ctx *c) { (void) c; return syscall(SYS_userfaultfd, -1); }
static long p_keyctl(struct ctx *c) { (void) c; return syscall(SYS_keyctl, -1, 0, 0, 0, 0); }
static long p_perf(struct ctx *c) { (void) c; return syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0); }
static long p_open_by_handle(struct ctx *c) { (void) c; return syscall(SYS_open_by_handle_at, -1, NULL, 0); }
static long p_clone3(struct ctx *c) { (void) c; return syscall(SYS_clone3, NULL, 0); }
static long p_nr1000(struct ctx *c) { (void) c; return syscall(1000); }
static long p_lookup_dcookie(struct ctx *c) { (void) c; return syscall(SYS_lookup_dcookie, 0, NULL, 0); }
static long p_vhangup(struct ctx *c) { (void) c; return syscall(SYS_vhangup); }
static long p_process_mrelease(struct ctx *c) { (void) c; return syscall(448 /* process_mrelease */, -1, 0); }
static long p_statmount(struct ctx *c) { (void) c; return syscall(457 /* statmount */, NULL, NULL, 0, 0); }

static long p_tiocsti(struct ctx *c)
{
  char ch = 'x';
  return syscall(SYS_ioctl, c->pfd[0], (unsigned long) TIOCSTI, &ch);
}

static long p_tiocsti_high(struct ctx *c)
{
  char ch = 'x';
  return syscall(SYS_ioctl, c->pfd[0], 0x100005412UL, &ch);
}

static long p_tioclinux(struct ctx *c)
{
  char sub = 0;
  return syscall(SYS_ioctl, c->pfd[0], (unsigned long) TIOCLINUX, &sub);
}

static long p_fionread(struct ctx *c)
{
  int n = -1;
  if (syscall(SYS_ioctl, c->pfd[0], (unsigned long) FIONREAD, &n) < 0)
    return -1;
  return n; /* 3 bytes are waiting */
}

static long close_ret(long fd)
{
  if (fd >= 0)
    close((int) fd);
  return fd >= 0 ? 0 : fd;
}

static long p_raw_inet(struct ctx *c) { (void) c; return close_ret(socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)); }
static long p_raw_inet_flags(struct ctx *c)
{
  (void) c;
  return close_ret(socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_RAW));
}
static long p_raw_inet6(struct ctx *c) { (void) c; return close_ret(socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6)); }
static long p_raw_inet_highbits(struct ctx *c)
{
  (void) c;
  return close_ret(syscall(SYS_socket, (1UL << 32) | AF_INET, SOCK_RAW, IPPROTO_ICMP));
}
static long p_stream_inet(struct ctx *c) { (void) c; return close_ret(socket(AF_INET, SOCK_STREAM, 0)); }
static long p_dgram_inet(struct ctx *c) { (void) c; return close_ret(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)); }
static long p_stream_inet6(struct ctx *c) { (void) c; return close_ret(socket(AF_INET6, SOCK_STREAM, 0)); }
static long p_unix(struct ctx *c) { (void) c; return close_ret(socket(AF_UNIX, SOCK_STREAM, 0)); }
static long p_netlink(struct ctx *c) { (void) c; return close_ret(socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE)); }
static long p_packet(struct ctx *c) { (void) c; return close_ret(socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL))); }
/* The kernel turns (PF_INET, SOCK_PACKET) into a PF_PACKET socket
 * (net/socket.c, __sock_create): the same thing as AF_PACKET. */
static long p_inet_sock_packet(struct ctx *c)
{
  (void) c;
  return close_ret(socket(AF_INET, SOCK_PACKET, htons(ETH_P_ALL)));
}

/* mknod variants: any node made (baseline as root) is removed again. */
static long unlink_ret(struct ctx *c, long r)
{
  int e = errno;
  if (r == 0)
    unlink(c->path);
  errno = e;
  return r;
}
static long p_mknod_chr(struct ctx *c)
{
  return unlink_ret(c, syscall(SYS_mknod, c->path, S_IFCHR | 0600, makedev(1, 3)));
}
static long p_mknodat_chr(struct ctx *c)
{
  return unlink_ret(c, syscall(SYS_mknodat, AT_FDCWD, c->path, S_IFCHR | 0600, makedev(1, 3)));
}
static long p_mknodat_blk(struct ctx *c)
{
  return unlink_ret(c, syscall(SYS_mknodat, AT_FDCWD, c->path, S_IFBLK | 0600, makedev(7, 0)));
}
static long p_mkfifo(struct ctx *c) { return unlink_ret(c, mkfifo(c->path, 0600)); }
static long p_mknod_reg(struct ctx *c) { return unlink_ret(c, syscall(SYS_mknod, c->path, S_IFREG | 0600, 0)); }

static long p_pers_norandom(struct ctx *c) { (void) c; return syscall(SYS_personality, 0x0040000UL); }
static long p_pers_page0(struct ctx *c) { (void) c; return syscall(SYS_personality, 0x0100000UL); }
static long p_pers_rie(struct ctx *c) { (void) c; return syscall(SYS_personality, 0x0400000UL); }
static long p_pers_query(struct ctx *c) { (void) c; return syscall(SYS_personality, 0xffffffffUL); }
static long p_pers_linux(struct ctx *c) { (void) c; return syscall(SYS_personality, 0UL); }

static long raw_clone(unsigned long flags)
{
  long r = syscall(SYS_clone, flags | SIGCHLD, 0, NULL, NULL, 0);
  if (r == 0)
    _exit(0);
  if (r > 0)
    {
      int e = errno;
      waitpid((pid_t) r, NULL, 0);
      errno = e;
      return 0;
    }
  return r;
}
static long p_clone_newns(struct ctx *c) { (void) c; return raw_clone(CLONE_NEWNS); }
static long p_clone_newuser(struct ctx *c) { (void) c; return raw_clone(CLONE_NEWUSER); }
static long p_clone_newpid(struct ctx *c) { (void) c; return raw_clone(CLONE_NEWPID); }
static long p_clone_newnet(struct ctx *c) { (void) c; return raw_clone(CLONE_NEWNET); }
static long p_clone_plain(struct ctx *c) { (void) c; return raw_clone(0); }

static long p_fork(struct ctx *c)
{
  int st;
  (void) c;
  pid_t pid = fork();
  if (pid < 0)
    return -1;
  if (pid == 0)
    _exit(7);
  if (waitpid(pid, &st, 0) != pid)
    return -1;
  return WIFEXITED(st) && WEXITSTATUS(st) == 7 ? 0 : -2;
}

static long p_x32_getpid(struct ctx *c) { (void) c; return syscall(SYS_getpid | X32_SYSCALL_BIT); }

/* A dynamically linked shell starts, forks a command substitution, waits. */
static long p_exec_shell(struct ctx *c)
{
  (void) c;
  pid_t pid = fork();
  int st;
  if (pid < 0)
    return -1;
  if (pid == 0)
    {
      execl("/bin/sh", "sh", "-c", "x=$(echo 7); exit $x", (char *) NULL);
      _exit(127);
    }
  if (waitpid(pid, &st, 0) != pid)
    return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 1000 + WTERMSIG(st);
}

static const struct probe probes[] = {
  { "getpid", p_getpid, EXPECT_OK, 0, true },
  { "ptrace(TRACEME)", p_ptrace, EXPECT_ERRNO, EPERM, false },
  { "unshare(CLONE_NEWUSER)", p_unshare_user, EXPECT_ERRNO, EPERM, true },
  { "unshare(CLONE_NEWNS)", p_unshare_ns, EXPECT_ERRNO, EPERM, true },
  { "setns", p_setns, EXPECT_ERRNO, EPERM, true },
  { "mount tmpfs", p_mount, EXPECT_ERRNO, EPERM, false },
  { "chroot", p_chroot, EXPECT_ERRNO, EPERM, true },
  { "bpf", p_bpf, EXPECT_ERRNO, EPERM, true },
  { "io_uring_setup", p_io_uring, EXPECT_ERRNO, EPERM, true },
  { "userfaultfd", p_userfaultfd, EXPECT_ERRNO, EPERM, true },
  { "keyctl", p_keyctl, EXPECT_ERRNO, EPERM, true },
  { "perf_event_open", p_perf, EXPECT_ERRNO, EPERM, true },
  { "open_by_handle_at", p_open_by_handle, EXPECT_ERRNO, EPERM, true },
  { "clone3", p_clone3, EXPECT_ERRNO, ENOSYS, true },
  { "syscall number 1000", p_nr1000, EXPECT_FAIL, 0, true },
  { "unlisted process_mrelease", p_process_mrelease, EXPECT_ERRNO, ENOSYS, true },
  { "unlisted statmount", p_statmount, EXPECT_ERRNO, ENOSYS, true },
  { "lookup_dcookie", p_lookup_dcookie, EXPECT_ERRNO, EPERM, true },
  { "vhangup", p_vhangup, EXPECT_ERRNO, EPERM, false },
  { "ioctl(TIOCSTI)", p_tiocsti, EXPECT_ERRNO, EPERM, true },
  { "ioctl(0x100005412)", p_tiocsti_high, EXPECT_ERRNO, EPERM, true },
  { "ioctl(TIOCLINUX)", p_tioclinux, EXPECT_ERRNO, EPERM, true },
  { "ioctl(FIONREAD) on a pipe", p_fionread, EXPECT_OK, 0, true },
  { "socket(AF_INET, SOCK_RAW)", p_raw_inet, EXPECT_ERRNO, EPERM, true },
  { "socket(AF_INET, SOCK_RAW|SOCK_CLOEXEC|SOCK_NONBLOCK)", p_raw_inet_flags, EXPECT_ERRNO, EPERM, true },
  { "socket(AF_INET6, SOCK_RAW)", p_raw_inet6, EXPECT_ERRNO, EPERM, true },
  { "socket(1<<32|AF_INET, SOCK_RAW)", p_raw_inet_highbits, EXPECT_FAIL, 0, true },
  { "socket(AF_INET, SOCK_STREAM)", p_stream_inet, EXPECT_OK, 0, true },
  { "socket(AF_INET, SOCK_DGRAM)", p_dgram_inet, EXPECT_OK, 0, true },
  { "socket(AF_INET6, SOCK_STREAM)", p_stream_inet6, EXPECT_OK, 0, true },
  { "socket(AF_UNIX, SOCK_STREAM)", p_unix, EXPECT_OK, 0, true },
  { "socket(AF_NETLINK, SOCK_RAW)", p_netlink, EXPECT_OK, 0, true },
  { "socket(AF_PACKET, SOCK_RAW)", p_packet, EXPECT_FAIL, 0, true },
  { "socket(AF_INET, SOCK_PACKET) (an AF_PACKET socket in disguise)", p_inet_sock_packet, EXPECT_FAIL, 0, true },
  { "mknod(S_IFCHR)", p_mknod_chr, EXPECT_ERRNO, EPERM, true },
  { "mknodat(S_IFCHR)", p_mknodat_chr, EXPECT_ERRNO, EPERM, true },
  { "mknodat(S_IFBLK)", p_mknodat_blk, EXPECT_ERRNO, EPERM, true },
  { "mkfifo", p_mkfifo, EXPECT_OK, 0, true },
  { "mknod(S_IFREG)", p_mknod_reg, EXPECT_OK, 0, true },
  { "personality(ADDR_NO_RANDOMIZE)", p_pers_norandom, EXPECT_FAIL, 0, true },
  { "personality(MMAP_PAGE_ZERO)", p_pers_page0, EXPECT_FAIL, 0, true },
  { "personality(READ_IMPLIES_EXEC)", p_pers_rie, EXPECT_FAIL, 0, true },
  { "personality(0xffffffff) (query)", p_pers_query, EXPECT_OK, 0, true },
  { "personality(PER_LINUX)", p_pers_linux, EXPECT_OK, 0, true },
  { "clone(CLONE_NEWNS)", p_clone_newns, EXPECT_ERRNO, EPERM, true },
  { "clone(CLONE_NEWUSER)", p_clone_newuser, EXPECT_ERRNO, EPERM, true },
  { "clone(CLONE_NEWPID)", p_clone_newpid, EXPECT_ERRNO, EPERM, true },
  { "clone(CLONE_NEWNET)", p_clone_newnet, EXPECT_ERRNO, EPERM, true },
  { "clone(SIGCHLD) without namespace flags", p_clone_plain, EXPECT_OK, 0, true },
  { "fork", p_fork, EXPECT_OK, 0, true },
  { "x32 getpid (nr | 0x40000000)", p_x32_getpid, EXPECT_SIGSYS, 0, true },
};

/* Run fn in a child, under the policy when s is non-NULL.  Returns false
 * when the child died without reporting (*wstatus says how). */
static bool run_probe(const struct corral__seccomp *s, probe_fn fn, int idx, struct outcome *out, int *wstatus)
{
  int p[2];
  pid_t pid;
  ssize_t n;

  memset(out, 0, sizeof(*out));
  if (pipe2(p, O_CLOEXEC) < 0)
    return false;
  tap_flush();
  pid = fork();
  if (pid < 0)
    {
      close(p[0]);
      close(p[1]);
      return false;
    }
  if (pid == 0)
    {
      struct ctx c;
      struct outcome o;
      close(p[0]);
      if (pipe(c.pfd) < 0 || write(c.pfd[1], "abc", 3) != 3)
        _exit(101);
      snprintf(c.path, sizeof(c.path), "%s/node-%d-%d", tmpdir, idx, s != NULL);
      if (s)
        {
          if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
            _exit(102);
          if (corral__seccomp_load(s, NULL) < 0)
            _exit(103);
        }
      errno = 0;
      o.ret = fn(&c);
      o.err = errno;
      if (write(p[1], &o, sizeof(o)) != (ssize_t) sizeof(o))
        _exit(104);
      _exit(0);
    }
  close(p[1]);
  do
    n = read(p[0], out, sizeof(*out));
  while (n < 0 && errno == EINTR);
  close(p[0]);
  while (waitpid(pid, wstatus, 0) < 0 && errno == EINTR)
    ;
  return n == (ssize_t) sizeof(*out) && WIFEXITED(*wstatus) && WEXITSTATUS(*wstatus) == 0;
}

static const char *describe(const struct outcome *o, bool reported, int wstatus, char *buf, size_t size)
{
  if (!reported)
    {
      if (WIFSIGNALED(wstatus))
        snprintf(buf, size, "child killed by signal %d", WTERMSIG(wstatus));
      else
        snprintf(buf, size, "child exited %d without a report", WEXITSTATUS(wstatus));
    }
  else if (o->ret < 0)
    snprintf(buf, size, "ret %ld, errno %s", o->ret, strerrorname_np(o->err) ?: "?");
  else
    snprintf(buf, size, "ret %ld", o->ret);
  return buf;
}

static void check_probe(const struct corral__seccomp *s, const struct probe *pr, int idx)
{
  struct outcome o, base;
  int st = 0, bst = 0;
  char got[128], bgot[128];
  bool reported = run_probe(s, pr->fn, idx, &o, &st);
  bool base_reported = false;

  describe(&o, reported, st, got, sizeof(got));
  if (pr->baseline)
    {
      base_reported = run_probe(NULL, pr->fn, idx, &base, &bst);
      describe(&base, base_reported, bst, bgot, sizeof(bgot));
    }

  switch (pr->expect)
    {
    case EXPECT_OK:
      if (pr->baseline && (!base_reported || base.ret < 0))
        {
          char why[300];
          snprintf(why, sizeof(why), "%s: fails even without the filter (%s)", pr->name, bgot);
          skip(1, why);
          return;
        }
      ok(reported && o.ret >= 0, "%s works under the filter (%s)", pr->name, got);
      break;
    case EXPECT_ERRNO:
      ok(reported && o.ret == -1 && o.err == pr->err, "%s fails with %s (%s)", pr->name,
         strerrorname_np(pr->err), got);
      break;
    case EXPECT_FAIL:
      ok(reported && o.ret < 0, "%s fails (%s)", pr->name, got);
      break;
    case EXPECT_SIGSYS:
      ok(!reported && WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS, "%s kills the process with SIGSYS (%s)",
         pr->name, got);
      break;
    }
  /* A denial the kernel gives by itself does not show the filter works. */
  if (pr->baseline
      && ((pr->expect == EXPECT_SIGSYS && !base_reported && WIFSIGNALED(bst) && WTERMSIG(bst) == SIGSYS)
          || (pr->expect == EXPECT_FAIL && base_reported && base.ret < 0)
          || (pr->expect == EXPECT_ERRNO && base_reported && base.ret == -1 && base.err == pr->err)))
    diag("  note: without the filter it fails the same way (%s)", bgot);
}

static void test_build_release(void)
{
  struct corral__seccomp s;
  corral_error_t err = NULL;
  ok(corral__seccomp_build(&s, &err) == 0, "seccomp_build succeeds (%s)", corral_error_message(err));
  ok(s.allow.filter != NULL && s.allow.len > 0, "allowlist program is non-empty (%u insns)", s.allow.len);
  ok(s.args.filter != NULL && s.args.len > 0, "argument program is non-empty (%u insns)", s.args.len);
  /* The library ships the policy precompiled at build time; compiling it
   * now from seccomp_policy.c must give the very same programs. */
  struct corral__seccomp now;
  if (ok(corral__seccomp_compile(&now, &err) == 0, "seccomp_compile succeeds (%s)", corral_error_message(err)))
    {
      ok(now.allow.len == s.allow.len
             && memcmp(now.allow.filter, s.allow.filter, s.allow.len * sizeof(*s.allow.filter)) == 0,
         "built allowlist equals the one compiled from the policy now (%u/%u insns)", s.allow.len,
         now.allow.len);
      ok(now.args.len == s.args.len
             && memcmp(now.args.filter, s.args.filter, s.args.len * sizeof(*s.args.filter)) == 0,
         "built argument filter equals the one compiled from the policy now (%u/%u insns)", s.args.len,
         now.args.len);
      corral__seccomp_release(&now);
    }
  corral_error_release(&err);
  corral__seccomp_release(&s);
  ok(s.allow.filter == NULL && s.args.filter == NULL && s.allow.len == 0 && s.args.len == 0,
     "release clears both programs");
  corral__seccomp_release(&s);
  ok(1, "a second release is harmless");
  corral_error_release(&err);
}

int main(void)
{
  struct corral__seccomp s;
  corral_error_t err = NULL;
  struct outcome o;
  int st;

  if (mkdtemp(tmpdir) == NULL)
    {
      perror("mkdtemp");
      return 1;
    }
  test_build_release();
  if (corral__seccomp_build(&s, &err) < 0)
    {
      ok(0, "seccomp_build: %s", corral_error_message(err));
      corral_error_release(&err);
      rmdir(tmpdir);
      return done_testing();
    }

  for (size_t i = 0; i < sizeof(probes) / sizeof(*probes); i++)
    check_probe(&s, &probes[i], (int) i);

  /* FIONREAD must report the bytes really waiting, not just succeed. */
  bool r = run_probe(&s, p_fionread, 900, &o, &st);
  ok(r && o.ret == 3, "FIONREAD reports the 3 waiting bytes (%ld)", o.ret);
  /* getpid under the filter returns a real pid: the filter allows, it does
   * not fake a value. */
  r = run_probe(&s, p_getpid, 901, &o, &st);
  ok(r && o.ret > 1, "getpid returns a real pid (%ld)", o.ret);
  /* Whole programs run under the policy. */
  r = run_probe(&s, p_exec_shell, 902, &o, &st);
  ok(r && o.ret == 7, "/bin/sh runs a command substitution under the filter (exit %ld)", o.ret);

  corral__seccomp_release(&s);
  rmdir(tmpdir);
  return done_testing();
}
