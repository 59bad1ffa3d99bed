/* Ports of sandboxes: what listens inside, and HTTP requests forwarded to
 * it, routed by path (/v1/sandboxes/{id}/ports/{port}/...) or by Host
 * ({port}-{id}.localhost, the form E2B's getHost() returns).  corrald
 * reaches the server from outside, with a socket it makes in the sandbox's
 * network namespace (corral__netns_connect): the sandbox still has no route
 * out, and nothing inside can reach the host through this.  A port needs
 * the tenant's key (or the sandbox's access token) unless it was made
 * public. */
#define _GNU_SOURCE
#include <ctype.h>
#include <http_parser.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include "api.h"
#include "../e2b/e2b.h"
#include "../isolate/isolate.h"
#include "../common/utils.h"

#define HEAD_MAX (64u << 10)
#define CONNECT_TIMEOUT_MS 5000
#define READ_TIMEOUT_MS 300000

struct public_port
{
  struct public_port *next;
  char sandbox[32];
  uint16_t port;
};

static bool parse_port(const char *s, uint16_t *out)
{
  char *end;
  long v = s ? strtol(s, &end, 10) : 0;
  if (!s || !*s || *end || v < 1 || v > 65535)
    return false;
  *out = (uint16_t) v;
  return true;
}

bool ports_is_public(struct daemon *d, const char *sandbox, uint16_t port)
{
  bool pub = false;
  pthread_mutex_lock(&d->lock);
  for (struct public_port *p = d->public_ports; p && !pub; p = p->next)
    pub = p->port == port && strcmp(p->sandbox, sandbox) == 0;
  pthread_mutex_unlock(&d->lock);
  return pub;
}

void ports_forget(struct daemon *d, const char *sandbox)
{
  pthread_mutex_lock(&d->lock);
  for (struct public_port **pp = &d->public_ports; *pp;)
    if (!sandbox || strcmp((*pp)->sandbox, sandbox) == 0)
      {
        struct public_port *p = *pp;
        *pp = p->next;
        free(p);
      }
    else
      pp = &(*pp)->next;
  pthread_mutex_unlock(&d->lock);
}

/* "{port}-{id}.anything": the Host form of a sandbox port. */
bool ports_host_route(const char *host, char id[32], uint16_t *port)
{
  char num[8];
  size_t n = host ? strspn(host, "0123456789") : 0;
  if (n == 0 || n >= sizeof(num) || host[n] != '-' || strncmp(host + n + 1, "sb_", 3) != 0)
    return false;
  size_t m = strspn(host + n + 1, "abcdefghijklmnopqrstuvwxyz0123456789_");
  if (m >= 32 || host[n + 1 + m] != '.')
    return false;
  memcpy(num, host, n);
  num[n] = '\0';
  memcpy(id, host + n + 1, m);
  id[m] = '\0';
  return parse_port(num, port);
}

static void public_url(struct daemon *d, const char *id, unsigned port, char *buf, size_t size)
{
  const char *colon = d->opt.listen ? strrchr(d->opt.listen, ':') : NULL;
  snprintf(buf, size, "http://%u-%s.localhost%s/", port, id, colon ? colon : ":7070");
}

/* ---- listing ---- */

/* Listening sockets of the sandbox's network namespace, as the kernel
 * shows them to the host in /proc/PID/net/tcp{,6}.  Sockets of uid 0 are
 * corrald's own (the egress proxy's listeners): not the sandbox's. */
static void scan(json_t *arr, struct daemon *d, pid_t pid, const char *id, const char *file)
{
  char path[64], line[512];
  snprintf(path, sizeof(path), "/proc/%d/net/%s", (int) pid, file);
  FILE *f = fopen(path, "re");
  if (!f)
    return;
  while (fgets(line, sizeof(line), f))
    {
      char local[64], url[128];
      unsigned port, state, uid;
      if (sscanf(line, " %*d: %63[0-9A-Fa-f]:%x %*s %x %*s %*s %*s %u", local, &port, &state, &uid) != 4
          || state != 0x0A || uid == 0)
        continue;
      bool any = strspn(local, "0") == strlen(local), dup = false;
      size_t i;
      json_t *e;
      json_array_foreach(arr, i, e)
        dup |= json_integer_value(json_object_get(e, "port")) == port;
      if (dup)
        continue;
      public_url(d, id, port, url, sizeof(url));
      json_array_append_new(arr, json_pack("{s:i, s:s, s:b, s:s}", "port", (int) port, "address",
                                           any ? "any" : "loopback", "public", ports_is_public(d, id, (uint16_t) port),
                                           "url", url));
    }
  fclose(f);
}

