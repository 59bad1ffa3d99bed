/* corral_run(): build a sandbox, run one command in it, account for it.
 *
 * Three processes take part:
 *  - the supervisor (the caller, host root): creates the cgroup and the id
 *    range, clones PID 1, writes its id maps, enforces the wall clock and
 *    collects the result;
 *  - the sandbox's PID 1 (corral code, root in the user namespace only):
 *    builds the filesystem, then drops every privilege itself and only
 *    reaps and forwards signals.  When it exits the kernel kills every
 *    process left in the PID namespace, so nothing a command started can
 *    outlive it;
 *  - the command: locks itself down (rlimits, setsid, fds, ids,
 *    capabilities, no_new_privs, Landlock, seccomp) and execs.
 * The supervisor and PID 1 talk over a SOCK_SEQPACKET pair: one message per
 * event, and EOF when PID 1 dies. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <corral/net.h>
#include <corral/run.h>
#include "../common/utils.h"
#include "../isolate/isolate.h"

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

#include "sandbox.h"
#include "box.h"

/* What the command sends PID 1 through its CLOEXEC pipe if exec fails. */
struct exec_failure
{
  int code;
  int err_no;
  char text[1000];
};

void corral__send_msg(int fd, int type, int status, int err_no, const char *text)
{
  struct msg m = { .type = type, .status = status, .err_no = err_no };
  if (text)
    snprintf(m.text, sizeof(m.text), "%s", text);
  while (send(fd, &m, sizeof(m), MSG_NOSIGNAL) < 0 && errno == EINTR)
    ;
}

/* Variables from MSG_ENV (the sandbox's init keeps them for the command). */
static char *late_env[CORRAL_MAX_SECRETS + 8];
static size_t n_late_env;

static void build_env(const corral_config_t *cfg, char **envp, size_t cap)
{
  static char home[] = "HOME=/home/user", path[] = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  static char lang[] = "LANG=C.UTF-8", user[] = "USER=user", root[] = "USER=root";
  size_t n = 0;
  envp[n++] = path;
  envp[n++] = home;
  envp[n++] = lang;
  envp[n++] = cfg->as_root ? root : user;
  /* Where the egress proxy listens (run_proxy); the caller's env may
   * still override these. */
  if (cfg->network && strcmp(cfg->network, "none") != 0)
    for (const char *const *kv = corral_net_proxy_env; *kv && n + 1 < cap; kv++)
      envp[n++] = (char *) *kv;
  for (size_t i = 0; cfg->env[i] && n + 1 < cap; i++)
    {
      size_t klen = strcspn(cfg->env[i], "=") + 1;
      size_t j;
      /* Later entries override earlier ones, the defaults included. */
      for (j = 0; j < n; j++)
        if (strncmp(envp[j], cfg->env[i], klen) == 0)
          break;
      envp[j] = cfg->env[i];
      if (j == n)
        n++;
    }
  /* Placeholders of secrets last: nothing replaces them with a value. */
  for (size_t i = 0; i < n_late_env && n + 1 < cap; i++)
    envp[n++] = late_env[i];
  envp[n] = NULL;
}

static void __attribute__((noreturn)) exec_fail(int fd, int code, corral_error_t *err)
{
  struct exec_failure f = { .code = code, .err_no = corral_error_status(*err) };
  snprintf(f.text, sizeof(f.text), "%s", corral_error_message(*err));
  corral__write_all(fd, &f, sizeof(f));
  _exit(code);
}

/* With a terminal, the sandbox's own pseudo-terminal becomes the session's
 * controlling one, so ^C and job control work; TIOCSTI stays blocked by
 * seccomp, so nothing can push input into it either. */
static void take_terminal(int tty, int failfd)
{
  corral_error_t err = NULL;
  if (dup2(tty, 0) < 0 || dup2(tty, 1) < 0 || dup2(tty, 2) < 0 || ioctl(0, TIOCSCTTY, 0) < 0)
    {
      corral_error_set(&err, errno, "make the terminal the command's");
      exec_fail(failfd, 125, &err);
    }
}

