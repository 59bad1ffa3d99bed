/* Secrets through the egress proxy (include/corral/net.h, "secrets"), end
 * to end on loopback only.
 *
 * The "internet" is one server on 127.0.0.2 that speaks TLS (a first byte
 * 0x16) or plain HTTP on the same port and answers every request with the
 * exact head and body it received.  Its certificate comes from a test CA
 * made here with OpenSSL and given to the proxy as upstream_ca_file.  The
 * "sandbox" is this process's clients, which trust only the CA that the
 * proxy returns for the sandbox (or, for tunnels that must not be
 * intercepted, only the test CA). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <corral/net.h>
#include "tap.h"

#define VALUE1 "sk-REAL-VALUE-0123456789"
#define VALUE2 "wild-REAL-VALUE-98765"
#define SNI_MISMATCH 2

static int up_port, up_fd = -1, up_requests; /* requests the upstream decoded */
static pthread_t up_thread;
static SSL_CTX *up_ctx;
static char *test_ca_pem;

/* ---- certificates of the test "internet" ---- */

static bool ext(X509 *x, X509 *issuer, int nid, const char *v)
{
  X509V3_CTX c;
  X509V3_set_ctx_nodb(&c);
  X509V3_set_ctx(&c, issuer, x, NULL, NULL, 0);
  X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &c, nid, v);
  bool r = e && X509_add_ext(x, e, -1);
  X509_EXTENSION_free(e);
  return r;
}

static X509 *cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *signer, const char *san)
{
  X509 *x = X509_new();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), san ? 2 : 1);
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), 86400);
  X509_set_pubkey(x, key);
  X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC, (const unsigned char *) cn, -1, -1, 0);
  X509_set_issuer_name(x, X509_get_subject_name(issuer ? issuer : x));
  bool ok = san ? ext(x, issuer, NID_subject_alt_name, san) && ext(x, issuer, NID_basic_constraints, "CA:FALSE")
                : ext(x, x, NID_basic_constraints, "critical,CA:TRUE") && ext(x, x, NID_key_usage, "keyCertSign");
  if (!ok || X509_sign(x, signer, EVP_sha256()) <= 0)
    {
      X509_free(x);
      return NULL;
    }
  return x;
}

static char *pem_of(X509 *x)
{
  BIO *b = BIO_new(BIO_s_mem());
  char *d, *r = NULL;
  if (PEM_write_bio_X509(b, x))
    {
      long n = BIO_get_mem_data(b, &d);
      r = strndup(d, (size_t) n);
    }
  BIO_free(b);
  return r;
}

/* The test CA and the upstream's certificate, which names api.secret.test,
 * other.test and *.wild.secret.test -- not bad.secret.test. */
static bool make_upstream_tls(const char *ca_file)
{
  EVP_PKEY *cak = EVP_EC_gen("P-256"), *k = EVP_EC_gen("P-256");
  X509 *ca = cert(cak, "corral test CA", NULL, cak, NULL);
  X509 *leaf = ca ? cert(k, "api.secret.test", ca, cak, "DNS:api.secret.test,DNS:other.test,DNS:*.wild.secret.test")
                  : NULL;
  up_ctx = SSL_CTX_new(TLS_server_method());
  bool ok = leaf && up_ctx && SSL_CTX_use_certificate(up_ctx, leaf) == 1 && SSL_CTX_use_PrivateKey(up_ctx, k) == 1;
  test_ca_pem = ok ? pem_of(ca) : NULL;
  FILE *f = test_ca_pem ? fopen(ca_file, "w") : NULL;
  ok = f && fputs(test_ca_pem, f) >= 0;
  if (f)
    fclose(f);
  X509_free(ca);
  X509_free(leaf);
  EVP_PKEY_free(cak);
  EVP_PKEY_free(k);
  return ok;
}

/* ---- the upstream: echoes each request (head and body) as its body ---- */

struct io
{
  int fd;
  SSL *ssl;
};

