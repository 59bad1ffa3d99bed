/* Running sandboxes: the in-memory registry, quotas, and the lifecycle
 * thread that notices deaths (pidfds in an epoll set), enforces TTLs and
 * purges old records.
 *
 * Exactly one thread finalises a sandbox (cleans up its cgroup and socket,
 * closes its pidfd, records its end): the first to claim it, a DELETE or
 * the lifecycle thread on its death.  The sandbox stays listed meanwhile,
 * so a pidfd is never closed while another thread might use it, and a
 * second DELETE waits on `ended` for the first to finish. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include "api.h"
#include "../common/utils.h"

#define PURGE_EVERY_MS 30000

static struct sbx *find_locked(struct daemon *d, const char *id)
{
  for (size_t i = 0; i < d->n_sbxs; i++)
    if (strcmp(d->sbxs[i]->id, id) == 0)
      return d->sbxs[i];
  return NULL;
}

static struct sbx *find_serial_locked(struct daemon *d, uint64_t serial)
{
  for (size_t i = 0; i < d->n_sbxs; i++)
    if (d->sbxs[i]->serial == serial)
      return d->sbxs[i];
  return NULL;
}

static void remove_locked(struct daemon *d, struct sbx *s)
{
  for (size_t i = 0; i < d->n_sbxs; i++)
    if (d->sbxs[i] == s)
      {
        d->sbxs[i] = d->sbxs[--d->n_sbxs];
        return;
      }
}

static int insert_locked(struct daemon *d, struct sbx *s)
{
  if (d->n_sbxs == d->cap_sbxs)
    {
      size_t cap = d->cap_sbxs ? d->cap_sbxs * 2 : 64;
      struct sbx **n = realloc(d->sbxs, cap * sizeof(*n));
      if (!n)
        return -1;
      d->sbxs = n;
      d->cap_sbxs = cap;
    }
  s->serial = ++d->next_serial;
  d->sbxs[d->n_sbxs++] = s;
  return 0;
}

static void sbx_free(struct sbx *s)
{
  free(s->tenant);
  json_decref(s->env);
  free(s);
}

static void wake(struct daemon *d)
{
  uint64_t one = 1;
  if (write(d->wake_fd, &one, sizeof(one)) < 0)
    return;
}

static void watch(struct daemon *d, struct sbx *s)
{
  struct epoll_event ev = { .events = EPOLLIN | EPOLLONESHOT, .data.u64 = s->serial };
  epoll_ctl(d->epoll_fd, EPOLL_CTL_ADD, s->box.pidfd, &ev);
}

/* ---- lookups for request handlers ---- */

static void fill_ref_locked(const struct sbx *s, struct sbx_ref *out)
{
  snprintf(out->id, sizeof(out->id), "%s", s->id);
  snprintf(out->sock_path, sizeof(out->sock_path), "%s", s->box.sock_path);
  out->env = json_incref(s->env);
}

int registry_get(struct daemon *d, const char *id, const char *tenant, bool admin, struct sbx_ref *out)
{
  int r = 0;
  memset(out, 0, sizeof(*out));
  pthread_mutex_lock(&d->lock);
  struct sbx *s = find_locked(d, id);
  if (s && !s->starting && !s->pooled && !s->end_reason && (admin || strcmp(s->tenant, tenant) == 0))
    {
      fill_ref_locked(s, out);
      r = 1;
    }
  pthread_mutex_unlock(&d->lock);
  return r;
}

int registry_ref(struct daemon *d, const char *id, struct sbx_ref *out)
{
  int r = 0;
  memset(out, 0, sizeof(*out));
  pthread_mutex_lock(&d->lock);
  struct sbx *s = find_locked(d, id);
  if (s && !s->starting && !s->end_reason && !s->finalizing)
    {
      fill_ref_locked(s, out);
      r = 1;
    }
  pthread_mutex_unlock(&d->lock);
  return r;
}

uint64_t registry_oom_kills(struct daemon *d, const char *id)
{
  uint64_t n = 0;
  pthread_mutex_lock(&d->lock);
  struct sbx *s = find_locked(d, id);
  if (s && !s->starting && !s->finalizing)
    n = corral__box_oom_kills(&s->box);
  pthread_mutex_unlock(&d->lock);
  return n;
}

size_t registry_count(struct daemon *d)
{
  pthread_mutex_lock(&d->lock);
  size_t n = 0;
  for (size_t i = 0; i < d->n_sbxs; i++)
    n += !d->sbxs[i]->starting && !d->sbxs[i]->pooled;
  pthread_mutex_unlock(&d->lock);
  return n;
}

