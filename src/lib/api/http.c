/* HTTP glue: libmicrohttpd callbacks, routing, authentication, and the one
 * place where failures become HTTP statuses. */
#define _GNU_SOURCE
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "api.h"
#include "../e2b/e2b.h"
#include "../common/utils.h"

/* ---- responses ---- */

int api_queue(struct req *r, unsigned status, struct MHD_Response *resp)
{
  if (!resp)
    return MHD_NO;
  if (r->responded)
    {
      MHD_destroy_response(resp);
      return MHD_YES;
    }
  r->responded = true;
  int ret = MHD_queue_response(r->conn, status, resp);
  MHD_destroy_response(resp);
  return ret;
}

static struct MHD_Response *json_response(json_t *body)
{
  char *s = json_dumps(body, JSON_COMPACT);
  json_decref(body);
  if (!s)
    return NULL;
  struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(s), s, MHD_RESPMEM_MUST_FREE);
  if (resp)
    MHD_add_response_header(resp, "Content-Type", "application/json");
  else
    free(s);
  return resp;
}

int api_json(struct req *r, unsigned status, json_t *body)
{
  struct MHD_Response *resp;
  if (!body)
    resp = MHD_create_response_from_buffer(0, (void *) "", MHD_RESPMEM_PERSISTENT);
  else if (!(resp = json_response(body)))
    return api_fail(r, 500, "internal", "cannot encode the response");
  metrics_request(r->d, r->method, status, NULL);
  return api_queue(r, status, resp);
}

/* Connect's error codes for the statuses this API uses. */
const char *connect_code(unsigned status)
{
  switch (status)
    {
    case 400: case 413: return "invalid_argument";
    case 401: return "unauthenticated";
    case 403: return "permission_denied";
    case 404: return "not_found";
    case 405: case 501: return "unimplemented";
    case 409: return "already_exists";
    case 412: return "failed_precondition";
    case 429: case 507: return "resource_exhausted";
    case 502: return "unavailable";
    case 503: return "unavailable";
    case 504: return "deadline_exceeded";
    default: return "internal";
    }
}

int api_fail(struct req *r, unsigned status, const char *code, const char *fmt, ...)
{
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  metrics_request(r->d, r->method, status, code);
  json_t *body;
  if (r->dialect == API_CONNECT && connect_streaming(r))
    return api_queue(r, 200, connect_end_response(json_pack("{s:s, s:s}", "code", connect_code(status), "message",
                                                            msg)));
  if (r->dialect == API_E2B)
    body = json_pack("{s:i, s:s}", "code", (int) status, "message", msg);
  else if (r->dialect == API_CONNECT)
    body = json_pack("{s:s, s:s}", "code", connect_code(status), "message", msg);
  else
    body = json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", msg);
  return api_queue(r, status, json_response(body));
}

/* The errno of a library failure decides the status: the one table. */
unsigned api_status_of(int err_no, const char **code)
{
  static const struct
  {
    int err_no;
    unsigned status;
    const char *code;
  } map[] = {
    { ENOENT, 404, "not_found" },            { ESRCH, 404, "not_found" },
    { EINVAL, 400, "invalid_argument" },     { EISDIR, 400, "invalid_argument" },
    { ENOTDIR, 400, "invalid_argument" },    { ENAMETOOLONG, 400, "invalid_argument" },
    { ELOOP, 400, "invalid_argument" },      { EXDEV, 400, "invalid_argument" },
    { EEXIST, 409, "conflict" },             { ENOTEMPTY, 409, "conflict" },
    { EBUSY, 409, "conflict" },              { EACCES, 403, "forbidden" },
    { EPERM, 403, "forbidden" },             { EROFS, 403, "forbidden" },
    { ENOSPC, 507, "insufficient_storage" }, { EDQUOT, 429, "quota_exceeded" },
    { E2BIG, 413, "payload_too_large" },     { EMSGSIZE, 413, "payload_too_large" },
    { EFBIG, 413, "payload_too_large" },     { ETIMEDOUT, 504, "timeout" },
    { EAGAIN, 503, "unavailable" },
  };
  for (size_t i = 0; i < sizeof(map) / sizeof(*map); i++)
    if (map[i].err_no == err_no)
      {
        *code = map[i].code;
        return map[i].status;
      }
  *code = "internal";
  return 500;
}

