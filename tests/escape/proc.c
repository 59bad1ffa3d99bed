/* /proc and /sys; processes, signals and fds; host identity. */
#include "escape.h"

/* ------------------------------------------------------------------ */
/* /proc and /sys                                                       */

void esc_chk_proc_sys_hostname(void) { WRITE_DENIED(OPEN_W("/proc/sys/kernel/hostname")); }
void esc_chk_proc_sys_core_pattern(void) { WRITE_DENIED(OPEN_W("/proc/sys/kernel/core_pattern")); }
/* Absent (kernel built without modules or sysrq) is as good as refused. */
#define WRITE_DENIED_OR_ABSENT(call) EXPECT_IN(call, EACCES, EROFS, EPERM, ENOENT)
void esc_chk_proc_sys_modprobe(void) { WRITE_DENIED_OR_ABSENT(OPEN_W("/proc/sys/kernel/modprobe")); }
void esc_chk_proc_sys_drop_caches(void) { WRITE_DENIED(OPEN_W("/proc/sys/vm/drop_caches")); }
void esc_chk_proc_sys_net(void) { WRITE_DENIED(OPEN_W("/proc/sys/net/ipv4/ip_forward")); }
void esc_chk_proc_sysrq_trigger(void)
{
  WRITE_DENIED_OR_ABSENT(OPEN_W("/proc/sysrq-trigger"));
  WRITE_DENIED_OR_ABSENT(OPEN_W("/proc/sys/kernel/sysrq"));
}

void esc_chk_proc_sys_writable_none(void)
{
  struct statvfs sv;
  if (statvfs("/proc/sys", &sv) < 0)
    esc_fail("statvfs /proc/sys: %s", strerror(errno));
  if (!(sv.f_flag & ST_RDONLY))
    esc_fail("/proc/sys is not mounted read-only");
}

void esc_chk_proc_binfmt_misc(void)
{
  EXPECT_IN(OPEN_W("/proc/sys/fs/binfmt_misc/register"), ENOENT, EACCES, EROFS, EPERM);
}

void esc_chk_proc_self_exe_write(void)
{
  /* CVE-2019-5736: overwrite the binary that runs us, through /proc. */
  EXPECT_IN(OPEN_W("/proc/self/exe"), ETXTBSY, EACCES, EROFS, EPERM);
  EXPECT_IN(open("/proc/self/exe", O_RDWR | O_CLOEXEC), ETXTBSY, EACCES, EROFS, EPERM);
}

void esc_chk_proc_init_exe_write(void)
{
  EXPECT_IN(OPEN_W("/proc/1/exe"), EACCES, EPERM, ETXTBSY, EROFS);
}

void esc_chk_proc_init_exe_open(void)
{
  /* PID 1 is corral, made non-dumpable: not even a read-only handle. */
  EXPECT(EACCES, open("/proc/1/exe", O_RDONLY | O_CLOEXEC));
  char buf[256];
  EXPECT(EACCES, readlink("/proc/1/exe", buf, sizeof(buf)));
}

void esc_chk_proc_init_environ(void) { EXPECT(EACCES, open("/proc/1/environ", O_RDONLY | O_CLOEXEC)); }
void esc_chk_proc_init_mem(void) { EXPECT(EACCES, open("/proc/1/mem", O_RDONLY | O_CLOEXEC)); }
void esc_chk_proc_init_fd(void)
{
  EXPECT(EACCES, open("/proc/1/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  /* fd 3 of PID 1 is its socket to the host supervisor. */
  EXPECT(EACCES, open("/proc/1/fd/3", O_RDWR | O_CLOEXEC));
  EXPECT(EACCES, open("/proc/1/fdinfo/3", O_RDONLY | O_CLOEXEC));
}

void esc_chk_proc_init_root(void)
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
      esc_fail("open %s: %s", path, strerror(errno));
    }
  ssize_t n = read(fd, buf, sizeof(buf));
  int e = errno;
  close(fd);
  if (n > 0)
    esc_fail("%s is readable (%zd bytes)", path, n);
  if (n < 0 && e != EAGAIN && e != EPERM && e != EACCES && e != EINVAL)
    esc_fail("read %s: %s", path, strerror(e));
}