int route_ports_list(struct req *r)
{
  struct sbx_ref ref;
  if (!sandbox_running_or_fail(r, &ref))
    return MHD_YES;
  json_decref(ref.env);
  pid_t pid = registry_pid(r->d, ref.id);
  json_t *arr = json_array();
  if (pid > 0)
    {
      scan(arr, r->d, pid, ref.id, "tcp");
      scan(arr, r->d, pid, ref.id, "tcp6");
    }
  return api_json(r, 200, json_pack("{s:o}", "ports", arr));
}

int route_port_public(struct req *r)
{
  struct sbx_ref ref;
  uint16_t port;
  char url[128];
  bool make_public = strcmp(r->method, "POST") == 0;
  if (!parse_port(r->params[1], &port))
    return api_fail(r, 400, "invalid_argument", "`%s` is not a port (1-65535)", r->params[1]);
  if (!sandbox_running_or_fail(r, &ref))
    return MHD_YES;
  json_decref(ref.env);
  bool was = ports_is_public(r->d, ref.id, port);
  if (make_public && !was)
    {
      struct public_port *p = calloc(1, sizeof(*p));
      if (!p)
        return api_fail(r, 500, "internal", "out of memory");
      snprintf(p->sandbox, sizeof(p->sandbox), "%s", ref.id);
      p->port = port;
      pthread_mutex_lock(&r->d->lock);
      p->next = r->d->public_ports;
      r->d->public_ports = p;
      pthread_mutex_unlock(&r->d->lock);
    }
  else if (!make_public && was)
    {
      pthread_mutex_lock(&r->d->lock);
      for (struct public_port **pp = &r->d->public_ports; *pp; pp = &(*pp)->next)
        if ((*pp)->port == port && strcmp((*pp)->sandbox, ref.id) == 0)
          {
            struct public_port *p = *pp;
            *pp = p->next;
            free(p);
            break;
          }
      pthread_mutex_unlock(&r->d->lock);
    }
  api_audit(r->d, json_pack("{s:s, s:s, s:s, s:i, s:b}", "action", "port.public", "tenant", r->tenant, "sandbox",
                            ref.id, "port", (int) port, "public", make_public));
  public_url(r->d, ref.id, port, url, sizeof(url));
  return api_json(r, 200, json_pack("{s:i, s:b, s:s}", "port", (int) port, "public", make_public, "url", url));
}

/* ---- forwarding ---- */

struct header
{
  char *k, *v;
};

struct fwd
{
  int fd;
  http_parser p;
  http_parser_settings s;
  struct header h[128];
  size_t n_h, head_bytes;
  bool in_value, headers_done, complete, head_request;
  char *body;
  size_t body_len, body_cap, body_off;
};

static int append(char **s, const char *at, size_t len)
{
  size_t old = *s ? strlen(*s) : 0;
  char *n = realloc(*s, old + len + 1);
  if (!n)
    return -1;
  memcpy(n + old, at, len);
  n[old + len] = '\0';
  *s = n;
  return 0;
}

static int on_field(http_parser *p, const char *at, size_t len)
{
  struct fwd *f = p->data;
  if (f->in_value || f->n_h == 0)
    {
      if (f->n_h == sizeof(f->h) / sizeof(*f->h))
        return -1;
      f->n_h++;
      f->in_value = false;
    }
  return append(&f->h[f->n_h - 1].k, at, len);
}

static int on_value(http_parser *p, const char *at, size_t len)
{
  struct fwd *f = p->data;
  if (f->n_h == 0)
    return -1;
  f->in_value = true;
  return append(&f->h[f->n_h - 1].v, at, len);
}

static int on_headers_complete(http_parser *p)
{
  struct fwd *f = p->data;
  f->headers_done = true;
  return f->head_request ? 1 : 0; /* a HEAD answer has no body, whatever it says */
}

static int on_body(http_parser *p, const char *at, size_t len)
{
  struct fwd *f = p->data;
  if (f->body_len + len > f->body_cap)
    {
      size_t cap = (f->body_len + len) * 2;
      char *n = realloc(f->body, cap);
      if (!n)
        return -1;
      f->body = n;
      f->body_cap = cap;
    }
  memcpy(f->body + f->body_len, at, len);
  f->body_len += len;
  return 0;
}

static int on_complete(http_parser *p)
{
  ((struct fwd *) p->data)->complete = true;
  return 0;
}

static void fwd_free(void *cls)
{
  struct fwd *f = cls;
  if (f->fd >= 0)
    close(f->fd);
  for (size_t i = 0; i < f->n_h; i++)
    free(f->h[i].k), free(f->h[i].v);
  free(f->body);
  free(f);
}

