/* Long-lived sandboxes: see box.h.
 *
 * Creating one takes three processes:
 *  - the calling daemon thread sends the spawner a request and then waits,
 *    on the socketpair the spawner hands back, for the agent's "ready";
 *  - the spawner (host root, single-threaded) takes a uid range, creates
 *    the cgroup and the agent's listening socket, clones PID 1, writes its
 *    id maps and says go.  It does not wait for the sandbox to be built, so
 *    many sandboxes build at once;
 *  - PID 1 builds the jail exactly like corral_run() does, locks itself
 *    down, and execs the agent with the listening socket, the socketpair
 *    and the uid-range lock as fds 3, 4 and 5.
 * PID 1 is the spawner's child only until the spawner dies; nothing ties
 * it to the daemon's life. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <corral/agent.h>
#include "box.h"
#include "sandbox.h"
#include "../common/utils.h"

#define READY_TIMEOUT_MS 30000

/* What the spawner answers, with SCM_RIGHTS [pidfd, ready socket]. */
struct spawn_reply
{
  int err_no;
  pid_t pid;
  char text[512];
  char runtime[3072]; /* runtime JSON */
};

struct spawn_req
{
  char id[64];
  int nice;
  uint64_t memory_bytes, cpu_millis, pids, disk_bytes;
  char rootfs[1024];
};

/* ---- PID 1 ---- */

static void __attribute__((noreturn)) box_init(const corral_config_t *cfg, const struct corral__seccomp *sc,
                                               const int join[], int ready, int listen_fd, int lock_fd)
{
  corral_error_t err = NULL;
  struct msg m;
  sigset_t all;
  char *argv[] = { (char *) "corral-agent", NULL }, *envp[] = { NULL };
  int fds[3] = { listen_fd, ready, lock_fd };

  /* Until it locks down (which clears this), PID 1 dies with the spawner. */
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  sigfillset(&all);
  sigprocmask(SIG_SETMASK, &all, NULL);
  signal(SIGCHLD, SIG_DFL);
  if (recv(ready, &m, sizeof(m), 0) != (ssize_t) sizeof(m) || m.type != MSG_GO)
    _exit(125);
  corral__build_sandbox(cfg, join, ready, &err);
  /* Move the three fds the agent keeps to 3, 4, 5 (through high numbers,
   * so that none is overwritten), and close every other host fd. */
  for (int i = 0; i < 3; i++)
    if ((fds[i] = fcntl(fds[i], F_DUPFD, 16)) < 0)
      _exit(125);
  for (int i = 0; i < 3; i++)
    if (dup2(fds[i], CORRAL_AGENT_LISTEN_FD + i) < 0)
      _exit(125);
  ready = CORRAL_AGENT_READY_FD;
  corral__close_fds_from(CORRAL_AGENT_LOCK_FD + 1);
  int listener = corral__lock_down(cfg, sc, &err);
  if (listener < 0)
    {
      corral_error_wrap(&err, "lock down the sandbox");
      corral__init_fail(ready, 125, &err);
    }
  /* The agent answers (and counts) the denied calls of its sandbox. */
  if (listener > 0 && (dup2(listener, CORRAL_AGENT_SECCOMP_FD) < 0
                       || (listener != CORRAL_AGENT_SECCOMP_FD && close(listener) < 0)
                       || fcntl(CORRAL_AGENT_SECCOMP_FD, F_SETFD, 0) < 0))
    _exit(125);
  execve(CORRAL__AGENT_PATH, argv, envp);
  corral_error_set(&err, errno, "exec the agent");
  corral__init_fail(ready, 125, &err);
}

/* ---- the spawner ---- */

struct spawner_ctx
{
  const char *agent_path, *run_dir, *runners_dir;
  struct corral__seccomp sc;
};

