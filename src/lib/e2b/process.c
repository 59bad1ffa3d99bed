/* envd's process.Process service over the sandbox agent's commands.
 *
 * E2B processes outlive the request that started them (a client may
 * disconnect and Connect again), so every Start runs as a corral background
 * command and the stream is an attach to it: the agent keeps what is printed
 * while nobody is attached. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include "e2b.h"
#include "../common/utils.h"

#define E2B_MAX_OUTPUT (256ull << 20) /* per command, kept by the agent while detached */
#define MAX_PROCS 4096                /* remembered tags/cwds, oldest dropped */
#define DEFAULT_KEEPALIVE_MS 30000

/* ---- remembered process details ---- */

static void proc_free(struct e2b_proc *p)
{
  free(p->tag);
  free(p->cwd);
  json_decref(p->envs);
  free(p);
}

static void remember(struct daemon *d, const char *sandbox, pid_t pid, const char *tag, const char *cwd, json_t *envs,
                     bool pty)
{
  struct e2b_proc *p = calloc(1, sizeof(*p));
  if (!p)
    return;
  snprintf(p->sandbox, sizeof(p->sandbox), "%s", sandbox);
  p->pid = pid;
  p->tag = tag ? strdup(tag) : NULL;
  p->cwd = cwd ? strdup(cwd) : NULL;
  p->envs = envs ? json_incref(envs) : json_object();
  p->pty = pty;
  pthread_mutex_lock(&d->e2b->lock);
  p->next = d->e2b->procs;
  d->e2b->procs = p;
  if (++d->e2b->n_procs > MAX_PROCS)
    {
      struct e2b_proc **pp = &d->e2b->procs;
      while ((*pp)->next)
        pp = &(*pp)->next;
      proc_free(*pp);
      *pp = NULL;
      d->e2b->n_procs--;
    }
  pthread_mutex_unlock(&d->e2b->lock);
}

static bool is_pty(struct daemon *d, const char *sandbox, pid_t pid)
{
  bool pty = false;
  pthread_mutex_lock(&d->e2b->lock);
  for (struct e2b_proc *p = d->e2b->procs; p; p = p->next)
    if (p->pid == pid && strcmp(p->sandbox, sandbox) == 0)
      pty = p->pty;
  pthread_mutex_unlock(&d->e2b->lock);
  return pty;
}

static void forget(struct daemon *d, const char *sandbox, pid_t pid)
{
  pthread_mutex_lock(&d->e2b->lock);
  for (struct e2b_proc **pp = &d->e2b->procs; *pp; pp = &(*pp)->next)
    if ((*pp)->pid == pid && strcmp((*pp)->sandbox, sandbox) == 0)
      {
        struct e2b_proc *p = *pp;
        *pp = p->next;
        proc_free(p);
        d->e2b->n_procs--;
        break;
      }
  pthread_mutex_unlock(&d->e2b->lock);
}

/* ProcessSelector {pid} or {tag} to a pid; 0 after responding. */
static pid_t select_pid(struct req *r, json_t *process)
{
  json_t *pid = json_object_get(process, "pid"), *tag = json_object_get(process, "tag");
  if (json_is_integer(pid) && json_integer_value(pid) > 0 && json_integer_value(pid) < (1 << 22))
    return (pid_t) json_integer_value(pid);
  if (json_is_string(tag))
    {
      pid_t found = 0;
      pthread_mutex_lock(&r->d->e2b->lock);
      for (struct e2b_proc *p = r->d->e2b->procs; p && !found; p = p->next)
        if (p->tag && strcmp(p->tag, json_string_value(tag)) == 0 && strcmp(p->sandbox, r->params[0]) == 0)
          found = p->pid;
      pthread_mutex_unlock(&r->d->e2b->lock);
      if (found)
        return found;
      return api_fail(r, 404, "not_found", "no process with tag `%s`", json_string_value(tag)), 0;
    }
  return api_fail(r, 400, "invalid_argument", "`process` must select a pid or a tag"), 0;
}

