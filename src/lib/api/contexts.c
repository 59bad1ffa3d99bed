/* Code-interpreter contexts: /v1/sandboxes/{id}/contexts and /execute.
 *
 * A context is a runner (runners/<language>/runner.py, bound read-only at
 * /.corral/runners) started in the sandbox as a background command of the
 * agent, so it has every protection of a command.  An execute writes one
 * JSON request line to the runner's stdin, attaches to its output and
 * passes the runner's JSON events on until its "end" event, then detaches;
 * the runner lives on with its state.  One execute at a time per context
 * (a mutex); a timeout sends SIGINT (KeyboardInterrupt) and, if the runner
 * does not come back, kills it: the next execute starts a fresh one. */
#define _GNU_SOURCE
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include "api.h"
#include "../e2b/e2b.h"
#include "../common/utils.h"

#define READY_MS 30000
#define GRACE_MS 3000
#define MAX_CONTEXTS 64
/* Code in the runner can write to the protocol fd: one event line may not
 * grow the daemon's memory without bound. */
#define MAX_EVENT_LINE (32u << 20)
#define CONTEXT_TAG "--corral-context="

struct ctx
{
  struct ctx *next;
  char sandbox[32], id[32], language[16];
  char *cwd;
  json_t *env;
  pid_t pid;               /* the runner; 0 when it has to be (re)started */
  pthread_mutex_t lock;    /* one execute at a time */
};

static const char *const languages[] = { "python", "javascript", "bash", NULL };

/* The runner of a language: interpreter and script. */
static void runner_argv(const char *language, const char *argv[4])
{
  bool js = strcmp(language, "javascript") == 0;
  argv[0] = js ? "/usr/bin/node" : "/usr/bin/python3";
  argv[1] = js ? CORRAL__RUNNERS_PATH "/javascript/runner.js" : "-u";
  argv[2] = js ? NULL : strcmp(language, "bash") == 0 ? CORRAL__RUNNERS_PATH "/bash/runner.py"
                                                       : CORRAL__RUNNERS_PATH "/python/runner.py";
  argv[3] = NULL;
}

/* ---- the table ---- */

static struct ctx *find_locked(struct daemon *d, const char *sandbox, const char *id)
{
  for (struct ctx *c = d->ctxs; c; c = c->next)
    if (strcmp(c->sandbox, sandbox) == 0 && strcmp(c->id, id) == 0)
      return c;
  return NULL;
}

static struct ctx *ctx_new(const char *sandbox, const char *id, const char *language, const char *cwd, json_t *env)
{
  struct ctx *c = calloc(1, sizeof(*c));
  if (!c)
    return NULL;
  snprintf(c->sandbox, sizeof(c->sandbox), "%s", sandbox);
  snprintf(c->id, sizeof(c->id), "%s", id);
  snprintf(c->language, sizeof(c->language), "%s", language);
  c->cwd = strdup(cwd ? cwd : "/home/user");
  c->env = env ? json_incref(env) : json_object();
  pthread_mutex_init(&c->lock, NULL);
  return c;
}

static void ctx_free(struct ctx *c)
{
  pthread_mutex_destroy(&c->lock);
  free(c->cwd);
  json_decref(c->env);
  free(c);
}

void contexts_forget(struct daemon *d, const char *sandbox)
{
  pthread_mutex_lock(&d->lock);
  struct ctx **pp = &d->ctxs;
  while (*pp)
    {
      struct ctx *c = *pp;
      /* A context in use stays listed (and allocated) until corrald stops:
       * freeing it under a running execute is not an option. */
      if (strcmp(c->sandbox, sandbox) == 0 && pthread_mutex_trylock(&c->lock) == 0)
        {
          *pp = c->next;
          pthread_mutex_unlock(&c->lock);
          ctx_free(c);
        }
      else
        pp = &c->next;
    }
  pthread_mutex_unlock(&d->lock);
}

void contexts_free_all(struct daemon *d)
{
  while (d->ctxs)
    {
      struct ctx *c = d->ctxs;
      d->ctxs = c->next;
      ctx_free(c);
    }
}

