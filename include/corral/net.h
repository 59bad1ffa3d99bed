/* corral: egress network policies and the host-side egress proxy.
 *
 * A sandbox with network "allowlist" or "open" has no route out: its only
 * way out is a proxy that corral runs on the host side.  This header is the
 * library core of that proxy; see docs/network.md for the design and the
 * exact policy semantics.
 *
 *  - corral_net_policy_t: what a sandbox may reach (mode + rules), parsed
 *    from the API's JSON or built rule by rule, and checked per connection.
 *  - corral_proxy_t: one event-loop thread serving any number of sandboxes.
 *    For each sandbox the caller hands over two listening TCP sockets it
 *    created inside the sandbox's network namespace (an HTTP proxy and a
 *    SOCKS5 proxy); the proxy accepts on them, checks every connection
 *    against the sandbox's policy, resolves names itself and connects to
 *    the exact address it checked, then relays bytes and audits the result.
 *
 * Everything here returns a negative value and fills *err on failure, and
 * never prints.
 */
#ifndef CORRAL_NET_H
#define CORRAL_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <corral/error.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- policies ---- */

typedef enum corral_net_mode {
  CORRAL_NET_NONE = 0,      /* nothing leaves the sandbox */
  CORRAL_NET_ALLOWLIST = 1, /* only destinations matching a rule */
  CORRAL_NET_OPEN = 2,      /* any public destination */
} corral_net_mode_t;

/* A policy is immutable once shared (given to a proxy) and reference
 * counted: corral_net_policy_ref/unref are thread-safe. */
typedef struct corral_net_policy corral_net_policy_t;

/* Most rules a policy holds, and the longest rule text accepted. */
#define CORRAL_NET_MAX_RULES 1024
#define CORRAL_NET_RULE_MAX 300

/* "none" | "allowlist" | "open" -> mode.  EINVAL on anything else. */
int corral_net_mode_parse(const char *s, corral_net_mode_t *out, corral_error_t *err);
const char *corral_net_mode_name(corral_net_mode_t mode);

/* A new empty policy (reference count 1). */
int corral_net_policy_new(corral_net_mode_t mode, corral_net_policy_t **out, corral_error_t *err);

/* Add one rule (see docs/network.md):
 *   name rules:  "example.com", "*.example.com", "api.example.com:443"
 *   IP rules:    "203.0.113.7", "203.0.113.7:443", "10.0.0.0/8", "10.0.0.0/8:5432",
 *                "2001:db8::1", "[2001:db8::1]:443", "fd00::/8", "[fd00::/8]:443"
 * Names are case-insensitive and a trailing dot is ignored; "*." matches any
 * subdomain but not the bare suffix.  A CIDR must not have host bits set.
 * EINVAL with a message naming the rule and the problem when it is invalid;
 * E2BIG past CORRAL_NET_MAX_RULES; EINVAL on a policy of mode none. */
int corral_net_policy_add_rule(corral_net_policy_t *p, const char *rule, corral_error_t *err);

/* Parse {"mode": "none"|"allowlist"|"open", "allow": ["rule", ...]}.
 * "mode" is required, "allow" optional (and must be empty for mode none);
 * unknown keys are rejected so that a typo cannot silently open nothing. */
int corral_net_policy_parse_json(const char *json, size_t len, corral_net_policy_t **out,
                                 corral_error_t *err);

/* The policy back as canonical JSON (malloc'd; rules normalised, e.g.
 * "Example.COM." -> "example.com").  NULL on allocation failure. */
char *corral_net_policy_to_json(const corral_net_policy_t *p);

corral_net_mode_t corral_net_policy_mode(const corral_net_policy_t *p);
size_t corral_net_policy_rule_count(const corral_net_policy_t *p);

corral_net_policy_t *corral_net_policy_ref(corral_net_policy_t *p);
void corral_net_policy_unref(corral_net_policy_t *p); /* NULL is fine */

/* The decision of a check, and the rule text that made it, e.g.
 * "allow *.example.com", "allow test.example via 127.0.0.0/8",
 * "deny not listed", "deny private 10.0.0.0/8", "deny mode none". */
typedef struct corral_net_verdict {
  bool allowed;
  char rule[2 * CORRAL_NET_RULE_MAX];
} corral_net_verdict_t;

/* Check one connection: `host` is the destination as the client asked for
 * it (a name, or an IP literal, IPv6 with or without brackets), `port` its
 * port, and `addr` the address the proxy is about to connect to (NULL to
 * check only the destination, before resolution).  Thread-safe. */
void corral_net_policy_check(const corral_net_policy_t *p, const char *host, uint16_t port,
                             const struct sockaddr *addr, corral_net_verdict_t *v);