int api_fail_err(struct req *r, corral_error_t err, const char *context)
{
  const char *code;
  unsigned status = api_status_of(corral_error_status(err), &code);
  const char *sep = context ? ": " : "";
  return api_fail(r, status, code, "%s%s%s", context ? context : "", sep, corral_error_message(err));
}

json_t *api_body_object(struct req *r)
{
  json_error_t je;
  json_t *o;
  if (!r->body || r->body_len == 0)
    return json_object();
  o = json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, &je);
  if (!o)
    {
      api_fail(r, 400, "invalid_json", "the body is not valid JSON: %s (line %d, column %d)", je.text, je.line,
               je.column);
      return NULL;
    }
  if (!json_is_object(o))
    {
      json_decref(o);
      api_fail(r, 400, "invalid_json", "the body must be a JSON object");
      return NULL;
    }
  return o;
}

const char *api_query(struct req *r, const char *key)
{
  return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, key);
}

const char *api_header(struct req *r, const char *key)
{
  return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, key);
}

bool api_wants_ndjson(struct req *r)
{
  const char *a = api_header(r, "Accept");
  return a && strstr(a, "application/x-ndjson");
}

void api_time(int64_t ms, char *buf, size_t size)
{
  time_t t = (time_t) (ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
           tm.tm_hour, tm.tm_min, tm.tm_sec, (int) (ms % 1000));
}

int64_t api_now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void api_log(struct daemon *d, const char *fmt, ...)
{
  char line[2048];
  va_list ap;
  if (!d->opt.log)
    return;
  va_start(ap, fmt);
  vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  d->opt.log(line);
}

void api_audit(struct daemon *d, json_t *record)
{
  corral_error_t err = NULL;
  char *s = record ? json_dumps(record, JSON_COMPACT) : NULL;
  json_decref(record);
  if (s && d->audit && corral_audit_record(d->audit, s, &err) < 0)
    {
      api_log(d, "audit: %s", corral_error_message(err));
      corral_error_release(&err);
    }
  free(s);
}

/* ---- routing ---- */

#define PUBLIC ROUTE_PUBLIC
#define ADMIN ROUTE_ADMIN
#define UPLOAD ROUTE_UPLOAD

static const struct route routes[] = {
  { "GET", "/health", route_health, PUBLIC, NULL, NULL },
  { "GET", "/metrics", route_metrics, 0, NULL, NULL },
  { "POST", "/v1/sandboxes", route_sandbox_create, 0, NULL, NULL },
  { "GET", "/v1/sandboxes", route_sandbox_list, 0, NULL, NULL },
  { "GET", "/v1/sandboxes/*", route_sandbox_get, 0, NULL, NULL },
  { "DELETE", "/v1/sandboxes/*", route_sandbox_delete, 0, NULL, NULL },
  { "POST", "/v1/sandboxes/*/timeout", route_sandbox_timeout, 0, NULL, NULL },
  { "PUT", "/v1/sandboxes/*/network", route_sandbox_network, 0, NULL, NULL },
  { "GET", "/v1/sandboxes/*/ports", route_ports_list, 0, NULL, NULL },
  { "POST", "/v1/sandboxes/*/ports/*/public", route_port_public, 0, NULL, NULL },
  { "DELETE", "/v1/sandboxes/*/ports/*/public", route_port_public, 0, NULL, NULL },
  { "POST", "/v1/sandboxes/*/commands", route_command_start, 0, NULL, NULL },
  { "GET", "/v1/sandboxes/*/commands", route_command_list, 0, NULL, NULL },
  { "GET", "/v1/sandboxes/*/commands/*", route_command_attach, 0, NULL, NULL },
  { "POST", "/v1/sandboxes/*/commands/*/stdin", route_command_stdin, 0, NULL, NULL },
  { "POST", "/v1/sandboxes/*/commands/*/signal", route_command_signal, 0, NULL, NULL },
  { "GET", "/v1/sandboxes/*/files", route_file_get, 0, NULL, NULL },
  { "PUT", "/v1/sandboxes/*/files", route_file_put, UPLOAD, NULL, NULL },
  { "POST", "/v1/sandboxes/*/files", route_file_put, UPLOAD, NULL, NULL },
  { "GET", "/v1/sandboxes/*/files/list", route_file_list, 0, NULL, NULL },
  { "GET", "/v1/sandboxes/*/files/stat", route_file_stat, 0, NULL, NULL },
  { "POST", "/v1/sandboxes/*/files/mkdir", route_file_mkdir, 0, NULL, NULL },
  { "POST", "/v1/sandboxes/*/files/move", route_file_move, 0, NULL, NULL },
  { "POST", "/v1/sandboxes/*/files/remove", route_file_remove, 0, NULL, NULL },
  { "POST", "/v1/tenants", route_tenant_create, ADMIN, NULL, NULL },
  { "GET", "/v1/tenants", route_tenant_list, ADMIN, NULL, NULL },
  { "POST", "/v1/sandboxes/*/contexts", route_context_create, 0, NULL, NULL },
  { "GET", "/v1/sandboxes/*/contexts", route_context_list, 0, NULL, NULL },
  { "DELETE", "/v1/sandboxes/*/contexts/*", route_context_delete, 0, NULL, NULL },
  { "POST", "/v1/sandboxes/*/contexts/*/restart", route_context_restart, 0, NULL, NULL },
  { "POST", "/v1/sandboxes/*/execute", route_execute, 0, NULL, NULL },
  { "GET", "/v1/tenants/*", route_tenant_get, ADMIN, NULL, NULL },
  { "DELETE", "/v1/tenants/*", route_tenant_delete, ADMIN, NULL, NULL },
  { "POST", "/v1/tenants/*/keys", route_key_create, ADMIN, NULL, NULL },
  { "GET", "/v1/tenants/*/keys", route_key_list, ADMIN, NULL, NULL },
  { "DELETE", "/v1/tenants/*/keys/*", route_key_delete, ADMIN, NULL, NULL },
  { "GET", "/v1/audit", route_audit, 0, NULL, NULL },
};