static json_t *ctx_json(const struct ctx *c)
{
  return json_pack("{s:s, s:s, s:s}", "id", c->id, "language", c->language, "cwd", c->cwd);
}

/* ---- talking to the runner through the agent ---- */

static void signal_runner(const struct sbx_ref *ref, pid_t pid, int sig)
{
  struct corral__frame f;
  corral__frame_init(&f, CORRAL__REQ_SIGNAL);
  corral__frame_add_u64(&f, CORRAL__T_PID, (uint64_t) pid);
  corral__frame_add_u64(&f, CORRAL__T_SIGNAL, (uint64_t) sig);
  agent_call(ref, &f, NULL);
}

static int write_request(const struct sbx_ref *ref, pid_t pid, const char *line, corral_error_t *err)
{
  struct corral__frame f;
  agent_stdin_frame(&f, pid, line, strlen(line), false);
  return agent_call(ref, &f, err);
}

/* An attached stream of the runner's events. */
struct events
{
  int fd;
  uint8_t *buf;
  size_t cap;
  char *line;
  size_t len, size;
  bool exited;
};

static void events_close(struct events *e)
{
  if (e->fd >= 0)
    close(e->fd);
  free(e->buf);
  free(e->line);
  memset(e, 0, sizeof(*e));
  e->fd = -1;
}

static int events_attach(const struct sbx_ref *ref, pid_t pid, struct events *e, corral_error_t *err)
{
  struct corral__frame f;
  memset(e, 0, sizeof(*e));
  corral__frame_init(&f, CORRAL__REQ_ATTACH);
  corral__frame_add_u64(&f, CORRAL__T_PID, (uint64_t) pid);
  e->fd = agent_request(ref, &f, err);
  return e->fd < 0 ? -1 : 0;
}

/* The next event line, waiting until deadline_ms (monotonic; 0 = none).
 * 1 with *ev, 0 on timeout, -1 when the runner or the agent is gone. */
static int events_next(struct events *e, uint64_t deadline_ms, json_t **ev)
{
  for (;;)
    {
      char *nl = e->line ? memchr(e->line, '\n', e->len) : NULL;
      if (nl)
        {
          json_error_t je;
          size_t n = (size_t) (nl - e->line);
          *ev = json_loadb(e->line, n, 0, &je);
          memmove(e->line, nl + 1, e->len - n - 1);
          e->len -= n + 1;
          if (*ev && json_is_object(*ev))
            return 1;
          json_decref(*ev);
          continue;
        }
      int wait = -1;
      if (deadline_ms)
        {
          uint64_t now = corral__now_ms();
          if (now >= deadline_ms)
            return 0;
          wait = (int) (deadline_ms - now);
        }
      struct pollfd p = { e->fd, POLLIN, 0 };
      int r = poll(&p, 1, wait);
      if (r == 0)
        return 0;
      struct corral__msg m;
      if (r < 0 || corral__frame_recv(e->fd, &e->buf, &e->cap, &m, 30000) != 1)
        return -1;
      if (m.type == CORRAL__R_EXIT)
        {
          e->exited = true;
          return -1;
        }
      const uint8_t *d;
      uint32_t l;
      if (m.type != CORRAL__R_STDOUT || !corral__msg_get(&m, CORRAL__T_DATA, &d, &l))
        continue;
      if (e->len + l > MAX_EVENT_LINE)
        return -1;
      if (e->len + l > e->size)
        {
          size_t size = e->size ? e->size : 65536;
          while (size < e->len + l)
            size *= 2;
          char *n = realloc(e->line, size);
          if (!n)
            return -1;
          e->line = n;
          e->size = size;
        }
      memcpy(e->line + e->len, d, l);
      e->len += l;
    }
}

