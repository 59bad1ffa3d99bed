/* One proxied connection: handshake (HTTP request head or SOCKS5), policy
 * check, resolution (on the resolver threads), non-blocking connect to the
 * exact address that was checked, the CONNECT tunnel's SNI check, then the
 * relay.  Runs on the proxy's loop thread only.
 *
 * The order matters for security: the destination is checked as asked
 * before anything is resolved; every resolved address is checked again
 * before a socket is connected to it; and the socket is connected to that
 * sockaddr, never to a name, so a second DNS answer (rebinding) can only
 * ever be used after its own check. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <openssl/crypto.h>
#include "proxy.h"
#include "../common/utils.h"

#define DRAIN_MS 1000
#define SOCKS_MAX_HANDSHAKE 600 /* greeting (<= 257) + request (<= 262) */
#define ACCEPT_BATCH 16

#define container_of(ptr, type, member) ((type *) ((char *) (ptr) - offsetof(type, member)))

enum state
{
  ST_HEAD,
  ST_SOCKS_GREET,
  ST_SOCKS_REQ,
  ST_RESOLVING,
  ST_CONNECTING,
  ST_SNI,
  ST_RELAY,
  ST_MITM,                      /* an intercepted tunnel (mitm.c) */
  ST_DRAIN,
  ST_DONE,
};

struct buf
{
  char *data;                   /* RELAY_BUF bytes */
  size_t start, end;
};

struct conn
{
  struct ev cev, uev;
  struct conn *prev, *next;     /* in sb->conns, or in the graveyard */
  struct corral_proxy *p;
  struct sandbox *sb;           /* NULL once closed */
  int cfd, ufd;
  uint32_t cmask, umask;        /* events registered; 0: not in epoll */
  enum state st;
  const char *kind;             /* "http" | "connect" | "socks5" */
  bool socks, named, counted, audited, any_bytes, resolving, dead;
  bool http_forward, body_done, c_eof, u_eof, u_shut;
  bool tried, have_deny, have_peer;
  char host[256];
  uint16_t port;
  struct corral__addrlist cands;
  size_t cand_i;
  struct sockaddr_storage peer; /* the address connected (or last tried) */
  corral_net_verdict_t verdict, deny;
  struct corral__http_head *http;
  struct corral__mitm *mitm;
  uint32_t mitm_cw, mitm_uw;    /* the events the intercepted relay wants */
  json_t *secrets_used;         /* names of secrets put in requests */
  struct buf c2u, u2c;
  uint64_t start_ms, deadline_ms, last_io_ms, up, down;
  int last_errno;
  char error[192];
};

static void step(struct conn *c);

/* ---- bookkeeping ---- */

static size_t blen(const struct buf *b)
{
  return b->end - b->start;
}

static size_t bspace(struct buf *b)
{
  if (b->start == b->end)
    b->start = b->end = 0;
  else if (b->end == RELAY_BUF && b->start > 0)
    {
      memmove(b->data, b->data + b->start, b->end - b->start);
      b->end -= b->start;
      b->start = 0;
    }
  return RELAY_BUF - b->end;
}

