/* The in-sandbox agent: PID 1 of a corrald sandbox.
 *
 * One thread, one poll loop over: the listening socket, a signalfd for
 * SIGCHLD, the daemon's connections, the pipes of running commands, and
 * command deadlines.  Commands are children in their own session; their
 * output goes to the connection attached to them, or is kept (up to the
 * command's cap) until one attaches.  File requests are handed to a forked
 * process (files.c) so that big transfers never stall this loop.
 *
 * The agent was exec'd after the sandbox was locked down: it runs as the
 * sandbox user with no capabilities, under seccomp and Landlock, exactly
 * like the commands it starts.  It is not dumpable, so those commands (same
 * uid) cannot ptrace it or read its memory; and as PID 1 of its namespace it
 * ignores every signal they could send it, SIGKILL included. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <linux/seccomp.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <corral/agent.h>
#include "guest.h"
#include "../common/utils.h"
#include "../isolate/isolate.h"

#define READ_CHUNK (64u << 10)
#define BACKLOG_LIMIT (4u << 20) /* stop reading a command while its client lags this far */
#define MAX_CONNS 512
#define MAX_CMDS 1024
#define DEFAULT_MAX_OUTPUT (1u << 20)

struct chunk
{
  struct chunk *next;
  size_t len;
  uint8_t data[];
};

struct conn;

struct cmd
{
  struct cmd *next;
  pid_t pid;
  char **argv;
  bool background, exited;
  bool tty;        /* on a terminal: out_fd is its master, in_fd a dup */
  int out_fd, err_fd, in_fd;
  uint8_t *in_buf; /* stdin not yet written */
  size_t in_len;
  bool in_eof;     /* close stdin once in_buf is written */
  uint64_t started_ms, deadline_ms, max_output;
  uint64_t bytes[2], dropped[2];
  int status, reason;
  uint64_t duration_ms;
  struct chunk *log, *log_tail; /* frames kept for a later attach */
  struct conn *sub;
  uint64_t denied;              /* seccomp denials in its session */
  int denied_nr[8];             /* the first distinct syscalls denied */
  size_t n_denied_nr;
};

struct conn
{
  struct conn *next;
  int fd;
  struct cmd *cmd;  /* foreground or attached command */
  uint8_t *in;      /* partial frame being received */
  size_t in_len, in_cap;
  uint8_t *out;     /* frames not yet sent */
  size_t out_len, out_off, out_cap;
  bool got_request, close_after_flush, dead;
};

static struct conn *conns;
static struct cmd *cmds;
static int listen_fd = CORRAL_AGENT_LISTEN_FD, sig_fd = -1, notif_fd = -1;

/* ---- output queues ---- */

static void conn_queue(struct conn *c, const uint8_t *b, size_t len)
{
  if (c->dead)
    return;
  if (c->out_len + len > c->out_cap)
    {
      size_t cap = c->out_cap ? c->out_cap : 4096;
      while (cap < c->out_len + len)
        cap *= 2;
      uint8_t *n = realloc(c->out, cap);
      if (!n)
        {
          c->dead = true;
          return;
        }
      c->out = n;
      c->out_cap = cap;
    }
  memcpy(c->out + c->out_len, b, len);
  c->out_len += len;
}

static void conn_queue_frame(struct conn *c, struct corral__frame *f)
{
  size_t len;
  const uint8_t *b = corral__frame_finish(f, &len);
  if (b)
    conn_queue(c, b, len);
  else
    c->dead = true;
  corral__frame_release(f);
}

static void conn_reply(struct conn *c, uint8_t type, uint8_t tag, uint64_t v)
{
  struct corral__frame f;
  corral__frame_init(&f, type);
  if (tag)
    corral__frame_add_u64(&f, tag, v);
  conn_queue_frame(c, &f);
}

static void conn_error(struct conn *c, int err_no, const char *text)
{
  struct corral__frame f;
  corral__frame_init(&f, CORRAL__R_ERROR);
  corral__frame_add_u64(&f, CORRAL__T_ERRNO, (uint64_t) err_no);
  corral__frame_add_str(&f, CORRAL__T_TEXT, text);
  conn_queue_frame(c, &f);
  c->close_after_flush = true;
}

static void conn_flush(struct conn *c)
{
  while (!c->dead && c->out_off < c->out_len)
    {
      ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0 && errno == EAGAIN)
        return;
      if (n <= 0)
        {
          c->dead = true;
          return;
        }
      c->out_off += (size_t) n;
    }
  c->out_off = c->out_len = 0;
  if (c->close_after_flush)
    c->dead = true;
}