/* The command: PID 1 locked the process down before forking it, so what is
 * left is per-command state: a session, the fds, the directory, exec. */
static void __attribute__((noreturn)) run_command(const corral_config_t *cfg, int failfd, int tty)
{
  corral_error_t err = NULL;
  char *envp[CORRAL_MAX_ENV + 16];
  sigset_t none;
  const char *dir = cfg->workdir ? cfg->workdir : "/home/user";

  sigemptyset(&none);
  for (int s = 1; s < NSIG; s++)
    signal(s, SIG_DFL);
  sigprocmask(SIG_SETMASK, &none, NULL);
  /* A new session has no controlling terminal: the host's tty cannot be
   * reached through /dev/tty, nor made to read injected input. */
  if (setsid() < 0)
    {
      corral_error_set(&err, errno, "setsid");
      exec_fail(failfd, 125, &err);
    }
  if (tty >= 0)
    take_terminal(tty, failfd);
  if (dup3(failfd, 3, O_CLOEXEC) < 0)
    _exit(125);
  failfd = 3;
  corral__close_fds_from(4);
  if (chdir(dir) < 0)
    {
      corral_error_set(&err, errno, "working directory `%s`", dir);
      exec_fail(failfd, 125, &err);
    }
  build_env(cfg, envp, sizeof(envp) / sizeof(*envp));
  execvpe(cfg->argv[0], cfg->argv, envp);
  int e = errno;
  corral_error_set(&err, e, "%s `%s`", e == ENOENT ? "command not found" : "cannot execute", cfg->argv[0]);
  exec_fail(failfd, e == ENOENT ? 127 : 126, &err);
}

void __attribute__((noreturn)) corral__init_fail(int sock, int code, corral_error_t *err)
{
  corral__send_msg(sock, MSG_ERROR, code, corral_error_status(*err), corral_error_message(*err));
  _exit(code);
}

/* PID 1 after the command started: reap everything, forward signals, and
 * report the command's status.  Returning ends the sandbox. */
static void __attribute__((noreturn)) init_loop(int sock, pid_t cmd)
{
  sigset_t set;
  sigemptyset(&set);
  for (int s = 1; s < 32; s++)
    if (s != SIGKILL && s != SIGSTOP)
      sigaddset(&set, s);
  for (;;)
    {
      siginfo_t si;
      int sig = sigwaitinfo(&set, &si);
      if (sig < 0)
        continue;
      if (sig != SIGCHLD)
        {
          if (kill(-cmd, sig) < 0)
            kill(cmd, sig);
          continue;
        }
      int st;
      pid_t p;
      while ((p = waitpid(-1, &st, WNOHANG)) > 0)
        if (p == cmd)
          {
            corral__send_msg(sock, MSG_EXIT, st, 0, NULL);
            _exit(0);
          }
    }
}

/* The kernel clears the parent-death signal on every credential change,
 * so PID 1 re-arms it after each one; if the supervisor died in between,
 * its end of the socket is closed, and PID 1 ends the sandbox itself. */
static void rearm_deathsig(int sock)
{
  struct pollfd p = { .fd = sock, .events = POLLIN };
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLERR)))
    _exit(125);
}

/* Namespaces the supervisor could not create for us: the cgroup namespace
 * must start at our own cgroup, which we just joined; a time namespace
 * applies to children only. */
static int enter_late_namespaces(corral_error_t *err)
{
  if (unshare(CLONE_NEWCGROUP) < 0)
    return corral_error_set(err, errno, "cgroup namespace");
  if (unshare(CLONE_NEWTIME) < 0 && errno != EINVAL)
    return corral_error_set(err, errno, "time namespace");
  return 0;
}

/* Everything PID 1 and the command share, in order of defence; after this
 * the process can only wait, signal, fork and exec within the sandbox. */