static void set_error(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_error(struct conn *c, const char *fmt, ...)
{
  va_list ap;
  if (c->error[0])
    return;                     /* the first error is the cause */
  va_start(ap, fmt);
  vsnprintf(c->error, sizeof(c->error), fmt, ap);
  va_end(ap);
}

static void set_verdict(corral_net_verdict_t *v, bool allowed, const char *rule)
{
  v->allowed = allowed;
  snprintf(v->rule, sizeof(v->rule), "%s", rule);
}

static void watch(struct conn *c, int fd, struct ev *ev, uint32_t *mask, uint32_t want)
{
  if (fd < 0 || *mask == want)
    return;
  struct epoll_event e = { .events = want, .data.ptr = ev };
  int op = want == 0 ? EPOLL_CTL_DEL : *mask == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
  if (epoll_ctl(c->p->epfd, op, fd, &e) == 0 || op == EPOLL_CTL_DEL)
    *mask = want;
}

/* Level-triggered interest from the state and the buffers.  An fd we want
 * nothing from is removed from epoll, so that a peer's hang-up cannot make
 * the loop spin while we wait for the other side. */
static void update_interest(struct conn *c)
{
  uint32_t cw = 0, uw = 0;
  switch (c->st)
    {
    case ST_HEAD: case ST_SOCKS_GREET: case ST_SOCKS_REQ: case ST_DRAIN:
      cw = EPOLLIN;
      break;
    case ST_CONNECTING:
      uw = EPOLLOUT;
      break;
    case ST_SNI:
      cw = EPOLLIN;
      uw = EPOLLIN;             /* a server that speaks first: not TLS */
      break;
    case ST_MITM:
      cw = c->mitm_cw;
      uw = c->mitm_uw;
      break;
    case ST_RELAY:
      if (!c->c_eof && bspace(&c->c2u) > 0)
        cw |= EPOLLIN;
      if (blen(&c->u2c) > 0)
        cw |= EPOLLOUT;
      if (!c->u_eof && bspace(&c->u2c) > 0)
        uw |= EPOLLIN;
      if (blen(&c->c2u) > 0)
        uw |= EPOLLOUT;
      break;
    default:
      break;
    }
  watch(c, c->cfd, &c->cev, &c->cmask, cw);
  watch(c, c->ufd, &c->uev, &c->umask, uw);
}

static void close_upstream(struct conn *c)
{
  watch(c, c->ufd, &c->uev, &c->umask, 0);
  if (c->ufd >= 0)
    close(c->ufd);
  c->ufd = -1;
}

/* Printable ASCII only: names from SOCKS may hold any byte, and the audit
 * record must stay valid JSON and readable. */
static void sanitize(const char *in, char *out, size_t size)
{
  size_t i = 0;
  for (; in[i] && i + 1 < size; i++)
    out[i] = (in[i] >= 0x20 && in[i] < 0x7f) ? in[i] : '?';
  out[i] = '\0';
}

static void audit(struct conn *c)
{
  char host[256], resolved[INET6_ADDRSTRLEN + 1] = "", error[sizeof(c->error)];
  sanitize(c->host, host, sizeof(host));
  sanitize(c->error, error, sizeof(error));
  if (c->have_peer)
    corral__sockaddr_format((struct sockaddr *) &c->peer, resolved, sizeof(resolved));
  json_t *o = json_pack("{s:s, s:s, s:s?, s:s?, s:o, s:b, s:s?, s:I, s:I, s:I}", "sandbox", c->sb->id, "kind",
                        c->kind, "destination", c->named ? host : NULL, "resolved",
                        c->have_peer ? resolved : NULL, "port", c->named ? json_integer(c->port) : json_null(),
                        "allowed", c->verdict.allowed, "rule", c->verdict.rule[0] ? c->verdict.rule : NULL,
                        "bytes_up", (json_int_t) c->up, "bytes_down", (json_int_t) c->down, "duration_ms",
                        (json_int_t) (corral__now_ms() - c->start_ms));
  if (o == NULL)
    return;
  if (error[0])
    json_object_set_new(o, "error", json_string(error));
  if (c->mitm)
    json_object_set_new(o, "intercepted", json_true());
  if (c->secrets_used)          /* names only: values never reach a record */
    json_object_set(o, "secrets_used", c->secrets_used);
  char *s = json_dumps(o, JSON_COMPACT);
  json_decref(o);
  if (s)
    corral__proxy_audit(c->p, c->sb, s);
  free(s);
}

/* The end of an attempt: counted once and audited once.  A client that
 * connected and left without a byte is neither (port probes, health
 * checks). */
static void end(struct conn *c)
{
  if (c->audited)
    return;
  c->audited = true;
  if (!c->any_bytes && !c->named)
    return;
  if (!c->counted)
    COUNT(c->sb, failed, 1);
  c->counted = true;
  audit(c);
}

static void count(struct conn *c, bool allowed)
{
  if (c->counted)
    return;
  c->counted = true;
  if (allowed)
    COUNT(c->sb, allowed, 1);
  else
    COUNT(c->sb, denied, 1);
}

static void close_conn(struct conn *c)
{
  struct sandbox *sb = c->sb;
  c->st = ST_DONE;
  watch(c, c->cfd, &c->cev, &c->cmask, 0);
  if (c->cfd >= 0)
    close(c->cfd);
  c->cfd = -1;
  close_upstream(c);
  /* A request head with a secret in it may still be in c2u. */
  if (c->secrets_used && c->c2u.data)
    OPENSSL_cleanse(c->c2u.data, RELAY_BUF);
  corral__mitm_free(c->mitm);
  c->mitm = NULL;
  json_decref(c->secrets_used);
  c->secrets_used = NULL;
  free(c->c2u.data);
  free(c->u2c.data);
  free(c->http);
  c->c2u.data = c->u2c.data = NULL;
  c->http = NULL;
  if (c->prev)
    c->prev->next = c->next;
  else
    sb->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  sb->nconns--;
  COUNT(sb, active, (uint64_t) -1);
  c->sb = NULL;
  c->prev = NULL;
  /* Events of this batch may still name c: it is freed after the batch, or
   * when its resolver job comes back. */
  if (c->resolving)
    c->dead = true;
  else
    {
      c->next = c->p->graveyard;
      c->p->graveyard = c;
    }
}

static void finish(struct conn *c, const char *error)
{
  if (error)
    set_error(c, "%s", error);
  end(c);
  close_conn(c);
}

static void abort_conn(struct conn *c, const char *error, const corral_net_verdict_t *v)
{
  if (c->st == ST_DONE)
    return;
  if (v)
    c->verdict = *v;
  finish(c, error);
}

void corral__conn_bury(struct corral_proxy *p)
{
  while (p->graveyard)
    {
      struct conn *c = p->graveyard;
      p->graveyard = c->next;
      free(c);
    }
}

void corral__conn_release_dead(struct conn *c)
{
  c->resolving = false;
  if (c->dead)
    free(c);
}

/* ---- replies, refusals and the lingering close ---- */

static void send_now(struct conn *c, const void *buf, size_t len)
{
  /* Small replies on a socket whose send buffer is empty: they fit, and if
   * they do not, the client is misbehaving and loses the reply. */
  if (send(c->cfd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t) len)
    set_error(c, "cannot send the reply to the client");
}

static void reply_http(struct conn *c, int status, const char *reason, const char *text)
{
  char body[sizeof(c->error) + 64], msg[sizeof(body) + 256];
  char clean[sizeof(c->error)];
  sanitize(text, clean, sizeof(clean));
  int bn = snprintf(body, sizeof(body), "corral egress proxy: %s\n", clean);
  int n = snprintf(msg, sizeof(msg),
                   "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
                   status, reason, bn, body);
  send_now(c, msg, (size_t) n);
}

static void reply_socks(struct conn *c, uint8_t rep)
{
  /* BND.ADDR 0.0.0.0:0: the host-side address is none of the sandbox's
   * business. */
  const uint8_t msg[10] = { 5, rep, 0, 1, 0, 0, 0, 0, 0, 0 };
  send_now(c, msg, sizeof(msg));
}

/* After a refusal: stop writing but read what the client still sends for a
 * moment, so that closing with unread data does not reset the connection
 * before the client has read our answer. */
static void drain(struct conn *c)
{
  end(c);
  close_upstream(c);
  shutdown(c->cfd, SHUT_WR);
  c->st = ST_DRAIN;
  c->deadline_ms = corral__now_ms() + DRAIN_MS;
}

static void refuse(struct conn *c, const corral_net_verdict_t *v)
{
  c->verdict = *v;
  count(c, false);
  if (c->socks)
    reply_socks(c, CORRAL__SOCKS_REP_NOT_ALLOWED);
  else
    reply_http(c, 403, "Forbidden", v->rule);
  drain(c);
}

static void bad_request(struct conn *c, int status, const char *reason, const char *why)
{
  set_verdict(&c->verdict, false, "deny bad request");
  set_error(c, "%s", why);
  reply_http(c, status, reason, why);
  drain(c);
}

static uint8_t socks_rep_of(int err)
{
  switch (err)
    {
    case ECONNREFUSED: return CORRAL__SOCKS_REP_REFUSED;
    case ENETUNREACH: return CORRAL__SOCKS_REP_NET_UNREACHABLE;
    default: return CORRAL__SOCKS_REP_HOST_UNREACHABLE;
    }
}

/* Resolution or connection failed (the policy allowed it): 502. */
static void bad_gateway(struct conn *c, int err)
{
  if (c->socks)
    reply_socks(c, socks_rep_of(err));
  else
    reply_http(c, 502, "Bad Gateway", c->error);
  drain(c);
}

/* ---- accepting ---- */

static struct conn *conn_new(struct corral_proxy *p, struct listener *l, int fd)
{
  struct conn *c = calloc(1, sizeof(*c));
  if (c == NULL || (c->c2u.data = malloc(RELAY_BUF)) == NULL
      || (!l->socks && (c->http = malloc(sizeof(*c->http))) == NULL))
    {
      if (c)
        free(c->c2u.data);
      free(c);
      return NULL;
    }
  c->cev.kind = EV_CLIENT;
  c->uev.kind = EV_UPSTREAM;
  c->p = p;
  c->sb = l->sb;
  c->cfd = fd;
  c->ufd = -1;
  c->socks = l->socks;
  c->kind = c->socks ? "socks5" : "http";
  c->st = c->socks ? ST_SOCKS_GREET : ST_HEAD;
  if (c->http)
    corral__http_head_init(c->http);
  c->start_ms = corral__now_ms();
  c->deadline_ms = c->start_ms + p->opts.handshake_timeout_ms;
  c->next = l->sb->conns;
  if (c->next)
    c->next->prev = c;
  l->sb->conns = c;
  l->sb->nconns++;
  COUNT(l->sb, active, 1);
  return c;
}

static void refuse_over_limit(struct corral_proxy *p, struct listener *l)
{
  char *s = NULL;
  COUNT(l->sb, denied, 1);
  json_t *o = json_pack("{s:s, s:s, s:n, s:n, s:n, s:b, s:s, s:i, s:i, s:i, s:s}", "sandbox", l->sb->id, "kind",
                        l->socks ? "socks5" : "http", "destination", "resolved", "port", "allowed", 0, "rule",
                        "deny connection limit", "bytes_up", 0, "bytes_down", 0, "duration_ms", 0, "error",
                        "too many connections");
  if (o && (s = json_dumps(o, JSON_COMPACT)) != NULL)
    corral__proxy_audit(p, l->sb, s);
  free(s);
  json_decref(o);
}

void corral__conn_accept(struct corral_proxy *p, struct listener *l)
{
  for (int i = 0; i < ACCEPT_BATCH; i++)
    {
      int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0)
        {
          /* Out of fds or memory: stop listening for a moment rather than
           * spin on a listener that stays readable. */
          if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
            {
              epoll_ctl(p->epfd, EPOLL_CTL_DEL, l->fd, NULL);
              l->armed = false;
              p->rearm_listeners = true;
            }
          return;
        }
      if (l->sb->nconns >= p->opts.max_connections)
        {
          close(fd);
          refuse_over_limit(p, l);
          continue;
        }
      struct conn *c = conn_new(p, l, fd);
      if (c == NULL)
        {
          close(fd);
          continue;
        }
      update_interest(c);
    }
}

