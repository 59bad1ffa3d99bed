/* Egress policies and the egress proxy (include/corral/net.h).
 *
 * Part 1 checks the policy language and the hand-written parsers (SOCKS5,
 * ClientHello SNI, HTTP head rewriting, resolver file) as tables.
 * Part 2 runs a real proxy in this process, on loopback only: the test
 * makes the "in-sandbox" listeners itself on 127.0.0.1, starts upstream
 * servers on 127.0.0.2 and 127.0.0.3 (same port, so that a rebinding test
 * can tell which one it reached), and maps test names to them with a
 * resolver file.  No traffic leaves the machine: every address connected
 * to is in 127/8, which is why allowed cases list "127.0.0.0/8" or a /32
 * (127/8 is a private range the proxy otherwise refuses). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <corral/net.h>
#include "net/net.h"
#include "tap.h"

/* ==== part 1: policies ==== */

static corral_net_policy_t *policy(const char *json)
{
  corral_net_policy_t *p = NULL;
  corral_error_t err = NULL;
  if (corral_net_policy_parse_json(json, strlen(json), &p, &err) < 0)
    {
      diag("policy %s: %s", json, corral_error_message(err));
      corral_error_release(&err);
      return NULL;
    }
  return p;
}

static void test_rules(void)
{
  static const struct
  {
    const char *in, *canon;     /* canon NULL: rejected */
  } t[] = {
    { "example.com", "example.com" },
    { "Example.COM.", "example.com" },
    { "*.example.com", "*.example.com" },
    { "api.example.com:443", "api.example.com:443" },
    { "*.Example.com:8443", "*.example.com:8443" },
    { "10.0.0.0/8", "10.0.0.0/8" },
    { "203.0.113.7", "203.0.113.7" },
    { "203.0.113.7/32", "203.0.113.7" },
    { "203.0.113.7:443", "203.0.113.7:443" },
    { "10.0.0.0/8:5432", "10.0.0.0/8:5432" },
    { "[2001:db8::1]:443", "[2001:db8::1]:443" },
    { "2001:DB8::1", "2001:db8::1" },
    { "[2001:db8::1]", "2001:db8::1" },
    { "fd00::/8", "fd00::/8" },
    { "[fd00::/8]:443", "[fd00::/8]:443" },
    { "::ffff:10.0.0.0/104", "10.0.0.0/8" },
    { "0.0.0.0/0", "0.0.0.0/0" },
    { "under_score.example", "under_score.example" },
    { "", NULL },
    { "*", NULL },
    { "*.", NULL },
    { "a.*.example.com", NULL },
    { "**.example.com", NULL },
    { "exa mple.com", NULL },
    { "example..com", NULL },
    { ".example.com", NULL },
    { "example.com:0", NULL },
    { "example.com:65536", NULL },
    { "example.com:", NULL },
    { "example.com:http", NULL },
    { "10.0.0.1/8", NULL },       /* host bits set */
    { "10.0.0.0/33", NULL },
    { "10.0.0.0/", NULL },
    { "10.0.0.0/08", NULL },
    { "10.1", NULL },             /* not an address, and not a name either */
    { "2130706433", NULL },
    { "256.1.1.1", NULL },
    { "[10.0.0.1]:80", NULL },
    { "[2001:db8::1", NULL },
    { "[2001:db8::1]x", NULL },
    { "fd00::/129", NULL },
    { "::ffff:10.0.0.0/8", NULL },
    { "a-very-long-label-that-goes-on-and-on-and-on-for-more-than-63-chars.com", NULL },
    { "héllo.com", NULL },
  };
  for (size_t i = 0; i < sizeof(t) / sizeof(*t); i++)
    {
      corral_net_policy_t *p = NULL;
      corral_error_t err = NULL;
      corral_net_policy_new(CORRAL_NET_ALLOWLIST, &p, NULL);
      int r = corral_net_policy_add_rule(p, t[i].in, &err);
      if (t[i].canon)
        {
          char *j = corral_net_policy_to_json(p);
          char want[512];
          snprintf(want, sizeof(want), "{\"mode\":\"allowlist\",\"allow\":[\"%s\"]}", t[i].canon);
          ok(r == 0, "rule \"%s\" accepted (%s)", t[i].in, corral_error_message(err));
          is_str(j, want, "rule \"%s\" reads back as \"%s\"", t[i].in, t[i].canon);
          free(j);
        }
      else
        {
          ok(r < 0 && corral_error_status(err) == EINVAL && strstr(corral_error_message(err), "invalid network rule"),
             "rule \"%s\" rejected: %s", t[i].in, corral_error_message(err));
        }
      corral_error_release(&err);
      corral_net_policy_unref(p);
    }
}

static void test_policy_json(void)
{
  static const struct
  {
    const char *json, *err;     /* err NULL: accepted */
  } t[] = {
    { "{\"mode\":\"none\"}", NULL },
    { "{\"mode\":\"none\",\"allow\":[]}", NULL },
    { "{\"mode\":\"open\"}", NULL },
    { "{\"mode\":\"allowlist\",\"allow\":[\"a.com\",\"*.b.com\",\"10.0.0.0/8\"]}", NULL },
    { "{\"mode\":\"allowlist\",\"allow\":[\"a.com\",\"A.com.\"]}", NULL },
    { "{\"mode\":\"none\",\"allow\":[\"a.com\"]}", "takes no allow rules" },
    { "{\"mode\":\"closed\"}", "invalid network mode" },
    { "{\"allow\":[\"a.com\"]}", "needs \"mode\"" },
    { "{\"mode\":\"open\",\"alow\":[]}", "unknown key \"alow\"" },
    { "{\"mode\":\"open\",\"allow\":\"a.com\"}", "must be an array" },
    { "{\"mode\":\"open\",\"allow\":[1]}", "allow[0] is not a string" },
    { "{\"mode\":\"open\",\"allow\":[\"a.com\",\"bad rule\"]}", "allow[1]: invalid network rule \"bad rule\"" },
    { "[]", "must be a JSON object" },
    { "{\"mode\":", "not valid JSON" },
    { "{\"mode\":\"open\",\"mode\":\"none\"}", "not valid JSON" },
  };
  for (size_t i = 0; i < sizeof(t) / sizeof(*t); i++)
    {
      corral_net_policy_t *p = NULL;
      corral_error_t err = NULL;
      int r = corral_net_policy_parse_json(t[i].json, strlen(t[i].json), &p, &err);
      if (t[i].err == NULL)
        ok(r == 0 && p != NULL, "policy %s accepted (%s)", t[i].json, corral_error_message(err));
      else
        ok(r < 0 && p == NULL && strstr(corral_error_message(err), t[i].err) != NULL, "policy %s rejected: %s",
           t[i].json, corral_error_message(err));
      corral_error_release(&err);
      corral_net_policy_unref(p);
    }
  corral_net_policy_t *p = policy("{\"mode\":\"allowlist\",\"allow\":[\"a.com\",\"A.com.\",\"[fd00::/8]:443\"]}");
  char *j = p ? corral_net_policy_to_json(p) : NULL;
  is_str(j, "{\"mode\":\"allowlist\",\"allow\":[\"a.com\",\"[fd00::/8]:443\"]}", "duplicates merge, JSON round-trips");
  ok(p && corral_net_policy_rule_count(p) == 2 && corral_net_policy_mode(p) == CORRAL_NET_ALLOWLIST, "two rules");
  free(j);
  corral_net_policy_unref(p);
}

static bool sockaddr_of(const char *ip, struct sockaddr_storage *ss)
{
  memset(ss, 0, sizeof(*ss));
  if (inet_pton(AF_INET, ip, &((struct sockaddr_in *) ss)->sin_addr) == 1)
    return (ss->ss_family = AF_INET), true;
  if (inet_pton(AF_INET6, ip, &((struct sockaddr_in6 *) ss)->sin6_addr) == 1)
    return (ss->ss_family = AF_INET6), true;
  return false;
}

struct check_case
{
  const char *host;
  unsigned port;
  const char *addr;             /* NULL: destination only */
  const char *rule;             /* expected verdict text; "allow..." means allowed */
};

static void run_checks(const char *json, const struct check_case *t, size_t n)
{
  corral_net_policy_t *p = policy(json);
  if (!ok(p != NULL, "policy %s", json))
    return;
  for (size_t i = 0; i < n; i++)
    {
      struct sockaddr_storage ss;
      corral_net_verdict_t v;
      if (t[i].addr && !sockaddr_of(t[i].addr, &ss))
        {
          ok(0, "bad test address %s", t[i].addr);
          continue;
        }
      corral_net_policy_check(p, t[i].host, (uint16_t) t[i].port, t[i].addr ? (struct sockaddr *) &ss : NULL, &v);
      bool want_allowed = strncmp(t[i].rule, "allow", 5) == 0;
      ok(v.allowed == want_allowed && strcmp(v.rule, t[i].rule) == 0, "%s: %s:%u via %s -> \"%s\" (got %s \"%s\")",
         json, t[i].host, t[i].port, t[i].addr ? t[i].addr : "-", t[i].rule, v.allowed ? "allowed" : "denied", v.rule);
    }
  corral_net_policy_unref(p);
}

