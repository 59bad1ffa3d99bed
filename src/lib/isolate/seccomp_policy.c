/* The seccomp policy: two stacked filters built with libseccomp.
 *
 * 1. An allowlist of system calls.  Anything not listed fails with ENOSYS
 *    (fails closed: a syscall added to the kernel tomorrow is unavailable,
 *    and libc falls back as it does on older kernels); the calls that are
 *    attack surface and that programs do probe get EPERM.  Only the native
 *    architecture is in the filter: i386 (int 0x80) and x32 entry points
 *    kill the process.
 * 2. Argument checks with a default of "allow": the kernel runs every
 *    filter and the most restrictive answer wins, which lets us say "ioctl,
 *    but not TIOCSTI" - libseccomp cannot express a masked "not equal".
 *
 * The policy is compiled to BPF at build time (src/tools/gen_seccomp.c
 * writes it into a header for seccomp.c), so a run pays nothing for
 * libseccomp's compiler; a unit test checks the two stay identical. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include "isolate.h"
#include "../common/utils.h"

static const char *const allowed[] = {
  "accept", "accept4", "access", "alarm", "arch_prctl", "bind", "brk", "cachestat", "capget",
  "capset", "chdir", "chmod", "chown", "clock_getres", "clock_gettime", "clock_nanosleep", "close",
  "close_range", "connect", "copy_file_range", "creat", "dup", "dup2", "dup3", "epoll_create",
  "epoll_create1", "epoll_ctl", "epoll_pwait", "epoll_pwait2", "epoll_wait", "eventfd", "eventfd2",
  "execve", "execveat", "exit", "exit_group", "faccessat", "faccessat2", "fadvise64", "fallocate",
  "fchdir", "fchmod", "fchmodat", "fchmodat2", "fchown", "fchownat", "fcntl", "fdatasync",
  "fgetxattr", "flistxattr", "flock", "fork", "fremovexattr", "fsetxattr", "fstat", "fstatfs",
  "fsync", "ftruncate", "futex", "futex_requeue", "futex_wait", "futex_waitv", "futex_wake",
  "futimesat", "get_mempolicy", "get_robust_list", "get_thread_area", "getcpu", "getcwd",
  "getdents", "getdents64", "getegid", "geteuid", "getgid", "getgroups", "getitimer",
  "getpeername", "getpgid", "getpgrp", "getpid", "getppid", "getpriority", "getrandom",
  "getresgid", "getresuid", "getrlimit", "getrusage", "getsid", "getsockname", "getsockopt",
  "gettid", "gettimeofday", "getuid", "getxattr", "inotify_add_watch", "inotify_init",
  "inotify_init1", "inotify_rm_watch", "io_cancel", "io_destroy", "io_getevents",
  "io_pgetevents", "io_setup", "io_submit", "ioctl", "ioprio_get", "ioprio_set", "kill",
  "landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self", "lchown",
  "lgetxattr", "link", "linkat", "listen", "listxattr", "llistxattr", "lremovexattr", "lseek",
  "lsetxattr", "lstat", "madvise", "map_shadow_stack", "mbind", "membarrier", "memfd_create",
  "mincore", "mkdir", "mkdirat", "mknod", "mknodat", "mlock", "mlock2", "mlockall", "mmap",
  "mprotect", "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive", "mq_timedsend",
  "mq_unlink", "mremap", "mseal", "msgctl", "msgget", "msgrcv", "msgsnd", "msync", "munlock",
  "munlockall", "munmap", "nanosleep", "newfstatat", "open", "openat", "openat2", "pause",
  "pidfd_open", "pidfd_send_signal", "pipe", "pipe2", "pkey_alloc", "pkey_free",
  "pkey_mprotect", "poll", "ppoll", "prctl", "pread64", "preadv", "preadv2", "prlimit64",
  "pselect6", "pwrite64", "pwritev", "pwritev2", "read", "readahead", "readlink", "readlinkat",
  "readv", "recvfrom", "recvmmsg", "recvmsg", "remap_file_pages", "removexattr", "rename",
  "renameat", "renameat2", "restart_syscall", "rmdir", "rseq", "rt_sigaction", "rt_sigpending",
  "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait",
  "rt_tgsigqueueinfo", "sched_get_priority_max", "sched_get_priority_min", "sched_getaffinity",
  "sched_getattr", "sched_getparam", "sched_getscheduler", "sched_rr_get_interval",
  "sched_setaffinity", "sched_setattr", "sched_setparam", "sched_setscheduler", "sched_yield",
  "seccomp", "select", "semctl", "semget", "semop", "semtimedop", "sendfile", "sendmmsg",
  "sendmsg", "sendto", "set_mempolicy", "set_robust_list", "set_thread_area", "set_tid_address",
  "setdomainname", "setfsgid", "setfsuid", "setgid", "setgroups", "sethostname", "setitimer",
  "setpgid", "setpriority", "setregid", "setresgid", "setresuid", "setreuid", "setrlimit",
  "setsid", "setsockopt", "setuid", "setxattr", "shmat", "shmctl", "shmdt", "shmget",
  "shutdown", "sigaltstack", "signalfd", "signalfd4", "socketpair", "splice", "stat",
  "statfs", "statx", "symlink", "symlinkat", "sync", "sync_file_range", "syncfs", "sysinfo",
  "tee", "tgkill", "time", "timer_create", "timer_delete", "timer_getoverrun", "timer_gettime",
  "timer_settime", "timerfd_create", "timerfd_gettime", "timerfd_settime", "times", "tkill",
  "truncate", "umask", "uname", "unlink", "unlinkat", "utime", "utimensat", "utimes", "vfork",
  "vmsplice", "wait4", "waitid", "write", "writev", NULL
};

/* Attack surface that programs probe: a clear EPERM rather than ENOSYS. */
static const char *const denied[] = {
  "ptrace", "mount", "umount", "umount2", "pivot_root", "chroot", "unshare", "setns", "keyctl",
  "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd", "io_uring_setup",
  "io_uring_enter", "io_uring_register", "open_by_handle_at", "name_to_handle_at", "kexec_load",
  "kexec_file_load", "init_module", "finit_module", "delete_module", "reboot", "swapon", "swapoff",
  "acct", "clock_settime", "clock_adjtime", "settimeofday", "adjtimex", "stime",
  "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd", "move_mount", "open_tree",
  "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr", "quotactl", "quotactl_fd",
  "lookup_dcookie", "iopl", "ioperm", "vhangup", "syslog", "uselib", "ustat", "sysfs", "_sysctl",
  "fanotify_init", "fanotify_mark", "migrate_pages", "move_pages", "nfsservctl", "vm86",
  "vm86old", "modify_ldt", "process_madvise", "memfd_secret", "lsm_set_self_attr", NULL
};

