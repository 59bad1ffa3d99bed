/* envd's directory watching (filesystem.Filesystem's WatchDir,
 * CreateWatcher, GetWatcherEvents, RemoveWatcher) over the agent's WATCH
 * request, which streams inotify's changes for as long as its connection
 * lasts.
 *
 * WatchDir relays that connection as a server stream.  A watcher of
 * CreateWatcher outlives its call, so a thread of its own reads the agent
 * and keeps the events (bounded) until GetWatcherEvents takes them; closing
 * the connection is what ends the agent's side in both cases. */
#define _GNU_SOURCE
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include "e2b.h"
#include "../common/utils.h"

#define DEFAULT_KEEPALIVE_MS 30000
#define MAX_EVENTS 10000       /* kept per watcher between two GetWatcherEvents */
#define MAX_WATCHES 1024       /* streams and watchers in the daemon */
#define MAX_SANDBOX_WATCHES 32
#define SWEEP_BATCH 64 /* sandboxes looked up per sweep */
#define COLLECTOR_STACK (256u << 10)

/* Why a watch ended, as a status (the Connect code follows) and text. */
struct werr
{
  unsigned status;
  char msg[512];
};

static void werr_set(struct werr *e, unsigned status, const char *msg)
{
  e->status = status;
  snprintf(e->msg, sizeof(e->msg), "%s", msg);
}

/* ---- the agent's side ---- */

struct wreader
{
  int fd;
  uint8_t *buf;
  size_t cap;
};

static void wreader_release(struct wreader *w)
{
  if (w->fd >= 0)
    close(w->fd);
  w->fd = -1;
  free(w->buf);
  w->buf = NULL;
}

/* A name as a JSON string: file names are bytes, JSON strings UTF-8. */
static json_t *name_string(const char *s)
{
  json_t *j = json_string(s);
  if (j)
    return j;
  cleanup_free char *copy = strdup(s);
  if (!copy)
    return NULL;
  for (char *c = copy; *c; c++)
    if ((unsigned char) *c >= 0x80)
      *c = '?';
  return json_string(copy);
}

static const char *event_type(uint64_t t)
{
  static const char *const names[] = {
    [CORRAL__EV_CREATE] = "EVENT_TYPE_CREATE", [CORRAL__EV_WRITE] = "EVENT_TYPE_WRITE",
    [CORRAL__EV_REMOVE] = "EVENT_TYPE_REMOVE", [CORRAL__EV_RENAME] = "EVENT_TYPE_RENAME",
    [CORRAL__EV_CHMOD] = "EVENT_TYPE_CHMOD",
  };
  return t < sizeof(names) / sizeof(*names) && names[t] ? names[t] : "EVENT_TYPE_UNSPECIFIED";
}

/* The next change as a FilesystemEvent, its entry (R_ENTRY before R_EVENT)
 * included; NULL when the watch ended, with e saying why. */
static json_t *read_event(struct wreader *w, int timeout_ms, struct werr *e)
{
  struct corral__msg m;
  json_t *entry = NULL;
  for (;;)
    {
      int got = corral__frame_recv(w->fd, &w->buf, &w->cap, &m, timeout_ms);
      if (got != 1)
        {
          json_decref(entry);
          werr_set(e, 502, "the watch ended: its worker in the sandbox went away (did the sandbox end?)");
          return NULL;
        }
      if (m.type == CORRAL__R_ENTRY)
        {
          json_decref(entry);
          entry = e2b_entry_info(&m); /* NULL (a name that is not UTF-8): the event goes without */
        }
      else if (m.type == CORRAL__R_EVENT)
        {
          uint64_t type = 0;
          cleanup_free char *name = corral__msg_strdup(&m, CORRAL__T_NAME);
          corral__msg_u64(&m, CORRAL__T_TYPE, &type);
          json_t *ev = json_pack("{s:o*, s:s}", "name", name ? name_string(name) : NULL, "type", event_type(type));
          if (ev && entry)
            json_object_set(ev, "entry", entry);
          json_decref(entry);
          if (ev)
            return ev;
          entry = NULL;
        }
      else if (m.type == CORRAL__R_ERROR)
        {
          corral_error_t err = NULL;
          const char *code;
          json_decref(entry);
          agent_error(&m, &err);
          werr_set(e, api_status_of(corral_error_status(err), &code), corral_error_message(err));
          corral_error_release(&err);
          return NULL;
        }
      timeout_ms = 10000; /* the rest of one change is on its way */
    }
}