/* ---- the destination: check, resolve, connect ---- */

static bool literal_sockaddr(const char *host, uint16_t port, struct sockaddr_storage *ss)
{
  char tmp[INET6_ADDRSTRLEN + 2];
  size_t n = strlen(host);
  memset(ss, 0, sizeof(*ss));
  struct sockaddr_in *in = (struct sockaddr_in *) ss;
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) ss;
  if (inet_pton(AF_INET, host, &in->sin_addr) == 1)
    {
      in->sin_family = AF_INET;
      in->sin_port = htons(port);
      return true;
    }
  if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof(tmp))
    {
      memcpy(tmp, host + 1, n - 2);
      tmp[n - 2] = '\0';
      host = tmp;
    }
  if (inet_pton(AF_INET6, host, &in6->sin6_addr) != 1)
    return false;
  in6->sin6_family = AF_INET6;
  in6->sin6_port = htons(port);
  return true;
}

static socklen_t sockaddr_len(const struct sockaddr_storage *ss)
{
  return ss->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
}

/* Try the remaining candidates in order: each is checked against the
 * sandbox's current policy just before its socket connects to it. */
static void start_connect(struct conn *c)
{
  while (c->cand_i < c->cands.n)
    {
      struct sockaddr_storage *sa = &c->cands.a[c->cand_i++];
      corral_net_verdict_t v;
      corral_net_policy_check(c->sb->policy, c->host, c->port, (struct sockaddr *) sa, &v);
      if (!v.allowed)
        {
          if (!c->have_deny)
            {
              c->deny = v;
              c->have_deny = true;
              if (!c->tried)
                {
                  c->peer = *sa;
                  c->have_peer = true;
                }
            }
          continue;
        }
      c->verdict = v;
      c->peer = *sa;
      c->have_peer = true;
      c->tried = true;
      int fd = socket(sa->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd < 0)
        {
          c->last_errno = errno;
          continue;
        }
      if (connect(fd, (struct sockaddr *) sa, sockaddr_len(sa)) == 0 || errno == EINPROGRESS)
        {
          c->ufd = fd;
          c->st = ST_CONNECTING;
          c->deadline_ms = corral__now_ms() + c->p->opts.connect_timeout_ms;
          return;               /* EPOLLOUT tells how it went */
        }
      c->last_errno = errno;
      close(fd);
    }
  if (!c->tried && c->have_deny)
    return refuse(c, &c->deny);
  set_error(c, "connect to %s port %u: %s", c->host, c->port, strerror(c->last_errno ? c->last_errno : EHOSTUNREACH));
  bad_gateway(c, c->last_errno);
}