#define RUN_CHECKS(json, ...) \
  do { \
    static const struct check_case t_[] = { __VA_ARGS__ }; \
    run_checks(json, t_, sizeof(t_) / sizeof(*t_)); \
  } while (0)

static void test_checks(void)
{
  RUN_CHECKS("{\"mode\":\"none\"}", { "example.com", 443, NULL, "deny mode none" },
             { "203.0.113.7", 443, "203.0.113.7", "deny mode none" });

  RUN_CHECKS("{\"mode\":\"allowlist\",\"allow\":[\"example.com\",\"*.wild.test\",\"api.test:443\"]}",
             { "example.com", 80, NULL, "allow example.com" },
             { "EXAMPLE.com.", 80, "203.0.113.7", "allow example.com" },
             { "www.example.com", 80, NULL, "deny not listed" },
             { "a.wild.test", 80, "203.0.113.7", "allow *.wild.test" },
             { "a.b.WILD.test", 80, NULL, "allow *.wild.test" },
             { "wild.test", 80, NULL, "deny not listed" },
             { "notwild.test", 80, NULL, "deny not listed" },
             { "api.test", 443, "203.0.113.7", "allow api.test:443" },
             { "api.test", 80, NULL, "deny not listed" },
             /* the name is listed, the address it resolved to is private */
             { "example.com", 80, "10.1.2.3", "deny private 10.0.0.0/8" },
             { "example.com", 80, "127.0.0.1", "deny private 127.0.0.0/8" },
             { "example.com", 80, "169.254.169.254", "deny private 169.254.0.0/16" },
             { "example.com", 80, "100.64.0.1", "deny private 100.64.0.0/10" },
             { "example.com", 80, "172.31.255.255", "deny private 172.16.0.0/12" },
             { "example.com", 80, "172.32.0.1", "allow example.com" },
             { "example.com", 80, "192.168.1.1", "deny private 192.168.0.0/16" },
             { "example.com", 80, "0.0.0.0", "deny private 0.0.0.0/8" },
             { "example.com", 80, "224.0.0.1", "deny private 224.0.0.0/4" },
             { "example.com", 80, "255.255.255.255", "deny private 255.255.255.255/32" },
             { "example.com", 80, "240.0.0.1", "deny private 240.0.0.0/4" },
             { "example.com", 80, "::1", "deny private ::1/128" },
             { "example.com", 80, "::", "deny private ::/128" },
             { "example.com", 80, "fd12::1", "deny private fc00::/7" },
             { "example.com", 80, "fe80::1", "deny private fe80::/10" },
             { "example.com", 80, "ff02::1", "deny private ff00::/8" },
             { "example.com", 80, "::ffff:10.0.0.1", "deny private 10.0.0.0/8" },
             { "example.com", 80, "::ffff:127.0.0.1", "deny private 127.0.0.0/8" },
             { "example.com", 80, "64:ff9b::a00:1", "deny private 64:ff9b::/96" },
             { "example.com", 80, "2002:a00:1::1", "deny private 2002::/16" },
             { "example.com", 80, "2001:db8::1", "allow example.com" },
             /* IP literals need an IP rule: a name rule never lets an address in */
             { "203.0.113.7", 80, NULL, "deny not listed" },
             { "[2001:db8::1]", 80, NULL, "deny not listed" },
             /* invalid destinations */
             { "exa mple.com", 80, NULL, "deny invalid destination" },
             { "2130706433", 80, NULL, "deny invalid destination" },
             { "", 80, NULL, "deny invalid destination" },
             { "example.com", 0, NULL, "deny invalid port" });

  RUN_CHECKS("{\"mode\":\"allowlist\",\"allow\":[\"203.0.113.0/24\",\"[2001:db8::1]:443\",\"10.0.0.0/8:5432\","
             "\"db.test\",\"0.0.0.0/0:8080\"]}",
             { "203.0.113.7", 80, NULL, "allow 203.0.113.0/24" },
             { "203.0.113.255", 80, "203.0.113.255", "allow 203.0.113.0/24" },
             { "203.0.114.0", 80, NULL, "deny not listed" },
             { "203.0.112.255", 80, NULL, "deny not listed" },
             { "2001:db8::1", 443, "2001:db8::1", "allow [2001:db8::1]:443" },
             { "[2001:DB8:0::1]", 443, NULL, "allow [2001:db8::1]:443" },
             { "2001:db8::1", 80, NULL, "deny not listed" },
             { "2001:db8::2", 443, NULL, "deny not listed" },
             { "::ffff:203.0.113.9", 80, NULL, "allow 203.0.113.0/24" },
             { "10.9.9.9", 5432, NULL, "allow 10.0.0.0/8:5432" },
             { "10.9.9.9", 5433, NULL, "deny not listed" },
             /* a name resolving into a listed private block: allowed on that port only */
             { "db.test", 5432, "10.1.1.1", "allow db.test via 10.0.0.0/8:5432" },
             { "db.test", 80, "10.1.1.1", "deny private 10.0.0.0/8" },
             /* 0.0.0.0/0 means public addresses, not every private network */
             { "198.51.100.1", 8080, NULL, "allow 0.0.0.0/0:8080" },
             { "192.168.1.1", 8080, NULL, "deny private 192.168.0.0/16" },
             { "127.0.0.1", 8080, NULL, "deny private 127.0.0.0/8" },
             { "0.1.2.3", 8080, NULL, "deny private 0.0.0.0/8" }, /* 0.0.0.0/0 starts in 0/8 */
             /* the proxy connects to an IP literal itself, nothing else */
             { "203.0.113.7", 80, "203.0.113.8", "deny address mismatch" });

  RUN_CHECKS("{\"mode\":\"open\",\"allow\":[\"127.0.0.2/32\",\"fd00::/8\",\"*.ignored.test\"]}",
             { "anything.example", 80, NULL, "allow mode open" },
             { "anything.example", 80, "198.51.100.1", "allow mode open" },
             { "198.51.100.1", 80, NULL, "allow mode open" },
             { "anything.example", 80, "10.0.0.1", "deny private 10.0.0.0/8" },
             { "10.0.0.1", 80, NULL, "deny private 10.0.0.0/8" },
             { "anything.example", 80, "127.0.0.2", "allow 127.0.0.2" },
             { "anything.example", 80, "127.0.0.3", "deny private 127.0.0.0/8" },
             { "anything.example", 80, "::ffff:127.0.0.2", "allow 127.0.0.2" },
             { "fd00::5", 80, NULL, "allow fd00::/8" },
             { "fc00::5", 80, NULL, "deny private fc00::/7" },
             { "fe80::1", 80, NULL, "deny private fe80::/10" });
}

/* ==== part 1b: parsers ==== */

static void test_socks_parser(void)
{
  bool noauth;
  struct corral__socks_request r;
  const uint8_t g1[] = { 5, 2, 2, 0 }, g2[] = { 5, 1, 2 }, g3[] = { 4, 1, 0 }, g4[] = { 5, 0 };
  is_int(corral__socks_parse_greeting(g1, 4, &noauth), 4, "greeting with no-auth consumed");
  ok(noauth, "no-auth offered");
  is_int(corral__socks_parse_greeting(g1, 3, &noauth), 0, "short greeting needs more");
  is_int(corral__socks_parse_greeting(g2, 3, &noauth), 3, "greeting without no-auth parsed");
  ok(!noauth, "no-auth not offered");
  is_int(corral__socks_parse_greeting(g3, 3, &noauth), -1, "SOCKS4 greeting rejected");
  is_int(corral__socks_parse_greeting(g4, 2, &noauth), -1, "zero methods rejected");

  const uint8_t v4[] = { 5, 1, 0, 1, 127, 0, 0, 2, 0x1f, 0x90, 'x' };
  is_int(corral__socks_parse_request(v4, sizeof(v4), &r), 10, "IPv4 request");
  ok(strcmp(r.host, "127.0.0.2") == 0 && r.port == 8080, "IPv4 request target %s:%u", r.host, r.port);
  is_int(corral__socks_parse_request(v4, 9, &r), 0, "truncated IPv4 request needs more");
  const uint8_t dn[] = { 5, 1, 0, 3, 8, 'a', '.', 'e', 'x', 'a', 'm', 'p', 'l', 0, 80 };
  is_int(corral__socks_parse_request(dn, sizeof(dn), &r), (long long) sizeof(dn), "domain request");
  is_str(r.host, "a.exampl", "domain request host");
  const uint8_t v6[] = { 5, 1, 0, 4, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 187 };
  is_int(corral__socks_parse_request(v6, sizeof(v6), &r), 22, "IPv6 request");
  ok(strcmp(r.host, "2001:db8::1") == 0 && r.port == 443, "IPv6 request target %s:%u", r.host, r.port);
  const uint8_t bind[] = { 5, 2, 0, 1, 1, 2, 3, 4, 0, 80 }, udp[] = { 5, 3, 0, 1 };
  is_int(corral__socks_parse_request(bind, sizeof(bind), &r), -CORRAL__SOCKS_REP_CMD, "BIND: command not supported");
  is_int(corral__socks_parse_request(udp, sizeof(udp), &r), -CORRAL__SOCKS_REP_CMD, "UDP: command not supported");
  const uint8_t atyp[] = { 5, 1, 0, 9, 1, 2, 3, 4, 0, 80 };
  is_int(corral__socks_parse_request(atyp, sizeof(atyp), &r), -CORRAL__SOCKS_REP_ATYP, "unknown address type");
  const uint8_t nul[] = { 5, 1, 0, 3, 3, 'a', 0, 'b', 0, 80 }, empty[] = { 5, 1, 0, 3, 0, 0, 80 };
  is_int(corral__socks_parse_request(nul, sizeof(nul), &r), -CORRAL__SOCKS_REP_FAILURE, "NUL in a domain rejected");
  is_int(corral__socks_parse_request(empty, sizeof(empty), &r), -CORRAL__SOCKS_REP_FAILURE, "empty domain rejected");
  const uint8_t rsv[] = { 5, 1, 1, 1, 1, 2, 3, 4, 0, 80 }, ver[] = { 4, 1, 0, 1 };
  is_int(corral__socks_parse_request(rsv, sizeof(rsv), &r), -CORRAL__SOCKS_REP_FAILURE, "non-zero RSV rejected");
  is_int(corral__socks_parse_request(ver, sizeof(ver), &r), -CORRAL__SOCKS_REP_FAILURE, "wrong version rejected");
}