/* CLONE_NEW* and friends: a sandboxed process may not make namespaces. */
static const uint64_t clone_denied_flags[] = {
  CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWIPC, CLONE_NEWUTS,
  CLONE_NEWCGROUP, 0x80 /* CLONE_NEWTIME */
};

static const int socket_families[] = { AF_UNIX, AF_INET, AF_INET6, AF_NETLINK };

static int add(scmp_filter_ctx ctx, uint32_t action, const char *name, unsigned n,
               const struct scmp_arg_cmp *args, corral_error_t *err)
{
  int nr = seccomp_syscall_resolve_name(name);
  int r;
  if (nr == __NR_SCMP_ERROR)
    return 0; /* not a syscall of this architecture */
  r = seccomp_rule_add_array(ctx, action, nr, n, args);
  if (r < 0 && r != -EEXIST)
    return corral_error_set(err, -r, "seccomp rule for %s", name);
  return 0;
}

static int build_allowlist(scmp_filter_ctx ctx, corral_error_t *err)
{
  for (int i = 0; allowed[i]; i++)
    if (add(ctx, SCMP_ACT_ALLOW, allowed[i], 0, NULL, err) < 0)
      return -1;
  for (int i = 0; denied[i]; i++)
    if (add(ctx, SCMP_ACT_ERRNO(EPERM), denied[i], 0, NULL, err) < 0)
      return -1;
  /* clone3 is deliberately not listed: it passes its flags in memory,
   * where seccomp cannot look, and the default ENOSYS makes libc fall back
   * to clone, whose flags the argument filter checks. */
  if (add(ctx, SCMP_ACT_ALLOW, "clone", 0, NULL, err) < 0)
    return -1;
  /* personality() can turn off ASLR (ADDR_NO_RANDOMIZE) or map page 0
   * (MMAP_PAGE_ZERO) for an exec; only PER_LINUX, PER_LINUX32 and the
   * query value pass. */
  const scmp_datum_t personas[] = { 0x0, 0x8, 0xffffffff };
  for (int i = 0; i < 3; i++)
    {
      struct scmp_arg_cmp a = SCMP_A0(SCMP_CMP_EQ, personas[i], 0);
      if (add(ctx, SCMP_ACT_ALLOW, "personality", 1, &a, err) < 0)
        return -1;
    }
  /* Full 64-bit equality: a family with high bits set matches nothing and
   * is refused, even though the kernel would truncate it to an int. */
  for (size_t i = 0; i < sizeof(socket_families) / sizeof(*socket_families); i++)
    {
      struct scmp_arg_cmp a = SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t) socket_families[i], 0);
      if (add(ctx, SCMP_ACT_ALLOW, "socket", 1, &a, err) < 0)
        return -1;
    }
  return 0;
}