int corral__lock_down(const corral_config_t *cfg, const struct corral__seccomp *sc, corral_error_t *err)
{
  uid_t id = cfg->as_root ? 0 : CORRAL_SANDBOX_UID;
  if (corral__set_rlimits(cfg, err) < 0 || corral__drop_privileges(id, id, err) < 0)
    return -1;
  /* Changing uid resets dumpability: nobody inside may read PID 1's
   * memory or open its /proc/1/exe. */
  if (prctl(PR_SET_DUMPABLE, 0) < 0 || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
    return corral_error_set(err, errno, "prctl");
  if (corral__landlock_apply(cfg, err) < 0)
    return -1;
  return corral__seccomp_load(sc, err);
}

void corral__build_sandbox(const corral_config_t *cfg, const int join_fds[], int sock, corral_error_t *err)
{
  struct corral__sources srcs;
  const char *hn = cfg->hostname ? cfg->hostname : "corral";

  if (corral__cgroup_join_self(join_fds, err) < 0 || enter_late_namespaces(err) < 0)
    corral__init_fail(sock, 125, err);
  /* Open the host paths to mount while this process still has the
   * supervisor's host uid for path lookups (root-owned 0700 directories
   * such as /root stay reachable), but already in our own mount namespace,
   * where the mounts behind the fds may be bound from. */
  if (corral__sources_open(cfg, &srcs, err) < 0)
    corral__init_fail(sock, 125, err);
  if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)
    {
      corral_error_set(err, errno, "become root in the user namespace");
      corral__init_fail(sock, 125, err);
    }
  rearm_deathsig(sock);
  prctl(PR_SET_DUMPABLE, 0);
  if (corral__setup_rootfs(cfg, &srcs, err) < 0)
    {
      corral_error_wrap(err, "set up the sandbox filesystem");
      corral__init_fail(sock, 125, err);
    }
  if (sethostname(hn, strlen(hn)) < 0)
    {
      corral_error_set(err, errno, "sethostname");
      corral__init_fail(sock, 125, err);
    }
  if (corral__loopback_up(err) < 0)
    corral__init_fail(sock, 125, err);
}

/* In PID 1 of a run with a terminal (fds above 3 are closed): the pair of a
 * new terminal, its master sent to the supervisor.  PID 1 leaves the
 * caller's session and gives up the caller's fds, which may be the host's
 * terminal: from here on no host terminal is reachable inside. */
static int open_terminal(int sock, const corral_config_t *cfg, const struct winsize *ws)
{
  corral_error_t err = NULL;
  int master, slave, null = open("/dev/null", O_RDWR | O_CLOEXEC);
  uid_t owner = cfg->as_root ? 0 : CORRAL_SANDBOX_UID;
  if (null < 0 || setsid() < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0)
    {
      corral_error_set(&err, errno, "detach from the caller's terminal");
      corral__init_fail(sock, 125, &err);
    }
  close(null);
  if (corral__tty_open(ws, owner, &master, &slave, &err) < 0)
    corral__init_fail(sock, 125, &err);
  if (corral__send_fd_msg(sock, MSG_TTY, master) < 0)
    _exit(125);
  close(master);
  return slave;
}