static ssize_t io_read(struct io *io, char *b, size_t n)
{
  return io->ssl ? SSL_read(io->ssl, b, (int) n) : recv(io->fd, b, n, 0);
}

static bool io_write(struct io *io, const char *b, size_t n)
{
  return io->ssl ? SSL_write(io->ssl, b, (int) n) == (int) n : send(io->fd, b, n, MSG_NOSIGNAL) == (ssize_t) n;
}

static size_t content_length(const char *head)
{
  const char *p = strcasestr(head, "\r\ncontent-length:");
  return p ? strtoul(p + 17, NULL, 10) : 0;
}

/* One HTTP message (head + Content-Length body) into buf; its length, or 0. */
static size_t read_message(struct io *io, char *buf, size_t cap)
{
  size_t len = 0;
  char *end = NULL;
  while (!(end = memmem(buf, len, "\r\n\r\n", 4)))
    {
      ssize_t n = io_read(io, buf + len, 1);   /* byte by byte: keep-alive needs exact ends */
      if (n <= 0 || ++len >= cap - 1)
        return 0;
      buf[len] = '\0';
    }
  if (strcasestr(buf, "\r\ntransfer-encoding: chunked\r\n"))
    {
      /* enough for the tests' bodies: up to the last chunk, no trailers */
      while (len < 5 || memcmp(buf + len - 5, "0\r\n\r\n", 5) != 0)
        {
          if (io_read(io, buf + len, 1) <= 0 || ++len >= cap - 1)
            return 0;
        }
      buf[len] = '\0';
      return len;
    }
  size_t want = (size_t) (end + 4 - buf) + content_length(buf);
  while (len < want && len < cap - 1)
    {
      ssize_t n = io_read(io, buf + len, want - len);
      if (n <= 0)
        return 0;
      len += (size_t) n;
    }
  buf[len] = '\0';
  return len;
}

static void *up_serve(void *arg)
{
  struct io io = { (int) (intptr_t) arg, NULL };
  char first, buf[32768], head[128];
  struct timeval tv = { 5, 0 };
  setsockopt(io.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (recv(io.fd, &first, 1, MSG_PEEK) == 1 && first == 0x16)
    {
      io.ssl = SSL_new(up_ctx);
      SSL_set_fd(io.ssl, io.fd);
      if (SSL_accept(io.ssl) != 1)
        goto out;
    }
  size_t n;
  while ((n = read_message(&io, buf, sizeof(buf))) > 0)
    {
      __atomic_add_fetch(&up_requests, 1, __ATOMIC_SEQ_CST);
      int hn = snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", n);
      if (!io_write(&io, head, (size_t) hn) || !io_write(&io, buf, n))
        break;
    }
out:
  if (io.ssl)
    SSL_shutdown(io.ssl);
  SSL_free(io.ssl);
  ERR_clear_error();
  close(io.fd);
  return NULL;
}

static void *up_main(void *arg)
{
  (void) arg;
  for (;;)
    {
      int fd = accept(up_fd, NULL, NULL);
      pthread_t t;
      if (fd < 0 && (errno == EINTR || errno == ECONNABORTED))
        continue;
      if (fd < 0)
        return NULL;
      if (pthread_create(&t, NULL, up_serve, (void *) (intptr_t) fd) == 0)
        pthread_detach(t);
      else
        close(fd);
    }
}

static int listen_on(const char *addr, int *port)
{
  struct sockaddr_in sa = { .sin_family = AF_INET };
  socklen_t len = sizeof(sa);
  inet_pton(AF_INET, addr, &sa.sin_addr);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || listen(fd, 64) < 0)
    {
      if (fd >= 0)
        close(fd);
      return -1;
    }
  getsockname(fd, (struct sockaddr *) &sa, &len);
  if (port)
    *port = ntohs(sa.sin_port);
  return fd;
}

/* ---- audit ---- */

static pthread_mutex_t audit_lock = PTHREAD_MUTEX_INITIALIZER;
static json_t *audits;
static char audit_text[1 << 20];  /* every record, for the "no value" check */
static size_t audit_len;