/* ---- create ---- */

static void tenant_usage_locked(struct daemon *d, const char *tenant, uint64_t *count, uint64_t *mem)
{
  *count = *mem = 0;
  for (size_t i = 0; i < d->n_sbxs; i++)
    if (strcmp(d->sbxs[i]->tenant, tenant) == 0)
      *count += 1, *mem += d->sbxs[i]->memory_mb;
}

static int check_quota_locked(struct daemon *d, const corral_tenant_t *t, uint64_t memory_mb, corral_error_t *err)
{
  uint64_t count, mem;
  tenant_usage_locked(d, t->name, &count, &mem);
  if (t->max_sandboxes && count + 1 > t->max_sandboxes)
    return corral_error_set(err, EDQUOT, "tenant `%s` already runs %llu sandboxes (max_sandboxes %llu)", t->name,
                            (unsigned long long) count, (unsigned long long) t->max_sandboxes);
  if (t->max_memory_mb && mem + memory_mb > t->max_memory_mb)
    return corral_error_set(err, EDQUOT, "tenant `%s` would use %llu MB of memory (max_memory_mb %llu)", t->name,
                            (unsigned long long) (mem + memory_mb), (unsigned long long) t->max_memory_mb);
  return 0;
}

pid_t registry_pid(struct daemon *d, const char *id)
{
  pid_t pid = 0;
  pthread_mutex_lock(&d->lock);
  struct sbx *s = find_locked(d, id);
  if (s && !s->starting && !s->finalizing)
    pid = s->box.pid;
  pthread_mutex_unlock(&d->lock);
  return pid;
}

void registry_tenant(struct daemon *d, const char *id, char *buf, size_t size)
{
  pthread_mutex_lock(&d->lock);
  struct sbx *s = find_locked(d, id);
  snprintf(buf, size, "%s", s && s->tenant ? s->tenant : "");
  pthread_mutex_unlock(&d->lock);
}

void registry_add_env(struct daemon *d, const char *id, json_t *vars)
{
  pthread_mutex_lock(&d->lock);
  struct sbx *s = find_locked(d, id);
  if (s && s->env)
    json_object_update(s->env, vars);
  pthread_mutex_unlock(&d->lock);
}

size_t registry_pooled(struct daemon *d, bool ready_only)
{
  size_t n = 0;
  pthread_mutex_lock(&d->lock);
  for (size_t i = 0; i < d->n_sbxs; i++)
    n += d->sbxs[i]->pooled && (!ready_only || (!d->sbxs[i]->starting && !d->sbxs[i]->warming));
  pthread_mutex_unlock(&d->lock);
  return n;
}

void registry_warmed(struct daemon *d, const char *id)
{
  pthread_mutex_lock(&d->lock);
  struct sbx *s = find_locked(d, id);
  if (s)
    s->warming = false;
  pthread_mutex_unlock(&d->lock);
}

int registry_claim(struct daemon *d, const char *tenant, uint64_t memory_mb, int64_t expires_ms, json_t *env,
                   char id[32], char **runtime_json, corral_error_t *err)
{
  corral_tenant_t t = { 0 };
  int r = 0;
  if (strcmp(tenant, "admin") != 0 && corral_store_tenant_get(d->store, tenant, &t, err) < 0)
    return corral_error_wrap(err, "tenant");
  pthread_mutex_lock(&d->lock);
  if (!t.name || (r = check_quota_locked(d, &t, memory_mb, err)) == 0)
    for (size_t i = 0; i < d->n_sbxs && r == 0; i++)
      {
        struct sbx *s = d->sbxs[i];
        char *owner = s->pooled && !s->starting && !s->warming && !s->end_reason && !s->finalizing ? strdup(tenant)
                                                                                                  : NULL;
        if (!owner)
          continue;
        free(s->tenant);
        s->tenant = owner;
        s->pooled = false;
        corral__box_renice(&s->box, 0);
        s->memory_mb = memory_mb;
        s->expires_ms = expires_ms;
        json_decref(s->env);
        s->env = json_incref(env);
        snprintf(id, 32, "%s", s->id);
        *runtime_json = corral__box_runtime_json(&s->box);
        r = 1;
      }
  pthread_mutex_unlock(&d->lock);
  corral_tenant_release(&t);
  if (r == 1)
    {
      pthread_cond_signal(&d->pool_cond);
      wake(d);
    }
  return r;
}