static size_t conn_backlog(const struct conn *c)
{
  return c->out_len - c->out_off;
}

/* ---- commands ---- */

static struct cmd *cmd_find(pid_t pid)
{
  for (struct cmd *x = cmds; x; x = x->next)
    if (x->pid == pid)
      return x;
  return NULL;
}

static void close_pipes(struct cmd *x)
{
  for (int *fd = &x->out_fd; fd <= &x->in_fd; fd++)
    if (*fd >= 0)
      {
        close(*fd);
        *fd = -1;
      }
}

static void cmd_free(struct cmd *x)
{
  struct cmd **pp = &cmds;
  while (*pp && *pp != x)
    pp = &(*pp)->next;
  if (*pp)
    *pp = x->next;
  close_pipes(x);
  while (x->log)
    {
      struct chunk *n = x->log->next;
      free(x->log);
      x->log = n;
    }
  corral__strv_free(x->argv);
  free(x->in_buf);
  free(x);
}

static void cmd_keep(struct cmd *x, const uint8_t *b, size_t len)
{
  struct chunk *k = malloc(sizeof(*k) + len);
  if (!k)
    return;
  k->next = NULL;
  k->len = len;
  memcpy(k->data, b, len);
  if (x->log_tail)
    x->log_tail->next = k;
  else
    x->log = k;
  x->log_tail = k;
}

/* Output of stream s (0 stdout, 1 stderr): counted against the cap, sent
 * or kept; what passes the cap is dropped and reported in the exit frame. */
static void cmd_output(struct cmd *x, int s, const uint8_t *data, size_t n)
{
  size_t keep = n;
  if (x->bytes[s] >= x->max_output)
    keep = 0;
  else if (x->bytes[s] + n > x->max_output)
    keep = (size_t) (x->max_output - x->bytes[s]);
  x->bytes[s] += keep;
  x->dropped[s] += n - keep;
  if (!keep)
    return;
  struct corral__frame f;
  size_t len;
  corral__frame_init(&f, s ? CORRAL__R_STDERR : CORRAL__R_STDOUT);
  corral__frame_add(&f, CORRAL__T_DATA, data, keep);
  const uint8_t *b = corral__frame_finish(&f, &len);
  if (b && x->sub)
    conn_queue(x->sub, b, len);
  else if (b && x->background)
    cmd_keep(x, b, len);
  corral__frame_release(&f);
}

/* Read what a pipe holds now (one chunk, or all); at EOF close it. */
static void cmd_drain(struct cmd *x, int s, bool all)
{
  static uint8_t buf[READ_CHUNK];
  int *fd = s ? &x->err_fd : &x->out_fd;
  while (*fd >= 0)
    {
      ssize_t n = read(*fd, buf, sizeof(buf));
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0 && errno == EAGAIN)
        return;
      if (n <= 0)
        {
          close(*fd);
          *fd = -1;
          return;
        }
      cmd_output(x, s, buf, (size_t) n);
      if (!all)
        return;
    }
}

static void exit_frame(struct cmd *x, struct corral__frame *f)
{
  corral__frame_init(f, CORRAL__R_EXIT);
  corral__frame_add_u64(f, CORRAL__T_PID, (uint64_t) x->pid);
  corral__frame_add_u64(f, CORRAL__T_STATUS, (uint64_t) x->status);
  corral__frame_add_u64(f, CORRAL__T_REASON, (uint64_t) x->reason);
  corral__frame_add_u64(f, CORRAL__T_DURATION_MS, x->duration_ms);
  corral__frame_add_u64(f, CORRAL__T_DROPPED_OUT, x->dropped[0]);
  corral__frame_add_u64(f, CORRAL__T_DROPPED_ERR, x->dropped[1]);
  corral__frame_add_u64(f, CORRAL__T_DENIED, x->denied);
  for (size_t i = 0; i < x->n_denied_nr; i++)
    corral__frame_add_u64(f, CORRAL__T_SYSCALL, (uint64_t) x->denied_nr[i]);
}

/* The command ended: what its pipes hold now is its output (a grandchild
 * that keeps the pipes open does not hold the result back).  Tell the
 * client, or keep the result of a background command for an attach. */
static void cmd_finish(struct cmd *x)
{
  struct corral__frame f;
  cmd_drain(x, 0, true);
  cmd_drain(x, 1, true);
  if (x->sub)
    {
      exit_frame(x, &f);
      conn_queue_frame(x->sub, &f);
      x->sub->close_after_flush = true;
      x->sub->cmd = NULL;
      cmd_free(x);
    }
  else if (!x->background)
    cmd_free(x);
  else
    close_pipes(x);
}

