/* The per-sandbox CA of intercepted tunnels, and the TLS contexts.
 *
 * Each sandbox with secrets gets its own CA (EC P-256, generated here with
 * OpenSSL): its certificate is installed as trusted inside that sandbox
 * only, and its private key never leaves this process's memory -- no file,
 * no API.  A CA per sandbox means that a sandbox which learned its own
 * CA's certificate learns nothing about another sandbox's traffic.  Leaf
 * certificates are minted per TLS server name on demand and cached. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include "secrets.h"

#define LEAF_CACHE 64
#define CA_DAYS 3650
/* Leaves are minted on demand and re-minted when a cached one is older
 * than LEAF_REMINT_DAYS, well before it expires. */
#define LEAF_DAYS 90
#define LEAF_REMINT_DAYS 30

struct leaf
{
  char host[CORRAL__NAME_MAX];
  X509 *cert;
  time_t minted;
};

struct corral__ca
{
  EVP_PKEY *key;                /* the CA's: in memory only */
  EVP_PKEY *leaf_key;           /* shared by the sandbox's leaves */
  X509 *cert;
  SSL_CTX *ctx;                 /* server side of intercepted tunnels */
  char *pem;
  struct leaf leaves[LEAF_CACHE];
  unsigned next;                /* the cache slot to reuse next */
};

/* ---- certificates ---- */

static bool add_ext(X509 *x, X509V3_CTX *v3, int nid, const char *value)
{
  X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, v3, nid, value);
  bool ok = e && X509_add_ext(x, e, -1);
  X509_EXTENSION_free(e);
  return ok;
}

static bool random_serial(X509 *x)
{
  BIGNUM *bn = BN_new();
  bool ok = bn && BN_rand(bn, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY)
            && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
  BN_free(bn);
  return ok;
}

/* A certificate for pub named cn, signed by issuer (NULL: self-signed by
 * signer).  host: the leaf's DNS name, NULL for the CA. */
static X509 *make_cert(EVP_PKEY *pub, const char *cn, X509 *issuer, EVP_PKEY *signer, const char *host, long days)
{
  X509 *x = X509_new();
  X509V3_CTX v3;
  char san[CORRAL__NAME_MAX + 8];
  if (x == NULL)
    return NULL;
  X509_NAME *subj = X509_get_subject_name(x);
  bool ok = X509_set_version(x, 2) && random_serial(x) && X509_gmtime_adj(X509_getm_notBefore(x), -3600)
            && X509_gmtime_adj(X509_getm_notAfter(x), days * 86400L) && X509_set_pubkey(x, pub)
            && X509_NAME_add_entry_by_txt(subj, "O", MBSTRING_ASC, (const unsigned char *) "corral", -1, -1, 0)
            && X509_NAME_add_entry_by_txt(subj, "CN", MBSTRING_ASC, (const unsigned char *) cn, -1, -1, 0)
            && X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : subj);
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
  if (ok && host == NULL)
    /* pathlen 0: the CA signs leaves, never another CA. */
    ok = add_ext(x, &v3, NID_basic_constraints, "critical,CA:TRUE,pathlen:0")
         && add_ext(x, &v3, NID_key_usage, "critical,keyCertSign,cRLSign")
         && add_ext(x, &v3, NID_subject_key_identifier, "hash");
  else if (ok)
    {
      snprintf(san, sizeof(san), "DNS:%s", host); /* a validated name: no ',' to inject */
      ok = add_ext(x, &v3, NID_basic_constraints, "critical,CA:FALSE")
           && add_ext(x, &v3, NID_key_usage, "critical,digitalSignature")
           && add_ext(x, &v3, NID_ext_key_usage, "serverAuth") && add_ext(x, &v3, NID_subject_alt_name, san)
           && add_ext(x, &v3, NID_subject_key_identifier, "hash")
           && add_ext(x, &v3, NID_authority_key_identifier, "keyid:always");
    }
  if (ok && X509_sign(x, signer, EVP_sha256()) > 0)
    return x;
  X509_free(x);
  return NULL;
}

static char *cert_pem(X509 *x)
{
  BIO *b = BIO_new(BIO_s_mem());
  char *data, *pem = NULL;
  if (b && PEM_write_bio_X509(b, x))
    {
      long n = BIO_get_mem_data(b, &data);
      if (n > 0)
        pem = strndup(data, (size_t) n);
    }
  BIO_free(b);
  return pem;
}

/* ---- TLS contexts ---- */

/* The client side of the tunnel may only speak HTTP/1.1 to us: the relay
 * parses HTTP/1 request heads.  A client offering only h2 gets no ALPN and
 * falls back to HTTP/1.1. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                       unsigned inlen, void *arg)
{
  static const unsigned char h1[] = "\x08http/1.1";
  (void) ssl;
  (void) arg;
  if (SSL_select_next_proto((unsigned char **) out, outlen, h1, sizeof(h1) - 1, in, inlen) == OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_OK;
  return SSL_TLSEXT_ERR_NOACK;
}

static SSL_CTX *server_ctx(void)
{
  SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == NULL)
    return NULL;
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  /* An EOF without close_notify ends the stream like close_notify: HTTP's
   * own framing tells whether a message was cut. */
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_IGNORE_UNEXPECTED_EOF);
  SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
  return ctx;
}