/* ---- the event stream of one process ---- */

struct pstream
{
  struct daemon *d;
  char sandbox[32];
  int fd, client_fd;
  uint8_t *buf;
  size_t cap;
  pid_t pid;
  int keepalive_ms;
  bool sent_start, done, pty;
  struct corral__msg pending; /* a frame read ahead (Connect's check) */
  bool has_pending;
};

static json_t *event(const char *kind, json_t *value)
{
  return json_pack("{s:{s:o}}", "event", kind, value);
}

static json_t *end_event(struct pstream *s, const struct corral__msg *m)
{
  uint64_t st = 0, reason = 0;
  char status[64];
  corral__msg_u64(m, CORRAL__T_STATUS, &st);
  corral__msg_u64(m, CORRAL__T_REASON, &reason);
  int w = (int) st;
  json_t *end;
  forget(s->d, s->sandbox, s->pid);
  if (WIFSIGNALED(w))
    {
      /* As envd (Go's ProcessState) says it. */
      snprintf(status, sizeof(status), "signal: %s", WTERMSIG(w) == SIGKILL ? "killed" : strsignal(WTERMSIG(w)));
      end = json_pack("{s:i, s:b, s:s}", "exitCode", -1, "exited", 0, "status", status);
      if (reason == CORRAL__CMD_TIMEOUT)
        json_object_set_new(end, "error", json_string("the command ran past its timeout"));
    }
  else
    {
      snprintf(status, sizeof(status), "exit status %d", WEXITSTATUS(w));
      end = json_pack("{s:i, s:b, s:s}", "exitCode", WEXITSTATUS(w), "exited", 1, "status", status);
    }
  return event("end", end);
}

/* Wait for the agent, the client hanging up, or the keepalive tick. */
static int wait_ready(struct pstream *s)
{
  struct pollfd p[2] = { { s->fd, POLLIN, 0 }, { s->client_fd, POLLRDHUP, 0 } };
  for (;;)
    {
      int r = poll(p, s->client_fd >= 0 ? 2 : 1, s->keepalive_ms);
      if (r < 0 && errno == EINTR)
        continue;
      if (r < 0)
        return -1;
      if (r == 0)
        return 0;
      if (p[0].revents)
        return 1;
      if (p[1].revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))
        return -1;
    }
}

static json_t *pstream_next(void *ctx, json_t **error)
{
  struct pstream *s = ctx;
  struct corral__msg m;
  if (!s->sent_start)
    {
      s->sent_start = true;
      return event("start", json_pack("{s:i}", "pid", (int) s->pid));
    }
  while (!s->done)
    {
      int ready = s->has_pending ? 1 : wait_ready(s);
      if (ready == 0)
        return event("keepalive", json_object());
      if (s->has_pending)
        m = s->pending, s->has_pending = false;
      /* A client gone: detach, the process goes on (E2B semantics). */
      else if (ready < 0 || corral__frame_recv(s->fd, &s->buf, &s->cap, &m, -1) != 1)
        {
          s->done = true;
          if (ready >= 0)
            *error = connect_error(502, "the sandbox agent went away (the sandbox ended)");
          break;
        }
      const uint8_t *d;
      uint32_t len;
      switch (m.type)
        {
        case CORRAL__R_STDOUT:
        case CORRAL__R_STDERR:
          if (!corral__msg_get(&m, CORRAL__T_DATA, &d, &len) || len == 0)
            continue;
          return event("data", json_pack("{s:o}", s->pty ? "pty" : m.type == CORRAL__R_STDOUT ? "stdout" : "stderr",
                                          e2b_base64(d, len)));
        case CORRAL__R_EXIT: s->done = true; return end_event(s, &m);
        case CORRAL__R_ERROR:
          {
            corral_error_t err = NULL;
            agent_error(&m, &err);
            *error = connect_error_from(err);
            corral_error_release(&err);
            s->done = true;
            break;
          }
        default: continue;
        }
    }
  return NULL;
}

