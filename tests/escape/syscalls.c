/* Denied syscalls: namespaces, seccomp-denied attack surface, foreign syscall ABIs. */
#include "escape.h"

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
      esc_fail("clone(%s) succeeded", name);
    }
  if (e != EPERM)
    esc_fail("clone(%s): errno %s, expected EPERM", name, esc_ename(e));
}

void esc_chk_unshare_user(void) { DENIED(unshare(CLONE_NEWUSER)); }
void esc_chk_unshare_mount(void) { DENIED(unshare(CLONE_NEWNS)); }

void esc_chk_unshare_other(void)
{
  DENIED(unshare(CLONE_NEWPID));
  DENIED(unshare(CLONE_NEWNET));
  DENIED(unshare(CLONE_NEWIPC));
  DENIED(unshare(CLONE_NEWUTS));
  DENIED(unshare(CLONE_NEWCGROUP));
  DENIED(unshare(CLONE_NEWTIME));
}

void esc_chk_clone_newuser(void) { try_clone(CLONE_NEWUSER, "CLONE_NEWUSER"); }
void esc_chk_clone_newns(void) { try_clone(CLONE_NEWNS, "CLONE_NEWNS"); }
void esc_chk_clone_newpid(void) { try_clone(CLONE_NEWPID, "CLONE_NEWPID"); }
void esc_chk_clone_newnet(void) { try_clone(CLONE_NEWNET, "CLONE_NEWNET"); }

void esc_chk_clone_other_ns(void)
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

void esc_chk_clone3(void)
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
      esc_fail("clone3(CLONE_NEWUSER) succeeded");
    }
  esc_expect_errno(r, e, ENOSYS, "clone3(CLONE_NEWUSER)");
}

void esc_chk_setns(void)
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
      esc_expect_errno(r, errno, EPERM, what);
      close(fd);
    }
  if (tried == 0)
    esc_fail("could not open any /proc/self/ns entry");
}

void esc_chk_setns_pidfd_init(void)
{
  int pfd = (int) syscall(SYS_pidfd_open, 1, 0);
  if (pfd < 0)
    esc_skip("pidfd_open(1): %s", strerror(errno));
  DENIED(setns(pfd, CLONE_NEWNS | CLONE_NEWNET));
}

/* ------------------------------------------------------------------ */
/* Denied syscalls (seccomp EPERM)                                      */

void esc_chk_ptrace_traceme(void) { DENIED(syscall(SYS_ptrace, 0 /* PTRACE_TRACEME */, 0, 0, 0)); }
void esc_chk_ptrace_attach_init(void) { DENIED(syscall(SYS_ptrace, 16 /* PTRACE_ATTACH */, 1, 0, 0)); }

void esc_chk_ptrace_sibling(void)
{
  pid_t p = esc_spawn_sleeper();
  errno = 0;
  long r = syscall(SYS_ptrace, 0x4206 /* PTRACE_SEIZE */, p, 0, 0);
  int e = errno;
  esc_reap(p);
  esc_expect_errno(r, e, EPERM, "ptrace(PTRACE_SEIZE, child)");
}

void esc_chk_process_vm_readv(void)
{
  char buf[16];
  struct iovec local = { buf, sizeof(buf) }, remote = { (void *) 0x400000, sizeof(buf) };
  DENIED(syscall(SYS_process_vm_readv, 1, &local, 1, &remote, 1, 0));
}

void esc_chk_process_vm_writev(void)
{
  char buf[16] = "x";
  pid_t p = esc_spawn_sleeper();
  struct iovec local = { buf, sizeof(buf) }, remote = { (void *) buf, sizeof(buf) };
  errno = 0;
  long r = syscall(SYS_process_vm_writev, p, &local, 1, &remote, 1, 0);
  int e = errno;
  esc_reap(p);
  esc_expect_errno(r, e, EPERM, "process_vm_writev(child)");
}

void esc_chk_kcmp(void) { DENIED(syscall(SYS_kcmp, getpid(), 1, 0 /* KCMP_FILE */, 0, 0)); }

void esc_chk_pidfd_getfd_init(void)
{
  int pfd = (int) syscall(SYS_pidfd_open, 1, 0);
  if (pfd < 0)
    esc_skip("pidfd_open(1): %s", strerror(errno));
  /* PID 1 holds the supervisor socket as fd 3. */
  DENIED(syscall(SYS_pidfd_getfd, pfd, 3, 0));
}