static void begin_destination(struct conn *c)
{
  corral_net_verdict_t v;
  c->named = true;
  corral_net_policy_check(c->sb->policy, c->host, c->port, NULL, &v);
  if (!v.allowed)
    return refuse(c, &v);
  c->verdict = v;
  if (literal_sockaddr(c->host, c->port, &c->cands.a[0]))
    {
      c->cands.n = 1;
      return start_connect(c);
    }
  struct job *j = calloc(1, sizeof(*j));
  if (j == NULL)
    {
      set_error(c, "out of memory");
      return bad_gateway(c, ENOMEM);
    }
  j->conn = c;
  snprintf(j->host, sizeof(j->host), "%s", c->host);
  j->port = c->port;
  c->resolving = true;
  c->st = ST_RESOLVING;
  c->deadline_ms = corral__now_ms() + c->p->opts.handshake_timeout_ms;
  corral__proxy_submit(c->p, j);
}

void corral__conn_resolved(struct corral_proxy *p, struct job *j)
{
  struct conn *c = j->conn;
  int rc = j->rc;
  (void) p;
  c->resolving = false;
  if (c->dead)
    {
      free(c);                  /* closed while its name was being resolved */
      free(j);
      return;
    }
  if (c->st == ST_RESOLVING && rc < 0)
    {
      set_error(c, "resolve %s: %s", c->host, j->why ? j->why : "failed");
      bad_gateway(c, EHOSTUNREACH);
    }
  else if (c->st == ST_RESOLVING)
    {
      c->cands = j->res;
      c->cand_i = 0;
      start_connect(c);
    }
  free(j);
  if (c->st != ST_DONE)
    update_interest(c);
}