static void __attribute__((noreturn)) sandbox_init(const corral_config_t *cfg, const struct corral__seccomp *sc,
                                                   const int join_fds[], int sock, const struct winsize *ws)
{
  corral_error_t err = NULL;
  struct msg m;
  sigset_t all;
  int pfd[2];
  struct exec_failure f;

  /* If the supervisor dies, so does the sandbox (and, as PID 1, all of it). */
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  sigfillset(&all);
  sigprocmask(SIG_SETMASK, &all, NULL);
  signal(SIGCHLD, SIG_DFL);
  for (;;)
    {
      if (recv(sock, &m, sizeof(m), 0) != (ssize_t) sizeof(m))
        _exit(125);
      if (m.type == MSG_GO)
        break;
      if (m.type != MSG_ENV || n_late_env >= sizeof(late_env) / sizeof(*late_env))
        _exit(125);
      m.text[sizeof(m.text) - 1] = '\0';
      late_env[n_late_env++] = strdup(m.text);
    }
  corral__build_sandbox(cfg, join_fds, sock, &err);
  /* Host fds (mount sources, cgroup files, whatever the caller leaked)
   * end here. */
  if (dup3(sock, 3, O_CLOEXEC) < 0)
    _exit(125);
  sock = 3;
  corral__close_fds_from(4);
  int tty = cfg->tty ? open_terminal(sock, cfg, ws) : -1;
  if (corral__lock_down(cfg, sc, &err) < 0)
    {
      corral_error_wrap(&err, "lock down the sandbox");
      corral__init_fail(sock, 125, &err);
    }
  rearm_deathsig(sock);
  if (pipe2(pfd, O_CLOEXEC) < 0)
    {
      corral_error_set(&err, errno, "pipe");
      corral__init_fail(sock, 125, &err);
    }
  pid_t cmd = fork();
  if (cmd < 0)
    {
      corral_error_set(&err, errno, "fork the command");
      corral__init_fail(sock, 125, &err);
    }
  if (cmd == 0)
    {
      close(sock);
      close(pfd[0]);
      run_command(cfg, pfd[1], tty);
    }
  close(pfd[1]);
  /* Only the command's processes hold the terminal: when they are all gone
   * the supervisor reads EIO on the master. */
  if (tty >= 0)
    close(tty);
  if (corral__read_all(pfd[0], &f, sizeof(f)) == (ssize_t) sizeof(f))
    {
      f.text[sizeof(f.text) - 1] = '\0';
      corral__send_msg(sock, MSG_ERROR, f.code, f.err_no, f.text);
      _exit(f.code);
    }
  close(pfd[0]);
  corral__send_msg(sock, MSG_STARTED, 0, 0, NULL);
  init_loop(sock, cmd);
}

/* ---- the supervisor ---- */

struct supervise
{
  int sock, pidfd, signal_fd;
  pid_t pid;
  uint64_t deadline_us; /* 0: none */
  bool started, exited, timed_out, sock_eof;
  int wait_status;      /* command's status from MSG_EXIT */
  int setup_code;       /* from MSG_ERROR, or 0 */
  struct corral__cgroup *cg;
  corral_proxy_t *proxy; /* egress, when the network is not none */
  corral_dns_t *dns;     /* and its DNS */
  const corral_config_t *cfg;
  struct corral__relay relay; /* the command's terminal, with cfg->tty */
  const char *ca_path;        /* the CA bundle file of secrets, or "" */
};

static void run_audit(void *cls, const char *sandbox, const char *record)
{
  const corral_config_t *cfg = cls;
  (void) sandbox;
  if (cfg->net_audit)
    cfg->net_audit(cfg->net_audit_cls, record);
}

/* The egress proxy of this run, in a thread of ours started only now: the
 * sandbox was cloned before any thread existed.  Its listeners are on the
 * sandbox's own loopback; the sandbox has no other way out. */
static int run_proxy(struct supervise *s, const corral_config_t *cfg, corral_error_t *err)
{
  static const uint16_t ports[2] = { CORRAL_NET_HTTP_PORT, CORRAL_NET_SOCKS_PORT };
  corral_net_policy_t *policy = NULL;
  int fds[2];
  if (corral__config_policy(cfg, &policy, err) < 0 || !policy)
    return policy ? -1 : 0;
  corral_proxy_options_t o = { .resolver_file = cfg->resolver_file, .audit = run_audit, .audit_cls = (void *) cfg,
                               .upstream_ca_file = cfg->upstream_ca_file };
  int r = corral_proxy_new(&o, &s->proxy, err);
  if (r == 0 && (r = corral__netns_listen(s->pid, ports, fds, 2, err)) == 0
      && (r = corral_proxy_add(s->proxy, "run", fds[0], fds[1], policy, err)) < 0)
    close(fds[0]), close(fds[1]);
  int udp = r == 0 ? corral__netns_udp(s->pid, 53, err) : -1;
  if (udp >= 0 && ((r = corral_dns_new(cfg->resolver_file, &s->dns, err)) < 0
                   || (r = corral_dns_add(s->dns, "run", udp, policy, err)) < 0))
    close(udp);
  else if (r == 0 && udp < 0)
    r = -1;
  corral_net_policy_unref(policy);
  if (r == 0 && cfg->n_secrets)
    r = corral__run_secrets_apply(s->proxy, cfg, s->ca_path, s->sock, err);
  return r;
}

