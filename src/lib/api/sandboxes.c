/* /v1/sandboxes: create, list, get, kill, timeout. */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include "api.h"
#include "../common/utils.h"

void sandbox_new_id(char *buf, size_t size)
{
  static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  unsigned char rnd[20];
  if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t) sizeof(rnd))
    for (size_t i = 0; i < sizeof(rnd); i++)
      rnd[i] = (unsigned char) (corral__now_us() >> (i % 8));
  size_t n = (size_t) snprintf(buf, size, "sb_");
  for (size_t i = 0; i < sizeof(rnd) && n + 1 < size; i++)
    buf[n++] = alphabet[rnd[i] % 36];
  buf[n] = '\0';
}

json_t *loads_or(const char *s, json_t *dflt)
{
  json_error_t je;
  json_t *v = s ? json_loads(s, 0, &je) : NULL;
  if (!v)
    return dflt;
  json_decref(dflt);
  return v;
}

json_t *sandbox_json(const corral_sandbox_rec_t *rec)
{
  char created[40], expires[40], ended[40];
  api_time(rec->created_ms, created, sizeof(created));
  api_time(rec->expires_ms, expires, sizeof(expires));
  api_time(rec->ended_ms, ended, sizeof(ended));
  bool running = strcmp(rec->state, "running") == 0;
  return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:o, s:o, s:o, s:o}", "id", rec->id, "state", rec->state,
                   "template", rec->template_name, "tenant", rec->tenant, "created_at", created, "expires_at",
                   expires, "ended_at", running ? json_null() : json_string(ended), "end_reason",
                   rec->end_reason ? json_string(rec->end_reason) : json_null(), "metadata",
                   loads_or(rec->metadata_json, json_object()), "limits", loads_or(rec->limits_json, json_object()),
                   "network", network_json(rec->network_json));
}

/* The record of a sandbox this request may see, or respond 404: another
 * tenant's sandbox looks exactly like one that does not exist. */
int sandbox_visible(struct req *r, const char *id, corral_sandbox_rec_t *rec)
{
  corral_error_t err = NULL;
  memset(rec, 0, sizeof(*rec));
  if (corral_store_sandbox_get(r->d->store, id, rec, &err) < 0)
    {
      if (corral_error_status(err) == ENOENT)
        api_fail(r, 404, "not_found", "sandbox `%s` not found", id);
      else
        api_fail_err(r, err, "sandbox");
      corral_error_release(&err);
      return -1;
    }
  if ((!r->admin && strcmp(rec->tenant, r->tenant) != 0) || strcmp(rec->tenant, POOL_TENANT) == 0)
    {
      corral_sandbox_rec_release(rec);
      api_fail(r, 404, "not_found", "sandbox `%s` not found", id);
      return -1;
    }
  return 0;
}

int sandbox_running_or_fail(struct req *r, struct sbx_ref *ref)
{
  corral_sandbox_rec_t rec;
  if (registry_get(r->d, r->params[0], r->tenant, r->admin, ref) == 1)
    return 1;
  if (sandbox_visible(r, r->params[0], &rec) < 0)
    return 0;
  /* E2B's clients take a sandbox that is gone from its edge's 502. */
  api_fail(r, r->dialect == API_CORRAL ? 409 : 502, "sandbox_not_running", "sandbox `%s` is not running (%s)",
           rec.id, rec.end_reason ? rec.end_reason : "ending");
  corral_sandbox_rec_release(&rec);
  return 0;
}

static json_t *limits_json(const struct create_req *c)
{
  return json_pack("{s:I, s:o, s:I, s:I}", "memory_mb", (json_int_t) c->memory_mb, "cpus",
                   c->cpu_millis ? json_real((double) c->cpu_millis / 1000.0) : json_null(), "pids",
                   (json_int_t) c->pids, "disk_mb", (json_int_t) c->disk_mb);
}