int registry_reserve(struct daemon *d, const char *id, const char *tenant, uint64_t memory_mb, corral_error_t *err)
{
  corral_tenant_t t = { 0 };
  bool pooled = strcmp(tenant, POOL_TENANT) == 0, quota = !pooled && strcmp(tenant, "admin") != 0;
  if (quota && corral_store_tenant_get(d->store, tenant, &t, err) < 0)
    return corral_error_wrap(err, "tenant");
  struct sbx *s = calloc(1, sizeof(*s));
  if (!s)
    {
      corral_tenant_release(&t);
      return corral_error_set(err, ENOMEM, "reserve");
    }
  snprintf(s->id, sizeof(s->id), "%s", id);
  s->tenant = strdup(tenant);
  s->memory_mb = memory_mb;
  s->starting = true;
  s->pooled = pooled;
  s->warming = pooled && d->runners_dir;
  s->box.pidfd = -1;
  int r = 0;
  pthread_mutex_lock(&d->lock);
  if (quota)
    r = check_quota_locked(d, &t, memory_mb, err);
  if (r == 0 && insert_locked(d, s) < 0)
    r = corral_error_set(err, ENOMEM, "registry");
  pthread_mutex_unlock(&d->lock);
  corral_tenant_release(&t);
  if (r < 0)
    sbx_free(s);
  return r;
}

void registry_unreserve(struct daemon *d, const char *id)
{
  pthread_mutex_lock(&d->lock);
  struct sbx *s = find_locked(d, id);
  if (s && s->starting)
    remove_locked(d, s);
  else
    s = NULL;
  pthread_mutex_unlock(&d->lock);
  if (s)
    sbx_free(s);
}

void registry_activate(struct daemon *d, const char *id, const struct corral__box *box, int64_t expires_ms,
                       json_t *env)
{
  pthread_mutex_lock(&d->lock);
  struct sbx *s = find_locked(d, id);
  if (s)
    {
      s->box = *box;
      s->expires_ms = expires_ms;
      s->env = json_incref(env);
      s->starting = false;
      watch(d, s);
    }
  pthread_mutex_unlock(&d->lock);
  wake(d);
}

int registry_set_expiry(struct daemon *d, const char *id, int64_t expires_ms)
{
  int r = -1;
  pthread_mutex_lock(&d->lock);
  struct sbx *s = find_locked(d, id);
  if (s && !s->starting && !s->end_reason)
    {
      s->expires_ms = expires_ms;
      r = 0;
    }
  pthread_mutex_unlock(&d->lock);
  wake(d);
  return r;
}

/* ---- ending ---- */

/* Claim the right to finalise s (under the lock): whoever claims it first,
 * the lifecycle thread or a DELETE, does the cleanup. */
static bool claim_locked(struct daemon *d, struct sbx *s)
{
  if (s->finalizing)
    return false;
  s->finalizing = true;
  epoll_ctl(d->epoll_fd, EPOLL_CTL_DEL, s->box.pidfd, NULL);
  return true;
}

static void finalize(struct daemon *d, struct sbx *s);

static void finish(struct daemon *d, struct sbx *s)
{
  finalize(d, s);
  pthread_mutex_lock(&d->lock);
  remove_locked(d, s);
  pthread_cond_broadcast(&d->ended);
  pthread_mutex_unlock(&d->lock);
  sbx_free(s);
}

int registry_end(struct daemon *d, const char *id, const char *reason)
{
  pthread_mutex_lock(&d->lock);
  struct sbx *s = find_locked(d, id);
  if (!s || s->starting)
    {
      pthread_mutex_unlock(&d->lock);
      return -1;
    }
  uint64_t serial = s->serial;
  if (!s->end_reason)
    s->end_reason = reason;
  if (claim_locked(d, s))
    {
      /* This thread cleans up, in parallel with other DELETEs. */
      pthread_mutex_unlock(&d->lock);
      finish(d, s);
      return 0;
    }
  while (find_serial_locked(d, serial) != NULL && !atomic_load(&d->stopping))
    pthread_cond_wait(&d->ended, &d->lock);
  pthread_mutex_unlock(&d->lock);
  return 0;
}

static void finalize(struct daemon *d, struct sbx *s)
{
  const char *reason = s->end_reason;
  corral_error_t err = NULL;
  if (!reason)
    reason = corral__box_oom_kills(&s->box) > 0 ? "oom" : "error";
  corral__box_kill(&s->box);
  corral__box_cleanup(&s->box);
  if (corral_store_sandbox_set_ended(d->store, s->id, reason, api_now_ms(), &err) < 0)
    {
      api_log(d, "record the end of %s: %s", s->id, corral_error_message(err));
      corral_error_release(&err);
    }
  corral_store_event_add(d->store, s->id, "ended", NULL, NULL);
  contexts_forget(d, s->id);
  network_forget(d, s->id);
  ports_forget(d, s->id);
  metrics_ended(d, reason);
  api_audit(d, json_pack("{s:s, s:s, s:s, s:s}", "action", "sandbox.end", "tenant", s->tenant, "sandbox", s->id,
                         "reason", reason));
  api_log(d, "sandbox %s ended: %s", s->id, reason);
}

