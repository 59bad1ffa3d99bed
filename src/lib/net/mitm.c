/* An intercepted tunnel: the proxy is the TLS server of the sandbox's
 * client (with a leaf from the sandbox's CA) and the TLS client of the
 * real destination (verified against the trust store), and relays
 * HTTP/1.1 requests between them, with secrets in place of their
 * placeholders in request heads.  Responses pass unchanged.
 *
 * Both TLS connections run on memory BIOs: the loop moves bytes between
 * sockets and BIOs, and OpenSSL never touches a socket, so nothing blocks
 * and the ClientHello the SNI check already read is simply fed in first.
 * Every buffer is bounded; a side stops reading while the other cannot
 * take more.
 *
 * Requests are parsed with http_parser (httphead.c): each head is read
 * whole (at most CORRAL__HTTP_MAX_HEAD), edited, and its body streamed by
 * its own framing (Content-Length or chunked), so the next head is found
 * exactly where the request ends and no placeholder can hide in a body
 * that we would mistake for a head, or the reverse.  After a request
 * that upgrades the connection (WebSocket) the rest is relayed as is. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <openssl/err.h>
#include "secrets.h"

#define RAW_CAP 16384           /* TLS bytes read or sent per call */
#define BIO_LIMIT 65536         /* TLS bytes held in a BIO before reading stops */
#define PIN_CAP CORRAL__HTTP_MAX_HEAD
#define PLAIN_CAP 32768
#define MAX_ROUNDS 64

enum req_state
{
  R_HEAD,
  R_BODY,
  R_RAW,
};

struct side
{
  SSL *ssl;
  BIO *rb, *wb;                 /* owned by ssl */
  char out[RAW_CAP];            /* TLS bytes on their way to the socket */
  size_t os, oe;
  bool fd_eof;                  /* the socket said EOF (or failed) */
  bool closed;                  /* the TLS stream ended */
  bool shut;                    /* our close_notify is sent */
};

struct corral__mitm
{
  struct side c, u;             /* client (sandbox) and upstream */
  char host[CORRAL__NAME_MAX];
  uint16_t port;
  enum req_state rs;
  struct corral__http_head head;
  char pin[PIN_CAP];            /* client plaintext not yet processed */
  size_t pin_len;
  char pout[PLAIN_CAP];         /* processed, for the upstream */
  size_t po_s, po_e;
  char dn[PLAIN_CAP];           /* upstream plaintext, for the client */
  size_t dn_s, dn_e;
  char why[200];
};

static bool side_init(struct side *s, SSL *ssl)
{
  s->ssl = ssl;
  s->rb = BIO_new(BIO_s_mem());
  s->wb = BIO_new(BIO_s_mem());
  if (s->rb == NULL || s->wb == NULL)
    {
      BIO_free(s->rb);
      BIO_free(s->wb);
      s->rb = s->wb = NULL;
      return false;
    }
  BIO_set_mem_eof_return(s->rb, -1); /* empty means "wait", until the socket's EOF */
  SSL_set_bio(ssl, s->rb, s->wb);
  return true;
}

struct corral__mitm *corral__mitm_new(SSL *server, SSL_CTX *client_ctx, const char *host, uint16_t port,
                                      const char **why)
{
  struct corral__mitm *m = calloc(1, sizeof(*m));
  SSL *up = m ? SSL_new(client_ctx) : NULL;
  if (m == NULL || up == NULL || !side_init(&m->c, server) || !side_init(&m->u, up)
      || !corral__name_normalize(host, strlen(host), false, m->host))
    {
      if (m == NULL || m->c.rb == NULL)
        SSL_free(server);       /* otherwise freed with m */
      if (m && m->u.rb == NULL)
        SSL_free(up);
      corral__mitm_free(m);
      ERR_clear_error();
      *why = "cannot set up TLS interception";
      return NULL;
    }
  m->port = port;
  /* SNI for the destination, and the name its certificate must carry. */
  if (SSL_set_tlsext_host_name(up, m->host) != 1 || SSL_set1_host(up, m->host) != 1)
    {
      corral__mitm_free(m);
      ERR_clear_error();
      *why = "cannot set the destination's name for TLS";
      return NULL;
    }
  SSL_set_connect_state(up);
  corral__http_head_init(&m->head);
  return m;
}