/* A TLS 1.2/1.3-style ClientHello record carrying the given server names
 * (NULL: no SNI extension).  Returns its length. */
static size_t client_hello(uint8_t *out, const char *sni, const char *sni2, size_t split)
{
  uint8_t body[1024], *p = body;
  size_t n = 0;
  *p++ = 3, *p++ = 3;
  memset(p, 0x42, 32), p += 32;
  *p++ = 0;                                        /* session id */
  *p++ = 0, *p++ = 2, *p++ = 0x13, *p++ = 0x01;    /* one cipher suite */
  *p++ = 1, *p++ = 0;                              /* null compression */
  uint8_t *ext_len = p;
  p += 2;
  *p++ = 0x00, *p++ = 0x2b, *p++ = 0, *p++ = 3, *p++ = 2, *p++ = 3, *p++ = 4; /* supported_versions */
  if (sni)
    {
      size_t a = strlen(sni), b = sni2 ? strlen(sni2) : 0;
      size_t list = 3 + a + (sni2 ? 3 + b : 0);
      *p++ = 0, *p++ = 0, *p++ = (uint8_t) ((list + 2) >> 8), *p++ = (uint8_t) (list + 2);
      *p++ = (uint8_t) (list >> 8), *p++ = (uint8_t) list;
      *p++ = 0, *p++ = (uint8_t) (a >> 8), *p++ = (uint8_t) a;
      memcpy(p, sni, a), p += a;
      if (sni2)
        {
          *p++ = 0, *p++ = (uint8_t) (b >> 8), *p++ = (uint8_t) b;
          memcpy(p, sni2, b), p += b;
        }
    }
  size_t el = (size_t) (p - ext_len - 2);
  ext_len[0] = (uint8_t) (el >> 8), ext_len[1] = (uint8_t) el;
  size_t blen = (size_t) (p - body);
  uint8_t hs[1100];
  hs[0] = 1, hs[1] = 0, hs[2] = (uint8_t) (blen >> 8), hs[3] = (uint8_t) blen;
  memcpy(hs + 4, body, blen);
  size_t hl = blen + 4;
  /* split > 0: carry the handshake in two records */
  size_t parts[2] = { split ? split : hl, split ? hl - split : 0 };
  for (size_t k = 0, off = 0; k < 2; k++)
    {
      if (parts[k] == 0)
        continue;
      out[n++] = 0x16, out[n++] = 3, out[n++] = 1;
      out[n++] = (uint8_t) (parts[k] >> 8), out[n++] = (uint8_t) parts[k];
      memcpy(out + n, hs + off, parts[k]);
      n += parts[k];
      off += parts[k];
    }
  return n;
}

static void test_sni_parser(void)
{
  uint8_t h[2048];
  char name[256];
  size_t n = client_hello(h, "Example.COM", NULL, 0);
  is_int(corral__sni_parse(h, n, name), CORRAL__SNI_FOUND, "ClientHello with SNI");
  is_str(name, "Example.COM", "SNI as sent");
  for (size_t k = 0; k < n; k += 7)
    if (corral__sni_parse(h, k, name) != CORRAL__SNI_NEED_MORE)
      {
        ok(0, "a prefix of %zu bytes needs more", k);
        goto next;
      }
  ok(1, "every prefix of the ClientHello needs more");
next:
  n = client_hello(h, "split.example", NULL, 20);
  is_int(corral__sni_parse(h, n, name), CORRAL__SNI_FOUND, "ClientHello over two records");
  is_str(name, "split.example", "SNI from two records");
  n = client_hello(h, NULL, NULL, 0);
  is_int(corral__sni_parse(h, n, name), CORRAL__SNI_NONE, "ClientHello without SNI");
  n = client_hello(h, "a.example", "b.example", 0);
  is_int(corral__sni_parse(h, n, name), CORRAL__SNI_MALFORMED, "two host names are refused");
  is_int(corral__sni_parse((const uint8_t *) "GET / HTTP/1.1\r\n", 16, name), CORRAL__SNI_NOT_TLS, "plain text is not TLS");
  n = client_hello(h, "x.example", NULL, 0);
  h[5] = 2;                     /* ServerHello, not ClientHello */
  is_int(corral__sni_parse(h, n, name), CORRAL__SNI_MALFORMED, "not a ClientHello");
  n = client_hello(h, "x.example", NULL, 0);
  h[3] = 0x50;                  /* record longer than 16 KiB */
  is_int(corral__sni_parse(h, n, name), CORRAL__SNI_MALFORMED, "oversized record");
  n = client_hello(h, "x.example", NULL, 0);
  h[51]++;                      /* the extensions' length (record 5 + handshake 4 + 42) */
  is_int(corral__sni_parse(h, n, name), CORRAL__SNI_MALFORMED, "extensions longer than the hello");
  n = client_hello(h, "x.example", NULL, 0);
  h[n - 10]++;                  /* the host name's length: past the extension */
  is_int(corral__sni_parse(h, n, name), CORRAL__SNI_MALFORMED, "host name longer than its extension");
  const uint8_t alert[] = { 0x16, 3, 1, 0, 4, 1, 0, 0, 200, 0x15, 3, 3, 0, 2, 2, 40 };
  is_int(corral__sni_parse(alert, sizeof(alert), name), CORRAL__SNI_MALFORMED, "non-handshake record mid-hello");
}

static int head_of(const char *req, struct corral__http_head *h, struct corral__http_target *t)
{
  corral__http_head_init(h);
  if (corral__http_head_feed(h, req, strlen(req)) != 1)
    return -1;
  return corral__http_head_target(h, req, t);
}

