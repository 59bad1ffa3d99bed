/* /v1/sandboxes/{id}/commands: run, stream, background, attach, stdin,
 * signal.  Each request opens its own connection to the sandbox's agent;
 * the agent kills a foreground command whose connection goes away, so a
 * client that hangs up leaves nothing running. */
#define _GNU_SOURCE
#include <poll.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include "api.h"
#include "../common/utils.h"

#define STDIN_CHUNK (256u << 10)

int agent_request(const struct sbx_ref *ref, struct corral__frame *f, corral_error_t *err)
{
  struct corral__box b;
  memset(&b, 0, sizeof(b));
  snprintf(b.sock_path, sizeof(b.sock_path), "%s", ref->sock_path);
  int fd = corral__box_connect(&b, err);
  if (fd < 0)
    {
      corral__frame_release(f);
      return -1;
    }
  if (corral__frame_send(fd, f) < 0)
    {
      close(fd);
      return corral_error_set(err, errno, "send to the sandbox agent");
    }
  return fd;
}

int agent_error(const struct corral__msg *m, corral_error_t *err)
{
  uint64_t e = EIO;
  cleanup_free char *text = corral__msg_strdup(m, CORRAL__T_TEXT);
  corral__msg_u64(m, CORRAL__T_ERRNO, &e);
  return corral_error_set(err, (int) e, "%s", text ? text : "agent error");
}

/* ---- UTF-8: output is bytes; JSON strings must be valid UTF-8 ---- */

static size_t utf8_seq_len(const uint8_t *s, size_t n)
{
  uint8_t c = s[0];
  size_t need = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
  if (need == 0 || (need == 2 && c < 0xc2) || (need == 4 && c > 0xf4))
    return 0;
  for (size_t i = 1; i < need && i < n; i++)
    if ((s[i] & 0xc0) != 0x80)
      return 0;
  if (n < need)
    return SIZE_MAX; /* incomplete: the rest may come in the next chunk */
  if (need == 3 && ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] >= 0xa0)))
    return 0;
  if (need == 4 && ((c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] >= 0x90)))
    return 0;
  return need;
}

struct utf8_carry
{
  uint8_t b[4];
  size_t n;
};

/* data as valid UTF-8 (invalid bytes become U+FFFD) appended to *out; an
 * incomplete sequence at the end waits in carry unless final. */
static void utf8_append(json_t **out, struct utf8_carry *c, const uint8_t *data, size_t len, bool final)
{
  size_t total = c->n + len, k = 0, old = *out ? json_string_length(*out) : 0;
  uint8_t *in = malloc(total + 1), *o = malloc(old + total * 3 + 1);
  if (!in || !o)
    goto done;
  memcpy(in, c->b, c->n);
  if (len)
    memcpy(in + c->n, data, len);
  c->n = 0;
  if (old)
    memcpy(o, json_string_value(*out), old);
  k = old;
  for (size_t i = 0; i < total;)
    {
      size_t l = utf8_seq_len(in + i, total - i);
      if (l == SIZE_MAX && !final)
        {
          memcpy(c->b, in + i, total - i);
          c->n = total - i;
          break;
        }
      if (l == 0 || l == SIZE_MAX)
        {
          memcpy(o + k, "\xef\xbf\xbd", 3);
          k += 3;
          i++;
          continue;
        }
      memcpy(o + k, in + i, l);
      k += l;
      i += l;
    }
  if (*out)
    json_string_setn_nocheck(*out, (const char *) o, k);
  else
    *out = json_stringn_nocheck((const char *) o, k);
done:
  free(in);
  free(o);
}

/* ---- a running command's frames to JSON ---- */

struct stream
{
  struct daemon *d;
  int fd;
  uint8_t *buf;
  size_t cap;
  char id[32], *tenant;
  json_t *argv;
  uint64_t oom_before, t0_us;
  struct utf8_carry carry[2];
  bool ndjson, done, started;
  pid_t pid;
  int client_fd;   /* the HTTP client's socket: a hang-up ends the command */
  char *line;      /* ndjson: the line being sent */
  size_t line_len, line_off;
  struct corral__msg pending; /* a frame read ahead (attach) */
  bool has_pending;
};