void esc_chk_proc_kcore(void) { expect_empty_or_absent("/proc/kcore"); }
void esc_chk_proc_kmsg(void) { expect_empty_or_absent("/proc/kmsg"); }

void esc_chk_proc_kallsyms(void)
{
  char buf[4096];
  ssize_t n = esc_read_small("/proc/kallsyms", buf, sizeof(buf));
  if (n <= 0)
    return; /* masked (empty) or absent */
  /* If visible at all, the addresses must be censored. */
  for (char *line = buf; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
    {
      unsigned long long addr = strtoull(line, NULL, 16);
      if (addr != 0)
        esc_fail("/proc/kallsyms shows real addresses (%llx)", addr);
    }
}

void esc_chk_proc_masked_misc(void)
{
  static const char *const p[] = { "/proc/keys", "/proc/key-users", "/proc/timer_list", "/proc/sched_debug",
                                   "/proc/kpagecount", "/proc/kpageflags", "/proc/kpagecgroup", NULL };
  for (int i = 0; p[i]; i++)
    expect_empty_or_absent(p[i]);
}

void esc_chk_proc_oom_score_adj(void)
{
  int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
  if (fd < 0)
    esc_fail("open oom_score_adj: %s", strerror(errno));
  /* Lowering it (becoming unkillable by the OOM killer) needs CAP_SYS_RESOURCE. */
  EXPECT(EACCES, write(fd, "-1000", 5));
}

void esc_chk_proc_uid_map_write(void)
{
  int fd = open("/proc/self/uid_map", O_WRONLY | O_CLOEXEC);
  if (fd < 0)
    {
      if (errno == EACCES || errno == EPERM || errno == EROFS)
        return;
      esc_fail("open uid_map: %s", strerror(errno));
    }
  EXPECT(EPERM, write(fd, "0 0 4294967295\n", 15));
}

void esc_chk_mountinfo_no_host_fs(void)
{
  static const char *const bad[] = { " - sysfs ", " - cgroup ", " - cgroup2 ", " - debugfs ", " - tracefs ",
                                     " - securityfs ", " - bpf ", " - configfs ", " - fusectl ", " - pstore ",
                                     " - efivarfs ", " - binfmt_misc ", " - hugetlbfs ", " - overlay ", NULL };
  char buf[65536];
  if (esc_read_small("/proc/self/mountinfo", buf, sizeof(buf)) < 0)
    esc_fail("read mountinfo: %s", strerror(errno));
  for (int i = 0; bad[i]; i++)
    if (strstr(buf, bad[i]))
      esc_fail("a `%s` filesystem is mounted", bad[i] + 3);
  if (strstr(buf, " /oldroot") || strstr(buf, " /newroot"))
    esc_fail("setup mounts are still attached");
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

void esc_chk_proc_writable_files(void)
{
  char found[1024] = "";
  if (proc_writable("/proc", 0, found, sizeof(found)) > 0)
    esc_fail("writable:%s", found);
}

void esc_chk_sys_absent_or_ro(void)
{
  struct stat st;
  if (stat("/sys", &st) < 0)
    {
      if (errno != ENOENT)
        esc_fail("stat /sys: %s", strerror(errno));
      return;
    }
  struct statvfs sv;
  if (statvfs("/sys", &sv) == 0 && !(sv.f_flag & ST_RDONLY))
    esc_fail("/sys is mounted read-write");
  WRITE_DENIED(OPEN_W("/sys/kernel/uevent_helper"));
}

void esc_chk_sys_fs_cgroup(void)
{
  struct stat st;
  if (stat("/sys/fs/cgroup", &st) == 0)
    {
      WRITE_DENIED(open("/sys/fs/cgroup/cgroup.procs", O_WRONLY | O_CLOEXEC));
      WRITE_DENIED(mkdir("/sys/fs/cgroup/escape", 0755));
    }
  char buf[512];
  if (esc_read_small("/proc/self/cgroup", buf, sizeof(buf)) < 0)
    esc_fail("read /proc/self/cgroup: %s", strerror(errno));
  /* Every hierarchy (v1 or v2) is rooted at our own cgroup. */
  char *save = NULL;
  for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
    {
      char *path = strrchr(line, ':');
      if (path == NULL || strcmp(path, ":/") != 0)
        esc_fail("/proc/self/cgroup shows a host path: %s", line);
    }
}

void esc_chk_ipc_namespace_private(void)
{
  static const char *const p[] = { "/proc/sysvipc/shm", "/proc/sysvipc/msg", "/proc/sysvipc/sem", NULL };
  for (int i = 0; p[i]; i++)
    {
      char buf[4096];
      if (esc_read_small(p[i], buf, sizeof(buf)) < 0)
        continue;
      char *nl = strchr(buf, '\n');
      if (nl && nl[1] != '\0')
        esc_fail("%s shows host IPC objects", p[i]);
    }
}

/* ------------------------------------------------------------------ */
/* Processes, signals, fds                                              */

void esc_chk_host_pid_invisible(void)
{
  pid_t pid = (pid_t) atoi(esc_env_or_skip("ESCAPE_HOST_PID"));
  errno = 0;
  long r = kill(pid, 0);
  if (r == 0 || errno != ESRCH)
    {
      /* A sandbox process may happen to have the same number: not the host's
       * sleep, though. */
      char p[64], comm[64] = "";
      snprintf(p, sizeof(p), "/proc/%d/comm", pid);
      esc_read_small(p, comm, sizeof(comm));
      if (strncmp(comm, "sleep", 5) == 0)
        esc_fail("host process %d (sleep) is visible", pid);
      esc_note("pid %d exists inside but is `%.20s`", pid, comm);
    }
  char p[64];
  snprintf(p, sizeof(p), "/proc/%d", pid);
  struct stat st;
  if (stat(p, &st) == 0)
    {
      char comm[64] = "";
      snprintf(p, sizeof(p), "/proc/%d/comm", pid);
      esc_read_small(p, comm, sizeof(comm));
      if (strncmp(comm, "sleep", 5) == 0)
        esc_fail("host process %d visible in /proc", pid);
    }
}

void esc_chk_pid_namespace(void)
{
  DIR *d = opendir("/proc");
  struct dirent *de;
  int n = 0;
  if (d == NULL)
    esc_fail("opendir /proc: %s", strerror(errno));
  while ((de = readdir(d)) != NULL)
    if (de->d_name[0] >= '1' && de->d_name[0] <= '9')
      n++;
  closedir(d);
  /* PID 1, the suite, this check. */
  if (n > 8)
    esc_fail("%d processes visible in /proc", n);
  if (getpid() > 1000)
    esc_fail("pid %d: not in a fresh pid namespace?", getpid());
  char buf[64];
  if (esc_read_small("/proc/1/comm", buf, sizeof(buf)) > 0 && (strstr(buf, "systemd") || strstr(buf, "init\n")))
    esc_fail("PID 1 is the host's init (%s)", buf);
}

void esc_chk_kill_all(void)
{
  for (int i = 0; broadcast_sigs[i]; i++)
    {
      errno = 0;
      if (kill(-1, broadcast_sigs[i]) < 0 && errno != ESRCH && errno != EPERM)
        esc_fail("kill(-1, %d): %s", broadcast_sigs[i], strerror(errno));
    }
  /* Anyone who died was in here; now also SIGKILL from a child whose
   * siblings are only its own. */
  pid_t p = fork();
  if (p == 0)
    {
      setsid();
      pid_t sleeper = esc_spawn_sleeper();
      (void) sleeper;
      /* Our parent (this check) and the suite would die: only target our
       * own process group, which is what a careless fork bomb cleanup does. */
      kill(0, SIGKILL);
      _exit(1);
    }
  int st;
  waitpid(p, &st, 0);
  if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL))
    esc_fail("kill(0, SIGKILL) child: status %#x", st);
}