static void enter_relay(struct conn *c)
{
  if (c->u2c.data == NULL && (c->u2c.data = malloc(RELAY_BUF)) == NULL)
    return finish(c, "out of memory");
  count(c, true);
  c->st = ST_RELAY;
  c->deadline_ms = 0;
  c->last_io_ms = corral__now_ms();
  step(c);
}

static void sni_check(struct conn *c);

static void start_mitm(struct conn *c)
{
  const char *why = "";
  SSL *srv = corral__ca_server_ssl(c->sb->ca, c->host, &why);
  c->mitm = srv ? corral__mitm_new(srv, c->p->tls_client, c->host, c->port, &why) : NULL;
  count(c, true);
  if (c->mitm == NULL)
    return finish(c, why);
  /* The ClientHello the SNI check read is the start of the TLS stream. */
  corral__mitm_preload(c->mitm, c->c2u.data + c->c2u.start, blen(&c->c2u));
  c->c2u.start = c->c2u.end = 0;
  c->st = ST_MITM;
  c->deadline_ms = 0;
  c->last_io_ms = corral__now_ms();
  step(c);
}

static void on_mitm(struct conn *c)
{
  struct corral__mitm_io io;
  int r = corral__mitm_pump(c->mitm, c->cfd, c->ufd, c->sb->secrets, &c->secrets_used, &io);
  if (io.up || io.down)
    {
      c->up += io.up;
      c->down += io.down;
      COUNT(c->sb, up, io.up);
      COUNT(c->sb, down, io.down);
      c->last_io_ms = corral__now_ms();
    }
  if (r < 0)
    return finish(c, io.why);
  if (r == 0)
    return finish(c, NULL);
  c->mitm_cw = io.cw;
  c->mitm_uw = io.uw;
}

static void connect_done(struct conn *c)
{
  int e = 0;
  socklen_t len = sizeof(e);
  if (getsockopt(c->ufd, SOL_SOCKET, SO_ERROR, &e, &len) < 0)
    e = errno;
  if (e == EINPROGRESS || e == EALREADY)
    return;
  if (e != 0)
    {
      c->last_errno = e;
      close_upstream(c);
      return start_connect(c);
    }
  if (c->socks)
    {
      reply_socks(c, CORRAL__SOCKS_REP_OK);
      /* A SOCKS tunnel to a host some secret lists is intercepted like a
       * CONNECT one: its ClientHello must name that host too. */
      if (!corral__secrets_listed(c->sb->secrets, c->host))
        return enter_relay(c);
      c->st = ST_SNI;
      c->deadline_ms = corral__now_ms() + c->p->opts.handshake_timeout_ms;
      return sni_check(c);
    }
  if (!c->http_forward)
    {
      static const char ok[] = "HTTP/1.1 200 Connection Established\r\n\r\n";
      send_now(c, ok, sizeof(ok) - 1);
      c->st = ST_SNI;
      c->deadline_ms = corral__now_ms() + c->p->opts.handshake_timeout_ms;
      return sni_check(c);      /* the client may have sent its hello already */
    }
  enter_relay(c);
}

/* ---- handshakes ---- */