/* Parse a WatchDirRequest / CreateWatcherRequest and start the agent's
 * watch: its connection, or -1 after responding. */
static int start_watch(struct req *r, struct sbx_ref *ref)
{
  json_t *m = connect_request(r), *path, *rec, *inc;
  struct corral__frame f;
  struct corral__msg msg;
  corral_error_t err = NULL;
  if (!m)
    return -1;
  path = json_object_get(m, "path");
  rec = json_object_get(m, "recursive");
  inc = json_object_get(m, "includeEntry");
  int fd = -1;
  if (!json_is_string(path) || json_string_length(path) == 0 || json_string_length(path) >= 4000
      || strlen(json_string_value(path)) != json_string_length(path))
    api_fail(r, 400, "invalid_argument", "`path` must be a non-empty path");
  else if ((rec && !json_is_boolean(rec)) || (inc && !json_is_boolean(inc)))
    api_fail(r, 400, "invalid_argument", "`recursive` and `includeEntry` are booleans");
  else if (e2b_user(r) >= 0 && sandbox_running_or_fail(r, ref))
    {
      json_decref(ref->env);
      ref->env = NULL;
      corral__frame_init(&f, CORRAL__REQ_WATCH);
      corral__frame_add_str(&f, CORRAL__T_PATH, json_string_value(path));
      corral__frame_add_u64(&f, CORRAL__T_RECURSIVE, json_is_true(rec));
      corral__frame_add_u64(&f, CORRAL__T_WITH_ENTRY, json_is_true(inc));
      fd = agent_request(ref, &f, &err);
    }
  json_decref(m);
  if (fd < 0 && !err)
    return -1;
  uint8_t *buf = NULL;
  size_t cap = 0;
  /* Watching a big tree takes a while: the agent answers once it is set. */
  if (fd >= 0 && corral__frame_recv(fd, &buf, &cap, &msg, 60000) != 1)
    corral_error_set(&err, EIO, "the sandbox agent did not answer");
  else if (fd >= 0 && msg.type != CORRAL__R_OK)
    agent_error(&msg, &err);
  free(buf);
  if (!err)
    return fd;
  if (fd >= 0)
    close(fd);
  api_fail_err(r, err, NULL);
  corral_error_release(&err);
  return -1;
}

/* ---- the daemon's list of watches ---- */

/* Every watch, a WatchDir stream's too: each holds an inotify instance in
 * its sandbox, and the host's bound on those (fs.inotify.max_user_instances)
 * is shared by every sandbox of one uid, so that one sandbox gets a share. */
struct e2b_watcher
{
  struct e2b_watcher *next;
  struct e2b_state *st;
  char id[32], sandbox[32]; /* id "" for a stream, listed only to be counted */
  struct wreader rd;        /* a watcher's: read by its collector, closed after the join */
  pthread_t thread;
  bool collecting;          /* the collector runs (a watcher, once started) */
  /* guarded by st->lock: */
  json_t *events;           /* FilesystemEvents not fetched yet */
  bool ended;               /* the collector is done; error says why */
  struct werr error;
};

/* List w unless a bound is reached (then -1). */
static int watcher_add(struct e2b_state *st, struct e2b_watcher *w)
{
  size_t all = 0, mine = 0;
  pthread_mutex_lock(&st->lock);
  for (struct e2b_watcher *x = st->watchers; x; x = x->next)
    all++, mine += strcmp(x->sandbox, w->sandbox) == 0;
  bool ok = all < MAX_WATCHES && mine < MAX_SANDBOX_WATCHES;
  if (ok)
    {
      w->next = st->watchers;
      st->watchers = w;
    }
  pthread_mutex_unlock(&st->lock);
  return ok ? 0 : -1;
}

static int too_many(struct req *r)
{
  return api_fail(r, 429, "resource_exhausted", "too many watches (at most %d per sandbox); end some first",
                  MAX_SANDBOX_WATCHES);
}

/* ---- WatchDir: a server stream ---- */