static int listen_socket(const char *path, corral_error_t *err)
{
  struct sockaddr_un a = { .sun_family = AF_UNIX };
  if (strlen(path) >= sizeof(a.sun_path))
    return corral_error_set(err, ENAMETOOLONG, "socket path `%s`", path);
  strcpy(a.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return corral_error_set(err, errno, "socket");
  unlink(path);
  if (bind(fd, (struct sockaddr *) &a, sizeof(a)) < 0 || chmod(path, 0600) < 0 || listen(fd, 128) < 0)
    {
      int e = errno;
      close(fd);
      return corral_error_set(err, e, "listen on `%s`", path);
    }
  return fd;
}

char *corral__box_runtime_json(const struct corral__box *b)
{
  json_t *paths = json_array(), *o;
  if (b->cg.mode == CORRAL_CG_V2)
    json_array_append_new(paths, json_string(b->cg.path));
  for (int i = 0; b->cg.mode == CORRAL_CG_V1 && i < CORRAL__CG_V1_MAX; i++)
    json_array_append_new(paths, b->cg.v1_paths[i] ? json_string(b->cg.v1_paths[i]) : json_null());
  o = json_pack("{s:i, s:I, s:s, s:s, s:o}", "pid", (int) b->pid, "start", (json_int_t) b->start_ticks, "sock",
                b->sock_path, "cgroup_mode", corral__cgroup_mode_name(b->cg.mode), "cgroup", paths);
  char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
  json_decref(o);
  return s;
}

static uint64_t start_ticks(pid_t pid)
{
  char path[64], buf[1024];
  snprintf(path, sizeof(path), "/proc/%d/stat", pid);
  if (corral__read_file_at(AT_FDCWD, path, buf, sizeof(buf)) < 0)
    return 0;
  /* Field 22, counted after the command name, which may hold spaces. */
  char *p = strrchr(buf, ')');
  for (int field = 2; p && field < 22; field++)
    p = strchr(p + 1, ' ');
  return p ? strtoull(p + 1, NULL, 10) : 0;
}

void corral__box_forget(struct corral__box *b)
{
  free(b->cg.path);
  for (int i = 0; i < CORRAL__CG_V1_MAX; i++)
    free(b->cg.v1_paths[i]);
  memset(&b->cg, 0, sizeof(b->cg));
  if (b->pidfd >= 0)
    close(b->pidfd);
  b->pidfd = -1;
}

/* The spawner's half of a create.  On success the reply and the two fds
 * are ready to send; on failure everything made so far is undone. */
static int spawn_box(struct spawner_ctx *ctx, const char *id, int nice, corral_config_t *cfg,
                     struct spawn_reply *rep, int *pidfd, int *ready, corral_error_t *err)
{
  struct corral__idrange ids = { .lock_fd = -1 };
  struct corral__box b = { .pidfd = -1 };
  int sv[2] = { -1, -1 }, join[CORRAL__CG_V1_MAX], r, listen_fd = -1;
  char name[96];

  snprintf(b.sock_path, sizeof(b.sock_path), "%s/sb/%s.sock", ctx->run_dir, id);
  if ((r = corral__idrange_acquire(&ids, err)) < 0)
    return r;
  snprintf(name, sizeof(name), "box-%s", id);
  if ((r = corral__cgroup_create(&b.cg, name, cfg, err)) < 0)
    goto release_ids;
  if ((listen_fd = r = listen_socket(b.sock_path, err)) < 0)
    goto destroy_cgroup;
  if ((r = corral__cgroup_open_join(&b.cg, join, err)) < 0)
    goto close_socket;
  if ((r = socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv)) < 0)
    {
      corral_error_set(err, errno, "socketpair");
      goto close_join;
    }
  b.pid = corral__clone_sandbox(&b.pidfd);
  if (b.pid == 0)
    box_init(cfg, &ctx->sc, join, sv[1], listen_fd, ids.lock_fd);
  if (b.pid < 0)
    {
      r = corral_error_set(err, errno, "create namespaces");
      goto close_pair;
    }
  if ((r = corral__write_id_maps(b.pid, &ids, err)) < 0)
    {
      kill(b.pid, SIGKILL);
      close(b.pidfd);
      b.pidfd = -1;
      goto close_pair;
    }
  b.start_ticks = start_ticks(b.pid);
  /* A sandbox built ahead of demand yields the CPU to those asked for now. */
  if (nice)
    setpriority(PRIO_PROCESS, (id_t) b.pid, nice);
  corral__send_msg(sv[0], MSG_GO, 0, 0, NULL);
  char *rt = corral__box_runtime_json(&b);
  snprintf(rep->runtime, sizeof(rep->runtime), "%s", rt ? rt : "");
  free(rt);
  rep->pid = b.pid;
  *pidfd = corral__steal_fd(&b.pidfd);
  *ready = corral__steal_fd(&sv[0]);
  r = 0;
  /* The sandbox holds its own copies of what follows now. */
close_pair:
  if (sv[0] >= 0)
    close(sv[0]);
  close(sv[1]);
close_join:
  corral__cgroup_close_join(join);
close_socket:
  close(listen_fd);
  if (r < 0)
    unlink(b.sock_path);
destroy_cgroup:
  if (r < 0)
    corral__cgroup_destroy(&b.cg, NULL);
  else
    corral__box_forget(&b);
release_ids:
  corral__idrange_release(&ids);
  return r;
}

