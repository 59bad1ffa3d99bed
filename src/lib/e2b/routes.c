/* The E2B front end's routes, its authentication of in-sandbox requests
 * (per-sandbox access tokens) and the small envd endpoints. */
#define _GNU_SOURCE
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>
#include "e2b.h"

static const struct route control[] = {
  { "POST", "/sandboxes", e2b_sandbox_create, ROUTE_E2B, NULL, NULL },
  { "POST", "/v2/sandboxes", e2b_sandbox_create, ROUTE_E2B, NULL, NULL },
  { "GET", "/sandboxes", e2b_sandbox_list_v1, ROUTE_E2B, NULL, NULL },
  { "GET", "/v2/sandboxes", e2b_sandbox_list, ROUTE_E2B, NULL, NULL },
  { "GET", "/sandboxes/*", e2b_sandbox_get, ROUTE_E2B, NULL, NULL },
  { "GET", "/v2/sandboxes/*", e2b_sandbox_get, ROUTE_E2B, NULL, NULL },
  { "DELETE", "/sandboxes/*", e2b_sandbox_kill, ROUTE_E2B, NULL, NULL },
  { "POST", "/sandboxes/*/timeout", e2b_sandbox_timeout, ROUTE_E2B, NULL, NULL },
  { "POST", "/sandboxes/*/refreshes", e2b_sandbox_refresh, ROUTE_E2B, NULL, NULL },
  { "POST", "/sandboxes/*/connect", e2b_sandbox_connect, ROUTE_E2B, NULL, NULL },
  { "POST", "/v2/sandboxes/*/connect", e2b_sandbox_connect, ROUTE_E2B, NULL, NULL },
  /* What corral does not have: E2B's own error shape, so the SDK raises. */
  { "POST", "/sandboxes/*/pause", e2b_unsupported, ROUTE_E2B, NULL, NULL },
  { "POST", "/sandboxes/*/resume", e2b_unsupported, ROUTE_E2B, NULL, NULL },
  { "POST", "/sandboxes/*/snapshots", e2b_unsupported, ROUTE_E2B, NULL, NULL },
  { "POST", "/sandboxes/*/fork", e2b_unsupported, ROUTE_E2B, NULL, NULL },
  { "PUT", "/sandboxes/*/network", e2b_unsupported, ROUTE_E2B, NULL, NULL },
  { "GET", "/sandboxes/*/metrics", e2b_unsupported, ROUTE_E2B, NULL, NULL },
  { "GET", "/sandboxes/metrics", e2b_unsupported, ROUTE_E2B, NULL, NULL },
  { "GET", "/sandboxes/*/logs", e2b_unsupported, ROUTE_E2B, NULL, NULL },
  { "GET", "/v2/sandboxes/*/logs", e2b_unsupported, ROUTE_E2B, NULL, NULL },
  { "GET", "/snapshots", e2b_unsupported, ROUTE_E2B, NULL, NULL },
  { "GET", "/templates", e2b_unsupported, ROUTE_E2B, NULL, NULL },
};

#define RPC(svc, m, fn) { "POST", "/" svc "/" m, fn, ROUTE_SANDBOX | ROUTE_CONNECT, NULL, NULL }
#define ENVD(method, path, fn, flags) { method, path, fn, ROUTE_SANDBOX | ROUTE_E2B | (flags), NULL, NULL }

static const struct route in_sandbox[] = {
  RPC("process.Process", "Start", e2b_process_start),
  RPC("process.Process", "Connect", e2b_process_connect),
  RPC("process.Process", "List", e2b_process_list),
  RPC("process.Process", "SendInput", e2b_process_send_input),
  RPC("process.Process", "StreamInput", e2b_process_stream_input),
  RPC("process.Process", "SendSignal", e2b_process_send_signal),
  RPC("process.Process", "CloseStdin", e2b_process_close_stdin),
  RPC("process.Process", "Update", e2b_process_update),
  RPC("filesystem.Filesystem", "Stat", e2b_fs_stat),
  RPC("filesystem.Filesystem", "MakeDir", e2b_fs_make_dir),
  RPC("filesystem.Filesystem", "Move", e2b_fs_move),
  RPC("filesystem.Filesystem", "ListDir", e2b_fs_list_dir),
  RPC("filesystem.Filesystem", "Remove", e2b_fs_remove),
  RPC("filesystem.Filesystem", "WatchDir", e2b_fs_watch_dir),
  RPC("filesystem.Filesystem", "CreateWatcher", e2b_fs_create_watcher),
  RPC("filesystem.Filesystem", "GetWatcherEvents", e2b_fs_get_watcher_events),
  RPC("filesystem.Filesystem", "RemoveWatcher", e2b_fs_remove_watcher),
  ENVD("GET", "/files", e2b_files_get, 0),
  { "POST", "/files", e2b_files_post, ROUTE_SANDBOX | ROUTE_E2B | ROUTE_UPLOAD, e2b_files_post_begin,
    e2b_files_post_data },
  ENVD("GET", "/health", e2b_health, 0),
  ENVD("GET", "/envs", e2b_envs, 0),
  ENVD("POST", "/execute", e2b_code_execute, 0),
  ENVD("POST", "/contexts", e2b_code_context_create, 0),
  ENVD("GET", "/contexts", e2b_code_context_list, 0),
  ENVD("DELETE", "/contexts/*", e2b_code_context_delete, 0),
  ENVD("POST", "/contexts/*/restart", e2b_code_context_restart, 0),
};