static void test_http_head(void)
{
  struct corral__http_head h;
  struct corral__http_target t;
  char out[4096];
  const char *req = "GET http://Example.com:8080/p/a?q=1#frag HTTP/1.1\r\nHost: example.COM:8080\r\n"
                    "Proxy-Connection: keep-alive\r\nProxy-Authorization: Basic eA==\r\nConnection: keep-alive\r\n"
                    "Accept: */*\r\n\r\nBODY";
  is_int(head_of(req, &h, &t), 0, "absolute URI with a matching Host");
  ok(!t.is_connect && strcmp(t.host, "Example.com") == 0 && t.port == 8080, "target %s:%u", t.host, t.port);
  is_int(h.head_end, strlen(req) - 4, "the head ends before the body");
  ssize_t n = corral__http_head_rewrite(&h, req, out, sizeof(out));
  out[n > 0 ? n : 0] = '\0';
  is_str(out, "GET /p/a?q=1 HTTP/1.1\r\nHost: example.COM:8080\r\nAccept: */*\r\nConnection: close\r\n\r\n",
         "origin form without hop-by-hop and proxy headers");
  is_int(corral__http_head_rewrite(&h, req, out, 20), -1, "rewrite that does not fit fails");

  is_int(head_of("GET http://a.test/ HTTP/1.1\r\nHost: b.test\r\n\r\n", &h, &t), -403, "Host mismatch");
  is_int(head_of("GET http://a.test/ HTTP/1.1\r\nHost: a.test:81\r\n\r\n", &h, &t), -403, "Host port mismatch");
  is_int(head_of("GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n", &h, &t), -403, "two Hosts");
  is_int(head_of("GET http://a.test/ HTTP/1.1\r\nHost: A.TEST.:80\r\n\r\n", &h, &t), 0, "Host agrees modulo case, dot, port");
  is_int(head_of("GET http://[2001:db8::1]:81/ HTTP/1.1\r\nHost: [2001:DB8:0::1]:81\r\n\r\n", &h, &t), 0, "IPv6 Host");
  is_str(t.host, "2001:db8::1", "IPv6 target without brackets");
  is_int(head_of("GET / HTTP/1.1\r\nHost: a.test\r\n\r\n", &h, &t), -400, "origin form is refused");
  is_int(head_of("GET https://a.test/ HTTP/1.1\r\n\r\n", &h, &t), -400, "https:// is refused");
  is_int(head_of("GET http://a.test/x HTTP/1.0\r\n\r\n", &h, &t), 0, "HTTP/1.0 without Host");
  n = corral__http_head_rewrite(&h, "GET http://a.test/x HTTP/1.0\r\n\r\n", out, sizeof(out));
  out[n > 0 ? n : 0] = '\0';
  is_str(out, "GET /x HTTP/1.0\r\nHost: a.test\r\nConnection: close\r\n\r\n", "Host added from the URI");
  is_int(head_of("CONNECT a.test:443 HTTP/1.1\r\nHost: whatever\r\n\r\n\x16\x03", &h, &t), 0, "CONNECT");
  ok(t.is_connect && strcmp(t.host, "a.test") == 0 && t.port == 443, "CONNECT target %s:%u", t.host, t.port);
  is_int(head_of("CONNECT a.test HTTP/1.1\r\n\r\n", &h, &t), -400, "CONNECT without a port is refused");
  corral__http_head_init(&h);
  ok(corral__http_head_feed(&h, "GET http://a/ HTTP/1.1\r\nX: a\r\n b\r\n\r\n", 36) == -1, "folded header refused");
  is_int(head_of("GET http://a.test/\nHost: a.test\n\n", &h, &t), -400, "HTTP/0.9-style request line refused");
  is_int(head_of("GET http://a.test/ HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n", &h, &t), -400,
         "a field name with a space refused (fuzz_net_http regression)");
  ok(head_of("GET http://a.test/ HTTP/1.1\r\nX: a\x01b\r\n\r\n", &h, &t) < 0, "a control byte in a value refused");
  is_int(head_of("GET http://a.test/ HTTP/1.1\r\nX: a\tb\r\n\r\n", &h, &t), 0, "a tab in a value is fine");

  /* the body: one request per connection */
  const char *post = "POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n\r\nhel";
  bool done;
  is_int(head_of(post, &h, &t), 0, "POST head");
  is_int(corral__http_body_feed(&h, post + h.head_end, 3, &done), 3, "body bytes belong to the request");
  ok(!done, "body not complete");
  is_int(corral__http_body_feed(&h, "loGET /next", 11, &done), 2, "only the body's end belongs to it");
  ok(done, "request complete");
  const char *chunked = "POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                        "3\r\nabc\r\n0\r\n\r\nGET http://evil.test/ HTTP/1.1\r\n\r\n";
  is_int(head_of(chunked, &h, &t), 0, "chunked POST head");
  size_t rest = strlen(chunked) - h.head_end;
  is_int(corral__http_body_feed(&h, chunked + h.head_end, rest, &done), 13, "chunked body measured");
  ok(done, "chunked request complete, the pipelined one is not part of it");
  const char *get = "GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n";
  is_int(head_of(get, &h, &t), 0, "GET head");
  is_int(corral__http_body_feed(&h, "GET http://b/ HTTP/1.1", 22, &done), 0, "a GET has no body");
  ok(done, "GET complete at its head");
}

static void test_resolver_file(void)
{
  struct corral__resolver *r = NULL;
  corral_error_t err = NULL;
  const char *text = "# test names\n"
                     "a.test 127.0.0.2\n"
                     "Cycle.Test. 127.0.0.2 127.0.0.3 ::1  # two answers\n"
                     "\n";
  ok(corral__resolver_parse(text, strlen(text), &r, &err) == 0, "resolver file parsed (%s)", corral_error_message(err));
  struct corral__addrlist l;
  const char *why = NULL;
  char s[64] = "";
  const char *want[] = { "127.0.0.2", "127.0.0.3", "::1", "127.0.0.2" };
  for (int i = 0; r && i < 4; i++)
    {
      int rc = corral__resolve(r, "cycle.TEST", 443, &l, &why);
      if (rc == 0)
        corral__sockaddr_format((struct sockaddr *) &l.a[0], s, sizeof(s));
      ok(rc == 0 && l.n == 1 && strcmp(s, want[i]) == 0, "lookup %d of cycle.test is %s (got %s)", i + 1, want[i], s);
    }
  ok(r && corral__resolve(r, "b.test", 80, &l, &why) < 0 && strcmp(why, "name not found") == 0,
     "names not in the file do not resolve");
  corral__resolver_free(r);
  static const char *const bad[] = { "a.test\n", "a.test 1.2.3\n", "a.test 1.2.3.4\nA.test 1.2.3.4\n", "bad..name 1.2.3.4\n" };
  for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
    {
      r = NULL;
      ok(corral__resolver_parse(bad[i], strlen(bad[i]), &r, &err) < 0 && r == NULL && err != NULL,
         "bad resolver file rejected: %s", corral_error_message(err));
      corral_error_release(&err);
    }
}

/* ==== part 2: the proxy, end to end on loopback ==== */

#define UPSTREAMS 2

struct upstream
{
  const char *name, *addr;
  int fd;
  int accepted;                 /* atomic */
  pthread_t thread;
};

static struct upstream ups[UPSTREAMS] = { { "up2", "127.0.0.2", -1, 0, 0 }, { "up3", "127.0.0.3", -1, 0, 0 } };
static int up_port;             /* both upstreams listen on it */

static void set_timeouts(int fd, int ms)
{
  struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

struct up_conn
{
  int fd;
  const char *name;
};

/* HTTP requests get "200" with the name of the server and the bytes it
 * received; anything else is echoed after "name:". */
static void *up_serve(void *arg)
{
  struct up_conn *uc = arg;
  char buf[65536];
  size_t len = 0;
  set_timeouts(uc->fd, 3000);
  ssize_t n = recv(uc->fd, buf, sizeof(buf) - 1, 0);
  if (n > 0 && (strncmp(buf, "GET ", 4) == 0 || strncmp(buf, "POST ", 5) == 0))
    {
      len = (size_t) n;
      set_timeouts(uc->fd, 300);  /* collect whatever else arrives */
      while (len < sizeof(buf) - 1 && (n = recv(uc->fd, buf + len, sizeof(buf) - 1 - len, 0)) > 0)
        len += (size_t) n;
      char head[256];
      int hn = snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s\n",
                        len + strlen(uc->name) + 1, uc->name);
      if (send(uc->fd, head, (size_t) hn, MSG_NOSIGNAL) == hn)
        send(uc->fd, buf, len, MSG_NOSIGNAL);
    }
  else if (n > 0)
    {
      char hello[16];
      int hn = snprintf(hello, sizeof(hello), "%s:", uc->name);
      send(uc->fd, hello, (size_t) hn, MSG_NOSIGNAL);
      do
        if (send(uc->fd, buf, (size_t) n, MSG_NOSIGNAL) != n)
          break;
      while ((n = recv(uc->fd, buf, sizeof(buf), 0)) > 0);
    }
  close(uc->fd);
  free(uc);
  return NULL;
}

static void *up_main(void *arg)
{
  struct upstream *u = arg;
  for (;;)
    {
      int fd = accept(u->fd, NULL, NULL);
      if (fd < 0)
        {
          if (errno == EINTR || errno == ECONNABORTED)
            continue;
          return NULL;          /* listener shut down at the end */
        }
      __atomic_add_fetch(&u->accepted, 1, __ATOMIC_SEQ_CST);
      struct up_conn *uc = malloc(sizeof(*uc));
      pthread_t t;
      uc->fd = fd;
      uc->name = u->name;
      if (pthread_create(&t, NULL, up_serve, uc) == 0)
        pthread_detach(t);
      else
        {
          close(fd);
          free(uc);
        }
    }
}

static int listen_on(const char *addr, int port, int *out_port)
{
  struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t) port) };
  inet_pton(AF_INET, addr, &sa.sin_addr);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (fd < 0 || bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || listen(fd, 64) < 0)
    {
      if (fd >= 0)
        close(fd);
      return -1;
    }
  socklen_t len = sizeof(sa);
  getsockname(fd, (struct sockaddr *) &sa, &len);
  if (out_port)
    *out_port = ntohs(sa.sin_port);
  return fd;
}

static bool start_upstreams(void)
{
  for (int attempt = 0; attempt < 20; attempt++)
    {
      ups[0].fd = listen_on(ups[0].addr, 0, &up_port);
      ups[1].fd = ups[0].fd < 0 ? -1 : listen_on(ups[1].addr, up_port, NULL);
      if (ups[0].fd >= 0 && ups[1].fd >= 0)
        break;
      if (ups[0].fd >= 0)
        close(ups[0].fd);
      ups[0].fd = -1;
    }
  if (ups[0].fd < 0 || ups[1].fd < 0)
    return false;
  for (int i = 0; i < UPSTREAMS; i++)
    pthread_create(&ups[i].thread, NULL, up_main, &ups[i]);
  return true;
}

static void stop_upstreams(void)
{
  for (int i = 0; i < UPSTREAMS; i++)
    {
      shutdown(ups[i].fd, SHUT_RDWR);
      pthread_join(ups[i].thread, NULL);
      close(ups[i].fd);
    }
}

static int accepted(int i)
{
  return __atomic_load_n(&ups[i].accepted, __ATOMIC_SEQ_CST);
}

/* ---- audit records ---- */

static pthread_mutex_t audit_lock = PTHREAD_MUTEX_INITIALIZER;
static json_t *audits;          /* array of records */
static bool audit_sandbox_mismatch;