static void stream_free(struct stream *s)
{
  if (s->fd >= 0)
    close(s->fd);
  free(s->buf);
  free(s->tenant);
  json_decref(s->argv);
  free(s->line);
  free(s);
}

/* Names of the syscalls the sandbox's seccomp policy refused this command. */
static json_t *denied_names(const struct corral__msg *m)
{
  json_t *a = json_array();
  size_t pos = 0;
  uint8_t tag;
  const uint8_t *d;
  uint32_t l;
  while (corral__msg_next(m, &pos, &tag, &d, &l))
    {
      uint64_t nr;
      if (tag != CORRAL__T_SYSCALL || l != sizeof(nr))
        continue;
      memcpy(&nr, d, sizeof(nr));
      char *name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, (int) nr);
      json_array_append_new(a, name ? json_string(name) : json_sprintf("syscall_%llu", (unsigned long long) nr));
      free(name);
    }
  return a;
}

static json_t *exit_json(struct stream *s, const struct corral__msg *m)
{
  uint64_t st = 0, reason = 0, dur = 0, drop[2] = { 0, 0 }, pid = 0;
  corral__msg_u64(m, CORRAL__T_STATUS, &st);
  corral__msg_u64(m, CORRAL__T_REASON, &reason);
  corral__msg_u64(m, CORRAL__T_DURATION_MS, &dur);
  corral__msg_u64(m, CORRAL__T_DROPPED_OUT, &drop[0]);
  corral__msg_u64(m, CORRAL__T_DROPPED_ERR, &drop[1]);
  corral__msg_u64(m, CORRAL__T_PID, &pid);
  int status = (int) st, code, sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  const char *why;
  if (reason == CORRAL__CMD_TIMEOUT)
    why = "timeout", code = 124;
  else if (sig == SIGKILL && registry_oom_kills(s->d, s->id) > s->oom_before)
    why = "oom", code = 137;
  else if (sig)
    why = "signaled", code = 128 + sig;
  else
    why = "exited", code = WEXITSTATUS(status);
  uint64_t denied = 0;
  corral__msg_u64(m, CORRAL__T_DENIED, &denied);
  json_t *names = denied_names(m);
  metrics_command(s->d, corral__now_us() - s->t0_us, why);
  metrics_seccomp(s->d, denied);
  if (json_array_size(s->argv))
    api_audit(s->d, json_pack("{s:s, s:s, s:s, s:O, s:i, s:s, s:I, s:I, s:O}", "action", "command.run", "tenant",
                              s->tenant, "sandbox", s->id, "argv", s->argv, "exit_code", code, "reason", why,
                              "duration_ms", (json_int_t) dur, "seccomp_denials", (json_int_t) denied,
                              "seccomp_denied", names));
  return json_pack("{s:I, s:i, s:I, s:s, s:o, s:b, s:b, s:I, s:I, s:I, s:o}", "pid", (json_int_t) pid, "exit_code",
                   code, "duration_ms", (json_int_t) dur, "reason", why, "signal",
                   sig ? json_string(signal_name(sig)) : json_null(), "stdout_truncated", drop[0] > 0,
                   "stderr_truncated", drop[1] > 0, "stdout_dropped_bytes", (json_int_t) drop[0],
                   "stderr_dropped_bytes", (json_int_t) drop[1], "seccomp_denials", (json_int_t) denied,
                   "seccomp_denied", names);
}

/* Wait until the agent has something, watching the client too: a client
 * that hung up gets -1, and closing the agent connection then makes the
 * agent kill a foreground command, even one that prints nothing. */