const struct route *e2b_control_routes(size_t *n)
{
  *n = sizeof(control) / sizeof(*control);
  return control;
}

const struct route *e2b_sandbox_routes(size_t *n)
{
  *n = sizeof(in_sandbox) / sizeof(*in_sandbox);
  return in_sandbox;
}

int e2b_sandbox_param(struct req *r)
{
  const char *id = api_header(r, "E2b-Sandbox-Id");
  if (!id || !*id || strlen(id) >= 32)
    return api_fail(r, 400, "invalid_argument", "E2b-Sandbox-Id must name a sandbox"), -1;
  free(r->params[API_MAX_PARAMS - 1]);
  memmove(&r->params[1], &r->params[0], (API_MAX_PARAMS - 1) * sizeof(r->params[0]));
  r->params[0] = strdup(id);
  return r->params[0] ? 0 : (api_fail(r, 500, "internal", "out of memory"), -1);
}

void e2b_access_token(struct daemon *d, const char *sandbox, char out[65])
{
  unsigned char mac[32];
  unsigned int len = sizeof(mac);
  HMAC(EVP_sha256(), d->token_secret, sizeof(d->token_secret), (const unsigned char *) sandbox, strlen(sandbox), mac,
       &len);
  for (unsigned i = 0; i < 32; i++)
    sprintf(out + 2 * i, "%02x", mac[i]);
}

int e2b_token_check(struct req *r, const char *sandbox)
{
  char want[65];
  const char *t = api_header(r, "X-Access-Token");
  if (!t || !*t)
    t = api_header(r, "E2B-Traffic-Access-Token");
  if (!t || !*t)
    return 0;
  e2b_access_token(r->d, sandbox, want);
  return strlen(t) == 64 && CRYPTO_memcmp(t, want, 64) == 0 ? 1 : -1;
}

/* E2B's edge answers 502 for a sandbox that is gone; the SDKs turn that
 * into their "sandbox was killed or timed out" errors. */
static int gone(struct req *r)
{
  return api_fail(r, 502, "sandbox_not_running", "sandbox `%s` is not running", r->params[0]), -1;
}

int e2b_authenticate(struct req *r)
{
  corral_sandbox_rec_t rec;
  corral_error_t err = NULL;
  int token = e2b_token_check(r, r->params[0]);
  if (token == 0)
    return 0;
  if (token < 0)
    return api_fail(r, 401, "unauthorized", "the access token does not match sandbox `%s`", r->params[0]), -1;
  if (corral_store_sandbox_get(r->d->store, r->params[0], &rec, &err) < 0)
    {
      corral_error_release(&err);
      return gone(r);
    }
  r->tenant = strdup(rec.tenant);
  struct sbx_ref ref;
  /* The registry knows first that a sandbox is ending. */
  bool running = strcmp(rec.state, "running") == 0 && registry_get(r->d, rec.id, rec.tenant, true, &ref) == 1;
  if (running)
    json_decref(ref.env);
  corral_sandbox_rec_release(&rec);
  if (!r->tenant)
    return api_fail(r, 500, "internal", "out of memory"), -1;
  return running || r->handler == e2b_health ? 1 : gone(r);
}

int e2b_user(struct req *r)
{
  const char *a = api_header(r, "Authorization"), *u = api_query(r, "username");
  unsigned char buf[128];
  if (a && strncasecmp(a, "Basic ", 6) == 0)
    {
      int n = EVP_DecodeBlock(buf, (const unsigned char *) a + 6, (int) strlen(a + 6));
      if (n < 0 || n >= (int) sizeof(buf))
        return api_fail(r, 400, "invalid_argument", "bad Basic authorization"), -1;
      buf[n] = '\0';
      buf[strcspn((char *) buf, ":")] = '\0';
      u = (const char *) buf;
    }
  /* There is one user inside a corral sandbox; "root" runs as it too,
   * since the sandbox holds no privilege to give (docs/e2b.md). */
  if (!u || !*u || strcmp(u, "user") == 0 || strcmp(u, "root") == 0)
    return 0;
  return api_fail(r, 400, "invalid_argument", "unknown user `%s` (corral sandboxes have `user`)", u), -1;
}

int e2b_unsupported(struct req *r)
{
  return api_fail(r, 501, "not_implemented", "corral does not support %s %s yet", r->method, r->url);
}

int e2b_health(struct req *r)
{
  struct sbx_ref ref;
  if (registry_get(r->d, r->params[0], r->tenant, r->admin, &ref) != 1)
    return gone(r), MHD_YES;
  json_decref(ref.env);
  return api_json(r, 204, NULL);
}

int e2b_envs(struct req *r)
{
  struct sbx_ref ref;
  if (!sandbox_running_or_fail(r, &ref))
    return MHD_YES;
  return api_json(r, 200, ref.env ? ref.env : json_object());
}

int e2b_init(struct daemon *d, corral_error_t *err)
{
  d->e2b = calloc(1, sizeof(*d->e2b));
  if (!d->e2b)
    return corral_error_set(err, ENOMEM, "E2B front end");
  pthread_mutex_init(&d->e2b->lock, NULL);
  return 0;
}

void e2b_free(struct daemon *d)
{
  if (!d->e2b)
    return;
  e2b_watchers_free(d);
  for (struct e2b_proc *p = d->e2b->procs, *n; p; p = n)
    {
      n = p->next;
      free(p->tag);
      free(p->cwd);
      json_decref(p->envs);
      free(p);
    }
  pthread_mutex_destroy(&d->e2b->lock);
  free(d->e2b);
  d->e2b = NULL;
}