static void on_audit(void *cls, const char *sandbox, const char *record)
{
  json_error_t je;
  json_t *o = json_loads(record, 0, &je);
  (void) cls;
  pthread_mutex_lock(&audit_lock);
  if (o == NULL)
    o = json_pack("{s:s}", "unparsable", record);
  if (!json_is_string(json_object_get(o, "sandbox")) || strcmp(json_string_value(json_object_get(o, "sandbox")), sandbox))
    audit_sandbox_mismatch = true;
  json_array_append_new(audits, o);
  pthread_mutex_unlock(&audit_lock);
}

static size_t audit_mark(void)
{
  pthread_mutex_lock(&audit_lock);
  size_t n = json_array_size(audits);
  pthread_mutex_unlock(&audit_lock);
  return n;
}

/* The first record of sandbox after mark, waiting up to 5 s. */
static json_t *audit_next(const char *sandbox, size_t *mark)
{
  for (int i = 0; i < 500; i++)
    {
      pthread_mutex_lock(&audit_lock);
      for (size_t k = *mark; k < json_array_size(audits); k++)
        {
          json_t *o = json_array_get(audits, k);
          const char *s = json_string_value(json_object_get(o, "sandbox"));
          if (s && strcmp(s, sandbox) == 0)
            {
              *mark = k + 1;
              json_incref(o);
              pthread_mutex_unlock(&audit_lock);
              return o;
            }
        }
      pthread_mutex_unlock(&audit_lock);
      usleep(10000);
    }
  return NULL;
}

static const char *jstr(json_t *o, const char *k)
{
  json_t *v = json_object_get(o, k);
  return json_is_string(v) ? json_string_value(v) : json_is_null(v) ? "(null)" : "(missing)";
}

static long long jint(json_t *o, const char *k)
{
  json_t *v = json_object_get(o, k);
  return json_is_integer(v) ? json_integer_value(v) : -1;
}

/* Check the usual fields of a record. */
static void check_audit(json_t *a, const char *what, const char *kind, const char *dest, const char *resolved,
                        bool allowed, const char *rule)
{
  if (!ok(a != NULL, "%s: audited", what))
    return;
  ok(strcmp(jstr(a, "kind"), kind) == 0, "%s: audit kind %s (got %s)", what, kind, jstr(a, "kind"));
  ok(strcmp(jstr(a, "destination"), dest) == 0, "%s: audit destination %s (got %s)", what, dest,
     jstr(a, "destination"));
  ok(strcmp(jstr(a, "resolved"), resolved ? resolved : "(null)") == 0, "%s: audit resolved %s (got %s)", what,
     resolved ? resolved : "null", jstr(a, "resolved"));
  ok(json_is_boolean(json_object_get(a, "allowed")) && json_is_true(json_object_get(a, "allowed")) == allowed,
     "%s: audit allowed=%d", what, allowed);
  ok(strcmp(jstr(a, "rule"), rule) == 0, "%s: audit rule \"%s\" (got \"%s\")", what, rule, jstr(a, "rule"));
  ok(jint(a, "duration_ms") >= 0 && jint(a, "bytes_up") >= 0 && jint(a, "bytes_down") >= 0 && jint(a, "port") > 0,
     "%s: audit has port, bytes and duration", what);
}

/* ---- sandboxes, clients ---- */

static corral_proxy_t *proxy;

struct sbx
{
  char id[32];
  int http_port, socks_port;
};

static bool add_sandbox(struct sbx *s, const char *id, const char *json)
{
  corral_error_t err = NULL;
  corral_net_policy_t *p = policy(json);
  int hfd = listen_on("127.0.0.1", 0, &s->http_port), sfd = listen_on("127.0.0.1", 0, &s->socks_port);
  snprintf(s->id, sizeof(s->id), "%s", id);
  int r = p ? corral_proxy_add(proxy, id, hfd, sfd, p, &err) : -1;
  ok(r == 0, "sandbox %s added (%s)", id, corral_error_message(err));
  if (r < 0)
    {
      close(hfd);
      close(sfd);
    }
  corral_error_release(&err);
  corral_net_policy_unref(p);
  return r == 0;
}

static int dial(int port)
{
  struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t) port) };
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  set_timeouts(fd, 5000);
  if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
    {
      close(fd);
      return -1;
    }
  return fd;
}

static bool send_str(int fd, const char *s)
{
  return send(fd, s, strlen(s), MSG_NOSIGNAL) == (ssize_t) strlen(s);
}

/* The first line of a response, for test descriptions. */
static const char *line1(const char *resp)
{
  static char l[128];
  size_t n = strcspn(resp, "\r\n");
  snprintf(l, sizeof(l), "%.*s", (int) (n < sizeof(l) - 1 ? n : sizeof(l) - 1), resp);
  return l;
}

/* Read until EOF (or timeout); NUL-terminated. */
static size_t read_to_eof(int fd, char *buf, size_t cap)
{
  size_t len = 0;
  ssize_t n;
  while (len < cap - 1 && (n = recv(fd, buf + len, cap - 1 - len, 0)) > 0)
    len += (size_t) n;
  buf[len] = '\0';
  return len;
}

/* Read exactly n bytes (or less on EOF/timeout); not NUL-terminated. */
static size_t read_n(int fd, char *buf, size_t n)
{
  size_t len = 0;
  ssize_t r;
  while (len < n && (r = recv(fd, buf + len, n - len, 0)) > 0)
    len += (size_t) r;
  return len;
}

/* One request through the HTTP listener; the whole answer in resp. */
static void http_exchange(struct sbx *s, const char *req, char *resp, size_t cap)
{
  int fd = dial(s->http_port);
  resp[0] = '\0';
  if (fd < 0)
    return;
  if (send_str(fd, req))
    read_to_eof(fd, resp, cap);
  close(fd);
}

/* CONNECT and read the proxy's answer head; returns the fd (tunnel open
 * when *status == 200). */