static void reap(void)
{
  struct signalfd_siginfo si;
  int st;
  pid_t p;
  while (read(sig_fd, &si, sizeof(si)) == (ssize_t) sizeof(si))
    ;
  while ((p = waitpid(-1, &st, WNOHANG)) > 0)
    {
      struct cmd *x = cmd_find(p);
      if (!x || x->exited)
        continue;
      x->exited = true;
      x->status = st;
      if (x->reason != CORRAL__CMD_TIMEOUT)
        x->reason = WIFSIGNALED(st) ? CORRAL__CMD_SIGNALED : CORRAL__CMD_EXITED;
      x->duration_ms = corral__now_ms() - x->started_ms;
      cmd_finish(x);
    }
}

static void write_stdin(struct cmd *x)
{
  while (x->in_fd >= 0 && x->in_len)
    {
      ssize_t n = write(x->in_fd, x->in_buf, x->in_len);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0 && errno == EAGAIN)
        return;
      if (n < 0)
        {
          x->in_len = 0;
          break;
        }
      memmove(x->in_buf, x->in_buf + n, x->in_len - (size_t) n);
      x->in_len -= (size_t) n;
    }
  if (x->in_eof && x->in_len == 0 && x->in_fd >= 0)
    {
      close(x->in_fd);
      x->in_fd = -1;
    }
}

static int add_stdin(struct cmd *x, const uint8_t *d, size_t l, bool eof)
{
  if (x->in_fd < 0)
    return l ? (errno = EPIPE, -1) : 0;
  if (l)
    {
      uint8_t *n = realloc(x->in_buf, x->in_len + l);
      if (!n)
        return -1;
      memcpy(n + x->in_len, d, l);
      x->in_buf = n;
      x->in_len += l;
    }
  x->in_eof |= eof;
  write_stdin(x);
  return 0;
}

/* ---- starting a command ---- */

static char **build_env(char **extra)
{
  static const char *const base[] = { "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                                      "HOME=/home/user", "LANG=C.UTF-8", "USER=user", "SHELL=/bin/sh", NULL };
  size_t n = 0, cap = 8;
  for (char **e = extra; e && *e; e++)
    cap++;
  char **env = calloc(cap, sizeof(*env));
  if (!env)
    return NULL;
  for (const char *const *b = base; *b; b++)
    env[n++] = (char *) *b;
  for (char **e = extra; e && *e; e++)
    {
      size_t klen = strcspn(*e, "=") + 1, j;
      /* Later entries override earlier ones, the defaults included. */
      for (j = 0; j < n && strncmp(env[j], *e, klen) != 0; j++)
        ;
      env[j] = *e;
      n += j == n;
    }
  return env;
}

struct exec_failure
{
  int err_no;
  char text[256];
};

static void __attribute__((noreturn)) command_child(char **argv, char **env, const char *cwd, int fds[3], int failfd,
                                                    bool tty)
{
  sigset_t none;
  sigemptyset(&none);
  for (int s = 1; s < NSIG; s++)
    signal(s, SIG_DFL);
  sigprocmask(SIG_SETMASK, &none, NULL);
  /* Own session and process group: signals and timeouts reach the whole
   * job, and the command has no controlling terminal. */
  setsid();
  if (dup2(fds[0], 0) < 0 || dup2(fds[1], 1) < 0 || dup2(fds[2], 2) < 0 || dup3(failfd, 3, O_CLOEXEC) < 0)
    _exit(125);
  /* A terminal session (E2B's PTYs) gets its terminal as controlling tty,
   * so that job control and ^C work; TIOCSTI stays blocked by seccomp. */
  if (tty && ioctl(0, TIOCSCTTY, 0) < 0)
    _exit(125);
  corral__close_fds_from(4);
  if (chdir(cwd) < 0)
    {
      struct exec_failure f = { .err_no = errno };
      snprintf(f.text, sizeof(f.text), "working directory `%s`", cwd);
      corral__write_all(3, &f, sizeof(f));
      _exit(125);
    }
  execvpe(argv[0], argv, env);
  int e = errno;
  dprintf(2, "corral: %s: %s\n", argv[0], e == ENOENT ? "command not found" : strerror(e));
  _exit(e == ENOENT ? 127 : 126);
}

/* Pipes for stdin, stdout, stderr: ours non-blocking, theirs blocking. */
static int make_pipes(int ours[3], int theirs[3])
{
  int p[3][2];
  for (int i = 0; i < 3; i++)
    if (pipe2(p[i], O_CLOEXEC) < 0)
      {
        while (i-- > 0)
          close(p[i][0]), close(p[i][1]);
        return -1;
      }
  ours[0] = p[0][1], theirs[0] = p[0][0];
  ours[1] = p[1][0], theirs[1] = p[1][1];
  ours[2] = p[2][0], theirs[2] = p[2][1];
  for (int i = 0; i < 3; i++)
    fcntl(ours[i], F_SETFL, O_NONBLOCK);
  return 0;
}

/* A new terminal of the sandbox's devpts: the master ours (non-blocking),
 * the slave theirs on all three fds. */
static int make_tty(int ours[3], int theirs[3], unsigned cols, unsigned rows)
{
  int n = 0, unlock = 0;
  char name[64];
  int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0)
    return -1;
  struct winsize ws = { .ws_row = (unsigned short) rows, .ws_col = (unsigned short) cols };
  if (ioctl(master, TIOCSPTLCK, &unlock) < 0 || ioctl(master, TIOCGPTN, &n) < 0 || ioctl(master, TIOCSWINSZ, &ws) < 0)
    {
      close(master);
      return -1;
    }
  snprintf(name, sizeof(name), "/dev/pts/%d", n);
  int slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
  ours[0] = fcntl(master, F_DUPFD_CLOEXEC, 0);
  if (slave < 0 || ours[0] < 0)
    {
      if (slave >= 0)
        close(slave);
      close(master);
      return -1;
    }
  fcntl(master, F_SETFL, O_NONBLOCK);
  ours[1] = master, ours[2] = -1;
  theirs[0] = slave, theirs[1] = dup(slave), theirs[2] = dup(slave);
  return 0;
}

