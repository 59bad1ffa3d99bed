/* Private interfaces of the proxy's secrets (include/corral/net.h,
 * "secrets"): the validated secret set of a sandbox and the header edit
 * that puts values in place of placeholders (secrets.c), the per-sandbox
 * CA that mints leaf certificates (ca.c), and the TLS-terminating relay
 * of an intercepted tunnel (mitm.c).  All of it runs on the proxy's loop
 * thread, except corral__secrets_new and corral__ca_new, which callers run
 * on their own thread before handing the result over. */
#ifndef CORRAL_NET_SECRETS_H
#define CORRAL_NET_SECRETS_H

#include <jansson.h>
#include <openssl/ssl.h>
#include "net.h"

/* ---- secret sets (secrets.c) ---- */

#define CORRAL__PLACEHOLDER_PREFIX "corral-secret-"

struct corral__secret
{
  char name[CORRAL_SECRET_NAME_MAX + 1];
  char placeholder[CORRAL_SECRET_PLACEHOLDER_MAX];
  size_t plen;
  char *value;                  /* zeroed before it is freed */
  size_t vlen;
  char *header;                 /* NULL: none */
  char *fmt_pre, *fmt_post;     /* the format around "{value}" */
  char (*hosts)[CORRAL__NAME_MAX];
  size_t nhosts;
};

struct corral__secrets
{
  size_t n;
  struct corral__secret *v;
};

/* Validate and copy; fresh placeholders.  Error texts name the secret
 * (by index and name) and the problem, never the value. */
int corral__secrets_new(const corral_secret_t *in, size_t n, struct corral__secrets **out, corral_error_t *err);
void corral__secrets_free(struct corral__secrets *s); /* NULL is fine */
/* Secrets of s whose name is also in old take old's placeholder. */
void corral__secrets_inherit(struct corral__secrets *s, const struct corral__secrets *old);
const struct corral__secret *corral__secrets_find(const struct corral__secrets *s, const char *name);
/* Does some secret of s list host (as asked: any case, trailing dot)? */
bool corral__secrets_listed(const struct corral__secrets *s, const char *host);

/* The context of corral__secrets_edit for one request. */
struct corral__secret_edit
{
  const struct corral__secrets *s;
  char host[CORRAL__NAME_MAX];  /* normalised destination */
  json_t **used;                /* names of the secrets used are added */
};

/* false when host is not a name (no secret lists an address). */
bool corral__secret_edit_init(struct corral__secret_edit *e, const struct corral__secrets *s, const char *host,
                              json_t **used);
/* A corral__http_edit_fn (cls: struct corral__secret_edit). */
ssize_t corral__secrets_edit(void *cls, const char *name, size_t nn, const char *value, size_t vn, char *out,
                             size_t cap);

/* ---- the sandbox's CA (ca.c) ---- */

struct corral__ca;

int corral__ca_new(const char *sandbox_id, struct corral__ca **out, corral_error_t *err);
void corral__ca_free(struct corral__ca *ca);   /* NULL is fine */
const char *corral__ca_pem(const struct corral__ca *ca);
/* A server-side SSL for an intercepted tunnel to host, with a leaf
 * certificate for host signed by the CA (minted, or from the cache).
 * NULL with *why on failure. */
SSL *corral__ca_server_ssl(struct corral__ca *ca, const char *host, const char **why);
/* The client context for the real destinations: the system trust store,
 * plus extra_ca_file (PEM) when not NULL. */
int corral__tls_client_ctx(const char *extra_ca_file, SSL_CTX **out, corral_error_t *err);

/* ---- an intercepted tunnel (mitm.c) ---- */

struct corral__mitm;

/* Takes server (from corral__ca_server_ssl) in every case.  NULL with
 * *why on failure. */
struct corral__mitm *corral__mitm_new(SSL *server, SSL_CTX *client_ctx, const char *host, uint16_t port,
                                      const char **why);
void corral__mitm_free(struct corral__mitm *m); /* NULL is fine; zeroes its buffers */
/* What the client sent before interception began (its ClientHello). */
void corral__mitm_preload(struct corral__mitm *m, const char *data, size_t len);

struct corral__mitm_io
{
  uint64_t up, down;            /* bytes sent to the destination / client by this pump */
  uint32_t cw, uw;              /* epoll events wanted on the client / destination fd */
  const char *why;              /* on failure; valid until corral__mitm_free */
};

/* Move whatever can move without blocking.  s: the sandbox's secrets of
 * the moment (may be NULL).  1: go on (io->cw, io->uw); 0: the tunnel is
 * over; -1: failed (io->why). */
int corral__mitm_pump(struct corral__mitm *m, int cfd, int ufd, const struct corral__secrets *s, json_t **used,
                      struct corral__mitm_io *io);

#endif