static int send_reply(int sock, const struct spawn_reply *rep, int pidfd, int ready)
{
  int fds[2] = { pidfd, ready };
  char cbuf[CMSG_SPACE(sizeof(fds))];
  struct iovec iov = { (void *) rep, sizeof(*rep) };
  struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
  memset(cbuf, 0, sizeof(cbuf));
  if (pidfd >= 0)
    {
      mh.msg_control = cbuf;
      mh.msg_controllen = sizeof(cbuf);
      struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(fds));
      memcpy(CMSG_DATA(c), fds, sizeof(fds));
    }
  return sendmsg(sock, &mh, MSG_NOSIGNAL) < 0 ? -1 : 0;
}

static void serve_one(struct spawner_ctx *ctx, int sock, const struct spawn_req *rq)
{
  corral_config_t cfg;
  corral_error_t err = NULL;
  struct spawn_reply rep;
  int pidfd = -1, ready = -1;

  memset(&rep, 0, sizeof(rep));
  corral_config_init(&cfg);
  cfg.memory_bytes = rq->memory_bytes;
  cfg.cpu_millis = rq->cpu_millis;
  cfg.pids = rq->pids;
  cfg.disk_bytes = rq->disk_bytes;
  cfg.rootfs = rq->rootfs[0] ? (char *) rq->rootfs : NULL;
  cfg.binds[0] = (corral_bind_t) { (char *) ctx->agent_path, (char *) CORRAL__AGENT_PATH, true };
  cfg.n_binds = 1;
  if (ctx->runners_dir)
    cfg.binds[cfg.n_binds++] = (corral_bind_t) { (char *) ctx->runners_dir, (char *) CORRAL__RUNNERS_PATH, true };
  if (spawn_box(ctx, rq->id, rq->nice, &cfg, &rep, &pidfd, &ready, &err) < 0)
    {
      rep.err_no = corral_error_status(err) ? corral_error_status(err) : EIO;
      snprintf(rep.text, sizeof(rep.text), "%s", corral_error_message(err));
      corral_error_release(&err);
    }
  send_reply(sock, &rep, pidfd, ready);
  if (pidfd >= 0)
    close(pidfd);
  if (ready >= 0)
    close(ready);
}

static void __attribute__((noreturn)) spawner_main(struct spawner_ctx *ctx, int sock)
{
  struct spawn_req rq;
  corral_error_t err = NULL;
  /* The daemon's death ends the spawner (not the sandboxes: they are
   * running agents by then, or die with us while still being built). */
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  prctl(PR_SET_NAME, "corrald-spawner");
  /* PID 1s are our children: let the kernel reap them. */
  signal(SIGCHLD, SIG_IGN);
  if (corral__seccomp_build(&ctx->sc, &err) < 0)
    _exit(1);
  corral__seccomp_notify_denials(&ctx->sc);
  for (;;)
    {
      ssize_t n = recv(sock, &rq, sizeof(rq), 0);
      if (n < 0 && errno == EINTR)
        continue;
      if (n != (ssize_t) sizeof(rq))
        _exit(0);
      rq.id[sizeof(rq.id) - 1] = '\0';
      rq.rootfs[sizeof(rq.rootfs) - 1] = '\0';
      serve_one(ctx, sock, &rq);
    }
}