/* Start the context's runner and wait for its "ready". */
static int ctx_start(struct daemon *d, const struct sbx_ref *ref, struct ctx *c, bool preload, corral_error_t *err)
{
  struct corral__frame f;
  pid_t pid = 0;
  const char *argv[4];
  runner_argv(c->language, argv);
  corral__frame_init(&f, CORRAL__REQ_EXEC);
  for (int i = 0; argv[i]; i++)
    corral__frame_add_str(&f, CORRAL__T_ARGV, argv[i]);
  /* Runners ignore this argument; a restarted corrald finds its contexts by it. */
  char tag[64];
  snprintf(tag, sizeof(tag), "%s%s", CONTEXT_TAG, c->id);
  corral__frame_add_str(&f, CORRAL__T_ARGV, tag);
  corral__frame_add_str(&f, CORRAL__T_ENV, "MPLBACKEND=Agg");
  if (preload && d->opt.context_preload && *d->opt.context_preload && strcmp(c->language, "python") == 0)
    {
      char *kv;
      if (asprintf(&kv, "CORRAL_PRELOAD=%s", d->opt.context_preload) >= 0)
        corral__frame_add_str(&f, CORRAL__T_ENV, kv), free(kv);
    }
  agent_frame_env(&f, ref->env);
  agent_frame_env(&f, c->env);
  corral__frame_add_str(&f, CORRAL__T_CWD, c->cwd);
  corral__frame_add_u64(&f, CORRAL__T_BACKGROUND, 1);
  /* The runner's output is its protocol: never cut it. */
  corral__frame_add_u64(&f, CORRAL__T_MAX_OUTPUT, UINT64_MAX / 2);
  int fd = agent_start(ref, &f, &pid, err);
  if (fd < 0)
    return -1;
  close(fd);
  struct events e;
  json_t *ev = NULL;
  if (events_attach(ref, (pid_t) pid, &e, err) < 0)
    return -1;
  int r = events_next(&e, corral__now_ms() + READY_MS, &ev);
  bool ready = r == 1 && strcmp(json_string_value(json_object_get(ev, "type")) ?: "", "ready") == 0;
  json_decref(ev);
  events_close(&e);
  if (!ready)
    {
      signal_runner(ref, (pid_t) pid, SIGKILL);
      return corral_error_set(err, EIO, "the %s runner did not start", c->language);
    }
  c->pid = (pid_t) pid;
  return 0;
}

/* ---- routes: contexts ---- */

static bool env_ok(json_t *env)
{
  const char *k;
  json_t *v;
  if (!json_is_object(env))
    return false;
  json_object_foreach(env, k, v)
    if (!json_is_string(v) || !valid_env_name(k) || strlen(json_string_value(v)) != json_string_length(v))
      return false;
  return true;
}

/* A runner that could not start because of what the client asked (a
 * missing cwd...) is the client's error. */
static int fail_start(struct req *r, corral_error_t err, const char *what)
{
  int e = corral_error_status(err);
  if (e == ENOENT || e == ENOTDIR || e == EACCES)
    return api_fail(r, 400, "invalid_argument", "%s: %s", what, corral_error_message(err));
  return api_fail_err(r, err, what);
}

static bool known_language(const char *l)
{
  for (int i = 0; languages[i]; i++)
    if (strcmp(languages[i], l) == 0)
      return true;
  return false;
}

static int bad_language(struct req *r, const char *l)
{
  return api_fail(r, 400, "invalid_argument", "unknown language `%s` (available: python, javascript, bash)", l);
}

/* The language of a runner's argv. */
static const char *argv_language(char **argv)
{
  for (char **a = argv; a && *a; a++)
    if (strstr(*a, "/javascript/runner.js"))
      return "javascript";
    else if (strstr(*a, "/bash/runner.py"))
      return "bash";
    else if (strstr(*a, "/python/runner.py"))
      return "python";
  return NULL;
}

/* After a restart of corrald the runners still run in their sandboxes:
 * find them (once per sandbox and daemon run) by the tag in their argv. */