static void handle_msg(struct supervise *s, const struct msg *m, corral_error_t *err)
{
  switch (m->type)
    {
    case MSG_STARTED: s->started = true; break;
    case MSG_EXIT: s->exited = true; s->wait_status = m->status; break;
    case MSG_ERROR:
      if (s->setup_code == 0)
        {
          s->setup_code = m->status ? m->status : 125;
          corral_error_set(err, 0, "%.1000s", m->text);
          if (*err)
            (*err)->status = m->err_no;
        }
      break;
    default: break;
    }
}

static void drain_msgs(struct supervise *s, corral_error_t *err)
{
  struct msg m;
  int fd;
  for (;;)
    {
      ssize_t n = corral__recv_msg(s->sock, &m, &fd);
      /* Only a run with a terminal takes an fd: the master, checked. */
      if (fd >= 0 && n == (ssize_t) sizeof(m) && m.type == MSG_TTY && s->cfg->tty)
        corral__relay_start(&s->relay, s->cfg, fd);
      else if (fd >= 0)
        close(fd);
      if (n != (ssize_t) sizeof(m))
        {
          s->sock_eof = n == 0;
          break;
        }
      m.text[sizeof(m.text) - 1] = '\0';
      handle_msg(s, &m, err);
    }
}

static void on_timeout(struct supervise *s)
{
  s->timed_out = true;
  s->deadline_us = 0;
  /* The whole cgroup, then PID 1 (whose death ends the PID namespace):
   * a process that escaped the session or double-forked dies all the same. */
  corral__cgroup_kill(s->cg);
  kill(s->pid, SIGKILL);
}

static void forward_signals(struct supervise *s)
{
  unsigned char sig[16];
  ssize_t n = read(s->signal_fd, sig, sizeof(sig));
  for (ssize_t i = 0; i < n; i++)
    if (sig[i] == SIGWINCH)
      corral__relay_resize(&s->relay, s->cfg);
    else
      kill(s->pid, sig[i]);
}

/* Milliseconds until the deadline or the relay's next retry (-1: none);
 * 0 once the deadline passed. */
static int loop_timeout(const struct supervise *s)
{
  int t = corral__relay_timeout(&s->relay);
  if (s->deadline_us)
    {
      uint64_t now = corral__now_us();
      int left = now >= s->deadline_us ? 0 : (int) ((s->deadline_us - now + 999) / 1000);
      if (t < 0 || left < t)
        t = left;
    }
  return t;
}

/* Wait until PID 1 is gone, enforcing the deadline, relaying the terminal. */
static void supervise_loop(struct supervise *s, corral_error_t *err)
{
  for (;;)
    {
      /* poll skips negative fds: no signal pipe, no terminal, and the
       * socket once at EOF (PID 1 is going; the pidfd says when it is gone). */
      struct pollfd fds[6] = { { s->pidfd, POLLIN, 0 }, { s->sock_eof ? -1 : s->sock, POLLIN, 0 },
                               { s->signal_fd, POLLIN, 0 } };
      if (s->deadline_us && corral__now_us() >= s->deadline_us)
        on_timeout(s);
      corral__relay_poll(&s->relay, fds + 3);
      int r = poll(fds, 6, loop_timeout(s));
      if (r < 0 && errno != EINTR)
        break;
      if (r < 0)
        continue;
      if (fds[1].revents & (POLLIN | POLLHUP))
        drain_msgs(s, err);
      if (fds[2].revents & POLLIN)
        forward_signals(s);
      corral__relay_step(&s->relay, fds + 3);
      if (fds[0].revents & POLLIN)
        break;
    }
  drain_msgs(s, err);
  corral__relay_finish(&s->relay);
}