/* Match url against pattern; captured segments go to params (malloc'd). */
static bool match(const char *pattern, const char *url, char *params[API_MAX_PARAMS])
{
  size_t np = 0;
  while (*pattern && *url)
    {
      if (*pattern == '*')
        {
          size_t n = strcspn(url, "/");
          if (n == 0 || np >= API_MAX_PARAMS)
            return false;
          if (params)
            params[np] = strndup(url, n);
          np++;
          url += n;
          pattern++;
          continue;
        }
      if (*pattern++ != *url++)
        return false;
    }
  /* One trailing slash is forgiven. */
  return *pattern == '\0' && (*url == '\0' || (url[0] == '/' && url[1] == '\0'));
}

static const struct route *find_in(const struct route *table, size_t n, const char *method, const char *url,
                                   char *allow, size_t allow_size)
{
  for (size_t i = 0; i < n; i++)
    {
      if (!match(table[i].pattern, url, NULL))
        continue;
      if (strcmp(table[i].method, method) == 0)
        return &table[i];
      if (!strstr(allow, table[i].method))
        snprintf(allow + strlen(allow), allow_size - strlen(allow), "%s%s", allow[0] ? ", " : "",
                 table[i].method);
    }
  return NULL;
}

/* A request that names a sandbox in E2b-Sandbox-Id is for the E2B
 * in-sandbox APIs (envd, the code interpreter); anything else is corral's
 * API or E2B's control plane, whose paths do not overlap. */
static const struct route *find_route(struct req *r, char *allow, size_t allow_size)
{
  const struct route *rt;
  size_t n;
  allow[0] = '\0';
  if (api_header(r, "E2b-Sandbox-Id"))
    {
      const struct route *t = e2b_sandbox_routes(&n);
      return find_in(t, n, r->method, r->url, allow, allow_size);
    }
  rt = find_in(routes, sizeof(routes) / sizeof(*routes), r->method, r->url, allow, allow_size);
  if (!rt && !allow[0])
    {
      const struct route *t = e2b_control_routes(&n);
      rt = find_in(t, n, r->method, r->url, allow, allow_size);
    }
  return rt;
}

/* A request for a server inside a sandbox: by Host ({port}-{id}.localhost,
 * any path) or by path (/v1/sandboxes/{id}/ports/{port}[/...], except the
 * routes above).  Fills params and the target; false when it is not one. */
static const struct route port_route = { "*", "*", route_port_forward, ROUTE_PORT, NULL, NULL };

