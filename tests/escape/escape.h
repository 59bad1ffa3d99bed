/* Shared by the escape suite's files (see main.c): includes, compat
 * constants, the check table type, the helpers and the checks. */
#ifndef ESCAPE_H
#define ESCAPE_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
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
/* Check plumbing (state in main.c, helpers in util.c)                  */

extern int detail_fd;       /* in a check child: where details go */
extern int startup_fds[64]; /* fds >= 3 open when we started */
extern int n_startup_fds;
extern int startup_tmp, startup_shm, startup_home, startup_pts;
/* Signals the suite ignores (see main.c). */
extern const int broadcast_sigs[];

void __attribute__((noreturn, format(printf, 1, 2))) esc_fail(const char *fmt, ...);
void __attribute__((noreturn, format(printf, 1, 2))) esc_skip(const char *fmt, ...);
/* A passing check may leave a note (printed as a TAP comment). */
void __attribute__((format(printf, 1, 2))) esc_note(const char *fmt, ...);
const char *esc_ename(int e);
/* The call must fail with errno `want`. */
void esc_expect_errno(long r, int e, int want, const char *what);
/* The call must fail with one of the errnos in the 0-terminated list. */
void esc_expect_errno_in(long r, int e, const int *ok, const char *what);
const char *esc_env_or_skip(const char *name);
ssize_t esc_read_small(const char *path, char *buf, size_t size);
/* The value of a "Key:\t..." line of /proc/self/status. */
bool esc_status_field(const char *key, char *out, size_t size);
int esc_count_entries(const char *dir, const char *except);
/* Run fn in a grandchild; return its wait status. */
int esc_in_child(void (*fn)(void));
void esc_expect_sigsys(int st, const char *what);
pid_t esc_spawn_sleeper(void);
void esc_reap(pid_t p);