static void fill_result(struct supervise *s, const corral_config_t *cfg, const struct rusage *ru, int pid1_status,
                        corral_result_t *res)
{
  uint64_t ooms, peak, user_ms, sys_ms;
  corral__cgroup_stats(s->cg, &ooms, &peak, &user_ms, &sys_ms);
  res->cpu_user_ms = (uint64_t) ru->ru_utime.tv_sec * 1000 + (uint64_t) ru->ru_utime.tv_usec / 1000;
  res->cpu_sys_ms = (uint64_t) ru->ru_stime.tv_sec * 1000 + (uint64_t) ru->ru_stime.tv_usec / 1000;
  /* cgroup accounting also covers processes PID 1 never reaped. */
  if (user_ms > res->cpu_user_ms)
    res->cpu_user_ms = user_ms;
  if (sys_ms > res->cpu_sys_ms)
    res->cpu_sys_ms = sys_ms;
  res->memory_peak_bytes = peak ? peak : (uint64_t) ru->ru_maxrss * 1024;

  int st = s->exited ? s->wait_status : pid1_status;
  if (s->timed_out)
    {
      res->reason = CORRAL_REASON_TIMEOUT;
      res->signal = SIGKILL;
    }
  else if (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL && ooms > 0)
    {
      res->reason = CORRAL_REASON_OOM;
      res->signal = SIGKILL;
    }
  else if (!s->exited && !WIFSIGNALED(st) && ooms > 0)
    res->reason = CORRAL_REASON_OOM;
  else if (WIFSIGNALED(st))
    {
      res->signal = WTERMSIG(st);
      res->reason = cfg->cpu_time_s && (res->signal == SIGXCPU || res->signal == SIGKILL)
                          && res->cpu_user_ms + res->cpu_sys_ms >= cfg->cpu_time_s * 1000
                      ? CORRAL_REASON_TIMEOUT : CORRAL_REASON_SIGNALED;
    }
  else
    {
      res->reason = CORRAL_REASON_EXITED;
      res->exit_code = WEXITSTATUS(st);
    }
}

pid_t corral__clone_sandbox(int *pidfd)
{
  unsigned long flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET
                        | SIGCHLD | (pidfd ? CLONE_PIDFD : 0);
  /* Raw clone with a NULL stack behaves like fork and takes every
   * namespace in one step; CLONE_PIDFD stores the pidfd through the
   * parent_tid argument. */
  return (pid_t) syscall(SYS_clone, flags, NULL, pidfd, NULL, 0);
}

/* Start PID 1 and hand it its identity; on success s->pid/sock are set. */
static int start_sandbox(struct supervise *s, const corral_config_t *cfg, const struct corral__seccomp *sc,
                         const struct corral__idrange *ids, corral_error_t *err)
{
  int sv[2], join[CORRAL__CG_V1_MAX];
  struct winsize ws = { .ws_row = 0 };
  if (cfg->tty)
    corral__tty_size(cfg, &ws);
  if (corral__cgroup_open_join(s->cg, join, err) < 0)
    return -1;
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
    {
      corral__cgroup_close_join(join);
      return corral_error_set(err, errno, "socketpair");
    }
  s->pid = corral__clone_sandbox(NULL);
  if (s->pid < 0)
    {
      int e = errno;
      close(sv[0]);
      close(sv[1]);
      corral__cgroup_close_join(join);
      return corral_error_set(err, e, "create namespaces");
    }
  if (s->pid == 0)
    {
      close(sv[0]);
      sandbox_init(cfg, sc, join, sv[1], &ws);
    }
  close(sv[1]);
  corral__cgroup_close_join(join);
  s->sock = sv[0];
  s->pidfd = (int) syscall(SYS_pidfd_open, s->pid, 0);
  if (s->pidfd < 0)
    return corral_error_set(err, errno, "pidfd_open");
  if (corral__write_id_maps(s->pid, ids, err) < 0 || run_proxy(s, cfg, err) < 0)
    return -1;
  corral__send_msg(s->sock, MSG_GO, 0, 0, NULL);
  return 0;
}