void corral__mitm_free(struct corral__mitm *m)
{
  if (m == NULL)
    return;
  if (m->c.rb)
    SSL_free(m->c.ssl);
  if (m->u.rb)
    SSL_free(m->u.ssl);
  /* Request heads in pin/pout held secret values. */
  OPENSSL_cleanse(m, sizeof(*m));
  free(m);
}

void corral__mitm_preload(struct corral__mitm *m, const char *data, size_t len)
{
  if (len > 0)
    BIO_write(m->c.rb, data, (int) len);
}

/* ---- sockets <-> BIOs ---- */

static bool raw_in(struct side *s, int fd)
{
  char tmp[RAW_CAP];
  if (s->fd_eof || BIO_ctrl_pending(s->rb) >= BIO_LIMIT)
    return false;
  ssize_t n = recv(fd, tmp, sizeof(tmp), 0);
  if (n > 0)
    {
      BIO_write(s->rb, tmp, (int) n);
      return true;
    }
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
    return false;
  s->fd_eof = true;
  BIO_set_mem_eof_return(s->rb, 0); /* now an empty BIO is the end */
  return true;
}

/* 1 progress, 0 none, -1 the socket failed. */
static int raw_out(struct side *s, int fd, uint64_t *count)
{
  if (s->os == s->oe)
    {
      s->os = s->oe = 0;
      int n = BIO_ctrl_pending(s->wb) > 0 ? BIO_read(s->wb, s->out, sizeof(s->out)) : 0;
      if (n <= 0)
        return 0;
      s->oe = (size_t) n;
    }
  ssize_t n = send(fd, s->out + s->os, s->oe - s->os, MSG_NOSIGNAL);
  if (n < 0)
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
  s->os += (size_t) n;
  *count += (uint64_t) n;
  return n > 0;
}

static bool out_empty(const struct side *s)
{
  return s->os == s->oe && BIO_ctrl_pending(s->wb) == 0;
}

/* ---- errors ---- */

static int fail(struct corral__mitm *m, const char *what, const struct side *s)
{
  char ossl[120] = "";
  unsigned long e = ERR_peek_last_error();
  long v = s == &m->u ? SSL_get_verify_result(s->ssl) : X509_V_OK;
  if (v != X509_V_OK)
    snprintf(ossl, sizeof(ossl), "certificate verification: %s", X509_verify_cert_error_string(v));
  else if (e)
    ERR_error_string_n(e, ossl, sizeof(ossl));
  snprintf(m->why, sizeof(m->why), "%s%s%s", what, ossl[0] ? ": " : "", ossl);
  ERR_clear_error();
  return -1;
}

/* A bad request inside the tunnel: answer it (best effort) and end. */
static int bad(struct corral__mitm *m, int status, const char *reason, const char *why, int cfd)
{
  char msg[160];
  uint64_t ignored = 0;
  int n = snprintf(msg, sizeof(msg), "HTTP/1.1 %d %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", status,
                   reason);
  if (SSL_write(m->c.ssl, msg, n) > 0)
    raw_out(&m->c, cfd, &ignored);
  snprintf(m->why, sizeof(m->why), "request in the intercepted tunnel: %s", why ? why : reason);
  ERR_clear_error();
  return -1;
}

/* ---- TLS reads and writes ---- */

/* 1 read (*got), 0 nothing now, -1 the stream ended, -2 error. */
static int tls_read(struct side *s, char *dst, size_t cap, size_t *got)
{
  int n = SSL_read(s->ssl, dst, (int) cap);
  if (n > 0)
    {
      *got = (size_t) n;
      return 1;
    }
  switch (SSL_get_error(s->ssl, n))
    {
    case SSL_ERROR_WANT_READ: case SSL_ERROR_WANT_WRITE: return 0;
    case SSL_ERROR_ZERO_RETURN: return -1;
    default: return -2;
    }
}

/* 1 progress, 0 none, -1 error. */
static int tls_write(struct side *s, const char *src, size_t *start, size_t end)
{
  if (*start == end || BIO_ctrl_pending(s->wb) >= BIO_LIMIT)
    return 0;
  int n = SSL_write(s->ssl, src + *start, (int) (end - *start));
  if (n > 0)
    {
      *start += (size_t) n;
      return 1;
    }
  int e = SSL_get_error(s->ssl, n);
  return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? 0 : -1;
}