static struct cmd *cmd_new(const struct corral__msg *m)
{
  struct cmd *x = calloc(1, sizeof(*x));
  uint64_t v = 0;
  if (!x)
    return NULL;
  x->out_fd = x->err_fd = x->in_fd = -1;
  x->argv = corral__msg_strv(m, CORRAL__T_ARGV, NULL);
  x->max_output = corral__msg_u64(m, CORRAL__T_MAX_OUTPUT, &v) && v ? v : DEFAULT_MAX_OUTPUT;
  x->background = corral__msg_u64(m, CORRAL__T_BACKGROUND, &v) && v;
  x->started_ms = corral__now_ms();
  if (corral__msg_u64(m, CORRAL__T_TIMEOUT_MS, &v) && v)
    x->deadline_ms = x->started_ms + v;
  return x;
}

static int spawn(struct cmd *x, const struct corral__msg *m, struct exec_failure *f)
{
  int ours[3], theirs[3], fail[2];
  cleanup_free char *cwd = corral__msg_strdup(m, CORRAL__T_CWD);
  char **extra = corral__msg_strv(m, CORRAL__T_ENV, NULL);
  cleanup_free char **env = build_env(extra);
  uint64_t cols = 0, rows = 0;
  int r = -1;
  x->tty = corral__msg_u64(m, CORRAL__T_COLS, &cols) && corral__msg_u64(m, CORRAL__T_ROWS, &rows) && cols && rows
           && cols < 10000 && rows < 10000;
  if (!env || (x->tty ? make_tty(ours, theirs, (unsigned) cols, (unsigned) rows) : make_pipes(ours, theirs)) < 0)
    goto out;
  if (pipe2(fail, O_CLOEXEC) < 0)
    {
      for (int i = 0; i < 3; i++)
        close(ours[i]), close(theirs[i]);
      goto out;
    }
  x->pid = fork();
  if (x->pid == 0)
    command_child(x->argv, env, cwd && *cwd ? cwd : "/home/user", theirs, fail[1], x->tty);
  f->err_no = x->pid < 0 ? errno : 0;
  close(fail[1]);
  if (x->pid > 0)
    r = corral__read_all(fail[0], f, sizeof(*f)) == (ssize_t) sizeof(*f) ? -1 : 0;
  else
    snprintf(f->text, sizeof(f->text), "fork");
  close(fail[0]);
  for (int i = 0; i < 3; i++)
    close(theirs[i]);
  if (r == 0)
    x->in_fd = ours[0], x->out_fd = ours[1], x->err_fd = ours[2];
  else
    for (int i = 0; i < 3; i++)
      close(ours[i]);
out:
  if (r < 0 && f->err_no == 0)
    f->err_no = errno ? errno : ENOMEM;
  corral__strv_free(extra);
  return r;
}