static void pstream_release(void *ctx)
{
  struct pstream *s = ctx;
  if (s->fd >= 0)
    close(s->fd);
  free(s->buf);
  free(s);
}

static int attach(const struct sbx_ref *ref, pid_t pid, corral_error_t *err)
{
  struct corral__frame f;
  corral__frame_init(&f, CORRAL__REQ_ATTACH);
  corral__frame_add_u64(&f, CORRAL__T_PID, (uint64_t) pid);
  return agent_request(ref, &f, err);
}

/* For Connect: the agent answers an attach at once only to refuse it (or
 * with output kept for us, which becomes the stream's first frame).  It
 * refuses a second client while the previous one's going has not been
 * noticed yet: retry that briefly. */
static int check_attach(struct pstream *s, const struct sbx_ref *ref, corral_error_t *err)
{
  for (int attempt = 0; attempt < 50; attempt++)
    {
      struct pollfd p = { s->fd, POLLIN, 0 };
      if (poll(&p, 1, 30) == 0)
        return 0;
      if (corral__frame_recv(s->fd, &s->buf, &s->cap, &s->pending, 1000) != 1)
        return corral_error_set(err, EIO, "the sandbox agent did not answer");
      if (s->pending.type != CORRAL__R_ERROR)
        {
          s->has_pending = true;
          return 0;
        }
      agent_error(&s->pending, err);
      close(s->fd);
      s->fd = -1;
      if (corral_error_status(*err) != EBUSY)
        return -1;
      corral_error_release(err);
      nanosleep(&(struct timespec){ 0, 20 * 1000 * 1000 }, NULL);
      if ((s->fd = attach(ref, s->pid, err)) < 0)
        return -1;
    }
  return corral_error_set(err, EBUSY, "another client is attached to process %d", (int) s->pid);
}

/* Attach to pid and stream its events. */
static int stream_process(struct req *r, const struct sbx_ref *ref, pid_t pid, bool check)
{
  corral_error_t err = NULL;
  struct pstream *s = calloc(1, sizeof(*s));
  const char *ka = api_header(r, "Keepalive-Ping-Interval");
  const union MHD_ConnectionInfo *ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
  if (!s)
    return api_fail(r, 500, "internal", "out of memory");
  s->d = r->d;
  s->pid = pid;
  s->client_fd = ci ? ci->connect_fd : -1;
  s->keepalive_ms = ka && atoi(ka) > 0 && atoi(ka) < 3600 ? atoi(ka) * 1000 : DEFAULT_KEEPALIVE_MS;
  s->pty = is_pty(r->d, ref->id, pid);
  snprintf(s->sandbox, sizeof(s->sandbox), "%s", ref->id);
  s->fd = attach(ref, pid, &err);
  if (s->fd < 0 || (check && check_attach(s, ref, &err) < 0))
    {
      int e = corral_error_status(err);
      bool missing = e == ESRCH || e == ENOENT;
      api_fail(r, missing ? 404 : e == EBUSY ? 409 : 502, missing ? "not_found" : "unavailable", "process %d: %s",
               (int) pid, corral_error_message(err));
      corral_error_release(&err);
      pstream_release(s);
      return MHD_YES;
    }
  return connect_respond_stream(r, (struct connect_stream){ pstream_next, pstream_release, s });
}

/* ---- handlers ---- */

static bool string_array(json_t *a)
{
  size_t i;
  json_t *v;
  if (!a || json_is_null(a))
    return true;
  if (!json_is_array(a))
    return false;
  json_array_foreach(a, i, v)
    if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
      return false;
  return true;
}

static bool env_object(json_t *o)
{
  const char *k;
  json_t *v;
  if (!o || json_is_null(o))
    return true;
  if (!json_is_object(o))
    return false;
  json_object_foreach(o, k, v)
    if (!json_is_string(v) || !valid_env_name(k))
      return false;
  return true;
}