static int build_argument_checks(scmp_filter_ctx ctx, corral_error_t *err)
{
  const uint32_t eperm = SCMP_ACT_ERRNO(EPERM);
  /* The kernel compares ioctl numbers as 32-bit ints, so mask the upper
   * half or 0x100005412 would slip past as TIOCSTI. */
  const unsigned long bad_ioctls[] = { TIOCSTI, TIOCLINUX };
  for (size_t i = 0; i < sizeof(bad_ioctls) / sizeof(*bad_ioctls); i++)
    {
      struct scmp_arg_cmp a = SCMP_A1(SCMP_CMP_MASKED_EQ, 0xFFFFFFFFu, bad_ioctls[i]);
      if (add(ctx, eperm, "ioctl", 1, &a, err) < 0)
        return -1;
    }
  for (size_t i = 0; i < sizeof(clone_denied_flags) / sizeof(*clone_denied_flags); i++)
    {
      struct scmp_arg_cmp a = SCMP_A0(SCMP_CMP_MASKED_EQ, clone_denied_flags[i], clone_denied_flags[i]);
      if (add(ctx, eperm, "clone", 1, &a, err) < 0)
        return -1;
    }
  /* Raw IP sockets would let the sandbox forge packets; SOCK_PACKET is the
   * old spelling of AF_PACKET that the kernel still maps over. */
  const int inet[] = { AF_INET, AF_INET6 };
  const int raw_types[] = { SOCK_RAW, SOCK_PACKET };
  for (int i = 0; i < 2; i++)
    for (int t = 0; t < 2; t++)
      {
        struct scmp_arg_cmp a[2] = { SCMP_A0(SCMP_CMP_MASKED_EQ, 0xFFFFFFFFu, (scmp_datum_t) inet[i]),
                                     SCMP_A1(SCMP_CMP_MASKED_EQ, 0xF, (scmp_datum_t) raw_types[t]) };
        if (add(ctx, eperm, "socket", 2, a, err) < 0)
          return -1;
      }
  /* mknod stays for FIFOs and sockets; device nodes never. */
  const unsigned dev_types[] = { S_IFCHR, S_IFBLK };
  for (int i = 0; i < 2; i++)
    {
      struct scmp_arg_cmp m = SCMP_A1(SCMP_CMP_MASKED_EQ, S_IFMT, dev_types[i]);
      struct scmp_arg_cmp mat = SCMP_A2(SCMP_CMP_MASKED_EQ, S_IFMT, dev_types[i]);
      if (add(ctx, eperm, "mknod", 1, &m, err) < 0 || add(ctx, eperm, "mknodat", 1, &mat, err) < 0)
        return -1;
    }
  return 0;
}

/* Compile ctx to BPF in memory. */
static int export_bpf(scmp_filter_ctx ctx, struct sock_fprog *out, corral_error_t *err)
{
  cleanup_close int fd = memfd_create("corral-seccomp", MFD_CLOEXEC);
  struct stat st;
  int r;
  if (fd < 0)
    return corral_error_set(err, errno, "memfd_create");
  if ((r = seccomp_export_bpf(ctx, fd)) < 0)
    return corral_error_set(err, -r, "compile seccomp filter");
  if (fstat(fd, &st) < 0 || st.st_size <= 0 || st.st_size % sizeof(struct sock_filter) != 0)
    return corral_error_set(err, EINVAL, "compiled seccomp filter has a bad size");
  out->filter = malloc((size_t) st.st_size);
  if (out->filter == NULL)
    return corral_error_set(err, ENOMEM, "seccomp filter");
  if (pread(fd, out->filter, (size_t) st.st_size, 0) != st.st_size)
    {
      free(steal_pointer(&out->filter));
      return corral_error_set(err, errno ? errno : EIO, "read compiled seccomp filter");
    }
  out->len = (unsigned short) (st.st_size / (off_t) sizeof(struct sock_filter));
  return 0;
}

static void release_ctx(scmp_filter_ctx *ctx)
{
  if (*ctx)
    seccomp_release(*ctx);
}

static int compile(uint32_t def, int (*build) (scmp_filter_ctx, corral_error_t *), struct sock_fprog *out,
                   corral_error_t *err)
{
  __attribute__((cleanup(release_ctx))) scmp_filter_ctx ctx = seccomp_init(def);
  if (ctx == NULL)
    return corral_error_set(err, ENOMEM, "seccomp_init");
  /* Foreign architectures (i386 via int 0x80, x32) are not in the filter:
   * such a call is an attack, so it ends the process. */
  if (seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS) < 0
      || seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0) < 0)
    return corral_error_set(err, EINVAL, "seccomp attributes");
  if (build(ctx, err) < 0)
    return -1;
  return export_bpf(ctx, out, err);
}

int corral__seccomp_compile(struct corral__seccomp *s, corral_error_t *err)
{
  memset(s, 0, sizeof(*s));
  if (compile(SCMP_ACT_ERRNO(ENOSYS), build_allowlist, &s->allow, err) < 0
      || compile(SCMP_ACT_ALLOW, build_argument_checks, &s->args, err) < 0)
    {
      corral__seccomp_release(s);
      return corral_error_wrap(err, "seccomp policy");
    }
  return 0;
}
