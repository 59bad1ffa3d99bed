/* Health, metrics, tenants and keys (admin), audit. */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "api.h"
#include "../common/utils.h"

#define CORRAL_VERSION "0.2.0"

int route_health(struct req *r)
{
  return api_json(r, 200, json_pack("{s:s, s:s, s:I}", "status", "ok", "version", CORRAL_VERSION, "sandboxes",
                                    (json_int_t) registry_count(r->d)));
}

int route_metrics(struct req *r)
{
  char *text = metrics_render(r->d);
  if (!text)
    return api_fail(r, 500, "internal", "out of memory");
  struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
  if (resp)
    MHD_add_response_header(resp, "Content-Type", "text/plain; version=0.0.4");
  metrics_request(r->d, r->method, 200, NULL);
  return api_queue(r, 200, resp);
}

static bool valid_tenant_name(const char *s)
{
  size_t n = 0;
  for (; s && *s; s++, n++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_' || *s == '-'))
      return false;
  return n >= 1 && n <= 64;
}

static json_t *tenant_json(const corral_tenant_t *t)
{
  char created[40];
  api_time(t->created_ms, created, sizeof(created));
  return json_pack("{s:s, s:I, s:I, s:s}", "name", t->name, "max_sandboxes", (json_int_t) t->max_sandboxes,
                   "max_memory_mb", (json_int_t) t->max_memory_mb, "created_at", created);
}

static int fail_store(struct req *r, corral_error_t *err, const char *what)
{
  api_fail_err(r, *err, what);
  corral_error_release(err);
  return MHD_YES;
}

static int quota_field(json_t *body, const char *k, uint64_t *out)
{
  json_t *v = json_object_get(body, k);
  if (!v || json_is_null(v))
    return 0;
  if (!json_is_integer(v) || json_integer_value(v) < 0)
    return -1;
  *out = (uint64_t) json_integer_value(v);
  return 0;
}

int route_tenant_create(struct req *r)
{
  corral_error_t err = NULL;
  corral_tenant_t t = { 0 };
  json_t *body = api_body_object(r), *name;
  if (!body)
    return MHD_YES;
  name = json_object_get(body, "name");
  if (!json_is_string(name) || !valid_tenant_name(json_string_value(name))
      || strcmp(json_string_value(name), "admin") == 0)
    {
      json_decref(body);
      return api_fail(r, 400, "invalid_argument", "`name` must be 1-64 of [a-z0-9_-] (and not `admin`)");
    }
  if (quota_field(body, "max_sandboxes", &t.max_sandboxes) < 0
      || quota_field(body, "max_memory_mb", &t.max_memory_mb) < 0)
    {
      json_decref(body);
      return api_fail(r, 400, "invalid_argument", "quotas must be non-negative integers");
    }
  t.name = (char *) json_string_value(name);
  t.created_ms = api_now_ms();
  if (corral_store_tenant_create(r->d->store, &t, &err) < 0)
    {
      if (corral_error_status(err) == EEXIST)
        api_fail(r, 409, "conflict", "tenant `%s` exists", t.name);
      else
        api_fail_err(r, err, "create tenant");
      corral_error_release(&err);
      json_decref(body);
      return MHD_YES;
    }
  api_audit(r->d, json_pack("{s:s, s:s, s:s}", "action", "tenant.create", "tenant", "admin", "name", t.name));
  api_json(r, 201, tenant_json(&t));
  json_decref(body);
  return MHD_YES;
}

int route_tenant_list(struct req *r)
{
  corral_error_t err = NULL;
  corral_tenant_t *v = NULL;
  size_t n = 0;
  if (corral_store_tenant_list(r->d->store, &v, &n, &err) < 0)
    return fail_store(r, &err, "list tenants");
  json_t *arr = json_array();
  for (size_t i = 0; i < n; i++)
    json_array_append_new(arr, tenant_json(&v[i]));
  corral_tenants_free(v, n);
  return api_json(r, 200, json_pack("{s:o}", "tenants", arr));
}

static int get_tenant(struct req *r, corral_tenant_t *t)
{
  corral_error_t err = NULL;
  memset(t, 0, sizeof(*t));
  if (corral_store_tenant_get(r->d->store, r->params[0], t, &err) < 0)
    {
      if (corral_error_status(err) == ENOENT || corral_error_status(err) == EINVAL)
        api_fail(r, 404, "not_found", "tenant `%s` not found", r->params[0]);
      else
        api_fail_err(r, err, "tenant");
      corral_error_release(&err);
      return -1;
    }
  return 0;
}

int route_tenant_get(struct req *r)
{
  corral_tenant_t t;
  if (get_tenant(r, &t) < 0)
    return MHD_YES;
  api_json(r, 200, tenant_json(&t));
  corral_tenant_release(&t);
  return MHD_YES;
}

int route_tenant_delete(struct req *r)
{
  corral_error_t err = NULL;
  corral_tenant_t t;
  corral_sandbox_rec_t *recs = NULL;
  size_t n = 0;
  if (get_tenant(r, &t) < 0)
    return MHD_YES;
  corral_tenant_release(&t);
  /* Its sandboxes go first: a deleted tenant runs nothing. */
  if (corral_store_sandbox_list(r->d->store, r->params[0], "running", &recs, &n, &err) < 0)
    return fail_store(r, &err, "list the tenant's sandboxes");
  for (size_t i = 0; i < n; i++)
    registry_end(r->d, recs[i].id, "killed");
  corral_sandbox_recs_free(recs, n);
  if (corral_store_tenant_delete(r->d->store, r->params[0], &err) < 0)
    return fail_store(r, &err, "delete tenant");
  api_audit(r->d, json_pack("{s:s, s:s, s:s}", "action", "tenant.delete", "tenant", "admin", "name", r->params[0]));
  return api_json(r, 204, NULL);
}

static json_t *key_json(const corral_key_t *k)
{
  char created[40];
  api_time(k->created_ms, created, sizeof(created));
  return json_pack("{s:s, s:s, s:s, s:s}", "id", k->id, "tenant", k->tenant, "prefix", k->prefix, "created_at",
                   created);
}

int route_key_create(struct req *r)
{
  corral_error_t err = NULL;
  corral_key_t k = { 0 };
  char *key = NULL;
  json_t *body = api_body_object(r), *fmt;
  if (!body)
    return MHD_YES;
  fmt = json_object_get(body, "format");
  bool e2b = json_is_string(fmt) && strcmp(json_string_value(fmt), "e2b") == 0;
  bool ok = !fmt || e2b || (json_is_string(fmt) && strcmp(json_string_value(fmt), "corral") == 0);
  json_decref(body);
  if (!ok)
    return api_fail(r, 400, "invalid_argument", "`format` must be \"corral\" or \"e2b\"");
  if (corral_store_key_create(r->d->store, r->params[0], e2b, &key, &k, &err) < 0)
    {
      if (corral_error_status(err) == ENOENT)
        api_fail(r, 404, "not_found", "tenant `%s` not found", r->params[0]);
      else
        api_fail_err(r, err, "create key");
      corral_error_release(&err);
      return MHD_YES;
    }
  json_t *o = key_json(&k);
  json_object_set_new(o, "key", json_string(key));
  api_audit(r->d, json_pack("{s:s, s:s, s:s, s:s}", "action", "key.create", "tenant", "admin", "name", r->params[0],
                            "key_id", k.id));
  free(key);
  corral_key_release(&k);
  return api_json(r, 201, o);
}

int route_key_list(struct req *r)
{
  corral_error_t err = NULL;
  corral_key_t *v = NULL;
  corral_tenant_t t;
  size_t n = 0;
  if (get_tenant(r, &t) < 0)
    return MHD_YES;
  corral_tenant_release(&t);
  if (corral_store_key_list(r->d->store, r->params[0], &v, &n, &err) < 0)
    return fail_store(r, &err, "list keys");
  json_t *arr = json_array();
  for (size_t i = 0; i < n; i++)
    json_array_append_new(arr, key_json(&v[i]));
  corral_keys_free(v, n);
  return api_json(r, 200, json_pack("{s:o}", "keys", arr));
}

int route_key_delete(struct req *r)
{
  corral_error_t err = NULL;
  if (corral_store_key_delete(r->d->store, r->params[0], r->params[1], &err) < 0)
    {
      if (corral_error_status(err) == ENOENT || corral_error_status(err) == EINVAL)
        api_fail(r, 404, "not_found", "key `%s` of tenant `%s` not found", r->params[1], r->params[0]);
      else
        api_fail_err(r, err, "delete key");
      corral_error_release(&err);
      return MHD_YES;
    }
  api_audit(r->d, json_pack("{s:s, s:s, s:s, s:s}", "action", "key.delete", "tenant", "admin", "name", r->params[0],
                            "key_id", r->params[1]));
  return api_json(r, 204, NULL);
}

/* "2026-11-23T14:05:00Z", with ".mmm", or unix milliseconds. */
static int parse_since(const char *s, int64_t *out)
{
  struct tm tm;
  char *end;
  int ms = 0;
  memset(&tm, 0, sizeof(tm));
  long long n = strtoll(s, &end, 10);
  if (*s && !*end)
    {
      *out = n;
      return 0;
    }
  end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
  if (!end)
    return -1;
  if (*end == '.')
    {
      char *p = end + 1;
      ms = (int) strtol(p, &end, 10);
      for (long digits = end - p; digits > 3; digits--)
        ms /= 10;
      for (long digits = end - p; digits < 3; digits++)
        ms *= 10;
    }
  if (*end != 'Z' && *end != '\0')
    return -1;
  *out = (int64_t) timegm(&tm) * 1000 + ms;
  return 0;
}

int route_audit(struct req *r)
{
  corral_error_t err = NULL;
  const char *sandbox = api_query(r, "sandbox"), *since_s = api_query(r, "since"), *limit_s = api_query(r, "limit");
  int64_t since = 0;
  long limit = 1000;
  char *text = NULL;
  json_error_t je;
  if (since_s && parse_since(since_s, &since) < 0)
    return api_fail(r, 400, "invalid_argument", "`since` must be an RFC 3339 time or unix milliseconds");
  if (limit_s)
    {
      char *end;
      limit = strtol(limit_s, &end, 10);
      if (!*limit_s || *end || limit < 1 || limit > 10000)
        return api_fail(r, 400, "invalid_argument", "`limit` must be between 1 and 10000");
    }
  if (corral_audit_query(r->d->audit, r->admin ? NULL : r->tenant, sandbox, since, (size_t) limit, &text, &err) < 0)
    return fail_store(r, &err, "audit");
  json_t *arr = json_loads(text, 0, &je);
  free(text);
  if (!arr)
    return api_fail(r, 500, "internal", "bad audit data");
  return api_json(r, 200, json_pack("{s:o}", "events", arr));
}
