/* E2B's control plane (openapi.yml): create, list, get, kill, timeout,
 * refresh and connect, over corral's sandboxes (api/sandboxes.c). */
#define _GNU_SOURCE
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "e2b.h"

/* The fields every E2B sandbox object shares. */
static json_t *e2b_json(struct req *r, const corral_sandbox_rec_t *rec, bool detail)
{
  char token[65], started[40], end[40];
  json_t *limits = loads_or(rec->limits_json, json_object()), *cpus = json_object_get(limits, "cpus");
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  api_time(rec->created_ms, started, sizeof(started));
  api_time(rec->expires_ms, end, sizeof(end));
  json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:O, s:O, s:o}", "templateID",
                        rec->template_name, "alias", rec->template_name, "sandboxID", rec->id, "clientID", "corral",
                        "envdVersion", E2B_ENVD_VERSION, "startedAt", started, "endAt", end, "cpuCount",
                        (json_int_t) (json_is_number(cpus) ? (json_number_value(cpus) + 0.999) : ncpu > 0 ? ncpu : 1),
                        "memoryMB", json_object_get(limits, "memory_mb"), "diskSizeMB",
                        json_object_get(limits, "disk_mb"), "metadata", loads_or(rec->metadata_json, json_object()));
  json_object_set_new(o, "state", json_string(strcmp(rec->state, "running") == 0 ? "running" : "killed"));
  if (detail)
    {
      e2b_access_token(r->d, rec->id, token);
      json_object_set_new(o, "envdAccessToken", json_string(token));
      json_object_set_new(o, "trafficAccessToken", json_string(token));
      json_object_set_new(o, "domain", json_null());
    }
  json_decref(limits);
  return o;
}

static int string_map(struct req *r, json_t *body, const char *key, json_t **out)
{
  json_t *v = json_object_get(body, key), *x;
  const char *k;
  *out = NULL;
  if (!v || json_is_null(v))
    return 0;
  if (!json_is_object(v))
    return api_fail(r, 400, "invalid_argument", "`%s` must be an object of strings", key), -1;
  json_object_foreach(v, k, x)
    if (!json_is_string(x))
      return api_fail(r, 400, "invalid_argument", "`%s.%s` must be a string", key, k), -1;
  *out = json_incref(v);
  return 0;
}

/* Options corral cannot honour are refused, not silently dropped. */
static int refuse_unsupported(struct req *r, json_t *body)
{
  static const char *const keys[] = { "autoPause", "mcp", "volumeMounts", "autoResume", "network", "iam" };
  for (size_t i = 0; i < sizeof(keys) / sizeof(*keys); i++)
    {
      json_t *v = json_object_get(body, keys[i]);
      if (v && !json_is_null(v) && !json_is_false(v) && !(json_is_array(v) && json_array_size(v) == 0)
          && !(json_is_object(v) && json_object_size(v) == 0))
        return api_fail(r, 400, "invalid_argument", "corral does not support `%s` yet", keys[i]), -1;
    }
  return 0;
}

/* E2B's NewSandbox as corral's create request. */
static int decode_new_sandbox(struct req *r, json_t *body, struct create_req *c)
{
  char why[512];
  json_t *native = json_object(), *t = json_object_get(body, "templateID"), *timeout = json_object_get(body, "timeout");
  json_t *metadata, *env;
  if (t && !json_is_null(t))
    json_object_set(native, "template", t);
  if (refuse_unsupported(r, body) < 0 || string_map(r, body, "metadata", &metadata) < 0)
    return json_decref(native), -1;
  if (string_map(r, body, "envVars", &env) < 0)
    return json_decref(native), json_decref(metadata), -1;
  if (metadata)
    json_object_set_new(native, "metadata", metadata);
  if (env)
    json_object_set_new(native, "env", env);
  if (timeout && !json_is_null(timeout))
    json_object_set(native, "timeout_s", timeout);
  /* E2B's internet access is corral's `open` egress (public destinations,
   * through the audited proxy); corral's default stays no network. */
  if (json_is_true(json_object_get(body, "allow_internet_access")))
    json_object_set_new(native, "network", json_string("open"));
  int bad = decode_create(native, r->d->opt.max_timeout_s, c, why, sizeof(why));
  json_decref(native);
  if (bad < 0)
    return api_fail(r, 400, "invalid_argument", "%s", why), -1;
  return 0;
}