/* The running sandbox of an in-sandbox request, its request message, and the
 * user check every call starts with. */
static json_t *begin(struct req *r, struct sbx_ref *ref, bool needs_user)
{
  json_t *m = connect_request(r);
  if (!m)
    return NULL;
  if ((needs_user && e2b_user(r) < 0) || !sandbox_running_or_fail(r, ref))
    return json_decref(m), NULL;
  return m;
}

/* PTY {size: {cols, rows}}: 0 when absent, -1 when malformed. */
static int pty_size(json_t *pty, uint64_t *cols, uint64_t *rows)
{
  json_t *size = json_object_get(pty, "size");
  json_t *c = json_object_get(size, "cols"), *r = json_object_get(size, "rows");
  if (!pty || json_is_null(pty))
    return 0;
  if (!json_is_integer(c) || !json_is_integer(r) || json_integer_value(c) < 1 || json_integer_value(r) < 1
      || json_integer_value(c) > 9999 || json_integer_value(r) > 9999)
    return -1;
  *cols = (uint64_t) json_integer_value(c);
  *rows = (uint64_t) json_integer_value(r);
  return 1;
}

static void start_frame(struct corral__frame *f, const struct sbx_ref *ref, json_t *proc, uint64_t timeout_ms)
{
  size_t i;
  json_t *v, *cwd = json_object_get(proc, "cwd");
  corral__frame_init(f, CORRAL__REQ_EXEC);
  corral__frame_add_str(f, CORRAL__T_ARGV, json_string_value(json_object_get(proc, "cmd")));
  json_array_foreach(json_object_get(proc, "args"), i, v)
    corral__frame_add_str(f, CORRAL__T_ARGV, json_string_value(v));
  agent_frame_env(f, ref->env);
  agent_frame_env(f, json_object_get(proc, "envs"));
  corral__frame_add_str(f, CORRAL__T_CWD, json_is_string(cwd) && json_string_length(cwd) ? json_string_value(cwd)
                                                                                         : "/home/user");
  corral__frame_add_u64(f, CORRAL__T_TIMEOUT_MS, timeout_ms);
  corral__frame_add_u64(f, CORRAL__T_MAX_OUTPUT, E2B_MAX_OUTPUT);
  corral__frame_add_u64(f, CORRAL__T_BACKGROUND, 1);
  corral__frame_add_u64(f, CORRAL__T_STDIN_OPEN, 1);
}