static int wait_agent(struct stream *s)
{
  struct pollfd p[2] = { { s->fd, POLLIN, 0 }, { s->client_fd, POLLRDHUP, 0 } };
  for (;;)
    {
      int r = poll(p, s->client_fd >= 0 ? 2 : 1, -1);
      if (r < 0 && errno == EINTR)
        continue;
      if (r < 0)
        return -1;
      if (p[0].revents)
        return 0;
      if (p[1].revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))
        return -1;
    }
}

/* Next frame: the one read ahead, or a fresh one.  1, 0 at EOF, -1. */
static int next_frame(struct stream *s, struct corral__msg *m)
{
  if (s->has_pending)
    {
      *m = s->pending;
      s->has_pending = false;
      return 1;
    }
  if (wait_agent(s) < 0)
    return -1;
  return corral__frame_recv(s->fd, &s->buf, &s->cap, m, -1);
}

/* The next event as a JSON object; s->done after the exit (or a lost
 * agent). */
static json_t *next_event(struct stream *s)
{
  struct corral__msg m;
  if (!s->started)
    {
      s->started = true;
      return json_pack("{s:s, s:i}", "type", "start", "pid", s->pid);
    }
  for (;;)
    {
      if (next_frame(s, &m) <= 0)
        {
          s->done = true;
          return json_pack("{s:s, s:s}", "type", "error", "message", "the sandbox ended before the command did");
        }
      if (m.type == CORRAL__R_STDOUT || m.type == CORRAL__R_STDERR)
        {
          const uint8_t *d;
          uint32_t l;
          int k = m.type == CORRAL__R_STDERR;
          json_t *text = NULL;
          if (!corral__msg_get(&m, CORRAL__T_DATA, &d, &l))
            continue;
          utf8_append(&text, &s->carry[k], d, l, false);
          if (!text || json_string_length(text) == 0)
            {
              json_decref(text);
              continue;
            }
          return json_pack("{s:s, s:o}", "type", k ? "stderr" : "stdout", "data", text);
        }
      if (m.type == CORRAL__R_EXIT)
        {
          s->done = true;
          json_t *e = exit_json(s, &m);
          json_object_set_new(e, "type", json_string("exit"));
          return e;
        }
      if (m.type == CORRAL__R_ERROR)
        {
          corral_error_t err = NULL;
          agent_error(&m, &err);
          json_t *e = json_pack("{s:s, s:s}", "type", "error", "message", corral_error_message(err));
          corral_error_release(&err);
          s->done = true;
          return e;
        }
    }
}

static ssize_t ndjson_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
  (void) pos;
  struct stream *s = cls;
  while (s->line_off >= s->line_len)
    {
      if (s->done)
        return MHD_CONTENT_READER_END_OF_STREAM;
      json_t *ev = next_event(s);
      free(s->line);
      s->line = ev ? json_dumps(ev, JSON_COMPACT) : NULL;
      json_decref(ev);
      if (!s->line)
        return MHD_CONTENT_READER_END_WITH_ERROR;
      s->line_len = strlen(s->line);
      s->line[s->line_len++] = '\n'; /* over the NUL: the length is tracked */
      s->line_off = 0;
    }
  size_t n = s->line_len - s->line_off < max ? s->line_len - s->line_off : max;
  memcpy(buf, s->line + s->line_off, n);
  s->line_off += n;
  return (ssize_t) n;
}

static void ndjson_free(void *cls)
{
  stream_free(cls);
}