static int start_box(struct daemon *d, const char *id, const struct create_req *c, int nice, struct corral__box *box,
                     corral_error_t *err)
{
  corral_config_t cfg;
  corral_config_init(&cfg);
  cfg.memory_bytes = c->memory_mb << 20;
  cfg.pids = c->pids;
  cfg.disk_bytes = c->disk_mb << 20;
  cfg.cpu_millis = c->cpu_millis;
  return corral__box_create(&d->spawner, id, &cfg, nice, box, err);
}

struct rec_text
{
  char *limits, *metadata, *env, *runtime;
};

static void rec_text_free(struct rec_text *t)
{
  free(t->limits), free(t->metadata), free(t->env), free(t->runtime);
  memset(t, 0, sizeof(*t));
}

/* Write the row; runtime is taken over (may be NULL). */
static int record(struct daemon *d, corral_sandbox_rec_t *rec, struct rec_text *t, const struct create_req *c,
                  char *runtime, corral_error_t *err)
{
  json_t *lim = limits_json(c);
  rec_text_free(t);
  rec->limits_json = t->limits = json_dumps(lim, JSON_COMPACT);
  rec->metadata_json = t->metadata = json_dumps(c->metadata, JSON_COMPACT);
  rec->env_json = t->env = json_dumps(c->env, JSON_COMPACT);
  rec->runtime_json = t->runtime = runtime;
  json_decref(lim);
  return corral_store_sandbox_put(d->store, rec, err);
}

int sandbox_make(struct daemon *d, const char *id, const char *tenant, const char *state, const struct create_req *c,
                 int64_t created_ms, int64_t expires_ms, corral_error_t *err)
{
  struct corral__box box;
  struct rec_text t = { 0 };
  corral_sandbox_rec_t rec = { .id = (char *) id, .tenant = (char *) tenant, .template_name = (char *) c->template_name,
                               .state = (char *) state, .created_ms = created_ms, .expires_ms = expires_ms };
  int r;
  /* Recorded before it exists: a crash mid-create leaves a row that the
   * next start marks lost (and whose leftovers it sweeps), never a sandbox
   * nobody knows about. */
  if ((r = record(d, &rec, &t, c, NULL, err)) < 0 || (r = start_box(d, id, c, strcmp(state, "pool") == 0 ? POOL_NICE : 0, &box, err)) < 0)
    goto failed;
  if ((r = record(d, &rec, &t, c, corral__box_runtime_json(&box), err)) < 0)
    {
      corral__box_kill(&box);
      corral__box_cleanup(&box);
      corral__box_forget(&box);
      goto failed;
    }
  registry_activate(d, id, &box, expires_ms, c->env);
  rec_text_free(&t);
  return 0;
failed:
  corral_store_sandbox_set_ended(d->store, id, "error", api_now_ms(), NULL);
  rec_text_free(&t);
  return r;
}

static int decode_create_body(struct req *r, struct create_req *c)
{
  char why[512];
  json_t *body = api_body_object(r);
  if (!body)
    return -1;
  int bad = decode_create(body, r->d->opt.max_timeout_s, c, why, sizeof(why));
  json_decref(body);
  if (bad < 0)
    return api_fail(r, 400, "invalid_argument", "%s", why), -1;
  return 0;
}

/* A ready sandbox from the pool, given to this tenant: 1 done (row
 * rewritten), 0 none free, -1 after responding. */
static int create_from_pool(struct req *r, const struct create_req *c, int64_t now, char id[32])
{
  corral_error_t err = NULL;
  char *runtime = NULL;
  struct rec_text t = { 0 };
  int64_t expires = now + (int64_t) c->timeout_s * 1000;
  int got = registry_claim(r->d, r->tenant, c->memory_mb, expires, c->env, id, &runtime, &err);
  if (got < 0)
    {
      api_fail_err(r, err, NULL);
      corral_error_release(&err);
      return -1;
    }
  if (got == 0)
    return 0;
  corral_sandbox_rec_t rec = { .id = id, .tenant = r->tenant, .template_name = (char *) c->template_name,
                               .state = (char *) "running", .created_ms = now, .expires_ms = expires };
  if (record(r->d, &rec, &t, c, runtime, &err) < 0)
    {
      rec_text_free(&t);
      registry_end(r->d, id, "error");
      api_fail_err(r, err, "record sandbox");
      corral_error_release(&err);
      return -1;
    }
  rec_text_free(&t);
  return 1;
}

