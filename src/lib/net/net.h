/* Private interfaces of the egress proxy (include/corral/net.h): address
 * helpers, the hand-written binary parsers (SOCKS5, TLS ClientHello SNI),
 * the HTTP request-head wrapper around http_parser and the resolver.
 * Each parser is pure (no I/O, no allocation) so that it can be fuzzed
 * alone: tests/fuzz/fuzz_net_*.c. */
#ifndef CORRAL_NET_PRIV_H
#define CORRAL_NET_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <http_parser.h>
#include <corral/net.h>

/* ---- addresses ---- */

/* An IP address; IPv4-mapped IPv6 (::ffff:a.b.c.d) is always stored as the
 * IPv4 address it reaches, so that rules and private ranges see one form. */
struct corral__addr
{
  int family;     /* AF_INET (4 bytes used) or AF_INET6 */
  uint8_t b[16];
};

/* Longest host name (RFC 1035) plus its NUL. */
#define CORRAL__NAME_MAX 254

/* Parse an IP literal ("10.0.0.1", "2001:db8::1", "[2001:db8::1]").
 * Only the strict inet_pton forms: "10.1" or "0x7f.1" are not addresses. */
bool corral__addr_parse(const char *s, struct corral__addr *out);
bool corral__addr_from_sockaddr(const struct sockaddr *sa, struct corral__addr *out);
void corral__addr_format(const struct corral__addr *a, char *buf, size_t size);
/* Same host?  Names compare normalised (case, trailing dot), addresses
 * by value ("::1" is "0::1"); a name never equals an address. */
bool corral__same_host(const char *a, size_t an, const char *b, size_t bn);
/* Does a (in the same family) fall in net/prefix? */
bool corral__addr_in(const struct corral__addr *a, const struct corral__addr *net, unsigned prefix);
/* Text of a sockaddr's address ("10.0.0.1", "2001:db8::1"). */
void corral__sockaddr_format(const struct sockaddr *sa, char *buf, size_t size);

/* Lower-case a host name, drop one trailing dot and validate it (labels of
 * [a-z0-9_-], 1..63 long, 253 in all, the last label not all digits so that
 * "10.1" or "2130706433" is never taken for a name).  With allow_wildcard,
 * a leading "*." is accepted and kept.  false when invalid. */
bool corral__name_normalize(const char *in, size_t len, bool allow_wildcard, char out[CORRAL__NAME_MAX]);

/* The special-purpose range (private, loopback, link-local, multicast...)
 * holding a, or NULL; *net and *prefix describe it (for the exemption rule). */
const char *corral__special_range(const struct corral__addr *a, struct corral__addr *net, unsigned *prefix);

/* ---- SOCKS5 (RFC 1928) ---- */

#define CORRAL__SOCKS_REP_OK 0x00
#define CORRAL__SOCKS_REP_FAILURE 0x01
#define CORRAL__SOCKS_REP_NOT_ALLOWED 0x02
#define CORRAL__SOCKS_REP_NET_UNREACHABLE 0x03
#define CORRAL__SOCKS_REP_HOST_UNREACHABLE 0x04
#define CORRAL__SOCKS_REP_REFUSED 0x05
#define CORRAL__SOCKS_REP_TTL_EXPIRED 0x06
#define CORRAL__SOCKS_REP_CMD 0x07
#define CORRAL__SOCKS_REP_ATYP 0x08

/* Method selection: returns the bytes consumed (> 0), 0 when more bytes are
 * needed, -1 when it is not a SOCKS5 greeting.  *noauth: "no
 * authentication" (0x00) was offered. */
ssize_t corral__socks_parse_greeting(const uint8_t *buf, size_t len, bool *noauth);

struct corral__socks_request
{
  uint8_t cmd;
  uint8_t atyp;              /* 1 IPv4, 3 domain, 4 IPv6 */
  char host[256];            /* NUL-terminated: a domain or an address literal */
  uint16_t port;
};

/* Request: returns the bytes consumed (> 0), 0 when more bytes are needed,
 * or minus the reply code to send before closing (-CORRAL__SOCKS_REP_CMD,
 * -CORRAL__SOCKS_REP_ATYP, -CORRAL__SOCKS_REP_FAILURE for a malformed one). */
ssize_t corral__socks_parse_request(const uint8_t *buf, size_t len, struct corral__socks_request *out);

/* ---- TLS ClientHello SNI ---- */

enum corral__sni_result
{
  CORRAL__SNI_NOT_TLS,   /* the first byte is not a TLS handshake record */
  CORRAL__SNI_NEED_MORE, /* a ClientHello so far, incomplete */
  CORRAL__SNI_NONE,      /* a complete ClientHello without server_name */
  CORRAL__SNI_FOUND,     /* out holds the host name (as sent, NUL-terminated) */
  CORRAL__SNI_MALFORMED, /* a handshake record that is not a sane ClientHello */
};

/* Largest ClientHello accepted (several records may carry it). */
#define CORRAL__SNI_MAX_HELLO 16384

enum corral__sni_result corral__sni_parse(const uint8_t *buf, size_t len, char out[256]);

/* ---- HTTP request heads (http_parser) ---- */

#define CORRAL__HTTP_MAX_HEAD 16384
#define CORRAL__HTTP_MAX_HEADERS 100