/* Gather every event into one JSON result (the default format). */
static int respond_collected(struct req *r, struct stream *s, unsigned status)
{
  json_t *result = NULL, *out[2] = { NULL, NULL };
  while (!s->done)
    {
      json_t *ev = next_event(s);
      const char *type = json_string_value(json_object_get(ev, "type"));
      if (type && (strcmp(type, "stdout") == 0 || strcmp(type, "stderr") == 0))
        {
          json_t *d = json_object_get(ev, "data");
          utf8_append(&out[type[3] == 'e'], &(struct utf8_carry) { { 0 }, 0 }, (const uint8_t *) json_string_value(d),
                      json_string_length(d), true);
        }
      else if (type && strcmp(type, "exit") == 0)
        result = json_incref(ev);
      else if (type && strcmp(type, "start") == 0)
        ;
      else if (type && strcmp(type, "error") == 0)
        {
          api_fail(r, 409, "sandbox_not_running", "%s", json_string_value(json_object_get(ev, "message")));
          json_decref(ev);
          json_decref(out[0]), json_decref(out[1]);
          stream_free(s);
          return MHD_YES;
        }
      json_decref(ev);
    }
  for (int k = 0; k < 2; k++)
    {
      utf8_append(&out[k], &s->carry[k], NULL, 0, true);
      json_object_set_new(result, k ? "stderr" : "stdout", out[k]);
    }
  json_object_del(result, "type");
  stream_free(s);
  return api_json(r, status, result);
}

static int respond_stream(struct req *r, struct stream *s, unsigned status)
{
  if (!s->ndjson)
    return respond_collected(r, s, status);
  struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, ndjson_reader, s,
                                                                ndjson_free);
  if (!resp)
    {
      stream_free(s);
      return api_fail(r, 500, "internal", "cannot stream");
    }
  MHD_add_response_header(resp, "Content-Type", "application/x-ndjson");
  metrics_request(r->d, r->method, status, NULL);
  return api_queue(r, status, resp);
}

static struct stream *stream_new(struct req *r, const struct sbx_ref *ref, int fd, json_t *argv, pid_t pid)
{
  struct stream *s = calloc(1, sizeof(*s));
  if (!s)
    {
      close(fd);
      json_decref(argv);
      return NULL;
    }
  s->d = r->d;
  s->fd = fd;
  snprintf(s->id, sizeof(s->id), "%s", ref->id);
  s->tenant = strdup(r->tenant);
  s->argv = argv ? argv : json_array();
  s->oom_before = registry_oom_kills(r->d, ref->id);
  s->t0_us = corral__now_us();
  s->ndjson = api_wants_ndjson(r);
  s->pid = pid;
  const union MHD_ConnectionInfo *ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
  s->client_fd = ci ? ci->connect_fd : -1;
  return s;
}

/* ---- routes ---- */

void agent_frame_env(struct corral__frame *f, json_t *env)
{
  const char *k;
  json_t *v;
  json_object_foreach(env, k, v)
    {
      char *kv;
      if (asprintf(&kv, "%s=%s", k, json_string_value(v)) >= 0)
        {
          corral__frame_add_str(f, CORRAL__T_ENV, kv);
          free(kv);
        }
    }
}

static void exec_frame(struct corral__frame *f, const struct exec_req *e, json_t *sandbox_env)
{
  corral__frame_init(f, CORRAL__REQ_EXEC);
  for (char **a = e->argv; *a; a++)
    corral__frame_add_str(f, CORRAL__T_ARGV, *a);
  /* The sandbox's env first: the command's own overrides it. */
  agent_frame_env(f, sandbox_env);
  for (char **a = e->env; a && *a; a++)
    corral__frame_add_str(f, CORRAL__T_ENV, *a);
  if (e->cwd)
    corral__frame_add_str(f, CORRAL__T_CWD, e->cwd);
  corral__frame_add_u64(f, CORRAL__T_TIMEOUT_MS, e->timeout_ms);
  corral__frame_add_u64(f, CORRAL__T_MAX_OUTPUT, e->max_output);
  corral__frame_add_u64(f, CORRAL__T_BACKGROUND, e->background);
  corral__frame_add_u64(f, CORRAL__T_STDIN_OPEN, e->stdin_data && !e->background);
}

static int send_stdin(int fd, const char *data, size_t len)
{
  struct corral__frame f;
  for (size_t off = 0; off < len; off += STDIN_CHUNK)
    if (corral__send_data(fd, CORRAL__M_DATA, data + off, len - off < STDIN_CHUNK ? len - off : STDIN_CHUNK) < 0)
      return -1;
  corral__frame_init(&f, CORRAL__M_END);
  return corral__frame_send(fd, &f);
}