static void on_audit(void *cls, const char *sandbox, const char *record)
{
  (void) cls;
  (void) sandbox;
  pthread_mutex_lock(&audit_lock);
  json_t *o = json_loads(record, 0, NULL);
  json_array_append_new(audits, o ? o : json_string(record));
  size_t n = strlen(record);
  if (audit_len + n + 1 < sizeof(audit_text))
    {
      memcpy(audit_text + audit_len, record, n);
      audit_len += n;
      audit_text[audit_len++] = '\n';
    }
  pthread_mutex_unlock(&audit_lock);
}

/* The next record after *mark, waiting up to 5 s (owned by the caller). */
static json_t *audit_next(size_t *mark)
{
  for (int i = 0; i < 500; i++)
    {
      pthread_mutex_lock(&audit_lock);
      json_t *o = *mark < json_array_size(audits) ? json_incref(json_array_get(audits, (*mark)++)) : NULL;
      pthread_mutex_unlock(&audit_lock);
      if (o)
        return o;
      usleep(10000);
    }
  return NULL;
}

static size_t audit_mark(void)
{
  pthread_mutex_lock(&audit_lock);
  size_t n = json_array_size(audits);
  pthread_mutex_unlock(&audit_lock);
  return n;
}

static bool used_is(json_t *a, const char *name)
{
  json_t *u = json_object_get(a, "secrets_used");
  if (name == NULL)
    return u == NULL;
  return json_array_size(u) == 1 && strcmp(json_string_value(json_array_get(u, 0)) ?: "", name) == 0;
}

/* ---- the sandbox's side ---- */

static corral_proxy_t *proxy;
static int http_port, socks_port;
static char ph1[CORRAL_SECRET_PLACEHOLDER_MAX], ph2[CORRAL_SECRET_PLACEHOLDER_MAX], *sandbox_ca;

static int dial(int port)
{
  struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t) port) };
  struct timeval tv = { 5, 0 };
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
    {
      close(fd);
      return -1;
    }
  return fd;
}

/* CONNECT host:up_port; the fd once the proxy answered 200, else -1. */
static int tunnel(const char *host)
{
  char req[256], resp[512];
  size_t len = 0;
  int fd = dial(http_port), status = -1;
  if (fd < 0)
    return -1;
  snprintf(req, sizeof(req), "CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n\r\n", host, up_port, host, up_port);
  send(fd, req, strlen(req), MSG_NOSIGNAL);
  resp[0] = '\0';
  while (len < sizeof(resp) - 1 && !strstr(resp, "\r\n\r\n") && recv(fd, resp + len, 1, 0) == 1)
    resp[++len] = '\0';
  sscanf(resp, "HTTP/1.1 %d", &status);
  if (status != 200)
    {
      close(fd);
      return -1;
    }
  return fd;
}

static int socks_tunnel(const char *host)
{
  uint8_t req[300], r[10];
  size_t n = 0, hn = strlen(host);
  int fd = dial(socks_port);
  const uint8_t greet[] = { 5, 1, 0 };
  if (fd < 0)
    return -1;
  req[n++] = 5, req[n++] = 1, req[n++] = 0, req[n++] = 3, req[n++] = (uint8_t) hn;
  memcpy(req + n, host, hn);
  n += hn;
  req[n++] = (uint8_t) (up_port >> 8), req[n++] = (uint8_t) up_port;
  if (send(fd, greet, 3, MSG_NOSIGNAL) != 3 || recv(fd, r, 2, MSG_WAITALL) != 2 || send(fd, req, n, 0) != (ssize_t) n
      || recv(fd, r, 10, MSG_WAITALL) != 10 || r[1] != 0)
    {
      close(fd);
      return -1;
    }
  return fd;
}

/* TLS over fd with server name sni, trusting only trust_pem and checking
 * that the certificate names sni.  NULL if the handshake fails. */