static bool port_request(struct req *r)
{
  char id[32], port[8];
  uint16_t p;
  const char *host = api_header(r, "Host"), *raw = r->raw_uri ? r->raw_uri : r->url;
  if (ports_host_route(host, id, &p))
    {
      snprintf(port, sizeof(port), "%u", (unsigned) p);
      r->fwd_target = strdup(raw[0] == '/' ? raw : "/");
    }
  else
    {
      size_t n = strlen("/v1/sandboxes/");
      if (strncmp(raw, "/v1/sandboxes/", n) != 0)
        return false;
      size_t idlen = strcspn(raw + n, "/?");
      if (idlen == 0 || idlen >= sizeof(id) || strncmp(raw + n + idlen, "/ports/", 7) != 0)
        return false;
      const char *num = raw + n + idlen + 7;
      size_t numlen = strspn(num, "0123456789");
      if (numlen == 0 || numlen >= sizeof(port) || (num[numlen] && num[numlen] != '/' && num[numlen] != '?'))
        return false;
      memcpy(id, raw + n, idlen);
      id[idlen] = '\0';
      memcpy(port, num, numlen);
      port[numlen] = '\0';
      const char *rest = num + numlen;
      if (asprintf(&r->fwd_target, "%s%s", rest[0] == '/' ? "" : "/", rest) < 0)
        r->fwd_target = NULL;
    }
  r->params[0] = strdup(id);
  r->params[1] = strdup(port);
  return r->fwd_target && r->params[0] && r->params[1];
}

/* ---- authentication ---- */

static const char *presented_key(struct req *r)
{
  const char *a = api_header(r, "Authorization");
  if (a && strncasecmp(a, "Bearer ", 7) == 0)
    return a + 7;
  return api_header(r, "X-API-Key");
}

/* 1 when the request may go on; 0 after responding. */
static int authenticate(struct req *r, const struct route *rt)
{
  corral_error_t err = NULL;
  const char *key = presented_key(r);
  if ((rt->flags & PUBLIC) || (rt->fn == route_metrics && r->d->opt.metrics_public))
    return 1;
  if (rt->flags & ROUTE_SANDBOX)
    {
      int ok = e2b_authenticate(r);
      if (ok != 0)
        return ok > 0;
    }
  if ((rt->flags & ROUTE_PORT) && ports_authenticate(r))
    return 1;
  if (!key || !*key)
    return api_fail(r, 401, "unauthorized", "an API key is required (Authorization: Bearer KEY or X-API-Key)"), 0;
  size_t n = strlen(key);
  if (n == strlen(r->d->admin_key) && CRYPTO_memcmp(key, r->d->admin_key, n) == 0)
    {
      r->admin = true;
      r->tenant = strdup("admin");
      return 1;
    }
  int found = corral_store_key_lookup(r->d->store, key, &r->tenant, &err);
  if (found < 0)
    {
      api_fail_err(r, err, "key lookup");
      corral_error_release(&err);
      return 0;
    }
  if (found == 0)
    {
      api_audit(r->d, json_pack("{s:s, s:s, s:s}", "action", "auth.fail", "route", r->url, "method", r->method));
      return api_fail(r, 401, "unauthorized", "unknown API key"), 0;
    }
  if ((rt->flags & ADMIN) || rt->fn == route_metrics)
    return api_fail(r, 403, "forbidden", "this route needs the admin key"), 0;
  return 1;
}

/* ---- libmicrohttpd callbacks ---- */

static enum MHD_Result first_call(struct daemon *d, struct MHD_Connection *conn, const char *url,
                                  const char *method, void **con_cls)
{
  char allow[128];
  struct req *r = *con_cls ? *con_cls : calloc(1, sizeof(*r));
  if (!r)
    return MHD_NO;
  r->begun = true;
  r->d = d;
  r->conn = conn;
  r->url = url;
  r->method = method;
  r->t0_us = corral__now_us();
  *con_cls = r;
  if (atomic_load(&d->stopping))
    return (enum MHD_Result) api_fail(r, 503, "unavailable", "corrald is shutting down");
  if (api_header(r, "E2b-Sandbox-Id"))
    r->dialect = API_CONNECT; /* until the route says otherwise */
  const struct route *rt = find_route(r, allow, sizeof(allow));
  char id_unused[32];
  uint16_t port_unused;
  /* A port's Host owns every path; the path form yields to the routes. */
  if ((ports_host_route(api_header(r, "Host"), id_unused, &port_unused) || !rt) && port_request(r))
    {
      rt = &port_route;
      allow[0] = '\0';
    }
  if (rt)
    r->dialect = (rt->flags & ROUTE_CONNECT) ? API_CONNECT : (rt->flags & ROUTE_E2B) ? API_E2B : API_CORRAL;
  if (!rt && allow[0])
    return (enum MHD_Result) api_fail(r, 405, "method_not_allowed", "%s is not allowed on %s (allowed: %s)",
                                      method, url, allow);
  if (!rt)
    return (enum MHD_Result) api_fail(r, 404, "not_found", "no route %s %s", method, url);
  if (rt != &port_route)
    match(rt->pattern, url, r->params);
  if ((rt->flags & ROUTE_SANDBOX) && e2b_sandbox_param(r) < 0)
    return MHD_YES;
  r->handler = rt->fn;
  r->streaming_upload = (rt->flags & UPLOAD) != 0;
  r->upload_data = rt->upload_data ? rt->upload_data : route_file_put_data;
  if (authenticate(r, rt) && r->streaming_upload)
    (rt->upload_begin ? rt->upload_begin : route_file_put_begin)(r);
  return MHD_YES;
}