static json_t *argv_json(char **argv)
{
  json_t *a = json_array();
  for (; argv && *argv; argv++)
    json_array_append_new(a, json_string(*argv));
  return a;
}

int agent_call(const struct sbx_ref *ref, struct corral__frame *f, corral_error_t *err)
{
  uint8_t *buf = NULL;
  size_t cap = 0;
  struct corral__msg m;
  int fd = agent_request(ref, f, err);
  if (fd < 0)
    return -1;
  int got = corral__frame_recv(fd, &buf, &cap, &m, 30000), r = 0;
  if (got != 1)
    r = corral_error_set(err, EIO, "the sandbox agent did not answer");
  else if (m.type == CORRAL__R_ERROR)
    r = agent_error(&m, err);
  free(buf);
  close(fd);
  return r;
}

void agent_stdin_frame(struct corral__frame *f, pid_t pid, const char *data, size_t len, bool eof)
{
  corral__frame_init(f, CORRAL__REQ_STDIN);
  corral__frame_add_u64(f, CORRAL__T_PID, (uint64_t) pid);
  if (len)
    corral__frame_add(f, CORRAL__T_DATA, data, len);
  corral__frame_add_u64(f, CORRAL__T_EOF, eof);
}

int agent_start(const struct sbx_ref *ref, struct corral__frame *f, pid_t *pid, corral_error_t *err)
{
  struct corral__msg m;
  uint8_t *buf = NULL;
  size_t cap = 0;
  uint64_t p = 0;
  int fd = agent_request(ref, f, err);
  if (fd < 0)
    return -1;
  int got = corral__frame_recv(fd, &buf, &cap, &m, 30000), r = -1;
  if (got == 1 && m.type == CORRAL__R_ERROR)
    {
      agent_error(&m, err);
      r = -2;
    }
  else if (got != 1 || m.type != CORRAL__R_STARTED || !corral__msg_u64(&m, CORRAL__T_PID, &p))
    corral_error_set(err, EIO, "the sandbox agent did not answer");
  free(buf);
  if (!p)
    {
      close(fd);
      return r;
    }
  *pid = (pid_t) p;
  return fd;
}

/* Send the request and wait for STARTED; returns the agent fd and pid, or
 * -1 after responding. */
static int start(struct req *r, const struct sbx_ref *ref, const struct exec_req *e, pid_t *pid)
{
  corral_error_t err = NULL;
  struct corral__frame f;
  exec_frame(&f, e, ref->env);
  int fd = agent_start(ref, &f, pid, &err);
  if (fd == -2)
    api_fail(r, 400, "invalid_argument", "the command could not start: %s", corral_error_message(err));
  else if (fd < 0 && corral_error_status(err) == EIO)
    api_fail(r, 409, "sandbox_not_running", "%s", corral_error_message(err));
  else if (fd < 0)
    api_fail_err(r, err, "run the command");
  corral_error_release(&err);
  return fd < 0 ? -1 : fd;
}

static void run_background(struct req *r, const struct sbx_ref *ref, const struct exec_req *e, int fd, pid_t pid)
{
  struct corral__frame f;
  close(fd);
  if (e->stdin_data)
    {
      agent_stdin_frame(&f, pid, e->stdin_data, e->stdin_len, false);
      agent_call(ref, &f, NULL);
    }
  api_audit(r->d, json_pack("{s:s, s:s, s:s, s:o, s:b, s:i}", "action", "command.run", "tenant", r->tenant,
                            "sandbox", ref->id, "argv", argv_json(e->argv), "background", 1, "pid", pid));
  api_json(r, 201, json_pack("{s:i}", "pid", pid));
}