static int supervise(const corral_config_t *cfg, const struct corral__seccomp *sc, const struct corral__idrange *ids,
                     struct corral__cgroup *cg, const char *ca_path, corral_result_t *res, corral_error_t *err)
{
  struct supervise s = { .sock = -1, .pidfd = -1, .signal_fd = cfg->signal_fd, .pid = -1, .cg = cg, .cfg = cfg,
                         .ca_path = ca_path,
                         .relay = { .in = -1, .out = -1, .master = -1 } };
  struct rusage ru;
  int st = 0;
  uint64_t t0 = corral__now_us();
  int r = start_sandbox(&s, cfg, sc, ids, err);

  if (r == 0)
    {
      s.deadline_us = cfg->timeout_ms ? t0 + cfg->timeout_ms * 1000 : 0;
      supervise_loop(&s, err);
    }
  else if (s.pid > 0)
    kill(s.pid, SIGKILL);
  memset(&ru, 0, sizeof(ru));
  while (s.pid > 0 && wait4(s.pid, &st, 0, &ru) < 0 && errno == EINTR)
    ;
  corral__relay_finish(&s.relay);
  res->wall_ms = (corral__now_us() - t0) / 1000;
  corral_proxy_stop(s.proxy);
  corral_dns_stop(s.dns);
  if (s.sock >= 0)
    close(s.sock);
  if (s.pidfd >= 0)
    close(s.pidfd);
  if (r < 0)
    return r;
  if (s.setup_code)
    {
      res->exit_code = s.setup_code;
      return -1;
    }
  if (!s.started && !s.timed_out)
    {
      fill_result(&s, cfg, &ru, st, res);
      if (res->reason == CORRAL_REASON_OOM)
        return 0;
      res->reason = CORRAL_REASON_ERROR;
      res->exit_code = 125;
      return corral_error_set(err, 0, "the sandbox ended before the command started (status %#x)", st);
    }
  fill_result(&s, cfg, &ru, st, res);
  return 0;
}

int corral_run(const corral_config_t *cfg_in, corral_result_t *res, corral_error_t *err)
{
  static unsigned counter;
  /* A copy that may gain a bind (the CA bundle of secrets). */
  corral_config_t local = *cfg_in, *cfg = &local;
  char ca_path[64] = "";
  struct corral__seccomp sc;
  struct corral__idrange ids = { .lock_fd = -1 };
  struct corral__cgroup cg;
  char name[64];
  int r;

  memset(res, 0, sizeof(*res));
  res->reason = CORRAL_REASON_ERROR;
  res->exit_code = 125;
  if (corral_config_validate(cfg, err) < 0)
    return -1;
  if (geteuid() != 0)
    return corral_error_set(err, EPERM, "corral run must run as root: it creates user namespaces with "
                                        "a private uid range, and cgroups");
  /* Sweep what a SIGKILLed earlier run could not remove. */
  corral__cgroup_gc(NULL);
  if (corral__seccomp_build(&sc, err) < 0)
    return -1;
  if ((r = corral__idrange_acquire(&ids, err)) < 0)
    goto release_seccomp;
  snprintf(name, sizeof(name), "run-%d-%u", getpid(), counter++);
  if ((r = corral__cgroup_create(&cg, name, cfg, err)) < 0)
    goto release_ids;
  snprintf(res->cgroup_mode, sizeof(res->cgroup_mode), "%s", corral__cgroup_mode_name(cg.mode));
  r = corral__run_secrets_prepare(cfg, ca_path, err);
  if (r == 0)
    r = supervise(cfg, &sc, &ids, &cg, ca_path, res, err);
  if (ca_path[0])
    unlink(ca_path);
  if (corral__cgroup_destroy(&cg, r < 0 ? NULL : err) < 0 && r == 0)
    r = -1;
release_ids:
  corral__idrange_release(&ids);
release_seccomp:
  corral__seccomp_release(&sc);
  if (r < 0 && *err == NULL)
    corral_error_set(err, 0, "sandbox failed");
  return r;
}

int corral_gc(corral_error_t *err)
{
  int n = corral__cgroup_gc(err);
  return n < 0 ? n : n + corral__box_gc();
}