/* Read from the client into c2u, keeping at most limit bytes buffered.
 * >0 bytes read, 0 EOF, -1 nothing now, -2 error, -3 buffer at limit. */
static ssize_t read_client(struct conn *c, size_t limit)
{
  bspace(&c->c2u);
  if (c->c2u.end >= limit)
    return -3;
  ssize_t n = recv(c->cfd, c->c2u.data + c->c2u.end, limit - c->c2u.end, 0);
  if (n > 0)
    {
      c->c2u.end += (size_t) n;
      c->any_bytes = true;
      return n;
    }
  if (n == 0)
    return 0;
  return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? -1 : -2;
}

/* Absolute-URI request: c2u becomes the origin-form head followed by the
 * part of the body already received. */
static bool prepare_forward(struct conn *c)
{
  struct corral__http_head *h = c->http;
  char *nb = malloc(RELAY_BUF);
  bool done = false;
  if (nb == NULL)
    return false;
  struct corral__secret_edit e;
  bool edit = corral__secret_edit_init(&e, c->sb->secrets, c->host, &c->secrets_used);
  /* The Host header already agrees with the URI (corral__http_head_target),
   * so the destination checked is the one the secrets are for. */
  ssize_t n = corral__http_head_rewrite_edit(h, c->c2u.data, nb, RELAY_BUF, edit ? corral__secrets_edit : NULL, &e);
  size_t left = c->c2u.end - h->head_end;
  ssize_t m = n < 0 ? -1 : corral__http_body_feed(h, c->c2u.data + h->head_end, left, &done);
  if (n < 0 || m < 0 || (size_t) n + (size_t) m > RELAY_BUF)
    {
      free(nb);
      return false;
    }
  memcpy(nb + n, c->c2u.data + h->head_end, (size_t) m);
  free(c->c2u.data);
  c->c2u = (struct buf) { nb, 0, (size_t) n + (size_t) m };
  c->http_forward = true;
  c->body_done = done;
  return true;
}

static void on_head(struct conn *c)
{
  struct corral__http_target t;
  ssize_t r = read_client(c, CORRAL__HTTP_MAX_HEAD);
  if (r == 0 || r == -2)
    return finish(c, "the client closed during the request head");
  int done = corral__http_head_feed(c->http, c->c2u.data, c->c2u.end);
  if (done < 0)
    return bad_request(c, 400, "Bad Request", c->http->why);
  if (done == 0)
    {
      if (r == -3)
        bad_request(c, 431, "Request Header Fields Too Large", "request head too large");
      return;
    }
  int rc = corral__http_head_target(c->http, c->c2u.data, &t);
  c->kind = t.is_connect ? "connect" : "http";
  if (rc == -400)
    return bad_request(c, 400, "Bad Request", c->http->why);
  snprintf(c->host, sizeof(c->host), "%s", t.host);
  c->port = t.port;
  c->named = true;
  if (rc == -403)
    {
      corral_net_verdict_t v;
      set_verdict(&v, false, "deny host mismatch");
      set_error(c, "the Host header does not match the request target");
      return refuse(c, &v);
    }
  if (t.is_connect)
    c->c2u.start = c->http->head_end; /* what follows is the tunnel's */
  else if (!prepare_forward(c))
    return bad_request(c, 400, "Bad Request", "the request cannot be forwarded");
  begin_destination(c);
}

static void on_socks(struct conn *c)
{
  ssize_t r = read_client(c, SOCKS_MAX_HANDSHAKE);
  if (r == 0 || r == -2)
    return finish(c, "the client closed during the SOCKS handshake");
  const uint8_t *b = (const uint8_t *) c->c2u.data;
  if (c->st == ST_SOCKS_GREET)
    {
      bool noauth;
      ssize_t n = corral__socks_parse_greeting(b + c->c2u.start, blen(&c->c2u), &noauth);
      if (n < 0 || (n == 0 && r == -3))
        return finish(c, "not a SOCKS5 greeting");
      if (n == 0)
        return;
      if (!noauth)
        {
          const uint8_t no[2] = { 5, 0xff };
          send_now(c, no, sizeof(no));
          set_error(c, "the client offered no acceptable authentication method");
          return drain(c);
        }
      const uint8_t yes[2] = { 5, 0 };
      send_now(c, yes, sizeof(yes));
      c->c2u.start += (size_t) n;
      c->st = ST_SOCKS_REQ;
    }
  struct corral__socks_request req;
  ssize_t n = corral__socks_parse_request(b + c->c2u.start, blen(&c->c2u), &req);
  if (n == 0 && r == -3)
    n = -CORRAL__SOCKS_REP_FAILURE;
  if (n == 0)
    return;
  if (n < 0)
    {
      set_error(c, "%s", n == -CORRAL__SOCKS_REP_CMD    ? "SOCKS command not supported"
                         : n == -CORRAL__SOCKS_REP_ATYP ? "SOCKS address type not supported"
                                                        : "malformed SOCKS request");
      reply_socks(c, (uint8_t) -n);
      return drain(c);
    }
  c->c2u.start += (size_t) n;
  snprintf(c->host, sizeof(c->host), "%s", req.host);
  c->port = req.port;
  begin_destination(c);
}