static void on_death(struct daemon *d, uint64_t serial)
{
  pthread_mutex_lock(&d->lock);
  struct sbx *s = find_serial_locked(d, serial);
  bool mine = s && claim_locked(d, s);
  pthread_mutex_unlock(&d->lock);
  if (mine)
    finish(d, s);
}

/* Kill what outlived its TTL; returns ms until the next expiry. */
static int expire(struct daemon *d)
{
  int64_t now = api_now_ms(), next = INT64_MAX;
  pthread_mutex_lock(&d->lock);
  for (size_t i = 0; i < d->n_sbxs; i++)
    {
      struct sbx *s = d->sbxs[i];
      if (s->starting || s->pooled || s->end_reason || s->finalizing)
        continue;
      if (s->expires_ms <= now)
        {
          s->end_reason = "timeout";
          corral__box_kill(&s->box);
        }
      else if (s->expires_ms < next)
        next = s->expires_ms;
    }
  pthread_mutex_unlock(&d->lock);
  int64_t wait = next == INT64_MAX ? PURGE_EVERY_MS : next - now;
  return (int) (wait > PURGE_EVERY_MS ? PURGE_EVERY_MS : wait < 1 ? 1 : wait);
}

static void *lifecycle_main(void *arg)
{
  struct daemon *d = arg;
  int64_t last_purge = 0;
  while (!atomic_load(&d->stopping))
    {
      struct epoll_event ev[64];
      int n = epoll_wait(d->epoll_fd, ev, 64, expire(d));
      for (int i = 0; i < n; i++)
        {
          uint64_t v;
          if (ev[i].data.u64 == 0)
            {
              if (read(d->wake_fd, &v, sizeof(v)) < 0)
                continue;
            }
          else
            on_death(d, ev[i].data.u64);
        }
      int64_t now = api_now_ms();
      if (now - last_purge >= PURGE_EVERY_MS)
        {
          last_purge = now;
          corral_store_sandbox_purge(d->store, now - (int64_t) d->opt.retention_s * 1000, NULL);
        }
    }
  return NULL;
}

/* ---- start: adopt what a previous run left ---- */

/* An agent that answers a ping really serves. */
static bool agent_alive(const struct corral__box *b)
{
  corral_error_t err = NULL;
  struct corral__frame f;
  uint8_t *buf = NULL;
  size_t cap = 0;
  struct corral__msg m;
  int fd = corral__box_connect(b, &err);
  corral_error_release(&err);
  if (fd < 0)
    return false;
  corral__frame_init(&f, CORRAL__REQ_PING);
  bool ok = corral__frame_send(fd, &f) == 0 && corral__frame_recv(fd, &buf, &cap, &m, 2000) == 1
            && m.type == CORRAL__R_OK;
  free(buf);
  close(fd);
  return ok;
}

static void adopt_live(struct daemon *d, corral_sandbox_rec_t *rec, struct corral__box *box)
{
  json_error_t je;
  struct sbx *s = calloc(1, sizeof(*s));
  json_t *lim = rec->limits_json ? json_loads(rec->limits_json, 0, &je) : NULL;
  if (!s)
    {
      json_decref(lim);
      return;
    }
  snprintf(s->id, sizeof(s->id), "%s", rec->id);
  s->tenant = strdup(rec->tenant);
  s->box = *box;
  s->expires_ms = rec->expires_ms;
  s->memory_mb = (uint64_t) json_integer_value(json_object_get(lim, "memory_mb"));
  s->env = rec->env_json ? json_loads(rec->env_json, 0, &je) : NULL;
  if (!s->env)
    s->env = json_object();
  json_decref(lim);
  pthread_mutex_lock(&d->lock);
  insert_locked(d, s);
  watch(d, s);
  pthread_mutex_unlock(&d->lock);
  corral_store_event_add(d->store, rec->id, "adopted", NULL, NULL);
  network_readopt(d, rec->id, rec->network_json);
  api_log(d, "sandbox %s re-adopted (pid %d)", rec->id, box->pid);
}