/* ---- the proxy ---- */

typedef struct corral_proxy corral_proxy_t;

/* Called on the proxy's thread once per connection attempt, when it ends or
 * is refused, with one JSON object:
 *   {"sandbox", "kind": "http"|"connect"|"socks5", "destination" (as asked,
 *    or null if the client never named one), "resolved" (address or null),
 *    "port", "allowed" (bool), "rule", "bytes_up", "bytes_down",
 *    "duration_ms", "error" (only when something failed),
 *    "intercepted": true (only for TLS tunnels the proxy terminated),
 *    "secrets_used": ["NAME", ...] (only when a placeholder was replaced;
 *    names, never values)}
 * The callback must be quick and must not call corral_proxy_* functions
 * other than corral_proxy_stats.  Connections closed without sending a
 * single byte are not audited. */
typedef void (*corral_proxy_audit_fn)(void *cls, const char *sandbox_id, const char *json_record);

typedef struct corral_proxy_options {
  /* NULL: the system resolver (getaddrinfo).  Otherwise a file of lines
   * "name addr1 [addr2 ...]" ('#' starts a comment): successive lookups of
   * a name return its successive addresses, one per lookup, cycling; names
   * not in the file do not resolve (there is no fallback to real DNS). */
  const char *resolver_file;
  corral_proxy_audit_fn audit;
  void *audit_cls;
  unsigned max_connections;      /* per sandbox; 0: 256 */
  unsigned handshake_timeout_ms; /* request head / SOCKS handshake / ClientHello / resolution; 0: 10000 */
  unsigned connect_timeout_ms;   /* per upstream address tried; 0: 10000 */
  unsigned idle_timeout_ms;      /* established tunnel without traffic; 0: no limit */
  unsigned resolver_threads;     /* 0: 4 */
  /* Intercepted tunnels (secrets, below) verify the destination's
   * certificate against the system trust store; this PEM file of CAs is
   * trusted in addition (tests).  NULL: none.  Read at corral_proxy_new. */
  const char *upstream_ca_file;
} corral_proxy_options_t;

typedef struct corral_proxy_stats {
  uint64_t connections_allowed; /* allowed and established (relaying) */
  uint64_t connections_denied;  /* refused by the policy, a Host/SNI mismatch or the connection limit */
  uint64_t connections_failed;  /* bad requests, timeouts, resolution or connect failures */
  uint64_t connections_active;
  uint64_t bytes_up;            /* sandbox -> destination, as sent upstream */
  uint64_t bytes_down;          /* destination -> sandbox */
} corral_proxy_stats_t;

/* Create a proxy and start its thread.  opts may be NULL.  Fails when the
 * resolver file cannot be read or parsed. */
int corral_proxy_new(const corral_proxy_options_t *opts, corral_proxy_t **out, corral_error_t *err);

/* Serve a sandbox.  http_fd and socks_fd are listening TCP sockets (either
 * may be -1); on success the proxy owns them (it makes them non-blocking and
 * closes them on remove/stop), on failure the caller still does.  The proxy
 * takes its own reference on policy.  EEXIST if the id is already served. */
int corral_proxy_add(corral_proxy_t *p, const char *sandbox_id, int http_fd, int socks_fd,
                     corral_net_policy_t *policy, corral_error_t *err);

/* Replace a sandbox's policy.  New connections use it; open connections
 * whose destination it no longer allows are closed at once (and audited as
 * denied with error "policy changed").  ENOENT if the id is unknown. */
int corral_proxy_set_policy(corral_proxy_t *p, const char *sandbox_id, corral_net_policy_t *policy,
                            corral_error_t *err);

/* Stop serving a sandbox: close its listeners and connections (each one
 * audited).  Returns 0, or -ENOENT if the id is unknown. */
int corral_proxy_remove(corral_proxy_t *p, const char *sandbox_id);

/* ---- secrets (see docs/network.md, "Secrets") ----
 *
 * A secret's value never enters the sandbox: the sandbox gets a random
 * placeholder instead, and the proxy puts the value in place of the
 * placeholder in the headers of requests to the hosts the secret lists --
 * plain-HTTP requests, and HTTPS through CONNECT/SOCKS5 tunnels to those
 * hosts, which the proxy then intercepts with a per-sandbox CA.  A
 * placeholder sent anywhere else stays a placeholder.  Values live only in
 * the proxy's memory (zeroed when freed) and are never in audit records or
 * error messages. */