/* CONNECT tunnels: a TLS ClientHello must name the host that was checked,
 * or the client could have the tunnel approved for one name and ask the
 * server (a CDN, a shared host) for another. */
static void sni_check(struct conn *c)
{
  char name[256];
  corral_net_verdict_t v;
  switch (corral__sni_parse((const uint8_t *) c->c2u.data + c->c2u.start, blen(&c->c2u), name))
    {
    case CORRAL__SNI_NEED_MORE:
      if (bspace(&c->c2u) > 0)
        return;
      /* larger than we accept: malformed */
      __attribute__((fallthrough));
    case CORRAL__SNI_MALFORMED:
      set_verdict(&v, false, "deny malformed client hello");
      break;
    case CORRAL__SNI_FOUND:
      if (!corral__same_host(name, strlen(name), c->host, strlen(c->host)))
        {
          set_verdict(&v, false, "deny sni mismatch");
          set_error(c, "the TLS server name %.100s is not the CONNECT host", name);
          break;
        }
      /* Only tunnels to a host some secret lists are intercepted; the
       * policy has allowed this one already (and rechecks it as usual). */
      if (corral__secrets_listed(c->sb->secrets, c->host) && c->sb->ca)
        return start_mitm(c);
      return enter_relay(c);
    default:
      return enter_relay(c);    /* not TLS, or TLS without a server name */
    }
  c->verdict = v;
  count(c, false);
  finish(c, NULL);              /* after the 200, closing is the only answer */
}

static void on_sni(struct conn *c)
{
  ssize_t r = read_client(c, RELAY_BUF);
  if (r == 0 || r == -2)
    return finish(c, "the client closed before sending data");
  sni_check(c);
}

/* ---- relay ---- */

/* Client to upstream.  Returns false when c was closed. */
static bool pump_up(struct conn *c)
{
  if (!c->c_eof && bspace(&c->c2u) > 0)
    {
      struct buf *b = &c->c2u;
      ssize_t n = recv(c->cfd, b->data + b->end, RELAY_BUF - b->end, 0);
      if (n == 0)
        c->c_eof = true;
      else if (n < 0 && errno != EAGAIN && errno != EINTR)
        return finish(c, NULL), false;  /* the client went away */
      else if (n > 0)
        {
          c->any_bytes = true;
          c->last_io_ms = corral__now_ms();
          if (c->http_forward)
            {
              /* One request per connection: bytes after its end are
               * dropped, so a second request (with another Host) cannot
               * ride on a connection checked for the first. */
              bool done = c->body_done;
              ssize_t m = done ? 0 : corral__http_body_feed(c->http, b->data + b->end, (size_t) n, &done);
              if (m < 0)
                return finish(c, "malformed request body"), false;
              c->body_done = done;
              n = m;
            }
          b->end += (size_t) n;
        }
    }
  if (blen(&c->c2u) > 0)
    {
      ssize_t n = send(c->ufd, c->c2u.data + c->c2u.start, blen(&c->c2u), MSG_NOSIGNAL);
      if (n < 0 && errno != EAGAIN && errno != EINTR)
        {
          set_error(c, "send to the destination: %s", strerror(errno));
          return finish(c, NULL), false;
        }
      if (n > 0)
        {
          c->c2u.start += (size_t) n;
          c->up += (uint64_t) n;
          COUNT(c->sb, up, (uint64_t) n);
          c->last_io_ms = corral__now_ms();
        }
    }
  if (c->c_eof && blen(&c->c2u) == 0 && !c->u_shut)
    {
      shutdown(c->ufd, SHUT_WR);
      c->u_shut = true;
    }
  return true;
}