/* PID 1 is corral's init: the kernel ignores fatal signals sent to it from
 * inside its namespace; it may forward what it receives to the command's
 * process group (ours), hence the SIG_IGN here. */
void esc_chk_kill_init(void)
{
  signal(SIGTERM, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
  static const int sigs[] = { SIGKILL, SIGSTOP, SIGTERM, SIGHUP, 0 };
  for (int i = 0; sigs[i]; i++)
    {
      errno = 0;
      if (kill(1, sigs[i]) < 0 && errno != EPERM)
        esc_fail("kill(1, %d): %s", sigs[i], strerror(errno));
      usleep(20000);
      char buf[512];
      if (esc_read_small("/proc/1/stat", buf, sizeof(buf)) <= 0)
        esc_fail("PID 1 is gone after signal %d", sigs[i]);
      char *rp = strrchr(buf, ')');
      if (rp && (rp[2] == 'T' || rp[2] == 't' || rp[2] == 'Z' || rp[2] == 'X'))
        esc_fail("PID 1 is in state %c after signal %d", rp[2], sigs[i]);
    }
  int pfd = (int) syscall(SYS_pidfd_open, 1, 0);
  if (pfd >= 0)
    {
      errno = 0;
      if (syscall(SYS_pidfd_send_signal, pfd, SIGKILL, NULL, 0) < 0 && errno != EPERM)
        esc_fail("pidfd_send_signal(1, SIGKILL): %s", strerror(errno));
      usleep(20000);
      struct stat st;
      if (stat("/proc/1", &st) < 0)
        esc_fail("PID 1 is gone after pidfd_send_signal");
    }
}

void esc_chk_leaked_fd(void)
{
  int fd = atoi(esc_env_or_skip("ESCAPE_LEAKED_FD"));
  EXPECT(EBADF, fcntl(fd, F_GETFD));
}

void esc_chk_no_inherited_fds(void)
{
  if (n_startup_fds > 0)
    {
      char list[256] = "";
      for (int i = 0; i < n_startup_fds; i++)
        snprintf(list + strlen(list), sizeof(list) - strlen(list), " %d", startup_fds[i]);
      esc_fail("fds open at startup:%s", list);
    }
}

void esc_chk_setsid_done(void)
{
  /* corral made the command a session leader with no terminal. */
  if (getsid(0) != getpgid(getppid()) && getsid(0) != getppid())
    esc_fail("suite session %d unexpected (parent %d)", getsid(0), getppid());
  int pg;
  EXPECT_IN(ioctl(0, TIOCGPGRP, &pg), ENOTTY, ENXIO, EINVAL);
}

/* ------------------------------------------------------------------ */
/* Host identity                                                        */

void esc_chk_sethostname_private(void)
{
  const char *name = "corral-escape-probe";
  char before[256] = "", after[256] = "";
  gethostname(before, sizeof(before));
  errno = 0;
  if (sethostname(name, strlen(name)) == 0)
    {
      gethostname(after, sizeof(after));
      if (strcmp(after, name) != 0)
        esc_fail("sethostname succeeded but gethostname says %s", after);
      esc_note("hostname inside changed %s -> %s; the harness checks the host's", before, after);
      return;
    }
  if (errno != EPERM)
    esc_fail("sethostname: %s", strerror(errno));
  esc_note("sethostname refused (EPERM); hostname inside is %s", before);
}

void esc_chk_setdomainname_private(void)
{
  errno = 0;
  if (setdomainname("escape", 6) == 0)
    {
      esc_note("domain name changed inside the sandbox's UTS namespace");
      return;
    }
  if (errno != EPERM)
    esc_fail("setdomainname: %s", strerror(errno));
}