static void discover(struct daemon *d, const struct sbx_ref *ref)
{
  struct corral__frame f;
  struct corral__msg m;
  uint8_t *buf = NULL;
  size_t cap = 0;
  pthread_mutex_lock(&d->lock);
  bool known = false;
  for (struct ctx *c = d->ctxs; c && !known; c = c->next)
    known = strcmp(c->sandbox, ref->id) == 0 && strcmp(c->id, "") == 0;
  struct ctx *mark = known ? NULL : ctx_new(ref->id, "", "none", NULL, NULL);
  if (mark)
    {
      mark->next = d->ctxs;
      d->ctxs = mark;
    }
  pthread_mutex_unlock(&d->lock);
  if (!mark)
    return;
  corral__frame_init(&f, CORRAL__REQ_LIST);
  int fd = agent_request(ref, &f, NULL);
  while (fd >= 0 && corral__frame_recv(fd, &buf, &cap, &m, 30000) == 1 && m.type == CORRAL__R_ENTRY)
    {
      uint64_t pid = 0, running = 0;
      char **argv = corral__msg_strv(&m, CORRAL__T_ARGV, NULL);
      const char *lang = argv_language(argv), *id = NULL;
      corral__msg_u64(&m, CORRAL__T_PID, &pid);
      corral__msg_u64(&m, CORRAL__T_RUNNING, &running);
      for (char **a = argv; a && *a; a++)
        if (strncmp(*a, CONTEXT_TAG, strlen(CONTEXT_TAG)) == 0)
          id = *a + strlen(CONTEXT_TAG);
      pthread_mutex_lock(&d->lock);
      if (lang && id && *id && running && !find_locked(d, ref->id, id))
        {
          struct ctx *c = ctx_new(ref->id, id, lang, NULL, NULL);
          if (c)
            {
              c->pid = (pid_t) pid;
              c->next = d->ctxs;
              d->ctxs = c;
            }
        }
      pthread_mutex_unlock(&d->lock);
      corral__strv_free(argv);
    }
  free(buf);
  if (fd >= 0)
    close(fd);
}

/* The context `id` of this request's sandbox, created on demand when it is
 * the default one; NULL after responding 404. */
static struct ctx *get_ctx(struct req *r, const struct sbx_ref *ref, const char *id)
{
  if (!r->d->runners_dir)
    {
      api_fail(r, 503, "unavailable", "this corrald has no code-interpreter runners (see --help)");
      return NULL;
    }
  discover(r->d, ref);
  /* Each language has a default context: "default" (python),
   * "default-javascript", "default-bash". */
  const char *lang = strcmp(id, "default") == 0 ? "python" : strncmp(id, "default-", 8) == 0 ? id + 8 : NULL;
  pthread_mutex_lock(&r->d->lock);
  struct ctx *c = find_locked(r->d, ref->id, id);
  if (!c && lang && known_language(lang) && (c = ctx_new(ref->id, id, lang, NULL, NULL)))
    {
      c->next = r->d->ctxs;
      r->d->ctxs = c;
    }
  pthread_mutex_unlock(&r->d->lock);
  if (!c)
    api_fail(r, 404, "not_found", "no context `%s` in sandbox `%s`", id, ref->id);
  return c;
}

int route_context_create(struct req *r)
{
  struct sbx_ref ref;
  corral_error_t err = NULL;
  char id[32];
  json_t *body = api_body_object(r), *lang, *cwd, *env;
  if (!body)
    return MHD_YES;
  lang = json_object_get(body, "language");
  cwd = json_object_get(body, "cwd");
  env = json_object_get(body, "env");
  const char *language = json_is_string(lang) ? json_string_value(lang) : lang ? NULL : "python";
  if (!language || (cwd && !json_is_string(cwd)) || (env && !env_ok(env)))
    {
      json_decref(body);
      return api_fail(r, 400, "invalid_argument",
                      "`language` and `cwd` must be strings, `env` an object of strings with variable names");
    }
  if (!known_language(language))
    {
      bad_language(r, language);
      json_decref(body);
      return MHD_YES;
    }
  if (!r->d->runners_dir)
    {
      json_decref(body);
      return api_fail(r, 503, "unavailable", "this corrald has no code-interpreter runners (see --help)");
    }
  if (!sandbox_running_or_fail(r, &ref))
    {
      json_decref(body);
      return MHD_YES;
    }
  size_t n = 0;
  pthread_mutex_lock(&r->d->lock);
  for (struct ctx *x = r->d->ctxs; x; x = x->next)
    n += strcmp(x->sandbox, ref.id) == 0;
  pthread_mutex_unlock(&r->d->lock);
  if (n >= MAX_CONTEXTS)
    {
      json_decref(body);
      json_decref(ref.env);
      return api_fail(r, 409, "conflict", "sandbox `%s` has %zu contexts already (at most %d)", ref.id, n,
                      MAX_CONTEXTS);
    }
  sandbox_new_id(id, sizeof(id));
  memcpy(id, "ctx", 3);
  struct ctx *c = ctx_new(ref.id, id, language, json_string_value(cwd), env);
  json_decref(body);
  if (!c || ctx_start(r->d, &ref, c, false, &err) < 0)
    {
      fail_start(r, err, "create context");
      corral_error_release(&err);
      if (c)
        ctx_free(c);
      json_decref(ref.env);
      return MHD_YES;
    }
  pthread_mutex_lock(&r->d->lock);
  c->next = r->d->ctxs;
  r->d->ctxs = c;
  pthread_mutex_unlock(&r->d->lock);
  json_decref(ref.env);
  return api_json(r, 201, ctx_json(c));
}