int e2b_process_start(struct req *r)
{
  struct sbx_ref ref;
  struct corral__frame f;
  corral_error_t err = NULL;
  pid_t pid = 0;
  uint64_t cols = 0, rows = 0;
  json_t *m = begin(r, &ref, true), *proc, *pty, *tag;
  if (!m)
    return MHD_YES;
  proc = json_object_get(m, "process");
  pty = json_object_get(m, "pty");
  tag = json_object_get(m, "tag");
  if (!json_is_object(proc) || !json_is_string(json_object_get(proc, "cmd"))
      || json_string_length(json_object_get(proc, "cmd")) == 0 || !string_array(json_object_get(proc, "args"))
      || !env_object(json_object_get(proc, "envs")))
    api_fail(r, 400, "invalid_argument", "`process` needs `cmd`, string `args` and `envs` of valid names");
  else if (pty_size(pty, &cols, &rows) < 0)
    api_fail(r, 400, "invalid_argument", "`pty.size` needs `cols` and `rows` between 1 and 9999");
  else
    {
      /* Connect's deadline: the process ends with the call, as with envd. */
      const char *deadline = api_header(r, "Connect-Timeout-Ms");
      uint64_t timeout_ms = deadline ? strtoull(deadline, NULL, 10) : 0;
      start_frame(&f, &ref, proc, timeout_ms);
      if (cols)
        {
          corral__frame_add_u64(&f, CORRAL__T_COLS, cols);
          corral__frame_add_u64(&f, CORRAL__T_ROWS, rows);
        }
      int fd = agent_start(&ref, &f, &pid, &err);
      if (fd < 0)
        {
          api_fail(r, fd == -2 ? 400 : 502, fd == -2 ? "invalid_argument" : "unavailable",
                   "the process could not start: %s", corral_error_message(err));
          corral_error_release(&err);
        }
      else
        {
          close(fd);
          /* A terminal's input stays open: ^D is what ends it. */
          if (!cols && !json_is_true(json_object_get(m, "stdin")))
            {
              agent_stdin_frame(&f, pid, NULL, 0, true);
              agent_call(&ref, &f, NULL);
            }
          remember(r->d, ref.id, pid, json_is_string(tag) ? json_string_value(tag) : NULL,
                   json_string_value(json_object_get(proc, "cwd")), json_object_get(proc, "envs"), cols != 0);
          api_audit(r->d, json_pack("{s:s, s:s, s:s, s:s, s:O, s:i, s:s}", "action", "command.run", "tenant",
                                    r->tenant, "sandbox", ref.id, "cmd", json_string_value(json_object_get(proc, "cmd")),
                                    "args", json_object_get(proc, "args") ? json_object_get(proc, "args") : json_null(),
                                    "pid", (int) pid, "via", "e2b"));
          stream_process(r, &ref, pid, false);
        }
    }
  json_decref(ref.env);
  json_decref(m);
  return MHD_YES;
}

int e2b_process_connect(struct req *r)
{
  struct sbx_ref ref;
  json_t *m = begin(r, &ref, false);
  if (!m)
    return MHD_YES;
  pid_t pid = select_pid(r, json_object_get(m, "process"));
  if (pid)
    stream_process(r, &ref, pid, true);
  json_decref(ref.env);
  json_decref(m);
  return MHD_YES;
}

static json_t *process_info(struct daemon *d, const char *sandbox, const struct corral__msg *m)
{
  uint64_t pid = 0;
  char **argv = corral__msg_strv(m, CORRAL__T_ARGV, NULL);
  json_t *args = json_array(), *config;
  for (size_t i = 1; argv && argv[0] && argv[i]; i++)
    json_array_append_new(args, json_string(argv[i]));
  corral__msg_u64(m, CORRAL__T_PID, &pid);
  config = json_pack("{s:s, s:o}", "cmd", argv && argv[0] ? argv[0] : "", "args", args);
  json_t *info = json_pack("{s:o, s:I}", "config", config, "pid", (json_int_t) pid);
  pthread_mutex_lock(&d->e2b->lock);
  for (struct e2b_proc *p = d->e2b->procs; p; p = p->next)
    if (p->pid == (pid_t) pid && strcmp(p->sandbox, sandbox) == 0)
      {
        if (p->tag)
          json_object_set_new(info, "tag", json_string(p->tag));
        if (p->cwd)
          json_object_set_new(config, "cwd", json_string(p->cwd));
        json_object_set(config, "envs", p->envs);
        break;
      }
  pthread_mutex_unlock(&d->e2b->lock);
  if (!json_object_get(config, "envs"))
    json_object_set_new(config, "envs", json_object());
  corral__strv_free(argv);
  return info;
}

/* Code contexts' interpreters are the code interpreter's business, not
 * processes an E2B user started (E2B's own live outside envd too). */
static bool is_runner(const struct corral__msg *m)
{
  char **argv = corral__msg_strv(m, CORRAL__T_ARGV, NULL);
  bool runner = false;
  for (char **a = argv; a && *a; a++)
    runner |= strncmp(*a, "--corral-context=", 17) == 0;
  corral__strv_free(argv);
  return runner;
}