static void start_command(struct conn *c, const struct corral__msg *m)
{
  struct exec_failure f = { 0 };
  struct cmd *x = cmd_new(m);
  uint64_t v = 0;
  if (!x || !x->argv || !x->argv[0])
    {
      if (x)
        cmd_free(x);
      return conn_error(c, EINVAL, "a command is required");
    }
  if (spawn(x, m, &f) < 0)
    {
      f.text[sizeof(f.text) - 1] = '\0';
      if (x->pid > 0)
        waitpid(x->pid, NULL, 0);
      cmd_free(x);
      return conn_error(c, f.err_no, f.text[0] ? f.text : "start the command");
    }
  x->next = cmds;
  cmds = x;
  conn_reply(c, CORRAL__R_STARTED, CORRAL__T_PID, (uint64_t) x->pid);
  /* A background command keeps stdin open for later writes; a foreground
   * one gets EOF at once unless the client streams stdin. */
  if (!corral__msg_u64(m, CORRAL__T_STDIN_OPEN, &v) || !v)
    add_stdin(x, NULL, 0, !x->background);
  if (x->background)
    c->close_after_flush = true;
  else
    {
      c->cmd = x;
      x->sub = c;
    }
}

/* ---- requests ---- */

static void attach(struct conn *c, struct cmd *x)
{
  c->cmd = x;
  x->sub = c;
  for (struct chunk *k = x->log; k; k = k->next)
    conn_queue(c, k->data, k->len);
  while (x->log)
    {
      struct chunk *n = x->log->next;
      free(x->log);
      x->log = n;
    }
  x->log_tail = NULL;
  if (x->exited)
    cmd_finish(x);
}

static void list_commands(struct conn *c)
{
  for (struct cmd *x = cmds; x; x = x->next)
    {
      struct corral__frame f;
      corral__frame_init(&f, CORRAL__R_ENTRY);
      corral__frame_add_u64(&f, CORRAL__T_PID, (uint64_t) x->pid);
      for (char **a = x->argv; a && *a; a++)
        corral__frame_add_str(&f, CORRAL__T_ARGV, *a);
      corral__frame_add_u64(&f, CORRAL__T_BACKGROUND, x->background);
      corral__frame_add_u64(&f, CORRAL__T_RUNNING, !x->exited);
      corral__frame_add_u64(&f, CORRAL__T_STARTED_MS, x->started_ms);
      if (x->exited)
        corral__frame_add_u64(&f, CORRAL__T_STATUS, (uint64_t) x->status);
      conn_queue_frame(c, &f);
    }
  conn_reply(c, CORRAL__M_END, 0, 0);
  c->close_after_flush = true;
}

/* File requests get their own process and the connection. */
static void fork_files(struct conn *c, const struct corral__msg *m)
{
  pid_t p = fork();
  if (p == 0)
    {
      sigset_t none;
      sigemptyset(&none);
      sigprocmask(SIG_SETMASK, &none, NULL);
      /* A worker needs its connection, nothing else of the agent's. */
      close(listen_fd);
      if (notif_fd >= 0)
        close(notif_fd);
      int fl = fcntl(c->fd, F_GETFL);
      fcntl(c->fd, F_SETFL, fl & ~O_NONBLOCK);
      _exit(corral__files_serve(c->fd, m));
    }
  if (p < 0)
    conn_error(c, errno, "fork a file worker");
  else
    c->dead = true;
}

static struct cmd *request_cmd(struct conn *c, const struct corral__msg *m)
{
  uint64_t pid;
  struct cmd *x;
  if (!corral__msg_u64(m, CORRAL__T_PID, &pid) || !(x = cmd_find((pid_t) pid)))
    {
      conn_error(c, ESRCH, "no such command");
      return NULL;
    }
  return x;
}

static void handle_stdin_req(struct conn *c, const struct corral__msg *m)
{
  struct cmd *x = request_cmd(c, m);
  const uint8_t *d = NULL;
  uint32_t l = 0;
  uint64_t eof = 0;
  if (!x)
    return;
  corral__msg_get(m, CORRAL__T_DATA, &d, &l);
  corral__msg_u64(m, CORRAL__T_EOF, &eof);
  if (add_stdin(x, d, l, eof != 0) < 0)
    conn_error(c, errno, "stdin of the command is closed");
  else
    conn_reply(c, CORRAL__R_OK, 0, 0);
  c->close_after_flush = true;
}