struct wstream
{
  struct wreader rd;
  struct e2b_watcher slot; /* its place in the list */
  int client_fd, keepalive_ms;
  uint64_t deadline_ms; /* Connect-Timeout-Ms; 0 for none */
  bool sent_start, done;
};

static uint64_t now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

/* 1 when the agent has something, 0 on the keepalive tick, -1 when the
 * client hung up, -2 at the call's deadline. */
static int wait_ready(struct wstream *s)
{
  struct pollfd p[2] = { { s->rd.fd, POLLIN, 0 }, { s->client_fd, POLLRDHUP, 0 } };
  for (;;)
    {
      int timeout = s->keepalive_ms;
      if (s->deadline_ms)
        {
          uint64_t now = now_ms();
          if (now >= s->deadline_ms)
            return -2;
          if (s->deadline_ms - now < (uint64_t) timeout)
            timeout = (int) (s->deadline_ms - now);
        }
      int r = poll(p, s->client_fd >= 0 ? 2 : 1, timeout);
      if (r < 0 && errno == EINTR)
        continue;
      if (r < 0)
        return -1;
      if (p[0].revents)
        return 1;
      if (r > 0 && (p[1].revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)))
        return -1;
      if (r == 0 && (!s->deadline_ms || now_ms() < s->deadline_ms))
        return 0;
    }
}

static json_t *wstream_next(void *ctx, json_t **error)
{
  struct wstream *s = ctx;
  struct werr e = { 0 };
  if (!s->sent_start)
    {
      s->sent_start = true;
      return json_pack("{s:{}}", "start");
    }
  if (s->done)
    return NULL;
  int ready = wait_ready(s);
  if (ready == 0)
    return json_pack("{s:{}}", "keepalive");
  json_t *ev = ready > 0 ? read_event(&s->rd, 10000, &e) : NULL;
  if (ev)
    return json_pack("{s:o}", "filesystem", ev);
  /* Ended; a client gone needs no error, and closing the agent's
   * connection (release) ends its worker. */
  s->done = true;
  if (ready > 0)
    *error = connect_error(e.status, "%s", e.msg);
  else if (ready == -2)
    *error = connect_error(504, "the call's deadline passed");
  return NULL;
}

static void wstream_release(void *ctx)
{
  struct wstream *s = ctx;
  struct e2b_state *st = s->slot.st;
  pthread_mutex_lock(&st->lock);
  for (struct e2b_watcher **pp = &st->watchers; *pp; pp = &(*pp)->next)
    if (*pp == &s->slot)
      {
        *pp = s->slot.next;
        break;
      }
  pthread_mutex_unlock(&st->lock);
  wreader_release(&s->rd);
  free(s);
}

int e2b_fs_watch_dir(struct req *r)
{
  struct sbx_ref ref;
  const char *ka = api_header(r, "Keepalive-Ping-Interval"), *deadline = api_header(r, "Connect-Timeout-Ms");
  const union MHD_ConnectionInfo *ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
  uint64_t timeout_ms = deadline ? strtoull(deadline, NULL, 10) : 0;
  if (timeout_ms > 1000ull * 86400 * 365)
    timeout_ms = 0; /* nobody waits that long: no deadline (and no overflow) */
  struct wstream *s = calloc(1, sizeof(*s));
  if (!s)
    return api_fail(r, 500, "internal", "out of memory");
  if ((s->rd.fd = start_watch(r, &ref)) < 0)
    {
      free(s);
      return MHD_YES;
    }
  s->slot.st = r->d->e2b;
  snprintf(s->slot.sandbox, sizeof(s->slot.sandbox), "%s", ref.id);
  if (watcher_add(r->d->e2b, &s->slot) < 0)
    {
      wreader_release(&s->rd);
      free(s);
      return too_many(r);
    }
  s->client_fd = ci ? ci->connect_fd : -1;
  s->keepalive_ms = ka && atoi(ka) > 0 && atoi(ka) < 3600 ? atoi(ka) * 1000 : DEFAULT_KEEPALIVE_MS;
  s->deadline_ms = timeout_ms ? now_ms() + timeout_ms : 0;
  return connect_respond_stream(r, (struct connect_stream){ wstream_next, wstream_release, s });
}