int route_context_list(struct req *r)
{
  struct sbx_ref ref;
  if (!sandbox_running_or_fail(r, &ref))
    return MHD_YES;
  json_t *arr = json_array();
  bool has_default = false;
  discover(r->d, &ref);
  pthread_mutex_lock(&r->d->lock);
  for (struct ctx *c = r->d->ctxs; c; c = c->next)
    if (strcmp(c->sandbox, ref.id) == 0 && c->id[0])
      {
        has_default |= strcmp(c->id, "default") == 0;
        json_array_append_new(arr, ctx_json(c));
      }
  pthread_mutex_unlock(&r->d->lock);
  /* Every sandbox has a default Python context (started on first use). */
  if (!has_default)
    json_array_insert_new(arr, 0, json_pack("{s:s, s:s, s:s}", "id", "default", "language", "python", "cwd",
                                            "/home/user"));
  json_decref(ref.env);
  /* E2B's /contexts answers the bare list. */
  return api_json(r, 200, r->dialect == API_E2B ? arr : json_pack("{s:o}", "contexts", arr));
}

int route_context_delete(struct req *r)
{
  struct sbx_ref ref;
  if (!sandbox_running_or_fail(r, &ref))
    return MHD_YES;
  discover(r->d, &ref);
  pthread_mutex_lock(&r->d->lock);
  struct ctx **pp = &r->d->ctxs, *c = NULL;
  while (*pp && !(strcmp((*pp)->sandbox, ref.id) == 0 && strcmp((*pp)->id, r->params[1]) == 0))
    pp = &(*pp)->next;
  if (*pp)
    {
      c = *pp;
      *pp = c->next;
    }
  pthread_mutex_unlock(&r->d->lock);
  if (!c && strcmp(r->params[1], "default") != 0)
    {
      json_decref(ref.env);
      return api_fail(r, 404, "not_found", "no context `%s` in sandbox `%s`", r->params[1], ref.id);
    }
  if (c)
    {
      pthread_mutex_lock(&c->lock); /* wait for a running execute */
      if (c->pid)
        signal_runner(&ref, c->pid, SIGKILL);
      pthread_mutex_unlock(&c->lock);
      ctx_free(c);
    }
  json_decref(ref.env);
  return api_json(r, 204, NULL);
}

int route_context_restart(struct req *r)
{
  struct sbx_ref ref;
  corral_error_t err = NULL;
  if (!sandbox_running_or_fail(r, &ref))
    return MHD_YES;
  struct ctx *c = get_ctx(r, &ref, r->params[1]);
  if (c)
    {
      pthread_mutex_lock(&c->lock);
      if (c->pid)
        signal_runner(&ref, c->pid, SIGKILL);
      c->pid = 0;
      if (ctx_start(r->d, &ref, c, false, &err) < 0)
        fail_start(r, err, "restart context");
      else
        api_json(r, 200, ctx_json(c));
      pthread_mutex_unlock(&c->lock);
      corral_error_release(&err);
    }
  json_decref(ref.env);
  return MHD_YES;
}