static void handle_signal_req(struct conn *c, const struct corral__msg *m)
{
  struct cmd *x = request_cmd(c, m);
  uint64_t sig = 0;
  if (!x)
    return;
  if (!corral__msg_u64(m, CORRAL__T_SIGNAL, &sig) || sig == 0 || sig >= 65)
    return conn_error(c, EINVAL, "invalid signal");
  if (!x->exited && kill(-x->pid, (int) sig) < 0 && kill(x->pid, (int) sig) < 0)
    return conn_error(c, errno, "signal the command");
  conn_reply(c, CORRAL__R_OK, 0, 0);
  c->close_after_flush = true;
}

static void handle_resize_req(struct conn *c, const struct corral__msg *m)
{
  struct cmd *x = request_cmd(c, m);
  uint64_t cols = 0, rows = 0;
  if (!x)
    return;
  if (!x->tty || x->out_fd < 0)
    return conn_error(c, ENOTTY, "the command has no terminal");
  if (!corral__msg_u64(m, CORRAL__T_COLS, &cols) || !corral__msg_u64(m, CORRAL__T_ROWS, &rows) || !cols || !rows
      || cols >= 10000 || rows >= 10000)
    return conn_error(c, EINVAL, "invalid terminal size");
  struct winsize ws = { .ws_row = (unsigned short) rows, .ws_col = (unsigned short) cols };
  if (ioctl(x->out_fd, TIOCSWINSZ, &ws) < 0)
    return conn_error(c, errno, "resize the terminal");
  conn_reply(c, CORRAL__R_OK, 0, 0);
  c->close_after_flush = true;
}

static bool peer_gone(const struct conn *c)
{
  struct pollfd p = { .fd = c->fd, .events = POLLRDHUP };
  return c->dead || (poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)));
}

/* The first frame of a connection says what it is for. */
static void handle_request(struct conn *c, const struct corral__msg *m)
{
  struct cmd *x;
  switch (m->type)
    {
    case CORRAL__REQ_PING:
      conn_reply(c, CORRAL__R_OK, CORRAL__T_PID, (uint64_t) getpid());
      c->close_after_flush = true;
      break;
    case CORRAL__REQ_EXEC: start_command(c, m); break;
    case CORRAL__REQ_ATTACH:
      /* A client that detached a moment ago may not have been noticed yet. */
      if ((x = request_cmd(c, m)) && x->sub && peer_gone(x->sub))
        {
          x->sub->dead = true;
          x->sub->cmd = NULL;
          x->sub = NULL;
        }
      if (x && x->sub)
        conn_error(c, EBUSY, "another client is attached to this command");
      else if (x)
        attach(c, x);
      break;
    case CORRAL__REQ_STDIN: handle_stdin_req(c, m); break;
    case CORRAL__REQ_SIGNAL: handle_signal_req(c, m); break;
    case CORRAL__REQ_RESIZE: handle_resize_req(c, m); break;
    case CORRAL__REQ_LIST: list_commands(c); break;
    case CORRAL__REQ_FREAD: case CORRAL__REQ_FWRITE: case CORRAL__REQ_FLIST: case CORRAL__REQ_FSTAT:
    case CORRAL__REQ_MKDIR: case CORRAL__REQ_MOVE: case CORRAL__REQ_REMOVE:
    case CORRAL__REQ_WATCH: fork_files(c, m); break;
    default: conn_error(c, EINVAL, "unknown request"); break;
    }
}

/* Frames after the first one: stdin of a foreground command. */
static void handle_followup(struct conn *c, const struct corral__msg *m)
{
  const uint8_t *d = NULL;
  uint32_t l = 0;
  if (!c->cmd)
    return;
  if (m->type == CORRAL__M_DATA && corral__msg_get(m, CORRAL__T_DATA, &d, &l))
    add_stdin(c->cmd, d, l, false);
  else if (m->type == CORRAL__M_END)
    add_stdin(c->cmd, NULL, 0, true);
}