int corral__spawner_start(struct corral__spawner *sp, const char *agent_path, const char *runners_dir,
                          const char *run_dir, corral_error_t *err)
{
  int sv[2];
  char dir[4200];
  struct spawner_ctx ctx = { .agent_path = agent_path, .run_dir = run_dir, .runners_dir = runners_dir };

  memset(sp, 0, sizeof(*sp));
  sp->sock = -1;
  if (!agent_path || access(agent_path, X_OK) < 0)
    return corral_error_set(err, errno ? errno : ENOENT, "agent binary `%s`", agent_path ? agent_path : "");
  snprintf(dir, sizeof(dir), "%s/sb", run_dir);
  if (corral__mkdir_p(dir, 0700, err) < 0)
    return corral_error_wrap(err, "agent socket directory");
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
    return corral_error_set(err, errno, "socketpair");
  sp->pid = fork();
  if (sp->pid < 0)
    {
      close(sv[0]);
      close(sv[1]);
      return corral_error_set(err, errno, "fork the spawner");
    }
  if (sp->pid == 0)
    {
      close(sv[0]);
      spawner_main(&ctx, sv[1]);
    }
  close(sv[1]);
  sp->sock = sv[0];
  sp->run_dir = strdup(run_dir);
  pthread_mutex_init(&sp->lock, NULL);
  return 0;
}

void corral__spawner_stop(struct corral__spawner *sp)
{
  if (sp->sock >= 0)
    close(sp->sock);
  if (sp->pid > 0)
    {
      kill(sp->pid, SIGKILL);
      waitpid(sp->pid, NULL, 0);
    }
  free(sp->run_dir);
  sp->sock = -1;
  sp->pid = 0;
  sp->run_dir = NULL;
}

/* One round trip to the spawner; the lock keeps requests and replies
 * paired. */