/* ---- watchers: CreateWatcher, GetWatcherEvents, RemoveWatcher ---- */

/* The collector: the agent's events into w->events until the watch ends,
 * the buffer overflows or the watcher is removed (its socket shut down). */
static void *collect(void *arg)
{
  struct e2b_watcher *w = arg;
  struct werr e = { 0 };
  bool ended = false;
  while (!ended)
    {
      json_t *ev = read_event(&w->rd, -1, &e);
      pthread_mutex_lock(&w->st->lock);
      if (ev && json_array_size(w->events) >= MAX_EVENTS)
        {
          /* As envd after an inotify overflow: the watcher reports the loss
           * from then on, and a new one starts afresh. */
          e.status = 429;
          snprintf(e.msg, sizeof(e.msg),
                   "more than %d events were not fetched: events were lost; create a new watcher", MAX_EVENTS);
          json_decref(ev);
          ev = NULL;
        }
      if (ev)
        json_array_append_new(w->events, ev);
      else
        w->ended = ended = true, w->error = e;
      pthread_mutex_unlock(&w->st->lock);
    }
  shutdown(w->rd.fd, SHUT_RDWR); /* the agent's worker ends with it */
  return NULL;
}

static void watcher_free(struct e2b_watcher *w)
{
  if (w->collecting)
    {
      shutdown(w->rd.fd, SHUT_RDWR); /* wakes the collector */
      pthread_join(w->thread, NULL);
    }
  wreader_release(&w->rd);
  json_decref(w->events);
  free(w);
}

/* A watcher whose watch ended stays, so that GetWatcherEvents can say why,
 * until RemoveWatcher or its sandbox's end: the ones of ended sandboxes
 * are freed here, on every watcher call. */
static void sweep(struct daemon *d)
{
  char dead[SWEEP_BATCH][32];
  size_t n = 0;
  struct e2b_watcher *gone = NULL;
  pthread_mutex_lock(&d->e2b->lock);
  for (struct e2b_watcher *w = d->e2b->watchers; w && n < SWEEP_BATCH; w = w->next)
    {
      size_t i = 0;
      while (i < n && strcmp(dead[i], w->sandbox) != 0)
        i++;
      if (w->ended && i == n)
        memcpy(dead[n++], w->sandbox, sizeof(dead[0]));
    }
  pthread_mutex_unlock(&d->e2b->lock);
  /* Outside the lock: the registry has its own. */
  for (size_t i = 0; i < n; i++)
    {
      struct sbx_ref ref;
      if (registry_ref(d, dead[i], &ref))
        dead[i][0] = '\0';
      json_decref(ref.env);
    }
  pthread_mutex_lock(&d->e2b->lock);
  for (struct e2b_watcher **pp = &d->e2b->watchers; *pp;)
    {
      struct e2b_watcher *w = *pp;
      bool drop = false;
      for (size_t i = 0; i < n && w->ended && !drop; i++)
        drop = strcmp(dead[i], w->sandbox) == 0;
      if (drop)
        *pp = w->next, w->next = gone, gone = w;
      else
        pp = &w->next;
    }
  pthread_mutex_unlock(&d->e2b->lock);
  while (gone)
    {
      struct e2b_watcher *next = gone->next;
      watcher_free(gone);
      gone = next;
    }
}

static struct e2b_watcher *watcher_new(struct daemon *d, const char *sandbox, int fd)
{
  unsigned char rnd[12];
  struct e2b_watcher *w = calloc(1, sizeof(*w));
  if (!w || getrandom(rnd, sizeof(rnd), 0) != (ssize_t) sizeof(rnd) || !(w->events = json_array()))
    {
      if (w)
        json_decref(w->events);
      free(w);
      return NULL;
    }
  w->st = d->e2b;
  w->rd.fd = fd;
  snprintf(w->sandbox, sizeof(w->sandbox), "%s", sandbox);
  w->id[0] = 'w';
  for (size_t i = 0; i < sizeof(rnd); i++)
    snprintf(w->id + 1 + 2 * i, 3, "%02x", rnd[i]);
  return w;
}