int e2b_sandbox_create(struct req *r)
{
  struct create_req c;
  corral_sandbox_rec_t rec;
  json_t *body = api_body_object(r);
  if (!body)
    return MHD_YES;
  int bad = decode_new_sandbox(r, body, &c);
  json_decref(body);
  if (bad < 0)
    return MHD_YES;
  if (sandbox_create(r, &c, &rec) == 0)
    {
      api_json(r, 201, e2b_json(r, &rec, true));
      corral_sandbox_rec_release(&rec);
    }
  create_req_release(&c);
  return MHD_YES;
}

/* A running sandbox of this tenant, or respond 404 (E2B forgets ended ones). */
static int running_record(struct req *r, corral_sandbox_rec_t *rec)
{
  struct sbx_ref ref;
  if (sandbox_visible(r, r->params[0], rec) < 0)
    return -1;
  /* The registry knows first that a sandbox is ending (its record says
   * so once the ending is done): ask both. */
  if (strcmp(rec->state, "running") == 0 && registry_get(r->d, rec->id, rec->tenant, true, &ref) == 1)
    {
      json_decref(ref.env);
      return 0;
    }
  corral_sandbox_rec_release(rec);
  return api_fail(r, 404, "not_found", "sandbox `%s` not found (it ended)", r->params[0]), -1;
}

int e2b_sandbox_get(struct req *r)
{
  corral_sandbox_rec_t rec;
  if (running_record(r, &rec) == 0)
    {
      api_json(r, 200, e2b_json(r, &rec, true));
      corral_sandbox_rec_release(&rec);
    }
  return MHD_YES;
}

int e2b_sandbox_kill(struct req *r)
{
  corral_sandbox_rec_t rec;
  if (running_record(r, &rec) < 0)
    return MHD_YES;
  corral_sandbox_rec_release(&rec);
  if (sandbox_kill(r, r->params[0]) == 0)
    api_json(r, 204, NULL);
  return MHD_YES;
}

static int set_timeout(struct req *r, const char *field, bool respond_sandbox, unsigned ok_status)
{
  corral_sandbox_rec_t rec;
  json_t *body = api_body_object(r);
  if (!body)
    return MHD_YES;
  json_t *v = json_object_get(body, field);
  json_int_t t = json_is_integer(v) ? json_integer_value(v) : -1;
  bool given = v && !json_is_null(v);
  json_decref(body);
  if (given && t < 0)
    return api_fail(r, 400, "invalid_argument", "`%s` must be a number of seconds", field);
  if (!given || t == 0)
    {
      /* connect without a timeout: the sandbox as it is. */
      if (running_record(r, &rec) < 0)
        return MHD_YES;
    }
  else
    {
      if (running_record(r, &rec) < 0)
        return MHD_YES;
      corral_sandbox_rec_release(&rec);
      if (sandbox_set_timeout(r, r->params[0], (uint64_t) t, &rec) < 0)
        return MHD_YES;
    }
  api_json(r, ok_status, respond_sandbox ? e2b_json(r, &rec, true) : NULL);
  corral_sandbox_rec_release(&rec);
  return MHD_YES;
}

int e2b_sandbox_timeout(struct req *r)
{
  return set_timeout(r, "timeout", false, 204);
}

int e2b_sandbox_refresh(struct req *r)
{
  return set_timeout(r, "duration", false, 204);
}

int e2b_sandbox_connect(struct req *r)
{
  return set_timeout(r, "timeout", true, 200);
}

/* ---- listing ---- */