static int http_connect(struct sbx *s, const char *target, int *status)
{
  char req[512], resp[1024];
  int fd = dial(s->http_port);
  *status = -1;
  if (fd < 0)
    return -1;
  snprintf(req, sizeof(req), "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target);
  send_str(fd, req);
  size_t len = 0;
  resp[0] = '\0';
  while (len < sizeof(resp) - 1 && !strstr(resp, "\r\n\r\n"))
    {
      ssize_t n = recv(fd, resp + len, 1, 0);   /* byte by byte: stop at the head's end */
      if (n <= 0)
        break;
      resp[++len] = '\0';
    }
  resp[len] = '\0';
  sscanf(resp, "HTTP/1.1 %d", status);
  return fd;
}

/* SOCKS5 handshake; returns the fd, *rep the reply code (-1: none). */
static int socks_open(struct sbx *s, uint8_t cmd, uint8_t atyp, const void *addr, size_t alen, uint16_t port, int *rep)
{
  uint8_t req[300], r[10];
  size_t n = 0;
  int fd = dial(s->socks_port);
  *rep = -1;
  if (fd < 0)
    return -1;
  const uint8_t greet[] = { 5, 1, 0 };
  if (send(fd, greet, 3, MSG_NOSIGNAL) != 3 || read_n(fd, (char *) r, 2) != 2 || r[0] != 5 || r[1] != 0)
    return fd;
  req[n++] = 5, req[n++] = cmd, req[n++] = 0, req[n++] = atyp;
  if (atyp == 3)
    req[n++] = (uint8_t) alen;
  memcpy(req + n, addr, alen);
  n += alen;
  req[n++] = (uint8_t) (port >> 8), req[n++] = (uint8_t) port;
  if (send(fd, req, n, MSG_NOSIGNAL) == (ssize_t) n && read_n(fd, (char *) r, 10) == 10)
    *rep = r[1];
  return fd;
}

static int socks_name(struct sbx *s, const char *name, uint16_t port, int *rep)
{
  return socks_open(s, 1, 3, name, strlen(name), port, rep);
}

/* Echo through an open tunnel: send msg, expect "upN:" + msg (the name
 * comes only first on a connection: up "" for later messages). */
static bool echo_ok(int fd, const char *up, const char *msg)
{
  char want[256], got[256];
  snprintf(want, sizeof(want), "%s%s%s", up, up[0] ? ":" : "", msg);
  if (!send_str(fd, msg))
    return false;
  got[read_n(fd, got, strlen(want))] = '\0';
  return strcmp(got, want) == 0;
}

/* Wait until fd reads EOF (or an error); true if it did within ms. */
static bool closes_within(int fd, int ms)
{
  struct pollfd p = { .fd = fd, .events = POLLIN };
  char junk[256];
  for (int waited = 0; waited < ms; waited += 50)
    {
      if (poll(&p, 1, 50) > 0)
        {
          ssize_t n = recv(fd, junk, sizeof(junk), MSG_DONTWAIT);
          if (n <= 0)
            return true;
        }
    }
  return false;
}

/* ---- the scenarios ---- */

static char allow_json[512];

static void test_http_allowed(void)
{
  struct sbx s;
  char req[1024], resp[65536];
  size_t mark = audit_mark();
  if (!add_sandbox(&s, "sb-http", allow_json))
    return;
  int before = accepted(0);
  snprintf(req, sizeof(req),
           "GET http://allowed.test:%d/p?q=1 HTTP/1.1\r\nHost: allowed.test:%d\r\nProxy-Connection: keep-alive\r\n"
           "User-Agent: t\r\n\r\n",
           up_port, up_port);
  http_exchange(&s, req, resp, sizeof(resp));
  ok(strncmp(resp, "HTTP/1.1 200 OK", 15) == 0 && strstr(resp, "\r\n\r\nup2\n"), "GET relayed to up2 (%s)", line1(resp));
  ok(strstr(resp, "\nGET /p?q=1 HTTP/1.1\r\n") != NULL, "upstream got the origin form");
  ok(strstr(resp, "Connection: close\r\n") && !strstr(resp, "Proxy-Connection"), "hop-by-hop headers replaced");
  ok(strstr(resp, "User-Agent: t\r\n") != NULL, "end-to-end headers kept");
  is_int(accepted(0) - before, 1, "one upstream connection");
  json_t *a = audit_next(s.id, &mark);
  check_audit(a, "GET", "http", "allowed.test", "127.0.0.2", true, "allow allowed.test via 127.0.0.0/8");
  ok(a && jint(a, "port") == up_port && jint(a, "bytes_up") > 50 && jint(a, "bytes_down") > 50,
     "GET audit: port and bytes both ways (up %lld, down %lld)", jint(a, "bytes_up"), jint(a, "bytes_down"));
  json_decref(a);

  /* a body is forwarded; a second request pipelined after it is not */
  snprintf(req, sizeof(req),
           "POST http://allowed.test:%d/post HTTP/1.1\r\nHost: allowed.test:%d\r\nContent-Length: 5\r\n\r\nhello"
           "GET http://allowed.test:%d/smuggled HTTP/1.1\r\nHost: evil.test\r\n\r\n",
           up_port, up_port, up_port);
  http_exchange(&s, req, resp, sizeof(resp));
  ok(strstr(resp, "\r\n\r\nhello") != NULL, "POST body forwarded");
  ok(strstr(resp, "smuggled") == NULL, "a pipelined second request is not forwarded");
  json_decref(audit_next(s.id, &mark));

  /* IP literal: allowed by the IP rule */
  snprintf(req, sizeof(req), "GET http://127.0.0.2:%d/ip HTTP/1.1\r\nHost: 127.0.0.2:%d\r\n\r\n", up_port, up_port);
  http_exchange(&s, req, resp, sizeof(resp));
  ok(strstr(resp, "\r\n\r\nup2\n") != NULL, "IP literal with an IP rule is allowed");
  a = audit_next(s.id, &mark);
  check_audit(a, "IP literal", "http", "127.0.0.2", "127.0.0.2", true, "allow 127.0.0.0/8");
  json_decref(a);
  corral_proxy_remove(proxy, s.id);
}

static void test_connect_and_socks_allowed(void)
{
  struct sbx s;
  char target[128], buf[4096];
  int status, rep;
  size_t mark = audit_mark();
  if (!add_sandbox(&s, "sb-tunnel", allow_json))
    return;
  snprintf(target, sizeof(target), "allowed.test:%d", up_port);
  int fd = http_connect(&s, target, &status);
  is_int(status, 200, "CONNECT allowed.test answers 200");
  ok(echo_ok(fd, "up2", "ping through CONNECT"), "CONNECT tunnel relays both ways");
  shutdown(fd, SHUT_WR);
  ok(closes_within(fd, 3000), "the tunnel ends when the client closes");
  close(fd);
  json_t *a = audit_next(s.id, &mark);
  check_audit(a, "CONNECT", "connect", "allowed.test", "127.0.0.2", true, "allow allowed.test via 127.0.0.0/8");
  ok(a && jint(a, "bytes_up") == 20 && jint(a, "bytes_down") == 24, "CONNECT audit bytes 20 up, 24 down (%lld, %lld)",
     jint(a, "bytes_up"), jint(a, "bytes_down"));
  json_decref(a);

  /* TLS with the right SNI passes and reaches the upstream */
  uint8_t hello[2048];
  size_t hn = client_hello(hello, "ALLOWED.test", NULL, 0);
  fd = http_connect(&s, target, &status);
  send(fd, hello, hn, MSG_NOSIGNAL);
  size_t got = read_n(fd, buf, 4 + hn);
  ok(status == 200 && got == 4 + hn && memcmp(buf, "up2:", 4) == 0 && memcmp(buf + 4, hello, hn) == 0,
     "ClientHello with the CONNECT host as SNI is relayed");
  close(fd);
  json_decref(audit_next(s.id, &mark));

  fd = socks_name(&s, "allowed.test", (uint16_t) up_port, &rep);
  is_int(rep, 0, "SOCKS5 CONNECT to allowed.test succeeds");
  ok(echo_ok(fd, "up2", "ping through SOCKS"), "SOCKS5 tunnel relays both ways");
  close(fd);
  a = audit_next(s.id, &mark);
  check_audit(a, "SOCKS5", "socks5", "allowed.test", "127.0.0.2", true, "allow allowed.test via 127.0.0.0/8");
  json_decref(a);

  const uint8_t ip[4] = { 127, 0, 0, 2 };
  fd = socks_open(&s, 1, 1, ip, 4, (uint16_t) up_port, &rep);
  is_int(rep, 0, "SOCKS5 CONNECT to an IPv4 literal covered by an IP rule");
  ok(echo_ok(fd, "up2", "v4"), "SOCKS5 IPv4 tunnel relays");
  close(fd);
  json_decref(audit_next(s.id, &mark));
  corral_proxy_remove(proxy, s.id);
}

static void test_denials(void)
{
  struct sbx s;
  char req[512], resp[4096], target[128];
  int status, rep, before2 = accepted(0), before3 = accepted(1);
  size_t mark = audit_mark();
  char json[512];
  snprintf(json, sizeof(json),
           "{\"mode\":\"allowlist\",\"allow\":[\"allowed.test:%d\",\"*.wild.test\",\"private.test\",\"127.0.0.2/32\","
           "\"nowhere.test\"]}",
           up_port);
  if (!add_sandbox(&s, "sb-deny", json))
    return;

  snprintf(req, sizeof(req), "GET http://unlisted.test:%d/ HTTP/1.1\r\nHost: unlisted.test:%d\r\n\r\n", up_port, up_port);
  http_exchange(&s, req, resp, sizeof(resp));
  ok(strncmp(resp, "HTTP/1.1 403 Forbidden", 22) == 0 && strstr(resp, "deny not listed"),
     "unlisted name: 403 with the rule (%s)", line1(resp));
  json_t *a = audit_next(s.id, &mark);
  check_audit(a, "unlisted", "http", "unlisted.test", NULL, false, "deny not listed");
  json_decref(a);

  int fd = socks_name(&s, "unlisted.test", (uint16_t) up_port, &rep);
  is_int(rep, 2, "unlisted name over SOCKS5: reply 0x02");
  close(fd);
  json_decref(audit_next(s.id, &mark));

  snprintf(target, sizeof(target), "a.wild.test:%d", up_port);
  fd = http_connect(&s, target, &status);
  is_int(status, 200, "*.wild.test allows a.wild.test");
  close(fd);
  json_decref(audit_next(s.id, &mark));
  snprintf(target, sizeof(target), "wild.test:%d", up_port);
  fd = http_connect(&s, target, &status);
  is_int(status, 403, "*.wild.test does not allow wild.test");
  close(fd);
  json_decref(audit_next(s.id, &mark));

  snprintf(target, sizeof(target), "allowed.test:%d", up_port + 1 == 65536 ? 1 : up_port + 1);
  fd = http_connect(&s, target, &status);
  is_int(status, 403, "CONNECT to a port the rule does not list: 403");
  close(fd);
  a = audit_next(s.id, &mark);
  check_audit(a, "unlisted port", "connect", "allowed.test", NULL, false, "deny not listed");
  json_decref(a);

  /* private.test resolves to 127.0.0.3: the name is listed, the address is not */
  snprintf(req, sizeof(req), "GET http://private.test:%d/ HTTP/1.1\r\nHost: private.test:%d\r\n\r\n", up_port, up_port);
  http_exchange(&s, req, resp, sizeof(resp));
  ok(strncmp(resp, "HTTP/1.1 403", 12) == 0 && strstr(resp, "deny private 127.0.0.0/8"),
     "a listed name resolving to a private address: 403 (%s)", line1(resp));
  a = audit_next(s.id, &mark);
  check_audit(a, "private address", "http", "private.test", "127.0.0.3", false, "deny private 127.0.0.0/8");
  json_decref(a);

  /* IP literal: needs an IP rule, and 127.0.0.3 has none */
  const uint8_t ip3[4] = { 127, 0, 0, 3 };
  fd = socks_open(&s, 1, 1, ip3, 4, (uint16_t) up_port, &rep);
  is_int(rep, 2, "IP literal without an IP rule: SOCKS 0x02");
  close(fd);
  json_decref(audit_next(s.id, &mark));

  /* Host header naming another host */
  snprintf(req, sizeof(req), "GET http://allowed.test:%d/ HTTP/1.1\r\nHost: evil.test\r\n\r\n", up_port);
  http_exchange(&s, req, resp, sizeof(resp));
  ok(strncmp(resp, "HTTP/1.1 403", 12) == 0, "Host/URI mismatch: 403");
  a = audit_next(s.id, &mark);
  check_audit(a, "host mismatch", "http", "allowed.test", NULL, false, "deny host mismatch");
  json_decref(a);

  /* SNI naming another host after CONNECT: closed, never relayed */
  uint8_t hello[2048];
  char buf[256];
  size_t hn = client_hello(hello, "evil.test", NULL, 0);
  snprintf(target, sizeof(target), "allowed.test:%d", up_port);
  fd = http_connect(&s, target, &status);
  send(fd, hello, hn, MSG_NOSIGNAL);
  ok(status == 200 && read_to_eof(fd, buf, sizeof(buf)) == 0, "SNI mismatch: the tunnel closes without a byte back");
  close(fd);
  a = audit_next(s.id, &mark);
  check_audit(a, "SNI mismatch", "connect", "allowed.test", "127.0.0.2", false, "deny sni mismatch");
  json_decref(a);

  /* resolution failure: 502 / SOCKS 0x04 */
  snprintf(req, sizeof(req), "GET http://nowhere.test/ HTTP/1.1\r\nHost: nowhere.test\r\n\r\n");
  http_exchange(&s, req, resp, sizeof(resp));
  ok(strncmp(resp, "HTTP/1.1 502 Bad Gateway", 24) == 0 && strstr(resp, "name not found"),
     "unresolvable name: 502 (%s)", line1(resp));
  a = audit_next(s.id, &mark);
  ok(a && json_is_true(json_object_get(a, "allowed")) && strstr(jstr(a, "error"), "resolve nowhere.test"),
     "unresolvable name audited as allowed with an error (%s)", a ? jstr(a, "error") : "");
  json_decref(a);
  fd = socks_name(&s, "nowhere.test", 80, &rep);
  is_int(rep, 4, "unresolvable name over SOCKS5: reply 0x04");
  close(fd);
  json_decref(audit_next(s.id, &mark));

  /* SOCKS5 commands and address types we do not do */
  const uint8_t ip2[4] = { 127, 0, 0, 2 };
  fd = socks_open(&s, 2, 1, ip2, 4, (uint16_t) up_port, &rep);
  is_int(rep, 7, "SOCKS5 BIND: reply 0x07");
  close(fd);
  json_decref(audit_next(s.id, &mark));
  fd = socks_open(&s, 1, 5, ip2, 4, (uint16_t) up_port, &rep);
  is_int(rep, 8, "SOCKS5 unknown address type: reply 0x08");
  close(fd);
  json_decref(audit_next(s.id, &mark));

  /* a.wild.test, and the SNI-mismatch tunnel (connected before its first
   * bytes were seen, closed without relaying them) */
  ok(accepted(0) - before2 == 2 && accepted(1) == before3, "only the allowed connections reached an upstream (%d, %d)",
     accepted(0) - before2, accepted(1) - before3);
  corral_proxy_remove(proxy, s.id);
}

static void test_rebinding(void)
{
  struct sbx s;
  char req[512], resp[4096];
  size_t mark = audit_mark();
  int before3 = accepted(1);
  /* rebind.test answers 127.0.0.2, then 127.0.0.3, alternately; only the
   * first is listed. */
  if (!add_sandbox(&s, "sb-rebind", "{\"mode\":\"allowlist\",\"allow\":[\"rebind.test\",\"127.0.0.2/32\"]}"))
    return;
  snprintf(req, sizeof(req), "GET http://rebind.test:%d/ HTTP/1.1\r\nHost: rebind.test:%d\r\n\r\n", up_port, up_port);
  http_exchange(&s, req, resp, sizeof(resp));
  ok(strstr(resp, "\r\n\r\nup2\n") != NULL, "first answer (listed 127.0.0.2) is used");
  json_t *a = audit_next(s.id, &mark);
  check_audit(a, "rebind 1", "http", "rebind.test", "127.0.0.2", true, "allow rebind.test via 127.0.0.2");
  json_decref(a);
  http_exchange(&s, req, resp, sizeof(resp));
  ok(strncmp(resp, "HTTP/1.1 403", 12) == 0 && strstr(resp, "deny private 127.0.0.0/8"),
     "second answer (unlisted 127.0.0.3) is refused (%s)", line1(resp));
  a = audit_next(s.id, &mark);
  check_audit(a, "rebind 2", "http", "rebind.test", "127.0.0.3", false, "deny private 127.0.0.0/8");
  json_decref(a);
  int rep, fd = socks_name(&s, "rebind.test", (uint16_t) up_port, &rep);
  is_int(rep, 0, "third lookup (127.0.0.2 again) over SOCKS5 is allowed");
  ok(echo_ok(fd, "up2", "x"), "and reaches 127.0.0.2");
  close(fd);
  json_decref(audit_next(s.id, &mark));
  fd = socks_name(&s, "rebind.test", (uint16_t) up_port, &rep);
  is_int(rep, 2, "fourth lookup (127.0.0.3) over SOCKS5 is refused");
  close(fd);
  json_decref(audit_next(s.id, &mark));
  is_int(accepted(1) - before3, 0, "127.0.0.3 was never connected to");
  corral_proxy_remove(proxy, s.id);
}

static void test_modes(void)
{
  struct sbx s;
  char req[512], resp[4096];
  int rep, fd;
  size_t mark = audit_mark();
  if (add_sandbox(&s, "sb-none", "{\"mode\":\"none\"}"))
    {
      snprintf(req, sizeof(req), "GET http://allowed.test:%d/ HTTP/1.1\r\nHost: allowed.test:%d\r\n\r\n", up_port,
               up_port);
      http_exchange(&s, req, resp, sizeof(resp));
      ok(strncmp(resp, "HTTP/1.1 403", 12) == 0 && strstr(resp, "deny mode none"), "mode none: 403");
      fd = socks_name(&s, "allowed.test", (uint16_t) up_port, &rep);
      is_int(rep, 2, "mode none: SOCKS 0x02");
      close(fd);
      json_t *a = audit_next(s.id, &mark);
      check_audit(a, "mode none", "http", "allowed.test", NULL, false, "deny mode none");
      json_decref(a);
      corral_proxy_remove(proxy, s.id);
    }
  mark = audit_mark();
  if (add_sandbox(&s, "sb-open", "{\"mode\":\"open\",\"allow\":[\"127.0.0.2/32\"]}"))
    {
      fd = socks_name(&s, "private.test", (uint16_t) up_port, &rep);
      is_int(rep, 2, "mode open: a name resolving to a private address is refused");
      close(fd);
      json_t *a = audit_next(s.id, &mark);
      check_audit(a, "mode open private", "socks5", "private.test", "127.0.0.3", false, "deny private 127.0.0.0/8");
      json_decref(a);
      fd = socks_name(&s, "unlisted.test", (uint16_t) up_port, &rep);
      is_int(rep, 0, "mode open: any name whose address is explicitly listed");
      ok(echo_ok(fd, "up2", "open"), "mode open: relayed");
      close(fd);
      a = audit_next(s.id, &mark);
      check_audit(a, "mode open listed", "socks5", "unlisted.test", "127.0.0.2", true, "allow 127.0.0.2");
      json_decref(a);
      corral_proxy_remove(proxy, s.id);
    }
}

static void test_set_policy(void)
{
  struct sbx s;
  int rep, rep2;
  size_t mark = audit_mark();
  corral_error_t err = NULL;
  if (!add_sandbox(&s, "sb-change", allow_json))
    return;
  int keep = socks_name(&s, "a.wild.test", (uint16_t) up_port, &rep2);
  int fd = socks_name(&s, "allowed.test", (uint16_t) up_port, &rep);
  ok(rep == 0 && rep2 == 0 && echo_ok(fd, "up2", "before") && echo_ok(keep, "up2", "keep"), "two tunnels open");
  corral_net_policy_t *p = policy("{\"mode\":\"allowlist\",\"allow\":[\"*.wild.test\",\"127.0.0.0/8\"]}");
  ok(corral_proxy_set_policy(proxy, s.id, p, &err) == 0, "policy changed (%s)", corral_error_message(err));
  ok(closes_within(fd, 2000), "the tunnel to a destination no longer allowed is closed at once");
  ok(echo_ok(keep, "", "still"), "the tunnel still allowed stays open");
  json_t *a = audit_next(s.id, &mark);
  check_audit(a, "policy change", "socks5", "allowed.test", "127.0.0.2", false, "deny not listed");
  ok(a && strcmp(jstr(a, "error"), "policy changed") == 0 && jint(a, "bytes_up") == 6, "audited as policy changed");
  json_decref(a);
  close(fd);
  fd = socks_name(&s, "allowed.test", (uint16_t) up_port, &rep);
  is_int(rep, 2, "new connections follow the new policy");
  close(fd);
  close(keep);
  corral_net_policy_unref(p);
  ok(corral_proxy_set_policy(proxy, "no-such-sandbox", p, &err) < 0 && corral_error_status(err) == ENOENT,
     "set_policy on an unknown sandbox: ENOENT");
  corral_error_release(&err);
  corral_proxy_remove(proxy, s.id);
}

static void test_failures_and_limits(void)
{
  struct sbx s;
  char req[512], resp[4096];
  size_t mark = audit_mark();
  int free_port;
  /* a port nothing listens on: bind then close */
  int tmp = listen_on("127.0.0.2", 0, &free_port);
  close(tmp);
  if (!add_sandbox(&s, "sb-fail", allow_json))
    return;
  snprintf(req, sizeof(req), "GET http://allowed.test:%d/ HTTP/1.1\r\nHost: allowed.test:%d\r\n\r\n", free_port,
           free_port);
  http_exchange(&s, req, resp, sizeof(resp));
  ok(strncmp(resp, "HTTP/1.1 502", 12) == 0 && strstr(resp, "Connection refused"), "connection refused: 502 (%s)",
     line1(resp));
  json_decref(audit_next(s.id, &mark));
  int rep, fd = socks_name(&s, "allowed.test", (uint16_t) free_port, &rep);
  is_int(rep, 5, "connection refused over SOCKS5: reply 0x05");
  close(fd);
  json_decref(audit_next(s.id, &mark));

  http_exchange(&s, "GET /relative HTTP/1.1\r\nHost: x\r\n\r\n", resp, sizeof(resp));
  ok(strncmp(resp, "HTTP/1.1 400", 12) == 0, "origin-form request to the proxy: 400");
  json_decref(audit_next(s.id, &mark));
  http_exchange(&s, "NOT HTTP AT ALL\r\n\r\n", resp, sizeof(resp));
  ok(strncmp(resp, "HTTP/1.1 400", 12) == 0, "garbage: 400");
  json_decref(audit_next(s.id, &mark));

  /* a head that never ends is bounded */
  fd = dial(s.http_port);
  char big[2048];
  memset(big, 'a', sizeof(big));
  memcpy(big, "GET http://allowed.test/ HTTP/1.1\r\nX: ", 38);
  for (int i = 0; i < 10; i++)
    send(fd, big, sizeof(big), MSG_NOSIGNAL);
  read_to_eof(fd, resp, sizeof(resp));
  ok(strncmp(resp, "HTTP/1.1 431", 12) == 0, "a head over 16 KiB: 431");
  close(fd);
  json_decref(audit_next(s.id, &mark));

  /* a handshake that stalls is timed out (the test proxy uses 1 s) */
  fd = dial(s.socks_port);
  send(fd, "\x05\x01", 2, MSG_NOSIGNAL);
  uint64_t t0 = (uint64_t) time(NULL);
  ok(closes_within(fd, 4000), "a stalled SOCKS handshake is closed");
  ok((uint64_t) time(NULL) - t0 <= 3, "within the handshake timeout");
  close(fd);
  json_t *a = audit_next(s.id, &mark);
  ok(a && strcmp(jstr(a, "error"), "handshake timeout") == 0, "stalled handshake audited (%s)", a ? jstr(a, "error") : "");
  json_decref(a);

  corral_proxy_stats_t st;
  ok(corral_proxy_stats(proxy, s.id, &st) == 0 && st.connections_failed >= 5 && st.connections_allowed == 0,
     "per-sandbox stats: %llu failed, %llu allowed", (unsigned long long) st.connections_failed,
     (unsigned long long) st.connections_allowed);
  is_int(corral_proxy_remove(proxy, s.id), 0, "remove");
  is_int(corral_proxy_remove(proxy, s.id), -ENOENT, "remove twice: ENOENT");
  ok(corral_proxy_stats(proxy, s.id, &st) == -ENOENT, "stats of a removed sandbox: ENOENT");
  ok(dial(s.http_port) < 0, "a removed sandbox's listener is closed");
}

static void test_connection_limit(const char *resolv)
{
  corral_proxy_t *small = NULL;
  corral_error_t err = NULL;
  corral_proxy_options_t o = { .resolver_file = resolv, .audit = on_audit, .max_connections = 2 };
  if (!ok(corral_proxy_new(&o, &small, &err) == 0, "second proxy (%s)", corral_error_message(err)))
    return;
  corral_proxy_t *saved = proxy;
  struct sbx s;
  size_t mark = audit_mark();
  proxy = small;
  if (add_sandbox(&s, "sb-limit", allow_json))
    {
      int a = dial(s.http_port), b = dial(s.http_port);
      usleep(100000);
      int c = dial(s.http_port);
      ok(closes_within(c, 2000), "the third connection over a limit of 2 is closed");
      json_t *r = audit_next(s.id, &mark);
      ok(r && strcmp(jstr(r, "rule"), "deny connection limit") == 0, "and audited (%s)", r ? jstr(r, "rule") : "");
      json_decref(r);
      corral_proxy_stats_t st;
      corral_proxy_stats(proxy, NULL, &st);
      ok(st.connections_denied == 1 && st.connections_active == 2, "proxy stats: 1 denied, 2 active");
      close(a);
      close(b);
      close(c);
    }
  proxy = saved;
  corral_proxy_stop(small);     /* stops with connections open */
  ok(1, "a proxy stops with open connections");
  corral_error_release(&err);
}

static void test_api_errors(void)
{
  corral_error_t err = NULL;
  corral_net_policy_t *p = policy("{\"mode\":\"open\"}");
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ok(corral_proxy_add(proxy, "x", fd, -1, p, &err) < 0 && corral_error_status(err) == EINVAL,
     "a socket that does not listen is refused (%s)", corral_error_message(err));
  corral_error_release(&err);
  close(fd);
  ok(corral_proxy_add(proxy, "", -1, -1, p, &err) < 0, "empty id refused");
  corral_error_release(&err);
  struct sbx s;
  add_sandbox(&s, "dup", "{\"mode\":\"open\"}");
  int h = listen_on("127.0.0.1", 0, NULL);
  ok(corral_proxy_add(proxy, "dup", h, -1, p, &err) < 0 && corral_error_status(err) == EEXIST, "duplicate id: EEXIST");
  corral_error_release(&err);
  close(h);
  corral_proxy_remove(proxy, "dup");
  corral_proxy_options_t o = { .resolver_file = "/nonexistent/resolv" };
  corral_proxy_t *bad = NULL;
  ok(corral_proxy_new(&o, &bad, &err) < 0 && corral_error_status(err) == ENOENT && bad == NULL,
     "missing resolver file: %s", corral_error_message(err));
  corral_error_release(&err);
  corral_net_policy_unref(p);
}

static void test_proxy(void)
{
  char dir[] = "/tmp/corral-test-net-XXXXXX", resolv[64];
  if (mkdtemp(dir) == NULL || !start_upstreams())
    {
      skip(1, "cannot set up loopback upstreams on 127.0.0.2/127.0.0.3");
      return;
    }
  snprintf(resolv, sizeof(resolv), "%s/resolv", dir);
  FILE *f = fopen(resolv, "w");
  fprintf(f, "# test names: 127.0.0.2 and 127.0.0.3 stand in for the internet\n"
             "allowed.test 127.0.0.2\nunlisted.test 127.0.0.2\na.wild.test 127.0.0.2\nwild.test 127.0.0.2\n"
             "private.test 127.0.0.3\nrebind.test 127.0.0.2 127.0.0.3\n");
  fclose(f);
  snprintf(allow_json, sizeof(allow_json),
           "{\"mode\":\"allowlist\",\"allow\":[\"allowed.test\",\"*.wild.test\",\"127.0.0.0/8\"]}");
  audits = json_array();
  corral_error_t err = NULL;
  corral_proxy_options_t o = { .resolver_file = resolv, .audit = on_audit, .handshake_timeout_ms = 1000,
                               .connect_timeout_ms = 2000 };
  if (!ok(corral_proxy_new(&o, &proxy, &err) == 0, "proxy started (%s)", corral_error_message(err)))
    return;
  test_http_allowed();
  test_connect_and_socks_allowed();
  test_denials();
  test_rebinding();
  test_modes();
  test_set_policy();
  test_failures_and_limits();
  test_connection_limit(resolv);
  test_api_errors();
  corral_proxy_stats_t st;
  corral_proxy_stats(proxy, NULL, &st);
  ok(st.connections_allowed >= 10 && st.connections_denied >= 10 && st.bytes_up > 0 && st.bytes_down > 0,
     "proxy totals: %llu allowed, %llu denied, %llu failed, %llu up, %llu down",
     (unsigned long long) st.connections_allowed, (unsigned long long) st.connections_denied,
     (unsigned long long) st.connections_failed, (unsigned long long) st.bytes_up, (unsigned long long) st.bytes_down);
  corral_proxy_stop(proxy);
  ok(!audit_sandbox_mismatch, "every audit record names the sandbox it was reported for");
  stop_upstreams();
  json_decref(audits);
  unlink(resolv);
  rmdir(dir);
}

int main(void)
{
  /* The test's own clients and servers write to sockets whose peer may
   * have gone (that is what some checks provoke): an error, not a signal. */
  signal(SIGPIPE, SIG_IGN);
  test_rules();
  test_policy_json();
  test_checks();
  test_socks_parser();
  test_sni_parser();
  test_http_head();
  test_resolver_file();
  test_proxy();
  return done_testing();
}