/* Upstream to client.  Returns false when c was closed. */
static bool pump_down(struct conn *c)
{
  if (!c->u_eof && bspace(&c->u2c) > 0)
    {
      struct buf *b = &c->u2c;
      ssize_t n = recv(c->ufd, b->data + b->end, RELAY_BUF - b->end, 0);
      if (n > 0)
        {
          b->end += (size_t) n;
          c->last_io_ms = corral__now_ms();
        }
      else if (n == 0)
        c->u_eof = true;
      else if (errno != EAGAIN && errno != EINTR)
        {
          set_error(c, "receive from the destination: %s", strerror(errno));
          c->u_eof = true;      /* still deliver what was received */
        }
    }
  if (blen(&c->u2c) > 0)
    {
      ssize_t n = send(c->cfd, c->u2c.data + c->u2c.start, blen(&c->u2c), MSG_NOSIGNAL);
      if (n < 0 && errno != EAGAIN && errno != EINTR)
        return finish(c, NULL), false;
      if (n > 0)
        {
          c->u2c.start += (size_t) n;
          c->down += (uint64_t) n;
          COUNT(c->sb, down, (uint64_t) n);
          c->last_io_ms = corral__now_ms();
        }
    }
  /* The destination is done and everything it said was delivered: with
   * nothing left to answer, the tunnel ends. */
  if (c->u_eof && blen(&c->u2c) == 0)
    return finish(c, NULL), false;
  return true;
}

static void on_drain(struct conn *c)
{
  char junk[4096];
  ssize_t n = recv(c->cfd, junk, sizeof(junk), 0);
  if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
    close_conn(c);
}

static void step(struct conn *c)
{
  switch (c->st)
    {
    case ST_HEAD: on_head(c); break;
    case ST_SOCKS_GREET: case ST_SOCKS_REQ: on_socks(c); break;
    case ST_SNI: on_sni(c); break;
    case ST_RELAY:
      if (pump_up(c))
        pump_down(c);
      break;
    case ST_MITM: on_mitm(c); break;
    case ST_DRAIN: on_drain(c); break;
    default: break;
    }
}

void corral__conn_event(struct corral_proxy *p, struct ev *ev, uint32_t events)
{
  struct conn *c = ev->kind == EV_CLIENT ? container_of(ev, struct conn, cev) : container_of(ev, struct conn, uev);
  (void) p;
  (void) events;
  if (c->st == ST_DONE)
    return;
  if (ev->kind == EV_UPSTREAM && c->st == ST_CONNECTING)
    connect_done(c);
  else if (ev->kind == EV_UPSTREAM && c->st == ST_SNI)
    enter_relay(c);             /* TLS clients speak first: this is not TLS */
  else
    step(c);
  if (c->st != ST_DONE && !c->dead)
    update_interest(c);
}

/* ---- policy changes and timeouts ---- */

void corral__sandbox_recheck(struct sandbox *sb)
{
  for (struct conn *c = sb->conns, *next; c; c = next)
    {
      corral_net_verdict_t v;
      next = c->next;
      /* Connections still resolving are checked when the answer comes,
       * against the policy of that moment. */
      if (c->st != ST_CONNECTING && c->st != ST_SNI && c->st != ST_RELAY && c->st != ST_MITM)
        continue;
      corral_net_policy_check(sb->policy, c->host, c->port, (struct sockaddr *) &c->peer, &v);
      if (!v.allowed)
        abort_conn(c, "policy changed", &v);
    }
}

void corral__sandbox_abort_all(struct sandbox *sb, const char *why)
{
  while (sb->conns)
    abort_conn(sb->conns, why, NULL);
}

static void timeout(struct conn *c)
{
  switch (c->st)
    {
    case ST_HEAD: case ST_SOCKS_GREET: case ST_SOCKS_REQ: case ST_SNI:
      return finish(c, "handshake timeout");
    case ST_RESOLVING:
      set_error(c, "resolve %s: timed out", c->host);
      return bad_gateway(c, ETIMEDOUT);
    case ST_CONNECTING:
      c->last_errno = ETIMEDOUT;
      close_upstream(c);
      start_connect(c);
      if (c->st != ST_DONE)
        update_interest(c);
      return;
    default:
      return close_conn(c);
    }
}

bool corral__conn_sweep(struct corral_proxy *p, uint64_t now)
{
  bool pending = false;
  unsigned idle = p->opts.idle_timeout_ms;
  for (struct sandbox *sb = p->sandboxes; sb; sb = sb->next)
    for (struct conn *c = sb->conns, *next; c; c = next)
      {
        next = c->next;
        if (c->st == ST_RELAY || c->st == ST_MITM)
          {
            if (idle && now - c->last_io_ms >= idle)
              finish(c, "idle timeout");
            pending |= idle > 0;
            continue;
          }
        if (c->deadline_ms == 0)
          continue;
        pending = true;
        if (now >= c->deadline_ms)
          timeout(c);
      }
  return pending;
}