static void conn_read(struct conn *c)
{
  if (c->in_cap - c->in_len < READ_CHUNK)
    {
      uint8_t *n = realloc(c->in, c->in_cap + READ_CHUNK);
      if (!n)
        {
          c->dead = true;
          return;
        }
      c->in = n;
      c->in_cap += READ_CHUNK;
    }
  ssize_t n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, MSG_DONTWAIT);
  if (n < 0 && (errno == EINTR || errno == EAGAIN))
    return;
  if (n <= 0)
    {
      c->dead = true;
      return;
    }
  c->in_len += (size_t) n;
  size_t off = 0;
  /* Whole frames only; a partial one waits for more bytes. */
  while (!c->dead && c->in_len - off >= 4)
    {
      uint32_t len;
      struct corral__msg m;
      memcpy(&len, c->in + off, 4);
      if (len == 0 || len > CORRAL__FRAME_MAX)
        {
          c->dead = true;
          break;
        }
      if (c->in_len - off - 4 < len)
        break;
      if (corral__msg_parse(c->in + off + 4, len, &m) < 0)
        {
          c->dead = true;
          break;
        }
      if (c->got_request)
        handle_followup(c, &m);
      else
        handle_request(c, &m);
      c->got_request = true;
      off += 4 + len;
    }
  memmove(c->in, c->in + off, c->in_len - off);
  c->in_len -= off;
}

/* ---- seccomp denials ---- */

/* A call the policy refuses, held by the kernel until we answer: refuse it
 * (EPERM, as the filter alone would) and charge it to the command whose
 * session the caller is in. */
static void answer_denial(void)
{
  struct seccomp_notif req;
  struct seccomp_notif_resp resp;
  memset(&req, 0, sizeof(req));
  if (ioctl(notif_fd, SECCOMP_IOCTL_NOTIF_RECV, &req) < 0)
    return;
  memset(&resp, 0, sizeof(resp));
  resp.id = req.id;
  resp.error = -EPERM;
  ioctl(notif_fd, SECCOMP_IOCTL_NOTIF_SEND, &resp);
  struct cmd *x = cmd_find(getsid((pid_t) req.pid));
  if (!x)
    return;
  x->denied++;
  for (size_t i = 0; i < x->n_denied_nr; i++)
    if (x->denied_nr[i] == req.data.nr)
      return;
  if (x->n_denied_nr < sizeof(x->denied_nr) / sizeof(*x->denied_nr))
    x->denied_nr[x->n_denied_nr++] = req.data.nr;
}

/* ---- the loop ---- */

static void accept_conns(void)
{
  size_t n = 0;
  for (struct conn *c = conns; c; c = c->next)
    n++;
  for (;;)
    {
      int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (fd < 0)
        return;
      struct conn *c = n < MAX_CONNS ? calloc(1, sizeof(*c)) : NULL;
      if (!c)
        {
          close(fd);
          continue;
        }
      c->fd = fd;
      c->next = conns;
      conns = c;
      n++;
    }
}

/* A client that went away: a foreground command dies with it (nobody can
 * see its result), an attached background one goes on alone. */
static void conn_close(struct conn *c)
{
  struct cmd *x = c->cmd;
  if (x)
    {
      x->sub = NULL;
      if (!x->background && !x->exited)
        {
          kill(-x->pid, SIGKILL);
          kill(x->pid, SIGKILL);
        }
    }
  close(c->fd);
  free(c->in);
  free(c->out);
  free(c);
}

static void sweep_conns(void)
{
  struct conn **pp = &conns;
  while (*pp)
    {
      struct conn *c = *pp;
      if (c->dead)
        {
          *pp = c->next;
          conn_close(c);
        }
      else
        pp = &c->next;
    }
}

static int check_deadlines(void)
{
  uint64_t now = corral__now_ms(), next = UINT64_MAX;
  for (struct cmd *x = cmds; x; x = x->next)
    {
      if (x->exited || !x->deadline_ms)
        continue;
      if (now >= x->deadline_ms)
        {
          x->reason = CORRAL__CMD_TIMEOUT;
          x->deadline_ms = 0;
          kill(-x->pid, SIGKILL);
          kill(x->pid, SIGKILL);
        }
      else if (x->deadline_ms < next)
        next = x->deadline_ms;
    }
  return next == UINT64_MAX ? -1 : (int) (next - now);
}

enum { K_LISTEN, K_SIG, K_NOTIF, K_CONN, K_OUT, K_ERR, K_IN };
struct slot
{
  int kind;
  void *p;
};