int corral__tls_client_ctx(const char *extra_ca_file, SSL_CTX **out, corral_error_t *err)
{
  static const unsigned char h1[] = "\x08http/1.1";
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == NULL)
    return corral_error_set(err, ENOMEM, "creating the TLS client context");
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
  /* The proxy is the TLS client of the real destination now, so it must
   * do the verification the sandbox's client would have done. */
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
  SSL_CTX_set_alpn_protos(ctx, h1, sizeof(h1) - 1);
  if (SSL_CTX_set_default_verify_paths(ctx) != 1)
    ERR_clear_error();          /* no system store: only the extra file, if any */
  if (extra_ca_file && SSL_CTX_load_verify_locations(ctx, extra_ca_file, NULL) != 1)
    {
      ERR_clear_error();
      SSL_CTX_free(ctx);
      return corral_error_set(err, access(extra_ca_file, R_OK) < 0 ? errno : EINVAL,
                              "loading the upstream CA file %s", extra_ca_file);
    }
  *out = ctx;
  return 0;
}

/* ---- the CA ---- */

void corral__ca_free(struct corral__ca *ca)
{
  if (ca == NULL)
    return;
  for (unsigned i = 0; i < LEAF_CACHE; i++)
    X509_free(ca->leaves[i].cert);
  EVP_PKEY_free(ca->key);       /* OpenSSL zeroes private keys it frees */
  EVP_PKEY_free(ca->leaf_key);
  X509_free(ca->cert);
  SSL_CTX_free(ca->ctx);
  free(ca->pem);
  free(ca);
}

int corral__ca_new(const char *sandbox_id, struct corral__ca **out, corral_error_t *err)
{
  char cn[128];
  struct corral__ca *ca = calloc(1, sizeof(*ca));
  if (ca == NULL)
    return corral_error_set(err, ENOMEM, "creating the sandbox's CA");
  snprintf(cn, sizeof(cn), "corral sandbox %.60s egress CA", sandbox_id);
  ca->key = EVP_EC_gen("P-256");
  ca->leaf_key = ca->key ? EVP_EC_gen("P-256") : NULL;
  ca->cert = ca->leaf_key ? make_cert(ca->key, cn, NULL, ca->key, NULL, CA_DAYS) : NULL;
  ca->pem = ca->cert ? cert_pem(ca->cert) : NULL;
  ca->ctx = ca->pem ? server_ctx() : NULL;
  if (ca->ctx == NULL)
    {
      unsigned long e = ERR_get_error();
      char why[160];
      ERR_error_string_n(e, why, sizeof(why));
      ERR_clear_error();
      corral__ca_free(ca);
      return corral_error_set(err, ENOMEM, "creating the sandbox's CA: %s", e ? why : "out of memory");
    }
  *out = ca;
  return 0;
}

const char *corral__ca_pem(const struct corral__ca *ca)
{
  return ca->pem;
}

static X509 *leaf_for(struct corral__ca *ca, const char *host)
{
  time_t now = time(NULL);
  for (unsigned i = 0; i < LEAF_CACHE; i++)
    if (ca->leaves[i].cert && strcmp(ca->leaves[i].host, host) == 0
        && now - ca->leaves[i].minted < LEAF_REMINT_DAYS * 86400L)
      return ca->leaves[i].cert;
  X509 *x = make_cert(ca->leaf_key, host, ca->cert, ca->key, host, LEAF_DAYS);
  if (x == NULL)
    return NULL;
  struct leaf *l = &ca->leaves[ca->next];
  ca->next = (ca->next + 1) % LEAF_CACHE;
  X509_free(l->cert);
  snprintf(l->host, sizeof(l->host), "%s", host);
  l->cert = x;
  l->minted = now;
  return x;
}

SSL *corral__ca_server_ssl(struct corral__ca *ca, const char *host, const char **why)
{
  char name[CORRAL__NAME_MAX];
  if (!corral__name_normalize(host, strlen(host), false, name))
    return (*why = "the destination is not a host name"), NULL;
  X509 *leaf = leaf_for(ca, name);
  if (leaf == NULL)
    return ERR_clear_error(), (*why = "cannot mint a certificate for the destination"), NULL;
  SSL *ssl = SSL_new(ca->ctx);
  if (ssl == NULL || SSL_use_certificate(ssl, leaf) != 1 || SSL_use_PrivateKey(ssl, ca->leaf_key) != 1)
    {
      SSL_free(ssl);
      ERR_clear_error();
      return (*why = "cannot set up TLS for the client"), NULL;
    }
  SSL_set_accept_state(ssl);
  return ssl;
}