/* Kill and clean up what a record describes, alive or not. */
static void discard(struct daemon *d, corral_sandbox_rec_t *rec, struct corral__box *box)
{
  corral__box_kill(box);
  corral__box_cleanup(box);
  corral__box_forget(box);
  /* A create cut short before its runtime was recorded may still have left
   * a cgroup (with a running agent in it) and a socket. */
  corral__box_sweep(d->run_dir, rec->id);
}

static void adopt_one(struct daemon *d, corral_sandbox_rec_t *rec)
{
  corral_error_t err = NULL;
  struct corral__box box;
  memset(&box, 0, sizeof(box));
  box.pidfd = -1;
  int alive = rec->runtime_json ? corral__box_adopt(rec->id, rec->runtime_json, &box, &err) : 0;
  corral_error_release(&err);
  if (alive == 1 && agent_alive(&box))
    return adopt_live(d, rec, &box);
  /* Dead, half-created, or an agent that no longer answers: end it and
   * remove whatever it left. */
  discard(d, rec, &box);
  corral_store_sandbox_set_ended(d->store, rec->id, "daemon_restart_lost", api_now_ms(), NULL);
  corral_store_event_add(d->store, rec->id, "lost", NULL, NULL);
  metrics_ended(d, "daemon_restart_lost");
  api_audit(d, json_pack("{s:s, s:s, s:s, s:s}", "action", "sandbox.end", "tenant", rec->tenant, "sandbox", rec->id,
                         "reason", "daemon_restart_lost"));
  api_log(d, "sandbox %s died while corrald was down", rec->id);
}

int registry_start(struct daemon *d, corral_error_t *err)
{
  corral_sandbox_rec_t *recs = NULL;
  size_t n = 0;
  pthread_mutex_init(&d->lock, NULL);
  pthread_cond_init(&d->ended, NULL);
  d->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  d->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (d->epoll_fd < 0 || d->wake_fd < 0)
    return corral_error_set(err, errno, "epoll");
  struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 0 };
  epoll_ctl(d->epoll_fd, EPOLL_CTL_ADD, d->wake_fd, &ev);
  if (corral_store_sandbox_list(d->store, NULL, "running", &recs, &n, err) < 0)
    return corral_error_wrap(err, "list sandboxes to re-adopt");
  for (size_t i = 0; i < n; i++)
    adopt_one(d, &recs[i]);
  corral_sandbox_recs_free(recs, n);
  /* The previous run's pool: nobody claimed these, nobody will. */
  if (corral_store_sandbox_list(d->store, NULL, "pool", &recs, &n, err) < 0)
    return corral_error_wrap(err, "list pooled sandboxes");
  for (size_t i = 0; i < n; i++)
    {
      struct corral__box box;
      corral_error_t e = NULL;
      memset(&box, 0, sizeof(box));
      box.pidfd = -1;
      if (recs[i].runtime_json)
        corral__box_adopt(recs[i].id, recs[i].runtime_json, &box, &e);
      corral_error_release(&e);
      discard(d, &recs[i], &box);
      corral_store_sandbox_set_ended(d->store, recs[i].id, "discarded", api_now_ms(), NULL);
    }
  corral_sandbox_recs_free(recs, n);
  if (pthread_create(&d->lifecycle, NULL, lifecycle_main, d) != 0)
    return corral_error_set(err, EAGAIN, "start the lifecycle thread");
  d->lifecycle_started = true;
  return 0;
}

/* Stop watching; the sandboxes go on running for the next start. */
void registry_stop(struct daemon *d)
{
  atomic_store(&d->stopping, true);
  if (d->lifecycle_started)
    {
      wake(d);
      pthread_join(d->lifecycle, NULL);
    }
  pthread_mutex_lock(&d->lock);
  pthread_cond_broadcast(&d->ended);
  for (size_t i = 0; i < d->n_sbxs; i++)
    {
      struct sbx *s = d->sbxs[i];
      /* Sandboxes go on running for the next start; the pool does not. */
      if (s->pooled && !s->starting)
        {
          corral__box_kill(&s->box);
          corral__box_cleanup(&s->box);
          corral_store_sandbox_set_ended(d->store, s->id, "discarded", api_now_ms(), NULL);
        }
      corral__box_forget(&s->box);
      sbx_free(s);
    }
  d->n_sbxs = 0;
  free(d->sbxs);
  d->sbxs = NULL;
  pthread_mutex_unlock(&d->lock);
  if (d->epoll_fd >= 0)
    close(d->epoll_fd);
  if (d->wake_fd >= 0)
    close(d->wake_fd);
}