static int ask_spawner(struct corral__spawner *sp, const struct spawn_req *rq, struct spawn_reply *rep, int fds[2],
                       corral_error_t *err)
{
  char cbuf[CMSG_SPACE(2 * sizeof(int))];
  struct iovec iov = { rep, sizeof(*rep) };
  struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
  ssize_t n;

  pthread_mutex_lock(&sp->lock);
  if (send(sp->sock, rq, sizeof(*rq), MSG_NOSIGNAL) != (ssize_t) sizeof(*rq))
    n = -1;
  else
    while ((n = recvmsg(sp->sock, &mh, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR)
      ;
  pthread_mutex_unlock(&sp->lock);
  if (n != (ssize_t) sizeof(*rep))
    return corral_error_set(err, n < 0 ? errno : EPIPE, "the sandbox spawner is gone");
  rep->text[sizeof(rep->text) - 1] = rep->runtime[sizeof(rep->runtime) - 1] = '\0';
  if (rep->err_no)
    return corral_error_set(err, rep->err_no, "%s", rep->text);
  struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
  if (!c || c->cmsg_type != SCM_RIGHTS || c->cmsg_len != CMSG_LEN(2 * sizeof(int)))
    return corral_error_set(err, EPROTO, "the spawner sent no fds");
  memcpy(fds, CMSG_DATA(c), 2 * sizeof(int));
  return 0;
}

/* PID 1 sends a struct msg on failure; the agent sends "ready". */
static int wait_ready(int sock, corral_error_t *err)
{
  struct msg m;
  struct pollfd p = { .fd = sock, .events = POLLIN };
  int r;
  while ((r = poll(&p, 1, READY_TIMEOUT_MS)) < 0 && errno == EINTR)
    ;
  if (r == 0)
    return corral_error_set(err, ETIMEDOUT, "the sandbox did not start within %d ms", READY_TIMEOUT_MS);
  ssize_t n = recv(sock, &m, sizeof(m), MSG_DONTWAIT);
  if (n == 5 && memcmp(&m, "ready", 5) == 0)
    return 0;
  if (n == (ssize_t) sizeof(m) && m.type == MSG_ERROR)
    {
      m.text[sizeof(m.text) - 1] = '\0';
      return corral_error_set(err, m.err_no, "%s", m.text);
    }
  return corral_error_set(err, EIO, "the sandbox died while starting");
}

static int parse_runtime(const char *json, struct corral__box *b, corral_error_t *err)
{
  json_error_t je;
  json_t *o = json_loads(json, 0, &je), *paths = NULL;
  const char *sock = NULL, *mode = NULL;
  json_int_t pid = 0, start = 0;
  if (!o || json_unpack(o, "{s:I, s:I, s:s, s:s, s:o}", "pid", &pid, "start", &start, "sock", &sock,
                        "cgroup_mode", &mode, "cgroup", &paths) < 0 || !json_is_array(paths))
    {
      json_decref(o);
      return corral_error_set(err, EINVAL, "bad runtime record");
    }
  b->pid = (pid_t) pid;
  b->start_ticks = (uint64_t) start;
  snprintf(b->sock_path, sizeof(b->sock_path), "%s", sock);
  b->cg.mode = strcmp(mode, "v2") == 0 ? CORRAL_CG_V2 : strcmp(mode, "v1") == 0 ? CORRAL_CG_V1 : CORRAL_CG_NONE;
  for (size_t i = 0; i < json_array_size(paths) && i < CORRAL__CG_V1_MAX; i++)
    {
      const char *p = json_string_value(json_array_get(paths, i));
      if (!p)
        continue;
      if (b->cg.mode == CORRAL_CG_V2)
        b->cg.path = strdup(p);
      else
        b->cg.v1_paths[i] = strdup(p);
    }
  json_decref(o);
  return 0;
}

int corral__box_create(struct corral__spawner *sp, const char *id, const corral_config_t *cfg, int nice,
                       struct corral__box *b, corral_error_t *err)
{
  struct spawn_req rq;
  struct spawn_reply rep;
  int fds[2] = { -1, -1 };

  memset(b, 0, sizeof(*b));
  b->pidfd = -1;
  memset(&rq, 0, sizeof(rq));
  if (strlen(id) >= sizeof(rq.id) || strchr(id, '/'))
    return corral_error_set(err, EINVAL, "bad sandbox id");
  snprintf(rq.id, sizeof(rq.id), "%s", id);
  rq.nice = nice;
  rq.memory_bytes = cfg->memory_bytes;
  rq.cpu_millis = cfg->cpu_millis;
  rq.pids = cfg->pids;
  rq.disk_bytes = cfg->disk_bytes;
  if (cfg->rootfs)
    snprintf(rq.rootfs, sizeof(rq.rootfs), "%s", cfg->rootfs);
  if (ask_spawner(sp, &rq, &rep, fds, err) < 0)
    return -1;
  snprintf(b->id, sizeof(b->id), "%s", id);
  b->pidfd = fds[0];
  int r = parse_runtime(rep.runtime, b, err);
  if (r == 0)
    r = wait_ready(fds[1], err);
  close(fds[1]);
  if (r < 0)
    {
      corral__box_kill(b);
      corral__box_cleanup(b);
      return corral_error_wrap(err, "start sandbox");
    }
  return 0;
}

int corral__box_adopt(const char *id, const char *runtime_json, struct corral__box *b, corral_error_t *err)
{
  memset(b, 0, sizeof(*b));
  b->pidfd = -1;
  snprintf(b->id, sizeof(b->id), "%s", id);
  if (parse_runtime(runtime_json, b, err) < 0)
    return -1;
  b->pidfd = (int) syscall(SYS_pidfd_open, b->pid, 0);
  /* The pid may have been reused since: the start time tells. */
  if (b->pidfd < 0 || start_ticks(b->pid) != b->start_ticks)
    {
      if (b->pidfd >= 0)
        close(b->pidfd);
      b->pidfd = -1;
      return 0;
    }
  return 1;
}

void corral__box_kill(struct corral__box *b)
{
  /* PID 1's death takes every process of its PID namespace with it, fork
   * bombs included, so the signal is enough.  Killing through the cgroup
   * (freeze, kill, thaw: the freezer toggles a global static key, costly
   * on every CPU) is left for a box whose PID 1 we cannot reach. */
  if (b->pidfd >= 0 && syscall(SYS_pidfd_send_signal, b->pidfd, SIGKILL, NULL, 0) == 0)
    return;
  corral__cgroup_kill(&b->cg);
}

void corral__box_renice(struct corral__box *b, int nice)
{
  /* Every process of the box (PID 1 and what it started ahead, such as a
   * pre-started code context): its cgroup lists them. */
  const char *dir = b->cg.mode == CORRAL_CG_V2 ? b->cg.path : b->cg.v1_paths[0];
  char path[4200];
  FILE *f = NULL;
  int pid;
  setpriority(PRIO_PROCESS, (id_t) b->pid, nice);
  if (dir)
    {
      snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
      f = fopen(path, "re");
    }
  while (f && fscanf(f, "%d", &pid) == 1)
    setpriority(PRIO_PROCESS, (id_t) pid, nice);
  if (f)
    fclose(f);
}

uint64_t corral__box_oom_kills(struct corral__box *b)
{
  uint64_t ooms, peak, u, s;
  corral__cgroup_stats(&b->cg, &ooms, &peak, &u, &s);
  return ooms;
}

void corral__box_cleanup(struct corral__box *b)
{
  if (b->pidfd >= 0)
    {
      /* Wait (briefly) for PID 1 to be gone, so the cgroup can go. */
      struct pollfd p = { .fd = b->pidfd, .events = POLLIN };
      poll(&p, 1, 2000);
      close(b->pidfd);
      b->pidfd = -1;
    }
  corral__cgroup_destroy(&b->cg, NULL);
  if (b->sock_path[0])
    unlink(b->sock_path);
}

int corral__box_connect(const struct corral__box *b, corral_error_t *err)
{
  struct sockaddr_un a = { .sun_family = AF_UNIX };
  snprintf(a.sun_path, sizeof(a.sun_path), "%s", b->sock_path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return corral_error_set(err, errno, "socket");
  if (connect(fd, (struct sockaddr *) &a, sizeof(a)) < 0)
    {
      int e = errno;
      close(fd);
      return corral_error_set(err, e, "connect to the sandbox agent");
    }
  return fd;
}

void corral__box_sweep(const char *run_dir, const char *id)
{
  char name[96], path[4200];
  if (strchr(id, '/'))
    return;
  snprintf(name, sizeof(name), "box-%s", id);
  corral__cgroup_remove_named(name);
  snprintf(path, sizeof(path), "%s/sb/%s.sock", run_dir, id);
  unlink(path);
}

/* One daemon's run dir: sockets nobody listens on are sandboxes that died
 * while no corrald watched them (or whose state dir is gone). */
static int gc_run_dir(const char *dir)
{
  char sb[4200];
  int removed = 0;
  snprintf(sb, sizeof(sb), "%s/sb", dir);
  DIR *d = opendir(sb);
  struct dirent *de;
  while (d && (de = readdir(d)) != NULL)
    {
      struct corral__box b;
      corral_error_t err = NULL;
      size_t n = strlen(de->d_name);
      if (n < 6 || strcmp(de->d_name + n - 5, ".sock") != 0 || strncmp(de->d_name, "sb_", 3) != 0)
        continue;
      memset(&b, 0, sizeof(b));
      snprintf(b.sock_path, sizeof(b.sock_path), "%s/%s", sb, de->d_name);
      int fd = corral__box_connect(&b, &err);
      int e = corral_error_status(err);
      corral_error_release(&err);
      if (fd >= 0)
        {
          close(fd);
          continue;
        }
      if (e != ECONNREFUSED && e != ENOENT)
        continue;
      de->d_name[n - 5] = '\0';
      corral__box_sweep(dir, de->d_name);
      removed++;
    }
  if (d)
    closedir(d);
  if (rmdir(sb) == 0 || errno == ENOENT)
    rmdir(dir);
  return removed;
}

int corral__box_gc(void)
{
  const char *base = getenv("CORRAL_RUN_DIR");
  char path[4200];
  int removed = 0;
  if (!base || !*base)
    base = "/run/corral";
  DIR *d = opendir(base);
  struct dirent *de;
  while (d && (de = readdir(d)) != NULL)
    if (strncmp(de->d_name, "d-", 2) == 0)
      {
        snprintf(path, sizeof(path), "%s/%s", base, de->d_name);
        removed += gc_run_dir(path);
      }
  if (d)
    closedir(d);
  return removed;
}