/* The names corral's one template answers to: E2B's SDKs ask for these by
 * default, and a sandbox keeps the name it was asked for. */
bool template_is_base(const char *name)
{
  static const char *const names[] = { "base", "code-interpreter-v1", "code-interpreter", "code-interpreter-beta" };
  for (size_t i = 0; i < sizeof(names) / sizeof(*names); i++)
    if (strcmp(name, names[i]) == 0)
      return true;
  return false;
}

int sandbox_create(struct req *r, const struct create_req *c, corral_sandbox_rec_t *rec)
{
  char id[32];
  corral_error_t err = NULL;
  if (!template_is_base(c->template_name))
    return api_fail(r, 404, "template_not_found",
                    "unknown template `%s` (available: base, also named code-interpreter-v1)", c->template_name), -1;
  int64_t now = api_now_ms();
  int pooled = pool_fits(c) ? create_from_pool(r, c, now, id) : 0;
  if (pooled < 0)
    return -1;
  if (pooled == 0)
    {
      sandbox_new_id(id, sizeof(id));
      if (registry_reserve(r->d, id, r->tenant, c->memory_mb, &err) < 0
          || sandbox_make(r->d, id, r->tenant, "running", c, now, now + (int64_t) c->timeout_s * 1000, &err) < 0)
        {
          registry_unreserve(r->d, id);
          api_fail_err(r, err, corral_error_status(err) == EDQUOT ? NULL : "create sandbox");
          corral_error_release(&err);
          return -1;
        }
    }
  if ((c->network && corral_net_policy_mode(c->network) != CORRAL_NET_NONE
       && network_apply(r->d, id, c->network, true, &err) < 0)
      || (json_array_size(c->secrets) && secrets_apply(r->d, id, c->secrets, &err) < 0))
    {
      registry_end(r->d, id, "error");
      api_fail_err(r, err, "network");
      corral_error_release(&err);
      return -1;
    }
  metrics_create(r->d, corral__now_us() - r->t0_us);
  corral_store_event_add(r->d->store, id, "created", NULL, NULL);
  api_audit(r->d, json_pack("{s:s, s:s, s:s, s:s, s:b}", "action", "sandbox.create", "tenant", r->tenant, "sandbox",
                            id, "template", c->template_name, "pooled", pooled));
  if (corral_store_sandbox_get(r->d->store, id, rec, &err) < 0)
    {
      api_fail_err(r, err, "read back the sandbox");
      corral_error_release(&err);
      return -1;
    }
  return 0;
}

int route_sandbox_create(struct req *r)
{
  struct create_req c;
  corral_sandbox_rec_t rec;
  if (decode_create_body(r, &c) < 0)
    return MHD_YES;
  if (sandbox_create(r, &c, &rec) == 0)
    {
      api_json(r, 201, sandbox_json(&rec));
      corral_sandbox_rec_release(&rec);
    }
  create_req_release(&c);
  return MHD_YES;
}

/* ?metadata.KEY=VALUE filters, collected from the query string. */
static enum MHD_Result collect_filter(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
  (void) kind;
  if (strncmp(key, "metadata.", 9) == 0 && key[9])
    json_object_set_new(cls, key + 9, json_string(value ? value : ""));
  return MHD_YES;
}

bool metadata_matches(const char *metadata_json, json_t *want)
{
  const char *k;
  json_t *v;
  if (json_object_size(want) == 0)
    return true;
  json_t *have = loads_or(metadata_json, json_object());
  bool ok = true;
  json_object_foreach(want, k, v)
    if (!json_equal(json_object_get(have, k), v))
      ok = false;
  json_decref(have);
  return ok;
}