int e2b_process_list(struct req *r)
{
  struct sbx_ref ref;
  struct corral__frame f;
  struct corral__msg msg;
  corral_error_t err = NULL;
  uint8_t *buf = NULL;
  size_t cap = 0;
  json_t *m = begin(r, &ref, false);
  if (!m)
    return MHD_YES;
  json_decref(m);
  json_decref(ref.env);
  corral__frame_init(&f, CORRAL__REQ_LIST);
  int fd = agent_request(&ref, &f, &err);
  if (fd < 0)
    {
      api_fail_err(r, err, "list processes");
      corral_error_release(&err);
      return MHD_YES;
    }
  json_t *arr = json_array();
  while (corral__frame_recv(fd, &buf, &cap, &msg, 30000) == 1 && msg.type == CORRAL__R_ENTRY)
    {
      uint64_t running = 0;
      if (corral__msg_u64(&msg, CORRAL__T_RUNNING, &running) && running && !is_runner(&msg))
        json_array_append_new(arr, process_info(r->d, ref.id, &msg));
    }
  free(buf);
  close(fd);
  return api_json(r, 200, json_pack("{s:o}", "processes", arr));
}

/* One agent call about a process; responds {} or the error. */
static int pid_call(struct req *r, const struct sbx_ref *ref, struct corral__frame *f, pid_t pid)
{
  corral_error_t err = NULL;
  if (agent_call(ref, f, &err) == 0)
    return api_json(r, 200, json_object());
  int e = corral_error_status(err);
  if (e == ESRCH)
    api_fail(r, 404, "not_found", "process %d not found", (int) pid);
  else if (e == EPIPE || e == ENOTTY)
    api_fail(r, 412, "failed_precondition", "process %d: %s", (int) pid, corral_error_message(err));
  else
    api_fail_err(r, err, NULL);
  corral_error_release(&err);
  return MHD_YES;
}

/* ProcessInput {stdin|pty: base64} to bytes; -1 after responding. */
static int input_bytes(struct req *r, json_t *input, unsigned char **data, size_t *len)
{
  json_t *v = json_object_get(input, "stdin");
  if (!v)
    v = json_object_get(input, "pty");
  *data = NULL;
  *len = 0;
  if (!json_is_string(v))
    return api_fail(r, 400, "invalid_argument", "`input` needs `stdin` bytes (base64)"), -1;
  if (!(*data = e2b_unbase64(json_string_value(v), len)))
    return api_fail(r, 400, "invalid_argument", "`input.stdin` is not base64"), -1;
  return 0;
}

int e2b_process_send_input(struct req *r)
{
  struct sbx_ref ref;
  struct corral__frame f;
  unsigned char *data = NULL;
  size_t len;
  json_t *m = begin(r, &ref, false);
  if (!m)
    return MHD_YES;
  pid_t pid = select_pid(r, json_object_get(m, "process"));
  if (pid && input_bytes(r, json_object_get(m, "input"), &data, &len) == 0)
    {
      agent_stdin_frame(&f, pid, (const char *) data, len, false);
      pid_call(r, &ref, &f, pid);
    }
  free(data);
  json_decref(ref.env);
  json_decref(m);
  return MHD_YES;
}

int e2b_process_close_stdin(struct req *r)
{
  struct sbx_ref ref;
  struct corral__frame f;
  json_t *m = begin(r, &ref, false);
  if (!m)
    return MHD_YES;
  pid_t pid = select_pid(r, json_object_get(m, "process"));
  if (pid)
    {
      agent_stdin_frame(&f, pid, NULL, 0, true);
      pid_call(r, &ref, &f, pid);
    }
  json_decref(ref.env);
  json_decref(m);
  return MHD_YES;
}

static int signal_of(json_t *v)
{
  if (json_is_integer(v))
    return json_integer_value(v) == 9 ? SIGKILL : json_integer_value(v) == 15 ? SIGTERM : 0;
  if (json_is_string(v))
    return strcmp(json_string_value(v), "SIGNAL_SIGKILL") == 0   ? SIGKILL
           : strcmp(json_string_value(v), "SIGNAL_SIGTERM") == 0 ? SIGTERM
                                                                 : 0;
  return 0;
}