static SSL *tls_over(int fd, const char *sni, const char *trust_pem)
{
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  BIO *b = BIO_new_mem_buf(trust_pem, -1);
  X509 *ca = PEM_read_bio_X509(b, NULL, NULL, NULL);
  BIO_free(b);
  X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), ca);
  X509_free(ca);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
  SSL *ssl = SSL_new(ctx);
  SSL_CTX_free(ctx);            /* ssl holds its own reference */
  SSL_set_fd(ssl, fd);
  SSL_set_tlsext_host_name(ssl, sni);
  SSL_set1_host(ssl, sni);
  if (SSL_connect(ssl) != 1)
    {
      SSL_free(ssl);
      ERR_clear_error();
      return NULL;
    }
  return ssl;
}

/* One request and its response (whose body is what the upstream got). */
static bool exchange(SSL *ssl, int fd, const char *req, char *resp, size_t cap)
{
  struct io io = { fd, ssl };
  resp[0] = '\0';
  return io_write(&io, req, strlen(req)) && read_message(&io, resp, cap) > 0;
}

static void close_tls(SSL *ssl, int fd)
{
  if (ssl)
    SSL_shutdown(ssl);
  SSL_free(ssl);
  if (fd >= 0)
    close(fd);
}

/* A request to host (Host header with the port) holding placeholder p in
 * Authorization and in X-Other. */
static void request(char *out, size_t cap, const char *host, const char *auth, const char *other)
{
  snprintf(out, cap, "GET /v1/x HTTP/1.1\r\nHost: %s:%d\r\nAuthorization: %s\r\nX-Other: a %s b\r\n\r\n", host,
           up_port, auth, other);
}

/* ---- the scenarios ---- */

