/* The escape suite: run INSIDE a corral sandbox, it tries to break out in
 * every way we could think of and asserts that each attempt fails.
 *
 *   escape              run every check, TAP output, exit 1 if any failed
 *   escape --list       print the check names
 *   escape NAME...      run only the named checks
 *
 * Each check runs in a forked child (with an alarm), so a crash or a hang
 * fails that check only.  A check passes by returning, fails with esc_fail()
 * and can skip with esc_skip(); details travel back through a pipe.
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
#include "escape.h"

/* ------------------------------------------------------------------ */
/* Shared state                                                         */

int detail_fd = -1;       /* in a check child: where details go */
int startup_fds[64];      /* fds >= 3 open when we started */
int n_startup_fds;
int startup_tmp = -1, startup_shm = -1, startup_home = -1, startup_pts = -1;

/* The suite ignores these: kill(-1, sig) then hits every process this one
 * can reach, which must all be inside the sandbox (the harness checks a
 * host process survives). */
const int broadcast_sigs[] = { SIGTERM, SIGHUP, SIGINT, SIGUSR1, SIGUSR2, SIGQUIT, 0 };

/* ------------------------------------------------------------------ */
/* The list                                                             */

#define C(n) { #n, esc_chk_##n }
static const struct esc_check checks[] = {
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
  startup_tmp = esc_count_entries("/tmp", NULL);
  startup_shm = esc_count_entries("/dev/shm", NULL);
  startup_home = esc_count_entries("/home/user", NULL);
  startup_pts = esc_count_entries("/dev/pts", "ptmx");
}

static int run_one(int num, const struct esc_check *c)
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
  const struct esc_check *sel[N_CHECKS];
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