void esc_chk_mount_tmpfs(void) { DENIED(mount("none", "/tmp", "tmpfs", 0, "size=1m")); }
void esc_chk_mount_remount_root_rw(void) { DENIED(mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND, NULL)); }
void esc_chk_mount_bind(void) { DENIED(mount("/proc", "/tmp", NULL, MS_BIND | MS_REC, NULL)); }
void esc_chk_mount_proc(void) { DENIED(mount("proc", "/tmp", "proc", 0, NULL)); }
void esc_chk_mount_cgroup2(void) { DENIED(mount("cgroup2", "/tmp", "cgroup2", 0, NULL)); }
void esc_chk_mount_sysfs(void) { DENIED(mount("sysfs", "/tmp", "sysfs", 0, NULL)); }
void esc_chk_umount_proc(void) { DENIED(umount2("/proc", MNT_DETACH)); }
void esc_chk_umount_root(void) { DENIED(umount2("/", MNT_DETACH)); }
void esc_chk_pivot_root(void) { DENIED(syscall(SYS_pivot_root, "/tmp", "/tmp")); }
void esc_chk_chroot(void) { DENIED(chroot("/tmp")); }
void esc_chk_open_tree(void) { DENIED(syscall(SYS_open_tree, AT_FDCWD, "/", 1 /* OPEN_TREE_CLONE */)); }
void esc_chk_fsopen(void) { DENIED(syscall(SYS_fsopen, "tmpfs", 0)); }
void esc_chk_fsmount(void) { DENIED(syscall(SYS_fsmount, -1, 0, 0)); }
void esc_chk_fsconfig(void) { DENIED(syscall(SYS_fsconfig, -1, 0, NULL, NULL, 0)); }
void esc_chk_fspick(void) { DENIED(syscall(SYS_fspick, AT_FDCWD, "/", 0)); }
void esc_chk_move_mount(void) { DENIED(syscall(SYS_move_mount, -1, "", AT_FDCWD, "/tmp", 0)); }

struct esc_mount_attr
{
  uint64_t attr_set, attr_clr, propagation, userns_fd;
};

void esc_chk_mount_setattr(void)
{
  struct esc_mount_attr a = { .attr_clr = 0x1 /* MOUNT_ATTR_RDONLY */ };
  DENIED(syscall(SYS_mount_setattr, AT_FDCWD, "/", 0x8000 /* AT_RECURSIVE */, &a, sizeof(a)));
}

void esc_chk_keyctl(void) { DENIED(syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, -3 /* session */, 0)); }
void esc_chk_add_key(void) { DENIED(syscall(SYS_add_key, "user", "escape", "x", 1, -2 /* process keyring */)); }
void esc_chk_request_key(void) { DENIED(syscall(SYS_request_key, "user", "escape", NULL, 0)); }

void esc_chk_bpf(void)
{
  char attr[128] = { 0 };
  DENIED(syscall(SYS_bpf, 0 /* BPF_MAP_CREATE */, attr, sizeof(attr)));
}

void esc_chk_perf_event_open(void)
{
  uint32_t attr[32] = { 0 };
  attr[0] = 1;                 /* PERF_TYPE_SOFTWARE */
  attr[1] = sizeof(attr);      /* size */
  DENIED(syscall(SYS_perf_event_open, attr, 0, -1, -1, 0));
}

void esc_chk_userfaultfd(void) { DENIED(syscall(SYS_userfaultfd, O_CLOEXEC)); }

void esc_chk_io_uring_setup(void)
{
  char params[120] = { 0 };
  DENIED(syscall(SYS_io_uring_setup, 1, params));
}

void esc_chk_io_uring_enter_register(void)
{
  DENIED(syscall(SYS_io_uring_enter, -1, 0, 0, 0, NULL, 0));
  DENIED(syscall(SYS_io_uring_register, -1, 0, NULL, 0));
}

void esc_chk_open_by_handle_at(void)
{
  /* The "shocker" container escape: forge a handle to the host's root. */
  struct { unsigned int bytes; int type; unsigned char f[8]; } h = { 8, 1, { 2, 0, 0, 0, 0, 0, 0, 0 } };
  DENIED(syscall(SYS_open_by_handle_at, AT_FDCWD, &h, O_RDONLY));
}

void esc_chk_name_to_handle_at(void)
{
  struct { unsigned int bytes; int type; unsigned char f[128]; } h = { 128, 0, { 0 } };
  int mnt_id;
  DENIED(syscall(SYS_name_to_handle_at, AT_FDCWD, "/", &h, &mnt_id, 0));
}

void esc_chk_kexec_load(void) { DENIED(syscall(SYS_kexec_load, 0, 0, NULL, 0xdead0000UL)); }
void esc_chk_kexec_file_load(void) { DENIED(syscall(SYS_kexec_file_load, -1, -1, 0, NULL, 0xdead0000UL)); }
void esc_chk_init_module(void) { DENIED(syscall(SYS_init_module, NULL, 0, "")); }
void esc_chk_finit_module(void) { DENIED(syscall(SYS_finit_module, -1, "", 0)); }
void esc_chk_delete_module(void) { DENIED(syscall(SYS_delete_module, "corral_escape_none", O_NONBLOCK)); }