/* Read from the server and parse: 1 progress, 0 the server closed, -1. */
static int fwd_read(struct fwd *f)
{
  char buf[64 << 10];
  struct pollfd pfd = { f->fd, POLLIN, 0 };
  if (poll(&pfd, 1, READ_TIMEOUT_MS) != 1)
    return -1;
  ssize_t n = recv(f->fd, buf, sizeof(buf), 0);
  if (n < 0)
    return -1;
  size_t done = http_parser_execute(&f->p, &f->s, buf, (size_t) n);
  if (HTTP_PARSER_ERRNO(&f->p) != HPE_OK && !(HTTP_PARSER_ERRNO(&f->p) == HPE_CB_headers_complete))
    return -1;
  /* After a 101 the bytes are the new protocol's: keep them as they are. */
  if (f->p.upgrade && done < (size_t) n && on_body(&f->p, buf + done, (size_t) n - done) < 0)
    return -1;
  if (!f->headers_done && (f->head_bytes += (size_t) n) > HEAD_MAX)
    return -1;
  return n > 0;
}

static ssize_t fwd_reader(void *cls, uint64_t pos, char *out, size_t max)
{
  (void) pos;
  struct fwd *f = cls;
  while (f->body_off >= f->body_len)
    {
      f->body_off = f->body_len = 0;
      if (f->complete)
        return MHD_CONTENT_READER_END_OF_STREAM;
      int r = fwd_read(f);
      if (r < 0)
        return MHD_CONTENT_READER_END_WITH_ERROR;
      if (r == 0)
        return f->complete || http_body_is_final(&f->p) || !(f->p.flags & F_CHUNKED)
                   ? MHD_CONTENT_READER_END_OF_STREAM
                   : MHD_CONTENT_READER_END_WITH_ERROR;
    }
  size_t n = f->body_len - f->body_off < max ? f->body_len - f->body_off : max;
  memcpy(out, f->body + f->body_off, n);
  f->body_off += n;
  return (ssize_t) n;
}

/* Headers that belong to one hop, and corral's own credentials, which the
 * sandbox's server must never see. */
static bool hop_header(const char *k, bool upgrade)
{
  if (upgrade && (strcasecmp(k, "connection") == 0 || strcasecmp(k, "upgrade") == 0))
    return false;
  static const char *const hop[] = { "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
                                     "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
                                     "content-length", "authorization", "x-api-key", "x-access-token",
                                     "e2b-traffic-access-token", NULL };
  for (const char *const *h = hop; *h; h++)
    if (strcasecmp(k, *h) == 0)
      return true;
  return false;
}

struct upgrade_ctx
{
  FILE *out;
  bool upgrade;
};

static enum MHD_Result copy_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
  (void) kind;
  struct upgrade_ctx *u = cls;
  if (!hop_header(key, u->upgrade) && !strchr(key, '\r') && !strchr(key, '\n') && value && !strchr(value, '\r')
      && !strchr(value, '\n'))
    fprintf(u->out, "%s: %s\r\n", key, value);
  return MHD_YES;
}

static int send_request(struct req *r, int fd, const char *target, bool upgrade)
{
  char *head = NULL;
  size_t len = 0;
  FILE *m = open_memstream(&head, &len);
  if (!m)
    return -1;
  struct upgrade_ctx u = { m, upgrade };
  fprintf(m, "%s %s HTTP/1.1\r\n", r->method, target);
  MHD_get_connection_values(r->conn, MHD_HEADER_KIND, copy_header, &u);
  if (upgrade)
    fprintf(m, "X-Forwarded-Proto: http\r\n\r\n");
  else
    fprintf(m, "Content-Length: %zu\r\nConnection: close\r\nX-Forwarded-Proto: http\r\n\r\n", r->body_len);
  if (fclose(m) != 0)
    return free(head), -1;
  int rc = corral__write_all(fd, head, len) < 0 || (r->body_len && corral__write_all(fd, r->body, r->body_len) < 0)
               ? -1
               : 0;
  free(head);
  return rc;
}

/* ---- WebSockets (any 101 upgrade): after the handshake, bytes both ways ---- */

static bool relay(int from, int to)
{
  char buf[64 << 10];
  ssize_t n = recv(from, buf, sizeof(buf), 0);
  return n > 0 && corral__write_all(to, buf, (size_t) n) == 0;
}

/* In thread-per-connection mode this may block; it wakes every second to
 * let a stopping corrald end it. */