static void take_body(struct req *r, const char *data, size_t size)
{
  if (r->too_large || r->responded)
    return;
  if (r->body_len + size > API_MAX_BODY)
    {
      r->too_large = true;
      free(r->body);
      r->body = NULL;
      r->body_len = 0;
      return;
    }
  char *b = realloc(r->body, r->body_len + size + 1);
  if (!b)
    {
      r->too_large = true;
      return;
    }
  memcpy(b + r->body_len, data, size);
  r->body = b;
  r->body_len += size;
  r->body[r->body_len] = '\0';
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
  (void) version;
  struct req *r = *con_cls;
  if (!r || !r->begun)
    return first_call(cls, conn, url, method, con_cls);
  if (*upload_data_size)
    {
      if (r->streaming_upload && !r->responded)
        r->upload_data(r, upload_data, *upload_data_size);
      else
        take_body(r, upload_data, *upload_data_size);
      *upload_data_size = 0;
      return MHD_YES;
    }
  if (r->responded)
    return MHD_YES;
  if (r->too_large)
    return (enum MHD_Result) api_fail(r, 413, "payload_too_large", "the body is over %u bytes", API_MAX_BODY);
  int ret = r->handler(r);
  if (!r->responded)
    return (enum MHD_Result) api_fail(r, 500, "internal", "the handler sent no response");
  return (enum MHD_Result) ret;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
  (void) cls, (void) conn, (void) toe;
  struct req *r = *con_cls;
  if (!r)
    return;
  if (r->upload)
    (r->upload_free ? r->upload_free : file_upload_free)(r);
  for (int i = 0; i < API_MAX_PARAMS; i++)
    free(r->params[i]);
  free(r->tenant);
  free(r->body);
  free(r->raw_uri);
  free(r->fwd_target);
  if (r->upgrade)
    ports_upgrade_free(r->upgrade);
  free(r);
  *con_cls = NULL;
}

/* Called first with the request target as the client sent it (query
 * included): kept for forwarding to sandbox ports.  Its result is the
 * request's state from then on. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
  (void) cls, (void) conn;
  struct req *r = calloc(1, sizeof(*r));
  if (r && uri)
    r->raw_uri = strdup(uri);
  return r;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
  char line[1024];
  vsnprintf(line, sizeof(line), fmt, ap);
  line[strcspn(line, "\n")] = '\0';
  api_log(cls, "http: %s", line);
}

/* One MHD daemon per listening socket; a thread per connection, so that
 * handlers may block on a sandbox's agent. */
struct MHD_Daemon *api_http_start(struct daemon *d, int listen_fd, corral_error_t *err)
{
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG
                   | MHD_USE_POLL | MHD_ALLOW_UPGRADE;
  struct MHD_Daemon *m = MHD_start_daemon(flags, 0, NULL, NULL, on_request, d,
                                          MHD_OPTION_EXTERNAL_LOGGER, mhd_log, d,
                                          MHD_OPTION_LISTEN_SOCKET, listen_fd,
                                          MHD_OPTION_NOTIFY_COMPLETED, on_completed, d,
                                          MHD_OPTION_URI_LOG_CALLBACK, on_uri, d,
                                          MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) (512 << 10),
                                          MHD_OPTION_CONNECTION_TIMEOUT, 0u,
                                          MHD_OPTION_END);
  if (!m)
    corral_error_set(err, errno ? errno : EIO, "start the HTTP server");
  return m;
}