#define EXPECT(want, call)                                                                                             \
  do                                                                                                                   \
    {                                                                                                                  \
      errno = 0;                                                                                                       \
      long r_ = (long) (call);                                                                                         \
      esc_expect_errno(r_, errno, (want), #call);                                                                      \
    }                                                                                                                  \
  while (0)

#define EXPECT_IN(call, ...)                                                                                           \
  do                                                                                                                   \
    {                                                                                                                  \
      static const int ok_[] = { __VA_ARGS__, 0 };                                                                     \
      errno = 0;                                                                                                       \
      long r_ = (long) (call);                                                                                         \
      esc_expect_errno_in(r_, errno, ok_, #call);                                                                      \
    }                                                                                                                  \
  while (0)

/* Seccomp answers EPERM for the attack-surface calls. */
#define DENIED(call) EXPECT(EPERM, call)
/* A write the kernel must refuse: DAC, read-only mount or LSM may answer first. */
#define WRITE_DENIED(call) EXPECT_IN(call, EACCES, EROFS, EPERM)

/* Opened for writing, for the WRITE_DENIED checks. */
#define OPEN_W(path) open(path, O_WRONLY | O_CLOEXEC)

/* ------------------------------------------------------------------ */
/* The checks (table in main.c)                                         */

struct esc_check
{
  const char *name;
  void (*fn)(void);
};

/* syscalls.c */
void esc_chk_unshare_user(void);
void esc_chk_unshare_mount(void);
void esc_chk_unshare_other(void);
void esc_chk_clone_newuser(void);
void esc_chk_clone_newns(void);
void esc_chk_clone_newpid(void);
void esc_chk_clone_newnet(void);
void esc_chk_clone_other_ns(void);
void esc_chk_clone3(void);
void esc_chk_setns(void);
void esc_chk_setns_pidfd_init(void);
void esc_chk_ptrace_traceme(void);
void esc_chk_ptrace_attach_init(void);
void esc_chk_ptrace_sibling(void);
void esc_chk_process_vm_readv(void);
void esc_chk_process_vm_writev(void);
void esc_chk_kcmp(void);
void esc_chk_pidfd_getfd_init(void);
void esc_chk_mount_tmpfs(void);
void esc_chk_mount_remount_root_rw(void);
void esc_chk_mount_bind(void);
void esc_chk_mount_proc(void);
void esc_chk_mount_cgroup2(void);
void esc_chk_mount_sysfs(void);
void esc_chk_umount_proc(void);
void esc_chk_umount_root(void);
void esc_chk_pivot_root(void);
void esc_chk_chroot(void);
void esc_chk_open_tree(void);
void esc_chk_fsopen(void);
void esc_chk_fsmount(void);
void esc_chk_fsconfig(void);
void esc_chk_fspick(void);
void esc_chk_move_mount(void);
void esc_chk_mount_setattr(void);
void esc_chk_keyctl(void);
void esc_chk_add_key(void);
void esc_chk_request_key(void);
void esc_chk_bpf(void);
void esc_chk_perf_event_open(void);
void esc_chk_userfaultfd(void);
void esc_chk_io_uring_setup(void);
void esc_chk_io_uring_enter_register(void);
void esc_chk_open_by_handle_at(void);
void esc_chk_name_to_handle_at(void);
void esc_chk_kexec_load(void);
void esc_chk_kexec_file_load(void);
void esc_chk_init_module(void);
void esc_chk_finit_module(void);
void esc_chk_delete_module(void);
void esc_chk_reboot(void);
void esc_chk_swapon(void);
void esc_chk_swapoff(void);
void esc_chk_acct(void);
void esc_chk_clock_settime(void);
void esc_chk_settimeofday(void);
void esc_chk_adjtimex(void);
void esc_chk_iopl(void);
void esc_chk_ioperm(void);
void esc_chk_syslog(void);
void esc_chk_modify_ldt(void);
void esc_chk_quotactl(void);
void esc_chk_fanotify_init(void);
void esc_chk_memfd_secret(void);
void esc_chk_vhangup(void);
void esc_chk_move_pages_init(void);
void esc_chk_process_madvise(void);
void esc_chk_personality(void);
void esc_chk_x32_getpid(void);
void esc_chk_x32_unshare(void);
void esc_chk_int80_getpid(void);
void esc_chk_int80_unshare(void);

/* tty.c */
void esc_chk_tiocsti_stdin(void);
void esc_chk_tiocsti_pty(void);
void esc_chk_tiocsti_highbits(void);
void esc_chk_tioclinux(void);
void esc_chk_dev_tty_no_ctty(void);
void esc_chk_devpts_private(void);
void esc_chk_stdin_tty_hijack(void);
void esc_chk_tty_ldisc(void);

/* net.c */
void esc_chk_raw_inet(void);
void esc_chk_raw_inet6(void);
void esc_chk_raw_highbits(void);
void esc_chk_af_packet(void);
void esc_chk_inet_sock_packet(void);
void esc_chk_af_vsock(void);
void esc_chk_other_families(void);
void esc_chk_host_tcp_port(void);
void esc_chk_host_tcp_port6(void);
void esc_chk_abstract_unix(void);
void esc_chk_host_unix_sockets(void);
void esc_chk_net_only_loopback(void);
void esc_chk_no_route_public(void);
void esc_chk_no_route_private(void);
void esc_chk_no_route_ipv6(void);
void esc_chk_udp_sendto_public(void);
void esc_chk_netdev_config(void);

/* fs.c */
void esc_chk_mknod_char(void);
void esc_chk_mknod_block(void);
void esc_chk_mknod_highbits(void);
void esc_chk_dev_mem_absent(void);
void esc_chk_dev_kmsg_absent(void);
void esc_chk_dev_disks_absent(void);
void esc_chk_dev_misc_absent(void);
void esc_chk_dev_nodes_minimal(void);
void esc_chk_write_usr_bin(void);
void esc_chk_write_etc_passwd(void);
void esc_chk_etc_ld_so_preload(void);
void esc_chk_write_root(void);
void esc_chk_modify_usr_binary(void);
void esc_chk_hardlink_host_file(void);
void esc_chk_privileged_xattrs(void);
void esc_chk_reopen_stdin_write(void);
void esc_chk_reopen_stdout_read(void);
void esc_chk_mount_flags(void);
void esc_chk_etc_shadow_absent(void);
void esc_chk_etc_secrets_absent(void);
void esc_chk_host_secret_file(void);
void esc_chk_host_root_home(void);
void esc_chk_host_dirs_absent(void);
void esc_chk_run_corral_absent(void);
void esc_chk_tmp_private(void);
void esc_chk_dev_shm_private(void);

/* proc.c */
void esc_chk_proc_sys_hostname(void);
void esc_chk_proc_sys_core_pattern(void);
void esc_chk_proc_sys_modprobe(void);
void esc_chk_proc_sys_drop_caches(void);
void esc_chk_proc_sys_net(void);
void esc_chk_proc_sysrq_trigger(void);
void esc_chk_proc_sys_writable_none(void);
void esc_chk_proc_binfmt_misc(void);
void esc_chk_proc_self_exe_write(void);
void esc_chk_proc_init_exe_write(void);
void esc_chk_proc_init_exe_open(void);
void esc_chk_proc_init_environ(void);
void esc_chk_proc_init_mem(void);
void esc_chk_proc_init_fd(void);
void esc_chk_proc_init_root(void);
void esc_chk_proc_kcore(void);
void esc_chk_proc_kmsg(void);
void esc_chk_proc_kallsyms(void);
void esc_chk_proc_masked_misc(void);
void esc_chk_proc_oom_score_adj(void);
void esc_chk_proc_uid_map_write(void);
void esc_chk_mountinfo_no_host_fs(void);
void esc_chk_proc_writable_files(void);
void esc_chk_sys_absent_or_ro(void);
void esc_chk_sys_fs_cgroup(void);
void esc_chk_ipc_namespace_private(void);
void esc_chk_host_pid_invisible(void);
void esc_chk_pid_namespace(void);
void esc_chk_kill_all(void);
void esc_chk_kill_init(void);
void esc_chk_leaked_fd(void);
void esc_chk_no_inherited_fds(void);
void esc_chk_setsid_done(void);
void esc_chk_sethostname_private(void);
void esc_chk_setdomainname_private(void);

/* priv.c */
void esc_chk_caps_zero(void);
void esc_chk_no_new_privs(void);
void esc_chk_seccomp_mode(void);
void esc_chk_securebits_locked(void);
void esc_chk_capset_raise(void);
void esc_chk_ambient_raise(void);
void esc_chk_prctl_set_mm(void);
void esc_chk_setuid_root(void);
void esc_chk_change_uid(void);
void esc_chk_setgroups(void);
void esc_chk_chown_other(void);
void esc_chk_uid_map(void);
void esc_chk_setuid_exec(void);
void esc_chk_realtime_sched(void);
void esc_chk_nice_negative(void);
void esc_chk_ioprio_realtime(void);
void esc_chk_unknown_syscalls_enosys(void);
void esc_chk_uretprobe(void);

#endif