/* ---- routes: execute ---- */

struct exec
{
  struct daemon *d;
  struct sbx_ref ref;
  struct ctx *c;             /* locked while the execute runs */
  struct events e;
  uint64_t deadline_ms, timeout_ms;
  bool interrupted, done, end_pending, ndjson;
  bool e2b;                  /* events in the E2B code interpreter's shape */
  int client_fd;
  char *line;                /* ndjson: the line being sent */
  size_t line_len, line_off;
};

static void exec_finish(struct exec *x)
{
  events_close(&x->e);
  pthread_mutex_unlock(&x->c->lock);
  json_decref(x->ref.env);
  free(x->line);
  free(x);
}

static bool client_gone(struct exec *x)
{
  struct pollfd p = { x->client_fd, POLLRDHUP, 0 };
  return x->client_fd >= 0 && poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

static json_t *failure_event(struct exec *x, const char *name, const char *value)
{
  x->c->pid = 0; /* the next execute starts a fresh runner */
  x->end_pending = true;
  return json_pack("{s:s, s:s, s:s, s:s}", "type", "error", "name", name, "value", value, "traceback", "");
}

/* The runner's next event; handles the timeout (SIGINT, then a kill). */
static json_t *exec_next(struct exec *x)
{
  if (x->end_pending)
    {
      x->end_pending = false;
      x->done = true;
      return json_pack("{s:s, s:i}", "type", "end", "duration_ms", 0);
    }
  for (;;)
    {
      json_t *ev = NULL;
      uint64_t until = x->deadline_ms;
      /* Wake up now and then to notice a client that hung up. */
      uint64_t tick = corral__now_ms() + 500;
      int r = events_next(&x->e, until && until < tick ? until : tick, &ev);
      if (r == 1)
        {
          const char *type = json_string_value(json_object_get(ev, "type")) ?: "";
          if (strcmp(type, "ready") == 0)
            {
              json_decref(ev);
              continue;
            }
          x->done = strcmp(type, "end") == 0;
          return ev;
        }
      if (r < 0)
        return failure_event(x, "ContextDied", "the interpreter of this context exited; its state is lost");
      bool timed_out = x->deadline_ms && corral__now_ms() >= x->deadline_ms;
      if (!timed_out && !client_gone(x))
        continue;
      if (!x->interrupted)
        {
          /* KeyboardInterrupt in the running code; the state survives. */
          signal_runner(&x->ref, x->c->pid, SIGINT);
          x->interrupted = true;
          x->deadline_ms = corral__now_ms() + GRACE_MS;
          continue;
        }
      signal_runner(&x->ref, x->c->pid, SIGKILL);
      return failure_event(x, "TimeoutError", "the code did not stop after an interrupt: the context was restarted");
    }
}

static ssize_t exec_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
  (void) pos;
  struct exec *x = cls;
  while (x->line_off >= x->line_len)
    {
      if (x->done)
        return MHD_CONTENT_READER_END_OF_STREAM;
      json_t *ev = exec_next(x);
      if (ev && x->e2b && !(ev = e2b_code_event(ev)))
        continue;
      free(x->line);
      x->line = ev ? json_dumps(ev, JSON_COMPACT) : NULL;
      json_decref(ev);
      if (!x->line)
        return MHD_CONTENT_READER_END_WITH_ERROR;
      x->line_len = strlen(x->line);
      x->line[x->line_len++] = '\n';
      x->line_off = 0;
    }
  size_t n = x->line_len - x->line_off < max ? x->line_len - x->line_off : max;
  memcpy(buf, x->line + x->line_off, n);
  x->line_off += n;
  return (ssize_t) n;
}

/* A client that went away mid-execute: stop the code and drain its events,
 * so that the next execute does not read them. */
static void exec_free(void *cls)
{
  struct exec *x = cls;
  while (!x->done)
    json_decref(exec_next(x));
  exec_finish(x);
}