int e2b_process_send_signal(struct req *r)
{
  struct sbx_ref ref;
  struct corral__frame f;
  json_t *m = begin(r, &ref, false);
  if (!m)
    return MHD_YES;
  pid_t pid = select_pid(r, json_object_get(m, "process"));
  int sig = signal_of(json_object_get(m, "signal"));
  if (pid && !sig)
    api_fail(r, 400, "invalid_argument", "`signal` must be SIGNAL_SIGKILL or SIGNAL_SIGTERM");
  else if (pid)
    {
      corral__frame_init(&f, CORRAL__REQ_SIGNAL);
      corral__frame_add_u64(&f, CORRAL__T_PID, (uint64_t) pid);
      corral__frame_add_u64(&f, CORRAL__T_SIGNAL, (uint64_t) sig);
      api_audit(r->d, json_pack("{s:s, s:s, s:s, s:i, s:s, s:s}", "action", "command.signal", "tenant", r->tenant,
                                "sandbox", ref.id, "pid", (int) pid, "signal", signal_name(sig), "via", "e2b"));
      pid_call(r, &ref, &f, pid);
    }
  json_decref(ref.env);
  json_decref(m);
  return MHD_YES;
}

int e2b_process_update(struct req *r)
{
  struct sbx_ref ref;
  struct corral__frame f;
  uint64_t cols = 0, rows = 0;
  json_t *m = begin(r, &ref, false);
  if (!m)
    return MHD_YES;
  pid_t pid = select_pid(r, json_object_get(m, "process"));
  if (pid && pty_size(json_object_get(m, "pty"), &cols, &rows) != 1)
    api_fail(r, 400, "invalid_argument", "`pty.size` needs `cols` and `rows` between 1 and 9999");
  else if (pid)
    {
      corral__frame_init(&f, CORRAL__REQ_RESIZE);
      corral__frame_add_u64(&f, CORRAL__T_PID, (uint64_t) pid);
      corral__frame_add_u64(&f, CORRAL__T_COLS, cols);
      corral__frame_add_u64(&f, CORRAL__T_ROWS, rows);
      pid_call(r, &ref, &f, pid);
    }
  json_decref(ref.env);
  json_decref(m);
  return MHD_YES;
}

/* Client streaming: over HTTP/1.1 the whole request (start, then data
 * messages) arrives as one body of envelopes. */
int e2b_process_stream_input(struct req *r)
{
  struct sbx_ref ref;
  struct corral__frame f;
  pid_t pid = 0;
  size_t off = 0;
  if (!sandbox_running_or_fail(r, &ref))
    return MHD_YES;
  while (off + 5 <= r->body_len)
    {
      uint32_t n;
      json_error_t je;
      memcpy(&n, r->body + off + 1, 4);
      n = ntohl(n);
      if (n > r->body_len - off - 5)
        break;
      json_t *msg = json_loadb(r->body + off + 5, n, 0, &je), *v;
      off += 5 + n;
      unsigned char *data = NULL;
      size_t len;
      if ((v = json_object_get(msg, "start")))
        pid = select_pid(r, json_object_get(v, "process"));
      else if ((v = json_object_get(msg, "data")) && pid && input_bytes(r, json_object_get(v, "input"), &data, &len) == 0)
        {
          agent_stdin_frame(&f, pid, (const char *) data, len, false);
          if (agent_call(&ref, &f, NULL) < 0)
            api_fail(r, 404, "not_found", "process %d not found", (int) pid);
        }
      free(data);
      json_decref(msg);
      if (r->responded)
        break;
    }
  json_decref(ref.env);
  if (r->responded)
    return MHD_YES;
  if (!pid)
    return api_fail(r, 400, "invalid_argument", "the stream must start with a `start` message");
  return api_json(r, 200, json_object());
}