/* Bad magic: even if the call got through, the kernel would say EINVAL. */
void esc_chk_reboot(void) { DENIED(syscall(SYS_reboot, 0, 0, 0 /* CAD_OFF */, NULL)); }
void esc_chk_swapon(void) { DENIED(syscall(SYS_swapon, "/tmp/corral-escape-none", 0)); }
void esc_chk_swapoff(void) { DENIED(syscall(SYS_swapoff, "/tmp/corral-escape-none")); }
void esc_chk_acct(void) { DENIED(syscall(SYS_acct, NULL)); }

void esc_chk_clock_settime(void)
{
  struct timespec ts = { .tv_sec = 1, .tv_nsec = 2000000000L }; /* invalid */
  DENIED(syscall(SYS_clock_settime, CLOCK_REALTIME, &ts));
}

void esc_chk_settimeofday(void)
{
  struct timeval tv = { .tv_sec = 1, .tv_usec = 2000000 }; /* invalid */
  DENIED(syscall(SYS_settimeofday, &tv, NULL));
}

void esc_chk_adjtimex(void)
{
  char tx[256] = { 0 }; /* modes 0: a pure read */
  DENIED(syscall(SYS_adjtimex, tx));
  DENIED(syscall(SYS_clock_adjtime, CLOCK_REALTIME, tx));
}

void esc_chk_iopl(void) { DENIED(syscall(SYS_iopl, 3)); }
void esc_chk_ioperm(void) { DENIED(syscall(SYS_ioperm, 0x80, 1, 1)); }
void esc_chk_syslog(void) { DENIED(syscall(SYS_syslog, 10 /* SIZE_BUFFER */, NULL, 0)); }

void esc_chk_modify_ldt(void)
{
  char buf[64];
  DENIED(syscall(SYS_modify_ldt, 0, buf, sizeof(buf)));
}

void esc_chk_quotactl(void) { DENIED(syscall(SYS_quotactl, 0x800004 /* Q_GETFMT */, "/usr", 0, NULL)); }
void esc_chk_fanotify_init(void) { DENIED(syscall(SYS_fanotify_init, 0, O_RDONLY)); }
void esc_chk_memfd_secret(void) { DENIED(syscall(SYS_memfd_secret, 0)); }
void esc_chk_vhangup(void) { DENIED(syscall(SYS_vhangup)); }

void esc_chk_move_pages_init(void)
{
  DENIED(syscall(SYS_migrate_pages, 1, 64, NULL, NULL));
  DENIED(syscall(SYS_move_pages, 1, 0, NULL, NULL, NULL, 0));
}

void esc_chk_process_madvise(void)
{
  char buf[4096];
  struct iovec iov = { buf, sizeof(buf) };
  int pfd = (int) syscall(SYS_pidfd_open, 1, 0);
  DENIED(syscall(SYS_process_madvise, pfd, &iov, 1, 20 /* MADV_COLD */, 0));
}

void esc_chk_personality(void)
{
  static const unsigned long bad[] = { ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC, MMAP_PAGE_ZERO, ADDR_COMPAT_LAYOUT,
                                       PER_LINUX | ADDR_NO_RANDOMIZE | (1UL << 32) };
  for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
    {
      errno = 0;
      long r = syscall(SYS_personality, bad[i]);
      if (r != -1)
        esc_fail("personality(%#lx) succeeded (returned %#lx)", bad[i], r);
    }
  long cur = syscall(SYS_personality, 0xffffffffUL);
  if (cur != 0)
    esc_fail("personality is now %#lx, expected 0", cur);
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

void esc_chk_x32_getpid(void) { esc_expect_sigsys(esc_in_child(do_x32_getpid), "x32 getpid"); }
void esc_chk_x32_unshare(void) { esc_expect_sigsys(esc_in_child(do_x32_unshare), "x32 unshare"); }
/* With ia32 emulation off (ia32_emulation=0) int 0x80 faults instead:
 * SIGSEGV, no syscall made - as good. */
static void expect_int80_dead(int st, const char *what)
{
  if (WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV)
    {
      esc_note("SIGSEGV: ia32 emulation is off in this kernel");
      return;
    }
  esc_expect_sigsys(st, what);
}

void esc_chk_int80_getpid(void) { expect_int80_dead(esc_in_child(do_int80_getpid), "int 0x80 getpid"); }
void esc_chk_int80_unshare(void) { expect_int80_dead(esc_in_child(do_int80_unshare), "int 0x80 unshare"); }