int route_command_start(struct req *r)
{
  char why[512];
  struct exec_req e;
  struct sbx_ref ref;
  pid_t pid = 0;
  json_t *body = api_body_object(r);
  if (!body)
    return MHD_YES;
  int bad = decode_exec(body, &e, why, sizeof(why));
  json_decref(body);
  if (bad < 0)
    return api_fail(r, 400, "invalid_argument", "%s", why);
  if (!sandbox_running_or_fail(r, &ref))
    {
      exec_req_release(&e);
      return MHD_YES;
    }
  int fd = start(r, &ref, &e, &pid);
  if (fd >= 0 && e.background)
    run_background(r, &ref, &e, fd, pid);
  else if (fd >= 0)
    {
      if (e.stdin_data)
        send_stdin(fd, e.stdin_data, e.stdin_len);
      struct stream *s = stream_new(r, &ref, fd, argv_json(e.argv), pid);
      if (s)
        respond_stream(r, s, 200);
      else
        api_fail(r, 500, "internal", "out of memory");
    }
  json_decref(ref.env);
  exec_req_release(&e);
  return MHD_YES;
}

static pid_t parse_pid(const char *s)
{
  char *end;
  long v = s ? strtol(s, &end, 10) : 0;
  return s && *s && !*end && v > 0 && v < (1 << 22) ? (pid_t) v : 0;
}

int route_command_attach(struct req *r)
{
  struct sbx_ref ref;
  corral_error_t err = NULL;
  struct corral__frame f;
  pid_t pid = parse_pid(r->params[1]);
  if (!pid)
    return api_fail(r, 404, "not_found", "no command `%s`", r->params[1]);
  if (!sandbox_running_or_fail(r, &ref))
    return MHD_YES;
  json_decref(ref.env);
  corral__frame_init(&f, CORRAL__REQ_ATTACH);
  corral__frame_add_u64(&f, CORRAL__T_PID, (uint64_t) pid);
  int fd = agent_request(&ref, &f, &err);
  if (fd < 0)
    {
      api_fail_err(r, err, "attach");
      corral_error_release(&err);
      return MHD_YES;
    }
  struct stream *s = stream_new(r, &ref, fd, NULL, pid);
  if (!s)
    return api_fail(r, 500, "internal", "out of memory");
  int got = corral__frame_recv(fd, &s->buf, &s->cap, &s->pending, -1);
  if (got == 1 && s->pending.type == CORRAL__R_ERROR)
    {
      agent_error(&s->pending, &err);
      bool busy = corral_error_status(err) == EBUSY;
      api_fail(r, busy ? 409 : 404, busy ? "conflict" : "not_found", "command %d: %s", pid,
               corral_error_message(err));
      corral_error_release(&err);
      stream_free(s);
      return MHD_YES;
    }
  s->has_pending = got == 1;
  return respond_stream(r, s, 200);
}

static json_t *command_entry(const struct corral__msg *m)
{
  uint64_t pid = 0, bg = 0, running = 0, started = 0, st = 0;
  char started_at[40];
  corral__msg_u64(m, CORRAL__T_PID, &pid);
  corral__msg_u64(m, CORRAL__T_BACKGROUND, &bg);
  corral__msg_u64(m, CORRAL__T_RUNNING, &running);
  corral__msg_u64(m, CORRAL__T_STARTED_MS, &started);
  bool has_status = corral__msg_u64(m, CORRAL__T_STATUS, &st);
  char **argv = corral__msg_strv(m, CORRAL__T_ARGV, NULL);
  /* The agent's clock is monotonic (the same clock as ours): to wall time. */
  api_time(api_now_ms() - (int64_t) (corral__now_ms() - started), started_at, sizeof(started_at));
  int code = WIFSIGNALED((int) st) ? 128 + WTERMSIG((int) st) : WEXITSTATUS((int) st);
  json_t *o = json_pack("{s:I, s:o, s:b, s:b, s:s, s:o}", "pid", (json_int_t) pid, "cmd", argv_json(argv),
                        "background", (int) bg, "running", (int) running, "started_at", started_at, "exit_code",
                        has_status ? json_integer(code) : json_null());
  corral__strv_free(argv);
  return o;
}