/* The destination's handshake first: the client's handshake only
 * completes once the destination proved who it is, so a client never
 * talks to a destination that failed verification. 1 done, 0 not yet,
 * -1 failed. */
static int handshakes(struct corral__mitm *m)
{
  for (struct side *s = &m->u; s; s = s == &m->u ? &m->c : NULL)
    {
      if (SSL_is_init_finished(s->ssl))
        continue;
      int r = SSL_do_handshake(s->ssl);
      if (r == 1)
        continue;
      int e = SSL_get_error(s->ssl, r);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
      return fail(m, s == &m->u ? "TLS handshake with the destination" : "TLS handshake with the client", s);
    }
  return 1;
}

/* ---- requests: client plaintext -> edited -> destination ---- */

static void consume(struct corral__mitm *m, size_t n)
{
  memmove(m->pin, m->pin + n, m->pin_len - n);
  m->pin_len -= n;
}

static size_t pout_room(struct corral__mitm *m)
{
  if (m->po_s == m->po_e)
    m->po_s = m->po_e = 0;
  return PLAIN_CAP - m->po_e;
}

/* The complete head in pin, into the empty pout.  Secrets apply only
 * when the Host header names the tunnel's destination: the server must
 * not be asked to route the value to another of the names it serves. */
static ssize_t write_head(struct corral__mitm *m, const struct corral__secrets *s, json_t **used)
{
  struct corral__secret_edit e;
  bool edit = corral__secret_edit_init(&e, s, m->host, used)
              && corral__http_head_host_is(&m->head, m->pin, m->host, m->port);
  return corral__http_head_copy(&m->head, m->pin, m->pout, PLAIN_CAP, edit ? corral__secrets_edit : NULL, &e);
}

/* Returns 0, or -1 after a bad request. */
static int process(struct corral__mitm *m, const struct corral__secrets *s, json_t **used, int cfd, bool *prog)
{
  for (;;)
    {
      if (m->rs == R_HEAD)
        {
          if (m->pin_len == 0)
            return 0;
          int r = corral__http_head_feed(&m->head, m->pin, m->pin_len);
          if (r < 0)
            return bad(m, 400, "Bad Request", m->head.why, cfd);
          if (r == 0)
            return m->pin_len >= PIN_CAP ? bad(m, 431, "Request Header Fields Too Large", NULL, cfd) : 0;
          if (m->po_s != m->po_e)
            return 0;           /* the head goes into an empty buffer */
          if (corral__http_head_check_origin(&m->head, m->pin) < 0)
            return bad(m, 400, "Bad Request", m->head.why, cfd);
          ssize_t n = write_head(m, s, used);
          if (n < 0)
            return bad(m, 431, "Request Header Fields Too Large", NULL, cfd);
          m->po_s = 0;
          m->po_e = (size_t) n;
          consume(m, m->head.head_end);
          m->rs = R_BODY;
          *prog = true;
        }
      size_t room = pout_room(m), len = m->pin_len < room ? m->pin_len : room;
      ssize_t k = (ssize_t) len;
      bool done = false;
      if (m->rs == R_BODY && (k = corral__http_body_feed(&m->head, m->pin, len, &done)) < 0)
        return bad(m, 400, "Bad Request", "malformed request body", cfd);
      memcpy(m->pout + m->po_e, m->pin, (size_t) k);
      m->po_e += (size_t) k;
      consume(m, (size_t) k);
      *prog |= k > 0;
      if (done)
        {
          bool upgrade = m->head.parser.upgrade;
          corral__http_head_init(&m->head);
          m->rs = upgrade ? R_RAW : R_HEAD;
          continue;
        }
      if (k == 0)
        return 0;
    }
}

static int up_flow(struct corral__mitm *m, const struct corral__secrets *s, json_t **used, int cfd, bool *prog)
{
  size_t got = 0;
  if (!m->c.closed && m->pin_len < PIN_CAP)
    {
      int r = tls_read(&m->c, m->pin + m->pin_len, PIN_CAP - m->pin_len, &got);
      if (r == -2)
        return fail(m, "TLS from the client", &m->c);
      if (r == -1)
        m->c.closed = *prog = true;
      m->pin_len += got;
      *prog |= got > 0;
    }
  if (process(m, s, used, cfd, prog) < 0)
    return -1;
  int w = tls_write(&m->u, m->pout, &m->po_s, m->po_e);
  if (w < 0)
    return fail(m, "TLS to the destination", &m->u);
  *prog |= w > 0;
  /* The client is done: once what it sent is on its way, say so to the
   * destination, which still answers. */
  if (m->c.closed && m->po_s == m->po_e && !m->u.shut)
    {
      SSL_shutdown(m->u.ssl);
      m->u.shut = *prog = true;
    }
  return 0;
}