static char *form_decode(const char *s, size_t n)
{
  char *out = malloc(n + 1), *o = out;
  for (size_t i = 0; out && i < n; i++)
    {
      unsigned x;
      if (s[i] == '+')
        *o++ = ' ';
      else if (s[i] == '%' && i + 2 < n && isxdigit((unsigned char) s[i + 1]) && isxdigit((unsigned char) s[i + 2])
               && sscanf(s + i + 1, "%2x", &x) == 1)
        *o++ = (char) x, i += 2;
      else
        *o++ = s[i];
    }
  if (out)
    *o = '\0';
  return out;
}

/* ?metadata=k%3Dv%26k2%3Dv2: a query string inside a query parameter, its
 * parts URI-encoded once more by the SDK. */
static json_t *metadata_filter(const char *q)
{
  json_t *want = json_object();
  while (q && *q)
    {
      size_t n = strcspn(q, "&"), eq = strcspn(q, "=");
      if (eq < n)
        {
          char *k1 = form_decode(q, eq), *v1 = form_decode(q + eq + 1, n - eq - 1);
          char *k = k1 ? form_decode(k1, strlen(k1)) : NULL, *v = v1 ? form_decode(v1, strlen(v1)) : NULL;
          if (k && v)
            json_object_set_new(want, k, json_string(v));
          free(k1), free(v1), free(k), free(v);
        }
      q += n + (q[n] == '&');
    }
  return want;
}

static int list(struct req *r, bool paged)
{
  corral_error_t err = NULL;
  corral_sandbox_rec_t *recs = NULL;
  size_t n = 0, skip = 0, limit = 1000, seen = 0;
  const char *state = api_query(r, "state"), *lim = api_query(r, "limit"), *next = api_query(r, "nextToken");
  if (state && !strstr(state, "running"))
    return api_json(r, 200, json_array()); /* corral has no paused sandboxes */
  if (paged && lim && (sscanf(lim, "%zu", &limit) != 1 || limit < 1 || limit > 100))
    return api_fail(r, 400, "invalid_argument", "`limit` must be between 1 and 100");
  if (paged && next && sscanf(next, "%zu", &skip) != 1)
    return api_fail(r, 400, "invalid_argument", "bad `nextToken`");
  if (corral_store_sandbox_list(r->d->store, r->admin ? NULL : r->tenant, "running", &recs, &n, &err) < 0)
    {
      api_fail_err(r, err, "list sandboxes");
      corral_error_release(&err);
      return MHD_YES;
    }
  json_t *want = metadata_filter(api_query(r, "metadata")), *arr = json_array();
  bool more = false;
  for (size_t i = 0; i < n; i++)
    {
      if (strcmp(recs[i].tenant, POOL_TENANT) == 0 || !metadata_matches(recs[i].metadata_json, want) || seen++ < skip)
        continue;
      if (json_array_size(arr) == limit)
        {
          more = true;
          break;
        }
      json_array_append_new(arr, e2b_json(r, &recs[i], false));
    }
  corral_sandbox_recs_free(recs, n);
  json_decref(want);
  char *s = json_dumps(arr, JSON_COMPACT);
  json_decref(arr);
  struct MHD_Response *resp = s ? MHD_create_response_from_buffer(strlen(s), s, MHD_RESPMEM_MUST_FREE) : NULL;
  if (!resp)
    return free(s), api_fail(r, 500, "internal", "out of memory");
  MHD_add_response_header(resp, "Content-Type", "application/json");
  if (more)
    {
      char tok[32];
      snprintf(tok, sizeof(tok), "%zu", skip + limit);
      MHD_add_response_header(resp, "x-next-token", tok);
    }
  metrics_request(r->d, r->method, 200, NULL);
  return api_queue(r, 200, resp);
}

int e2b_sandbox_list(struct req *r)
{
  return list(r, true);
}

int e2b_sandbox_list_v1(struct req *r)
{
  return list(r, false);
}