int route_command_list(struct req *r)
{
  struct sbx_ref ref;
  corral_error_t err = NULL;
  struct corral__frame f;
  struct corral__msg m;
  uint8_t *buf = NULL;
  size_t cap = 0;
  if (!sandbox_running_or_fail(r, &ref))
    return MHD_YES;
  json_decref(ref.env);
  corral__frame_init(&f, CORRAL__REQ_LIST);
  int fd = agent_request(&ref, &f, &err);
  if (fd < 0)
    {
      api_fail_err(r, err, "list commands");
      corral_error_release(&err);
      return MHD_YES;
    }
  json_t *arr = json_array();
  while (corral__frame_recv(fd, &buf, &cap, &m, 30000) == 1 && m.type == CORRAL__R_ENTRY)
    json_array_append_new(arr, command_entry(&m));
  free(buf);
  close(fd);
  return api_json(r, 200, json_pack("{s:o}", "commands", arr));
}

static int pid_request(struct req *r, struct corral__frame *f, const struct sbx_ref *ref, pid_t pid,
                       const char *what)
{
  corral_error_t err = NULL;
  if (agent_call(ref, f, &err) < 0)
    {
      if (corral_error_status(err) == ESRCH)
        api_fail(r, 404, "not_found", "no command %d in sandbox `%s`", pid, ref->id);
      else if (corral_error_status(err) == EPIPE)
        api_fail(r, 409, "conflict", "%s: %s", what, corral_error_message(err));
      else
        api_fail_err(r, err, what);
      corral_error_release(&err);
      return MHD_YES;
    }
  return api_json(r, 204, NULL);
}

int route_command_stdin(struct req *r)
{
  struct sbx_ref ref;
  struct corral__frame f;
  json_t *body = api_body_object(r), *v, *eof;
  pid_t pid = parse_pid(r->params[1]);
  if (!body)
    return MHD_YES;
  v = json_object_get(body, "data");
  eof = json_object_get(body, "eof");
  if ((v && !json_is_string(v)) || (eof && !json_is_boolean(eof)) || (!v && !eof))
    {
      json_decref(body);
      return api_fail(r, 400, "invalid_argument", "`data` must be a string and `eof` a boolean");
    }
  if (!pid)
    {
      json_decref(body);
      return api_fail(r, 404, "not_found", "no command `%s`", r->params[1]);
    }
  if (!sandbox_running_or_fail(r, &ref))
    {
      json_decref(body);
      return MHD_YES;
    }
  agent_stdin_frame(&f, pid, v ? json_string_value(v) : NULL, v ? json_string_length(v) : 0, json_is_true(eof));
  json_decref(body);
  pid_request(r, &f, &ref, pid, "stdin");
  json_decref(ref.env);
  return MHD_YES;
}

int route_command_signal(struct req *r)
{
  struct sbx_ref ref;
  struct corral__frame f;
  json_t *body = api_body_object(r);
  pid_t pid = parse_pid(r->params[1]);
  if (!body)
    return MHD_YES;
  int sig = decode_signal(json_object_get(body, "signal"));
  json_decref(body);
  if (!sig)
    return api_fail(r, 400, "invalid_argument", "`signal` must be a signal name (SIGTERM) or number");
  if (!pid)
    return api_fail(r, 404, "not_found", "no command `%s`", r->params[1]);
  if (!sandbox_running_or_fail(r, &ref))
    return MHD_YES;
  corral__frame_init(&f, CORRAL__REQ_SIGNAL);
  corral__frame_add_u64(&f, CORRAL__T_PID, (uint64_t) pid);
  corral__frame_add_u64(&f, CORRAL__T_SIGNAL, (uint64_t) sig);
  api_audit(r->d, json_pack("{s:s, s:s, s:s, s:i, s:s}", "action", "command.signal", "tenant", r->tenant, "sandbox",
                            ref.id, "pid", pid, "signal", signal_name(sig)));
  pid_request(r, &f, &ref, pid, "signal");
  json_decref(ref.env);
  return MHD_YES;
}