int route_sandbox_list(struct req *r)
{
  corral_error_t err = NULL;
  corral_sandbox_rec_t *recs = NULL;
  size_t n = 0;
  const char *state = api_query(r, "state");
  if (state && strcmp(state, "running") && strcmp(state, "ended"))
    return api_fail(r, 400, "invalid_argument", "`state` must be running or ended");
  if (corral_store_sandbox_list(r->d->store, r->admin ? NULL : r->tenant, state, &recs, &n, &err) < 0)
    {
      api_fail_err(r, err, "list sandboxes");
      corral_error_release(&err);
      return MHD_YES;
    }
  json_t *want = json_object(), *arr = json_array();
  MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, collect_filter, want);
  for (size_t i = 0; i < n; i++)
    if (strcmp(recs[i].tenant, POOL_TENANT) != 0 && metadata_matches(recs[i].metadata_json, want))
      json_array_append_new(arr, sandbox_json(&recs[i]));
  corral_sandbox_recs_free(recs, n);
  json_decref(want);
  return api_json(r, 200, json_pack("{s:o}", "sandboxes", arr));
}

int route_sandbox_get(struct req *r)
{
  corral_sandbox_rec_t rec;
  if (sandbox_visible(r, r->params[0], &rec) < 0)
    return MHD_YES;
  api_json(r, 200, sandbox_json(&rec));
  corral_sandbox_rec_release(&rec);
  return MHD_YES;
}

int sandbox_kill(struct req *r, const char *id)
{
  corral_sandbox_rec_t rec;
  if (sandbox_visible(r, id, &rec) < 0)
    return -1;
  if (strcmp(rec.state, "running") == 0 && registry_end(r->d, rec.id, "killed") == 0)
    api_audit(r->d, json_pack("{s:s, s:s, s:s}", "action", "sandbox.kill", "tenant", r->tenant, "sandbox", rec.id));
  corral_sandbox_rec_release(&rec);
  return 0;
}

int route_sandbox_delete(struct req *r)
{
  if (sandbox_kill(r, r->params[0]) == 0)
    api_json(r, 204, NULL);
  return MHD_YES;
}

int sandbox_set_timeout(struct req *r, const char *id, uint64_t timeout_s, corral_sandbox_rec_t *rec)
{
  if (timeout_s < 1 || timeout_s > r->d->opt.max_timeout_s)
    return api_fail(r, 400, "invalid_argument", "the timeout must be between 1 and %llu seconds",
                    (unsigned long long) r->d->opt.max_timeout_s), -1;
  if (sandbox_visible(r, id, rec) < 0)
    return -1;
  int64_t expires = api_now_ms() + (int64_t) timeout_s * 1000;
  if (strcmp(rec->state, "running") != 0 || registry_set_expiry(r->d, rec->id, expires) < 0)
    {
      api_fail(r, 409, "sandbox_not_running", "sandbox `%s` is not running", rec->id);
      corral_sandbox_rec_release(rec);
      return -1;
    }
  corral_store_sandbox_set_expiry(r->d->store, rec->id, expires, NULL);
  corral_store_event_add(r->d->store, rec->id, "timeout", NULL, NULL);
  api_audit(r->d, json_pack("{s:s, s:s, s:s, s:I}", "action", "sandbox.timeout", "tenant", r->tenant, "sandbox",
                            rec->id, "timeout_s", (json_int_t) timeout_s));
  rec->expires_ms = expires;
  return 0;
}

int route_sandbox_timeout(struct req *r)
{
  corral_sandbox_rec_t rec;
  json_t *body = api_body_object(r), *v;
  if (!body)
    return MHD_YES;
  v = json_object_get(body, "timeout_s");
  json_int_t t = json_is_integer(v) ? json_integer_value(v) : -1;
  json_decref(body);
  if (t < 1 || (uint64_t) t > r->d->opt.max_timeout_s)
    return api_fail(r, 400, "invalid_argument", "`timeout_s` must be an integer between 1 and %llu",
                    (unsigned long long) r->d->opt.max_timeout_s);
  if (sandbox_set_timeout(r, r->params[0], (uint64_t) t, &rec) == 0)
    {
      api_json(r, 200, sandbox_json(&rec));
      corral_sandbox_rec_release(&rec);
    }
  return MHD_YES;
}