static int exec_collect(struct req *r, struct exec *x)
{
  json_t *results = json_array(), *out = json_array(), *err = json_array(), *error = json_null();
  json_int_t count = 0, duration = 0;
  while (!x->done)
    {
      json_t *ev = exec_next(x);
      const char *type = json_string_value(json_object_get(ev, "type")) ?: "";
      if (strcmp(type, "stdout") == 0 || strcmp(type, "stderr") == 0)
        json_array_append(type[3] == 'o' ? out : err, json_object_get(ev, "text"));
      else if (strcmp(type, "result") == 0)
        {
          json_object_del(ev, "type");
          json_array_append(results, ev);
        }
      else if (strcmp(type, "error") == 0)
        {
          json_object_del(ev, "type");
          json_decref(error);
          error = json_incref(ev);
        }
      else if (strcmp(type, "execution_count") == 0)
        count = json_integer_value(json_object_get(ev, "count"));
      else if (strcmp(type, "end") == 0)
        duration = json_integer_value(json_object_get(ev, "duration_ms"));
      json_decref(ev);
    }
  exec_finish(x);
  return api_json(r, 200, json_pack("{s:o, s:{s:o, s:o}, s:o, s:I, s:I}", "results", results, "logs", "stdout", out,
                                    "stderr", err, "error", error, "execution_count", count, "duration_ms",
                                    duration));
}

struct exec_body
{
  bool language_given;
  const char *code, *context, *language;
  json_t *env;
  uint64_t timeout_ms, max_output;
};

static int decode_execute(struct req *r, json_t *body, struct exec_body *b)
{
  json_t *v;
  memset(b, 0, sizeof(*b));
  b->max_output = 1 << 20;
  v = json_object_get(body, "code");
  if (!json_is_string(v) || json_string_length(v) == 0)
    return api_fail(r, 400, "invalid_argument", "`code` must be a non-empty string"), -1;
  b->code = json_string_value(v);
  if ((v = json_object_get(body, "context_id")) && !json_is_null(v))
    {
      if (!json_is_string(v))
        return api_fail(r, 400, "invalid_argument", "`context_id` must be a string"), -1;
      b->context = json_string_value(v);
    }
  v = json_object_get(body, "language");
  b->language = json_is_string(v) ? json_string_value(v) : "python";
  if (v && !json_is_null(v) && !json_is_string(v))
    return api_fail(r, 400, "invalid_argument", "`language` must be a string"), -1;
  if (!b->context && !known_language(b->language))
    return bad_language(r, b->language), -1;
  b->env = json_object_get(body, "env");
  if (b->env && !json_is_null(b->env) && !env_ok(b->env))
    return api_fail(r, 400, "invalid_argument", "`env` must be an object of strings with variable names"), -1;
  if (b->context && v && !json_is_null(v))
    b->language_given = true;
  v = json_object_get(body, "timeout_ms");
  if (v && !json_is_null(v) && (!json_is_integer(v) || json_integer_value(v) < 0))
    return api_fail(r, 400, "invalid_argument", "`timeout_ms` must be a non-negative integer"), -1;
  b->timeout_ms = v ? (uint64_t) json_integer_value(v) : 0;
  v = json_object_get(body, "max_output");
  if (v && !json_is_null(v) && (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > (64 << 20)))
    return api_fail(r, 400, "invalid_argument", "`max_output` must be between 1 and 67108864"), -1;
  if (v && json_is_integer(v))
    b->max_output = (uint64_t) json_integer_value(v);
  return 0;
}