static size_t fill_polls(struct pollfd *pf, struct slot *sl, size_t cap)
{
  size_t n = 0;
  pf[n] = (struct pollfd) { listen_fd, POLLIN, 0 }, sl[n++] = (struct slot) { K_LISTEN, NULL };
  pf[n] = (struct pollfd) { sig_fd, POLLIN, 0 }, sl[n++] = (struct slot) { K_SIG, NULL };
  if (notif_fd >= 0)
    pf[n] = (struct pollfd) { notif_fd, POLLIN, 0 }, sl[n++] = (struct slot) { K_NOTIF, NULL };
  for (struct conn *c = conns; c && n < cap; c = c->next)
    {
      short ev = (short) (POLLIN | (conn_backlog(c) ? POLLOUT : 0));
      pf[n] = (struct pollfd) { c->fd, ev, 0 }, sl[n++] = (struct slot) { K_CONN, c };
    }
  for (struct cmd *x = cmds; x && n + 3 <= cap; x = x->next)
    {
      /* Backpressure: a lagging client pauses the command's output. */
      bool lag = x->sub && conn_backlog(x->sub) > BACKLOG_LIMIT;
      if (x->out_fd >= 0 && !lag)
        pf[n] = (struct pollfd) { x->out_fd, POLLIN, 0 }, sl[n++] = (struct slot) { K_OUT, x };
      if (x->err_fd >= 0 && !lag)
        pf[n] = (struct pollfd) { x->err_fd, POLLIN, 0 }, sl[n++] = (struct slot) { K_ERR, x };
      if (x->in_fd >= 0 && x->in_len)
        pf[n] = (struct pollfd) { x->in_fd, POLLOUT, 0 }, sl[n++] = (struct slot) { K_IN, x };
    }
  return n;
}

static bool cmd_alive(const struct cmd *p)
{
  for (struct cmd *x = cmds; x; x = x->next)
    if (x == p)
      return true;
  return false;
}

static void dispatch(const struct pollfd *pf, const struct slot *sl, size_t n)
{
  for (size_t i = 0; i < n; i++)
    {
      if (!pf[i].revents)
        continue;
      if (sl[i].kind == K_LISTEN)
        accept_conns();
      else if (sl[i].kind == K_NOTIF)
        answer_denial();
      else if (sl[i].kind == K_CONN)
        {
          struct conn *c = sl[i].p;
          if (!c->dead && (pf[i].revents & POLLOUT))
            conn_flush(c);
          if (!c->dead && (pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
            conn_read(c);
        }
      /* A command may have been freed by an earlier slot of this round. */
      else if (sl[i].kind != K_SIG && sl[i].kind != K_NOTIF && cmd_alive(sl[i].p))
        {
          struct cmd *x = sl[i].p;
          if (sl[i].kind == K_IN)
            write_stdin(x);
          else if ((sl[i].kind == K_OUT && x->out_fd == pf[i].fd) || (sl[i].kind == K_ERR && x->err_fd == pf[i].fd))
            cmd_drain(x, sl[i].kind == K_ERR, false);
        }
    }
}

static int agent_setup(void)
{
  sigset_t set;
  /* Same uid as the commands: only non-dumpability keeps them from
   * ptracing PID 1 or reading its memory. */
  if (prctl(PR_SET_DUMPABLE, 0) < 0)
    return -1;
  sigfillset(&set);
  sigprocmask(SIG_SETMASK, &set, NULL);
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  sig_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
  if (sig_fd < 0)
    return -1;
  fcntl(listen_fd, F_SETFL, O_NONBLOCK);
  fcntl(listen_fd, F_SETFD, FD_CLOEXEC);
  fcntl(CORRAL_AGENT_LOCK_FD, F_SETFD, FD_CLOEXEC);
  /* The seccomp listener must never reach a command: whoever holds it can
   * answer the sandbox's refused calls. */
  if (fcntl(CORRAL_AGENT_SECCOMP_FD, F_SETFD, FD_CLOEXEC) == 0)
    notif_fd = CORRAL_AGENT_SECCOMP_FD;
  /* Tell the launcher we serve, then forget it. */
  if (send(CORRAL_AGENT_READY_FD, "ready", 5, MSG_NOSIGNAL) < 0)
    return -1;
  close(CORRAL_AGENT_READY_FD);
  return 0;
}

int corral_agent_main(void)
{
  static struct pollfd pf[MAX_CONNS + 3 * MAX_CMDS + 3];
  static struct slot sl[MAX_CONNS + 3 * MAX_CMDS + 3];
  if (agent_setup() < 0)
    return 125;
  for (;;)
    {
      int timeout = check_deadlines();
      size_t n = fill_polls(pf, sl, sizeof(pf) / sizeof(*pf));
      int r = poll(pf, n, timeout);
      if (r < 0 && errno != EINTR)
        return 125;
      if (r > 0)
        dispatch(pf, sl, n);
      reap();
      for (struct conn *c = conns; c; c = c->next)
        if (conn_backlog(c) || c->close_after_flush)
          conn_flush(c);
      sweep_conns();
    }
}