/* ---- responses: destination plaintext -> client, unchanged ---- */

static int down_flow(struct corral__mitm *m, bool *prog)
{
  if (m->dn_s == m->dn_e)
    m->dn_s = m->dn_e = 0;
  if (!m->u.closed && m->dn_e < PLAIN_CAP)
    {
      size_t got = 0;
      int r = tls_read(&m->u, m->dn + m->dn_e, PLAIN_CAP - m->dn_e, &got);
      if (r == -2)
        return fail(m, "TLS from the destination", &m->u);
      if (r == -1)
        m->u.closed = *prog = true;
      m->dn_e += got;
      *prog |= got > 0;
    }
  int w = tls_write(&m->c, m->dn, &m->dn_s, m->dn_e);
  if (w < 0)
    return fail(m, "TLS to the client", &m->c);
  *prog |= w > 0;
  if (m->u.closed && m->dn_s == m->dn_e && !m->c.shut)
    {
      SSL_shutdown(m->c.ssl);
      m->c.shut = *prog = true;
    }
  return 0;
}

/* ---- the pump ---- */

static void interest(struct corral__mitm *m, struct corral__mitm_io *io)
{
  io->cw = io->uw = 0;
  if (!m->c.fd_eof && BIO_ctrl_pending(m->c.rb) < BIO_LIMIT)
    io->cw |= EPOLLIN;
  if (!out_empty(&m->c))
    io->cw |= EPOLLOUT;
  if (!m->u.fd_eof && BIO_ctrl_pending(m->u.rb) < BIO_LIMIT)
    io->uw |= EPOLLIN;
  if (!out_empty(&m->u))
    io->uw |= EPOLLOUT;
}

static int round_once(struct corral__mitm *m, int cfd, int ufd, const struct corral__secrets *s, json_t **used,
                      struct corral__mitm_io *io, bool *prog)
{
  *prog = raw_in(&m->c, cfd);
  *prog |= raw_in(&m->u, ufd);
  int h = handshakes(m);
  if (h < 0)
    return -1;
  if (h == 1 && (up_flow(m, s, used, cfd, prog) < 0 || down_flow(m, prog) < 0))
    return -1;
  int a = raw_out(&m->u, ufd, &io->up), b = raw_out(&m->c, cfd, &io->down);
  if (a < 0 || b < 0)
    {
      snprintf(m->why, sizeof(m->why), "send to the %s: %s", a < 0 ? "destination" : "client", strerror(errno));
      return -1;
    }
  *prog |= a > 0 || b > 0;
  /* A socket that ended before its TLS stream did: nothing more will come
   * from that side, and the other side is told so. */
  if (h == 0 && (m->c.fd_eof || m->u.fd_eof))
    return (snprintf(m->why, sizeof(m->why), "the %s closed during the TLS handshake",
                     m->c.fd_eof ? "client" : "destination")), -1;
  return 0;
}

int corral__mitm_pump(struct corral__mitm *m, int cfd, int ufd, const struct corral__secrets *s, json_t **used,
                      struct corral__mitm_io *io)
{
  bool prog = true;
  memset(io, 0, sizeof(*io));
  ERR_clear_error();            /* SSL_get_error reads the thread's queue */
  for (int i = 0; i < MAX_ROUNDS && prog; i++)
    if (round_once(m, cfd, ufd, s, used, io, &prog) < 0)
      {
        io->why = m->why;
        return -1;
      }
  /* Over when the destination's stream ended and all of it reached the
   * client (as in a plain tunnel, the client's end alone is a half-close:
   * the answer still comes), or when both sockets are gone. */
  if ((m->c.shut && out_empty(&m->c)) || (m->c.fd_eof && m->u.fd_eof))
    return 0;
  interest(m, io);
  if (prog)
    io->cw |= EPOLLOUT;         /* stopped by MAX_ROUNDS: come back soon */
  return 1;
}