static int start_collector(struct e2b_watcher *w)
{
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, COLLECTOR_STACK);
  w->collecting = pthread_create(&w->thread, &attr, collect, w) == 0;
  pthread_attr_destroy(&attr);
  return w->collecting ? 0 : -1;
}

int e2b_fs_create_watcher(struct req *r)
{
  struct sbx_ref ref;
  sweep(r->d);
  int fd = start_watch(r, &ref);
  if (fd < 0)
    return MHD_YES;
  struct e2b_watcher *w = watcher_new(r->d, ref.id, fd);
  if (!w || start_collector(w) < 0)
    {
      if (w)
        watcher_free(w);
      else
        close(fd);
      return api_fail(r, 500, "internal", "cannot start the watcher");
    }
  if (watcher_add(r->d->e2b, w) < 0)
    {
      watcher_free(w);
      return too_many(r);
    }
  return api_json(r, 200, json_pack("{s:s}", "watcherId", w->id));
}

/* The request's watcherId and the running sandbox; NULL after responding. */
static const char *watcher_request(struct req *r, struct sbx_ref *ref, json_t **m)
{
  json_t *id;
  if (!(*m = connect_request(r)))
    return NULL;
  id = json_object_get(*m, "watcherId");
  if (!json_is_string(id) || json_string_length(id) == 0)
    api_fail(r, 400, "invalid_argument", "`watcherId` is required");
  else if (sandbox_running_or_fail(r, ref))
    {
      json_decref(ref->env);
      sweep(r->d);
      return json_string_value(id);
    }
  json_decref(*m);
  *m = NULL;
  return NULL;
}

/* A watcher belongs to the sandbox it watches: another sandbox's id is
 * as unknown as a made-up one. */
static struct e2b_watcher **watcher_find(struct e2b_state *st, const char *id, const char *sandbox)
{
  for (struct e2b_watcher **pp = &st->watchers; *pp; pp = &(*pp)->next)
    if (strcmp((*pp)->id, id) == 0 && strcmp((*pp)->sandbox, sandbox) == 0)
      return pp;
  return NULL;
}

int e2b_fs_get_watcher_events(struct req *r)
{
  struct sbx_ref ref;
  json_t *m, *events = NULL;
  struct werr e = { 0 };
  const char *id = watcher_request(r, &ref, &m);
  if (!id)
    return MHD_YES;
  pthread_mutex_lock(&r->d->e2b->lock);
  struct e2b_watcher **pp = watcher_find(r->d->e2b, id, ref.id);
  if (pp && (*pp)->ended)
    e = (*pp)->error;
  else if (pp && (events = json_array()))
    {
      json_t *t = (*pp)->events;
      (*pp)->events = events;
      events = t;
    }
  pthread_mutex_unlock(&r->d->e2b->lock);
  if (!pp)
    api_fail(r, 404, "not_found", "watcher with id %s not found", id);
  else if (e.status)
    api_fail(r, e.status, connect_code(e.status), "%s", e.msg);
  else if (!events)
    api_fail(r, 500, "internal", "out of memory");
  else
    api_json(r, 200, json_pack("{s:o}", "events", events));
  json_decref(m);
  return MHD_YES;
}

int e2b_fs_remove_watcher(struct req *r)
{
  struct sbx_ref ref;
  json_t *m;
  struct e2b_watcher *w = NULL;
  const char *id = watcher_request(r, &ref, &m);
  if (!id)
    return MHD_YES;
  pthread_mutex_lock(&r->d->e2b->lock);
  struct e2b_watcher **pp = watcher_find(r->d->e2b, id, ref.id);
  if (pp)
    {
      w = *pp;
      *pp = w->next;
    }
  pthread_mutex_unlock(&r->d->e2b->lock);
  if (w)
    {
      watcher_free(w);
      api_json(r, 200, json_object());
    }
  else
    api_fail(r, 404, "not_found", "watcher with id %s not found", id);
  json_decref(m);
  return MHD_YES;
}

/* Streams have ended by now; were one still on, its entry is its own. */
void e2b_watchers_free(struct daemon *d)
{
  struct e2b_watcher *w = d->e2b->watchers;
  d->e2b->watchers = NULL;
  while (w)
    {
      struct e2b_watcher *next = w->next;
      if (w->id[0])
        watcher_free(w);
      w = next;
    }
}