static void upgraded(void *cls, struct MHD_Connection *conn, void *con_cls, const char *extra_in, size_t extra_in_size,
                     MHD_socket sock, struct MHD_UpgradeResponseHandle *urh)
{
  (void) conn, (void) con_cls;
  struct fwd *f = cls;
  struct req *r = con_cls;
  bool ok = (!extra_in_size || corral__write_all(f->fd, extra_in, extra_in_size) == 0)
            && (!f->body_len || corral__write_all(sock, f->body, f->body_len) == 0);
  while (ok && !atomic_load(&r->d->stopping))
    {
      struct pollfd p[2] = { { sock, POLLIN, 0 }, { f->fd, POLLIN, 0 } };
      int n = poll(p, 2, 1000);
      if (n < 0 && errno != EINTR)
        break;
      if (n > 0 && p[0].revents)
        ok = relay(sock, f->fd);
      if (ok && n > 0 && p[1].revents)
        ok = relay(f->fd, sock);
    }
  close(f->fd);
  f->fd = -1;
  MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
}

static int upgrade_response(struct req *r, struct fwd *f)
{
  struct MHD_Response *resp = MHD_create_response_for_upgrade(upgraded, f);
  if (!resp)
    {
      fwd_free(f);
      return api_fail(r, 500, "internal", "cannot upgrade");
    }
  r->upgrade = f; /* freed when the request completes, after the relay */
  for (size_t i = 0; i < f->n_h; i++)
    if (f->h[i].k && f->h[i].v && !hop_header(f->h[i].k, true))
      MHD_add_response_header(resp, f->h[i].k, f->h[i].v);
  metrics_request(r->d, r->method, 101, NULL);
  return api_queue(r, 101, resp);
}

void ports_upgrade_free(void *f)
{
  fwd_free(f);
}

int route_port_forward(struct req *r)
{
  struct sbx_ref ref;
  corral_error_t err = NULL;
  uint16_t port;
  if (!parse_port(r->params[1], &port))
    return api_fail(r, 400, "invalid_argument", "`%s` is not a port (1-65535)", r->params[1]);
  if (!sandbox_running_or_fail(r, &ref))
    return MHD_YES;
  json_decref(ref.env);
  struct fwd *f = calloc(1, sizeof(*f));
  if (!f)
    return api_fail(r, 500, "internal", "out of memory");
  f->fd = corral__netns_connect(registry_pid(r->d, ref.id), port, CONNECT_TIMEOUT_MS, &err);
  if (f->fd < 0)
    {
      fwd_free(f);
      api_fail(r, 502, "bad_gateway", "nothing answers on port %u in sandbox `%s` (%s)", (unsigned) port, ref.id,
               corral_error_message(err));
      corral_error_release(&err);
      return MHD_YES;
    }
  http_parser_init(&f->p, HTTP_RESPONSE);
  f->p.data = f;
  f->s.on_header_field = on_field;
  f->s.on_header_value = on_value;
  f->s.on_headers_complete = on_headers_complete;
  f->s.on_body = on_body;
  f->s.on_message_complete = on_complete;
  f->head_request = strcmp(r->method, "HEAD") == 0;
  bool upgrade = api_header(r, "Upgrade") != NULL;
  if (send_request(r, f->fd, r->fwd_target ? r->fwd_target : "/", upgrade) == 0)
    while (!f->headers_done && fwd_read(f) > 0)
      ;
  if (!f->headers_done)
    {
      fwd_free(f);
      return api_fail(r, 502, "bad_gateway", "the server on port %u gave no valid HTTP answer", (unsigned) port);
    }
  if (f->head_request)
    f->complete = true;
  unsigned status = f->p.status_code;
  if (upgrade && status == 101)
    return upgrade_response(r, f);
  struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 << 10, fwd_reader, f, fwd_free);
  if (!resp)
    {
      fwd_free(f);
      return api_fail(r, 500, "internal", "cannot stream");
    }
  for (size_t i = 0; i < f->n_h; i++)
    if (f->h[i].k && f->h[i].v && !hop_header(f->h[i].k, false))
      MHD_add_response_header(resp, f->h[i].k, f->h[i].v);
  metrics_request(r->d, r->method, status, NULL);
  return api_queue(r, status, resp);
}

/* For ROUTE_PORT: 1 when a public port or the sandbox's access token lets
 * the request in without a key (r->tenant becomes the owner), 0 to ask for
 * an API key as usual. */
int ports_authenticate(struct req *r)
{
  char tenant[128];
  uint16_t port;
  if (!r->params[0] || !parse_port(r->params[1], &port))
    return 0;
  if (e2b_token_check(r, r->params[0]) != 1 && !ports_is_public(r->d, r->params[0], port))
    return 0;
  registry_tenant(r->d, r->params[0], tenant, sizeof(tenant));
  if (!tenant[0])
    return 0;
  r->tenant = strdup(tenant);
  return r->tenant ? 1 : 0;
}