#define CORRAL_PROXY_MAX_SECRETS 64
#define CORRAL_SECRET_NAME_MAX 64      /* [A-Za-z_][A-Za-z0-9_]*, longest */
#define CORRAL_SECRET_VALUE_MAX 8192
#define CORRAL_SECRET_MAX_HOSTS 32
/* "corral-secret-" NAME "-" 32 hex digits, and its NUL. */
#define CORRAL_SECRET_PLACEHOLDER_MAX (14 + CORRAL_SECRET_NAME_MAX + 1 + 32 + 1)

typedef struct corral_secret {
  const char *name;               /* e.g. "OPENAI_API_KEY" (the sandbox's variable) */
  const char *value;              /* the real value: no CR, LF or NUL */
  const char *const *hosts;       /* names, "*.example.com" for any subdomain */
  size_t nhosts;
  const char *header;             /* optional, e.g. "Authorization" */
  const char *format;             /* optional, e.g. "Bearer {value}" (one "{value}") */
} corral_secret_t;

/* Attach secrets to a served sandbox, replacing any set before (n == 0
 * removes them all).  The values are copied.  A secret keeps its
 * placeholder across calls while its name stays; new names get a fresh
 * one.  The first call also creates the sandbox's CA (EC P-256, private
 * key in memory only).  In requests to a host the secret lists, every
 * occurrence of the placeholder in a header value becomes the value; in
 * the header named `header`, a value that is exactly the placeholder
 * becomes `format` with "{value}" replaced (default "{value}").
 * EINVAL (naming the secret, never its value) on a bad name, value, host,
 * header or format or duplicate names; E2BIG past the limits above;
 * ENOENT if the id is unknown. */
int corral_proxy_set_secrets(corral_proxy_t *p, const char *sandbox_id, const corral_secret_t *secrets, size_t n,
                             corral_error_t *err);

/* The placeholder of the sandbox's secret `name` (what to put in the
 * sandbox's environment).  ENOENT if the sandbox or the secret is
 * unknown. */
int corral_proxy_secret_placeholder(corral_proxy_t *p, const char *sandbox_id, const char *name,
                                    char out[CORRAL_SECRET_PLACEHOLDER_MAX], corral_error_t *err);

/* The sandbox's CA certificate as PEM (malloc'd, the caller frees): to be
 * trusted inside the sandbox.  Certificate only, never the key.  ENOENT if
 * the id is unknown, ENODATA if no secrets were ever attached. */
int corral_proxy_ca_pem(corral_proxy_t *p, const char *sandbox_id, char **pem, corral_error_t *err);

/* ---- what a sandbox is given ---- */

/* Where the proxy listens, on the sandbox's own loopback. */
#define CORRAL_NET_HTTP_PORT 3128
#define CORRAL_NET_SOCKS_PORT 1080
/* "K=V" variables that point programs at those (NULL-terminated). */
extern const char *const corral_net_proxy_env[];
/* Variables TLS clients read for the CAs they trust: each names the bundle
 * of corral_net_ca_bundle() inside the sandbox (NULL-terminated). */
extern const char *const corral_net_ca_env[];
/* The host's CAs followed by pem (malloc'd, *len its size), or NULL. */
char *corral_net_ca_bundle(const char *pem, size_t *len);

/* ---- DNS inside sandboxes (see docs/network.md, "DNS") ----
 *
 * A responder for UDP sockets the caller made on each sandbox's
 * 127.0.0.1:53: it answers A/AAAA queries for names the sandbox's policy
 * lets it connect to, with the resolved addresses the policy would let it
 * reach, and NXDOMAIN for any other name.  One thread for all sandboxes. */
typedef struct corral_dns corral_dns_t;
/* resolver_file as in corral_proxy_options_t (NULL: the system resolver). */
int corral_dns_new(const char *resolver_file, corral_dns_t **out, corral_error_t *err);
/* Serve udp_fd (owned from then on) with policy (referenced). */
int corral_dns_add(corral_dns_t *d, const char *sandbox_id, int udp_fd, corral_net_policy_t *policy,
                   corral_error_t *err);
int corral_dns_set_policy(corral_dns_t *d, const char *sandbox_id, corral_net_policy_t *policy, corral_error_t *err);
void corral_dns_remove(corral_dns_t *d, const char *sandbox_id); /* unknown ids are fine */
void corral_dns_stop(corral_dns_t *d);                           /* stops and frees; NULL is fine */

/* Totals of the proxy (sandbox_id NULL) or of one sandbox since it was
 * added.  Returns 0, or -ENOENT if the id is unknown.  Thread-safe, also
 * from the audit callback. */
int corral_proxy_stats(corral_proxy_t *p, const char *sandbox_id, corral_proxy_stats_t *out);

/* Stop the thread, close every listener and connection, and free the
 * proxy.  NULL is fine. */
void corral_proxy_stop(corral_proxy_t *p);

#ifdef __cplusplus
}
#endif
#endif