static void test_api(void)
{
  corral_error_t err = NULL;
  char *pem = NULL, tmp[CORRAL_SECRET_PLACEHOLDER_MAX];
  const char *hosts[] = { "api.secret.test" };
  ok(corral_proxy_ca_pem(proxy, "sb", &pem, &err) < 0 && corral_error_status(err) == ENODATA,
     "no CA before secrets (%s)", corral_error_message(err));
  corral_error_release(&err);
  corral_secret_t bad[] = {
    { "BAD NAME", VALUE1, hosts, 1, NULL, NULL },
    { "CRLF", "x\r\nInjected: " VALUE1, hosts, 1, NULL, NULL },
    { "HOST", VALUE1, (const char *const[]) { "10.0.0.1" }, 1, NULL, NULL },
    { "FMT", VALUE1, hosts, 1, "Authorization", "Bearer" },
    { "HDR", VALUE1, hosts, 1, "Bad Header", NULL },
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
    {
      int r = corral_proxy_set_secrets(proxy, "sb", &bad[i], 1, &err);
      ok(r < 0 && corral_error_status(err) == EINVAL && !strstr(corral_error_message(err), "REAL-VALUE"),
         "invalid secret %s refused without its value in the error (%s)", bad[i].name, corral_error_message(err));
      corral_error_release(&err);
    }
  corral_secret_t dup[] = { { "A", VALUE1, hosts, 1, NULL, NULL }, { "A", VALUE2, hosts, 1, NULL, NULL } };
  ok(corral_proxy_set_secrets(proxy, "sb", dup, 2, &err) < 0 && corral_error_status(err) == EINVAL,
     "duplicate names refused");
  corral_error_release(&err);
  ok(corral_proxy_set_secrets(proxy, "nope", dup, 1, &err) < 0 && corral_error_status(err) == ENOENT,
     "unknown sandbox: ENOENT");
  corral_error_release(&err);
  ok(corral_proxy_secret_placeholder(proxy, "sb", "API_KEY", tmp, &err) < 0 && corral_error_status(err) == ENOENT,
     "no placeholder for a secret not attached");
  corral_error_release(&err);
}

static void set_secrets(void)
{
  corral_error_t err = NULL;
  const char *h1[] = { "api.secret.test", "bad.secret.test" }, *h2[] = { "*.wild.secret.test" };
  corral_secret_t s[] = {
    { "API_KEY", VALUE1, h1, 2, "Authorization", "Bearer {value}" },
    { "WILD_TOKEN", VALUE2, h2, 1, NULL, NULL },
  };
  char again[CORRAL_SECRET_PLACEHOLDER_MAX];
  ok(corral_proxy_set_secrets(proxy, "sb", s, 2, &err) == 0, "secrets attached (%s)", corral_error_message(err));
  corral_error_release(&err);
  ok(corral_proxy_secret_placeholder(proxy, "sb", "API_KEY", ph1, &err) == 0
     && corral_proxy_secret_placeholder(proxy, "sb", "WILD_TOKEN", ph2, &err) == 0, "placeholders (%s)",
     corral_error_message(err));
  corral_error_release(&err);
  ok(strncmp(ph1, "corral-secret-API_KEY-", 22) == 0 && strlen(ph1) == 22 + 32 && strspn(ph1 + 22, "0123456789abcdef") == 32
     && strcmp(ph1, ph2) != 0 && !strstr(ph1, VALUE1), "placeholder %s: name and 32 random hex digits", ph1);
  /* the same names again: the sandbox keeps its placeholders and its CA */
  ok(corral_proxy_set_secrets(proxy, "sb", s, 2, &err) == 0
     && corral_proxy_secret_placeholder(proxy, "sb", "API_KEY", again, &err) == 0 && strcmp(again, ph1) == 0,
     "a secret set again keeps its placeholder");
  corral_error_release(&err);
  ok(corral_proxy_ca_pem(proxy, "sb", &sandbox_ca, &err) == 0 && sandbox_ca, "CA PEM (%s)", corral_error_message(err));
  corral_error_release(&err);
}

static void test_sandbox_ca_pem(void)
{
  if (!sandbox_ca)
    return skip(2, "no CA");
  ok(strstr(sandbox_ca, "-----BEGIN CERTIFICATE-----") && !strstr(sandbox_ca, "PRIVATE") && !strstr(sandbox_ca, "KEY-----"),
     "the CA PEM is a certificate and no key");
  BIO *b = BIO_new_mem_buf(sandbox_ca, -1);
  X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
  ok(x && X509_check_ca(x) >= 1 && X509_check_issued(x, x) == X509_V_OK, "it is a self-signed CA certificate");
  X509_free(x);
  BIO_free(b);
}

static bool has(const char *resp, const char *a, const char *b, const char *c)
{
  char want[512];
  snprintf(want, sizeof(want), "%s%s%s", a, b, c);
  return strstr(resp, want) != NULL;
}

static void check_leaf(SSL *ssl, const char *host)
{
  X509 *leaf = SSL_get1_peer_certificate(ssl);
  BIO *b = BIO_new_mem_buf(sandbox_ca, -1);
  X509 *ca = PEM_read_bio_X509(b, NULL, NULL, NULL);
  ok(leaf && ca && X509_check_host(leaf, host, 0, 0, NULL) == 1 && X509_check_host(leaf, "other.test", 0, 0, NULL) != 1,
     "the leaf names %s (and nothing else)", host);
  ok(leaf && ca && X509_verify(leaf, X509_get0_pubkey(ca)) == 1 && X509_check_issued(ca, leaf) == X509_V_OK
     && X509_check_ca(leaf) == 0, "the leaf is signed by the sandbox's CA and is no CA itself");
  X509_free(leaf);
  X509_free(ca);
  BIO_free(b);
}

static void test_intercepted(void)
{
  char req[1024], resp[32768];
  size_t mark = audit_mark();
  int fd = tunnel("api.secret.test");
  SSL *ssl = fd >= 0 ? tls_over(fd, "api.secret.test", sandbox_ca) : NULL;
  if (!ok(ssl != NULL, "a client trusting the sandbox's CA completes TLS through the tunnel"))
    return close_tls(ssl, fd);
  check_leaf(ssl, "api.secret.test");
  request(req, sizeof(req), "api.secret.test", ph1, ph1);
  ok(exchange(ssl, fd, req, resp, sizeof(resp)), "request answered");
  ok(has(resp, "\r\nAuthorization: Bearer ", VALUE1, "\r\n"), "the upstream got the value in Authorization, formatted");
  ok(has(resp, "\r\nX-Other: a ", VALUE1, " b\r\n"), "and in place of the placeholder in another header");
  ok(!strstr(resp, ph1), "no placeholder left in the request");

  /* keep-alive: a body (left as it is) then the next request */
  snprintf(req, sizeof(req), "POST /v1/y HTTP/1.1\r\nHost: api.secret.test:%d\r\nAuthorization: Bearer %s\r\n"
           "Content-Length: %zu\r\n\r\nbody %s", up_port, ph1, strlen(ph1) + 5, ph1);
  ok(exchange(ssl, fd, req, resp, sizeof(resp)) && has(resp, "\r\nAuthorization: Bearer ", VALUE1, "\r\n")
     && has(resp, "\r\n\r\nbody ", ph1, ""), "second request: header replaced, body passed as is");
  snprintf(req, sizeof(req), "POST /c HTTP/1.1\r\nHost: api.secret.test:%d\r\nTransfer-Encoding: chunked\r\n"
           "X-K: %s\r\n\r\n5\r\nhello\r\n0\r\n\r\n", up_port, ph1);
  ok(exchange(ssl, fd, req, resp, sizeof(resp)) && has(resp, "X-K: ", VALUE1, "\r\n") && strstr(resp, "5\r\nhello\r\n0"),
     "chunked request: header replaced, chunks passed");
  request(req, sizeof(req), "api.secret.test", "none", ph1);
  ok(exchange(ssl, fd, req, resp, sizeof(resp)) && has(resp, "X-Other: a ", VALUE1, " b"),
     "the request after a chunked body is found and edited");

  /* inside the tunnel, a Host naming another server gets no value */
  request(req, sizeof(req), "other.test", ph1, ph1);
  ok(exchange(ssl, fd, req, resp, sizeof(resp)) && has(resp, "Authorization: ", ph1, "\r\n") && !strstr(resp, VALUE1),
     "Host other than the tunnel's: placeholder left alone");
  /* a secret that does not list this host is not used */
  request(req, sizeof(req), "api.secret.test", ph2, ph2);
  ok(exchange(ssl, fd, req, resp, sizeof(resp)) && has(resp, "X-Other: a ", ph2, " b") && !strstr(resp, VALUE2),
     "a placeholder of a secret for other hosts stays a placeholder");
  close_tls(ssl, fd);
  json_t *a = audit_next(&mark);
  ok(a && json_is_true(json_object_get(a, "intercepted")) && used_is(a, "API_KEY")
     && json_is_true(json_object_get(a, "allowed")) && strcmp(json_string_value(json_object_get(a, "kind")) ?: "", "connect") == 0,
     "audit: connect, intercepted, secrets_used [API_KEY]");
  json_decref(a);
}

static void test_not_intercepted(void)
{
  char req[1024], resp[32768];
  size_t mark = audit_mark();
  int fd = tunnel("other.test");
  /* trusting only the test CA: it is the real server's certificate */
  SSL *ssl = fd >= 0 ? tls_over(fd, "other.test", test_ca_pem) : NULL;
  if (!ok(ssl != NULL, "an unlisted host's tunnel is not intercepted (the real certificate)"))
    return close_tls(ssl, fd);
  request(req, sizeof(req), "other.test", ph1, ph1);
  ok(exchange(ssl, fd, req, resp, sizeof(resp)) && has(resp, "\r\nAuthorization: ", ph1, "\r\n")
     && has(resp, "X-Other: a ", ph1, " b") && !strstr(resp, VALUE1), "the placeholder reaches other.test unchanged");
  close_tls(ssl, fd);
  json_t *a = audit_next(&mark);
  ok(a && json_object_get(a, "intercepted") == NULL && used_is(a, NULL), "audit: not intercepted, no secrets");
  json_decref(a);
}

static void test_socks_wildcard(void)
{
  char req[1024], resp[32768];
  size_t mark = audit_mark();
  int fd = socks_tunnel("a.wild.secret.test");
  SSL *ssl = fd >= 0 ? tls_over(fd, "a.wild.secret.test", sandbox_ca) : NULL;
  if (!ok(ssl != NULL, "SOCKS5 tunnel to a wildcard host is intercepted"))
    return close_tls(ssl, fd);
  check_leaf(ssl, "a.wild.secret.test");
  request(req, sizeof(req), "a.wild.secret.test", ph1, ph2);
  ok(exchange(ssl, fd, req, resp, sizeof(resp)) && has(resp, "X-Other: a ", VALUE2, " b")
     && has(resp, "Authorization: ", ph1, "\r\n") && !strstr(resp, VALUE1),
     "*.wild.secret.test gets WILD_TOKEN, not API_KEY");
  close_tls(ssl, fd);
  json_t *a = audit_next(&mark);
  ok(a && json_is_true(json_object_get(a, "intercepted")) && used_is(a, "WILD_TOKEN"), "audit: socks5 secrets_used");
  json_decref(a);
}

static void plain(const char *host, const char *auth, char *resp, size_t cap)
{
  char req[1024];
  int fd = dial(http_port);
  snprintf(req, sizeof(req), "GET http://%s:%d/p HTTP/1.1\r\nHost: %s:%d\r\nAuthorization: %s\r\n\r\n", host, up_port,
           host, up_port, auth);
  resp[0] = '\0';
  if (fd >= 0 && !exchange(NULL, fd, req, resp, cap))
    resp[0] = '\0';
  if (fd >= 0)
    close(fd);
}

static void test_plain_http(void)
{
  char resp[32768];
  size_t mark = audit_mark();
  plain("api.secret.test", ph1, resp, sizeof(resp));
  ok(has(resp, "\r\nAuthorization: Bearer ", VALUE1, "\r\n"), "plain HTTP to the listed host: value in Authorization");
  json_t *a = audit_next(&mark);
  ok(a && used_is(a, "API_KEY") && json_object_get(a, "intercepted") == NULL, "audit: http, secrets_used [API_KEY]");
  json_decref(a);
  plain("other.test", ph1, resp, sizeof(resp));
  ok(has(resp, "\r\nAuthorization: ", ph1, "\r\n") && !strstr(resp, VALUE1), "plain HTTP elsewhere: placeholder kept");
  json_decref(audit_next(&mark));
}

static void test_refusals(void)
{
  size_t mark = audit_mark();
  int before = __atomic_load_n(&up_requests, __ATOMIC_SEQ_CST);
  int fd = tunnel("api.secret.test");
  SSL *ssl = fd >= 0 ? tls_over(fd, "other.test", sandbox_ca) : NULL;
  ok(fd >= 0 && ssl == NULL, "SNI other than the CONNECT host: refused");
  close_tls(ssl, fd);
  json_t *a = audit_next(&mark);
  ok(a && strcmp(json_string_value(json_object_get(a, "rule")) ?: "", "deny sni mismatch") == 0,
     "audit: deny sni mismatch");
  json_decref(a);

  /* the destination's certificate does not name bad.secret.test */
  fd = tunnel("bad.secret.test");
  ssl = fd >= 0 ? tls_over(fd, "bad.secret.test", sandbox_ca) : NULL;
  ok(fd >= 0 && ssl == NULL, "destination failing verification: the client's handshake fails too");
  close_tls(ssl, fd);
  a = audit_next(&mark);
  const char *e = json_string_value(json_object_get(a, "error"));
  ok(e && strstr(e, "certificate verification"), "audit error: %s", e ? e : "(none)");
  json_decref(a);
  is_int(__atomic_load_n(&up_requests, __ATOMIC_SEQ_CST) - before, 0, "no request reached an unverified destination");
}

static void test_removed(void)
{
  char resp[32768];
  corral_error_t err = NULL;
  ok(corral_proxy_set_secrets(proxy, "sb", NULL, 0, &err) == 0, "secrets removed");
  corral_error_release(&err);
  plain("api.secret.test", ph1, resp, sizeof(resp));
  ok(has(resp, "\r\nAuthorization: ", ph1, "\r\n") && !strstr(resp, VALUE1), "after removal the placeholder stays");
  int fd = tunnel("api.secret.test");
  SSL *ssl = fd >= 0 ? tls_over(fd, "api.secret.test", test_ca_pem) : NULL;
  ok(ssl != NULL, "after removal the tunnel is not intercepted");
  close_tls(ssl, fd);
}

int main(void)
{
  /* The test's own clients and servers write to sockets whose peer may
   * have gone (that is what some checks provoke): an error, not a signal. */
  signal(SIGPIPE, SIG_IGN);
  char dir[] = "/tmp/corral-test-secrets-XXXXXX", resolv[80], cafile[80];
  if (mkdtemp(dir) == NULL || (up_fd = listen_on("127.0.0.2", &up_port)) < 0)
    plan_skip_all("cannot listen on 127.0.0.2");
  snprintf(resolv, sizeof(resolv), "%s/resolv", dir);
  snprintf(cafile, sizeof(cafile), "%s/ca.pem", dir);
  FILE *f = fopen(resolv, "w");
  fprintf(f, "api.secret.test 127.0.0.2\nother.test 127.0.0.2\na.wild.secret.test 127.0.0.2\nbad.secret.test 127.0.0.2\n");
  fclose(f);
  if (!ok(make_upstream_tls(cafile), "test CA and upstream certificate"))
    return done_testing();
  pthread_create(&up_thread, NULL, up_main, NULL);
  audits = json_array();
  corral_error_t err = NULL;
  corral_proxy_options_t o = { .resolver_file = resolv, .audit = on_audit, .handshake_timeout_ms = 3000,
                               .upstream_ca_file = cafile };
  corral_net_policy_t *pol = NULL;
  const char *pj = "{\"mode\":\"allowlist\",\"allow\":[\"api.secret.test\",\"other.test\",\"*.wild.secret.test\","
                   "\"bad.secret.test\",\"127.0.0.0/8\"]}";
  int hfd = listen_on("127.0.0.1", &http_port), sfd = listen_on("127.0.0.1", &socks_port);
  if (!ok(corral_proxy_new(&o, &proxy, &err) == 0 && corral_net_policy_parse_json(pj, strlen(pj), &pol, &err) == 0
          && corral_proxy_add(proxy, "sb", hfd, sfd, pol, &err) == 0, "proxy and sandbox (%s)", corral_error_message(err)))
    return done_testing();
  corral_net_policy_unref(pol);
  test_api();
  set_secrets();
  test_sandbox_ca_pem();
  test_intercepted();
  test_not_intercepted();
  test_socks_wildcard();
  test_plain_http();
  test_refusals();
  test_removed();
  corral_proxy_stop(proxy);
  ok(audit_len > 0 && !strstr(audit_text, VALUE1) && !strstr(audit_text, VALUE2)
     && !strstr(audit_text, "REAL-VALUE"), "no secret value in any of %zu audit records", json_array_size(audits));
  corral_proxy_options_t bad = { .upstream_ca_file = "/nonexistent/ca.pem" };
  corral_proxy_t *p2 = NULL;
  ok(corral_proxy_new(&bad, &p2, &err) < 0 && p2 == NULL, "an unreadable upstream CA file is an error (%s)",
     corral_error_message(err));
  corral_error_release(&err);
  shutdown(up_fd, SHUT_RDWR);
  pthread_join(up_thread, NULL);
  close(up_fd);
  SSL_CTX_free(up_ctx);
  free(test_ca_pem);
  free(sandbox_ca);
  json_decref(audits);
  unlink(resolv);
  unlink(cafile);
  rmdir(dir);
  return done_testing();
}