/* Start the request on a locked context whose runner runs. */
static int exec_begin(struct exec *x, const struct exec_body *b, corral_error_t *err)
{
  /* The sandbox's env, then the execute's: a context started ahead of its
   * sandbox's claim (the pool) gets it this way too. */
  json_t *env = json_deep_copy(x->ref.env ? x->ref.env : json_object());
  if (b->env && json_is_object(b->env))
    json_object_update(env, b->env);
  json_t *req = json_pack("{s:s, s:I, s:o}", "code", b->code, "max_output", (json_int_t) b->max_output, "env", env);
  char *line = req ? json_dumps(req, JSON_COMPACT) : NULL;
  json_decref(req);
  if (!line)
    return corral_error_set(err, ENOMEM, "request");
  size_t n = strlen(line);
  char *nl = realloc(line, n + 2);
  if (!nl)
    return free(line), corral_error_set(err, ENOMEM, "request");
  nl[n] = '\n', nl[n + 1] = '\0';
  int r = -1;
  for (int attempt = 0; attempt < 2 && r < 0; attempt++)
    {
      corral_error_release(err);
      if (!x->c->pid && ctx_start(x->d, &x->ref, x->c, false, err) < 0)
        break;
      r = write_request(&x->ref, x->c->pid, nl, err);
      if (r < 0)
        x->c->pid = 0; /* gone: start a new runner once */
    }
  free(nl);
  if (r < 0 || events_attach(&x->ref, x->c->pid, &x->e, err) < 0)
    return -1;
  x->deadline_ms = b->timeout_ms ? corral__now_ms() + b->timeout_ms : 0;
  return 0;
}

int route_execute(struct req *r)
{
  struct exec_body b;
  corral_error_t err = NULL;
  json_t *body = api_body_object(r);
  if (!body)
    return MHD_YES;
  struct exec *x = calloc(1, sizeof(*x));
  if (!x || decode_execute(r, body, &b) < 0 || !sandbox_running_or_fail(r, &x->ref))
    {
      free(x);
      json_decref(body);
      return r->responded ? MHD_YES : api_fail(r, 500, "internal", "out of memory");
    }
  x->d = r->d;
  x->e.fd = -1;
  char dflt[32];
  snprintf(dflt, sizeof(dflt), "%s%s", strcmp(b.language, "python") ? "default-" : "default",
           strcmp(b.language, "python") ? b.language : "");
  x->c = get_ctx(r, &x->ref, b.context ? b.context : dflt);
  if (x->c && b.language_given && strcmp(x->c->language, b.language) != 0)
    {
      api_fail(r, 400, "invalid_argument", "context `%s` runs %s, not %s", x->c->id, x->c->language, b.language);
      x->c = NULL;
    }
  if (!x->c)
    {
      json_decref(x->ref.env);
      free(x);
      json_decref(body);
      return MHD_YES;
    }
  pthread_mutex_lock(&x->c->lock);
  const union MHD_ConnectionInfo *ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
  x->client_fd = ci ? ci->connect_fd : -1;
  if (exec_begin(x, &b, &err) < 0)
    {
      json_decref(body);
      fail_start(r, err, "execute");
      corral_error_release(&err);
      exec_finish(x);
      return MHD_YES;
    }
  json_decref(body);
  x->e2b = r->dialect == API_E2B; /* the code interpreter SDK reads a stream */
  if (!api_wants_ndjson(r) && !x->e2b)
    return exec_collect(r, x);
  struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, exec_reader, x, exec_free);
  if (!resp)
    {
      exec_free(x);
      return api_fail(r, 500, "internal", "cannot stream");
    }
  MHD_add_response_header(resp, "Content-Type", "application/x-ndjson");
  metrics_request(r->d, r->method, 200, NULL);
  return api_queue(r, 200, resp);
}

/* A pooled sandbox gets its default Python context started ahead too, so
 * that a create followed by an execute pays for neither. */
void contexts_prestart(struct daemon *d, const char *sandbox)
{
  corral_error_t err = NULL;
  struct sbx_ref ref;
  if (registry_ref(d, sandbox, &ref) != 1)
    return;
  struct ctx *c = ctx_new(sandbox, "default", "python", NULL, NULL);
  if (!c)
    {
      json_decref(ref.env);
      return;
    }
  /* Listed, and locked, before it starts: an execute that comes first
   * (the sandbox may be claimed at once) waits for this runner instead of
   * starting a second one. */
  pthread_mutex_lock(&c->lock);
  pthread_mutex_lock(&d->lock);
  c->next = d->ctxs;
  d->ctxs = c;
  pthread_mutex_unlock(&d->lock);
  if (ctx_start(d, &ref, c, true, &err) < 0)
    api_log(d, "pool: default context: %s", corral_error_message(err));
  pthread_mutex_unlock(&c->lock);
  corral_error_release(&err);
  json_decref(ref.env);
}