struct corral__http_span
{
  uint32_t off, len;
};

struct corral__http_head
{
  http_parser parser;
  const char *buf;           /* the head buffer during a feed */
  struct corral__http_span url;
  struct http_parser_url u;  /* the parsed target, after corral__http_head_target */
  struct corral__http_span name[CORRAL__HTTP_MAX_HEADERS], value[CORRAL__HTTP_MAX_HEADERS];
  unsigned nhdr;
  bool in_value, headers_done, message_done, pending_lf, bad;
  const char *why;           /* reason of a failure */
  size_t parsed;             /* bytes of buf consumed by the parser */
  size_t head_end;           /* length of the head once headers_done */
};

/* The destination of a complete head. */
struct corral__http_target
{
  bool is_connect;
  char host[256];            /* as in the request (IPv6 without brackets) */
  uint16_t port;
};

void corral__http_head_init(struct corral__http_head *h);
/* buf[0..len) is the head so far (it only grows between calls).  Returns 1
 * when the head is complete (h->head_end), 0 when more bytes are needed,
 * -1 for a bad request (h->why). */
int corral__http_head_feed(struct corral__http_head *h, const char *buf, size_t len);
/* Destination of a complete head: 0, -400 (bad request, h->why) or -403
 * (Host header disagrees with the absolute URI: "host mismatch"). */
int corral__http_head_target(struct corral__http_head *h, const char *buf, struct corral__http_target *t);
/* Write the head in origin form ("GET /path?q HTTP/1.1"), without hop-by-hop
 * and proxy headers, with "Connection: close".  Returns its length, or -1
 * when it does not fit in cap. */
ssize_t corral__http_head_rewrite(const struct corral__http_head *h, const char *buf, char *out, size_t cap);
/* Edits one header field value: writes the new value to out[0..cap) and
 * returns its length, -1 to keep the value as is, or -2 when it does not
 * fit.  Used to put secrets in place of their placeholders. */
typedef ssize_t (*corral__http_edit_fn)(void *cls, const char *name, size_t nn, const char *value, size_t vn,
                                        char *out, size_t cap);
/* corral__http_head_rewrite with every kept field's value through edit. */
ssize_t corral__http_head_rewrite_edit(const struct corral__http_head *h, const char *buf, char *out, size_t cap,
                                       corral__http_edit_fn edit, void *cls);
/* A complete head inside an intercepted tunnel: HTTP/1.0 or 1.1, valid
 * fields, origin form (or "*"), not CONNECT.  0, or -1 with h->why. */
int corral__http_head_check_origin(struct corral__http_head *h, const char *buf);
/* The head as received (every field kept), values through edit (may be
 * NULL).  Its length, or -1 when it does not fit in cap. */
ssize_t corral__http_head_copy(const struct corral__http_head *h, const char *buf, char *out, size_t cap,
                               corral__http_edit_fn edit, void *cls);
/* Exactly one Host header, naming host and port (443 when it has none). */
bool corral__http_head_host_is(const struct corral__http_head *h, const char *buf, const char *host, uint16_t port);
/* After the head: how many of data[0..len) (the next bytes from the
 * client) still belong to the request; *done once its end is reached.  -1
 * on a malformed body. */
ssize_t corral__http_body_feed(struct corral__http_head *h, const char *data, size_t len, bool *done);

/* ---- DNS (dns.c) ---- */

/* Would the policy answer a DNS query for name (addr NULL), and with this
 * address (the private-range rule applies as for connections)? */
bool corral__policy_dns_allows(const corral_net_policy_t *p, const char *name, const struct sockaddr *addr);

struct corral__dns_query
{
  uint16_t id, qtype, qclass;
  bool rd;
  char name[CORRAL__NAME_MAX];  /* as asked, lower-cased, no trailing dot */
  const uint8_t *question;       /* the question section, to echo */
  size_t question_len;
};
/* A standard query with one question (no compression in it).  -1 when
 * malformed or not a query. */
int corral__dns_parse_query(const uint8_t *msg, size_t len, struct corral__dns_query *q);
/* The answer to q: rcode, and the A/AAAA records of addrs that match
 * qtype.  Its length, or 0 when out is too small. */
size_t corral__dns_answer(const struct corral__dns_query *q, int rcode, const struct sockaddr_storage *addrs,
                          size_t n, uint8_t *out, size_t cap);

/* ---- resolution ---- */

#define CORRAL__MAX_ADDRS 16

struct corral__addrlist
{
  size_t n;
  struct sockaddr_storage a[CORRAL__MAX_ADDRS];
};

struct corral__resolver;

/* file NULL: the system resolver. */
int corral__resolver_new(const char *file, struct corral__resolver **out, corral_error_t *err);
/* Parse resolver-file text (exposed for tests and fuzzing). */
int corral__resolver_parse(const char *text, size_t len, struct corral__resolver **out, corral_error_t *err);
void corral__resolver_free(struct corral__resolver *r);
/* Resolve name (never an IP literal: callers handle those) for TCP port.
 * Blocking: called from the resolver threads.  0, or -1 with *why. */
int corral__resolve(struct corral__resolver *r, const char *name, uint16_t port, struct corral__addrlist *out,
                    const char **why);

#endif
