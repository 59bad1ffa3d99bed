/* Network policies: parsing rules, and deciding whether a connection may be
 * made.  The semantics are specified in docs/network.md; the comments here
 * give the reasons for the security-relevant choices. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include "net.h"
#include "../common/utils.h"

struct rule
{
  bool is_ip;
  bool wildcard;                /* "*.suffix": name holds the suffix */
  char name[CORRAL__NAME_MAX];
  struct corral__addr net;
  unsigned prefix;
  uint16_t port;                /* 0: any port */
  char text[CORRAL_NET_RULE_MAX + 1]; /* canonical form */
};

struct corral_net_policy
{
  int refs;
  corral_net_mode_t mode;
  size_t n, cap;
  struct rule *rules;
};

static const char *const mode_names[] = { "none", "allowlist", "open" };

int corral_net_mode_parse(const char *s, corral_net_mode_t *out, corral_error_t *err)
{
  for (int i = 0; i < 3; i++)
    if (s && strcmp(s, mode_names[i]) == 0)
      {
        *out = (corral_net_mode_t) i;
        return 0;
      }
  return corral_error_set(err, EINVAL, "invalid network mode \"%s\" (expected none, allowlist or open)",
                          s ? s : "");
}

const char *corral_net_mode_name(corral_net_mode_t mode)
{
  return (unsigned) mode < 3 ? mode_names[mode] : "?";
}

int corral_net_policy_new(corral_net_mode_t mode, corral_net_policy_t **out, corral_error_t *err)
{
  if ((unsigned) mode > CORRAL_NET_OPEN)
    return corral_error_set(err, EINVAL, "invalid network mode %d", (int) mode);
  corral_net_policy_t *p = calloc(1, sizeof(*p));
  if (p == NULL)
    return corral_error_set(err, ENOMEM, "allocating a network policy");
  p->refs = 1;
  p->mode = mode;
  *out = p;
  return 0;
}

corral_net_policy_t *corral_net_policy_ref(corral_net_policy_t *p)
{
  if (p)
    __atomic_add_fetch(&p->refs, 1, __ATOMIC_RELAXED);
  return p;
}

void corral_net_policy_unref(corral_net_policy_t *p)
{
  if (p == NULL || __atomic_sub_fetch(&p->refs, 1, __ATOMIC_ACQ_REL) != 0)
    return;
  free(p->rules);
  free(p);
}

corral_net_mode_t corral_net_policy_mode(const corral_net_policy_t *p)
{
  return p->mode;
}

size_t corral_net_policy_rule_count(const corral_net_policy_t *p)
{
  return p->n;
}

/* ---- parsing one rule ---- */

static bool parse_port(const char *s, uint16_t *port)
{
  size_t n = strlen(s);
  unsigned v = 0;
  if (n == 0 || n > 5)
    return false;
  for (size_t i = 0; i < n; i++)
    {
      if (s[i] < '0' || s[i] > '9')
        return false;
      v = v * 10 + (unsigned) (s[i] - '0');
    }
  if (v == 0 || v > 65535)
    return false;
  *port = (uint16_t) v;
  return true;
}

/* "addr" or "addr/prefix" (no brackets, no port) into an IP rule. */
static bool parse_ip_part(const char *s, struct rule *r, const char **why)
{
  char addr[INET6_ADDRSTRLEN + 1];
  const char *slash = strchr(s, '/');
  size_t alen = slash ? (size_t) (slash - s) : strlen(s);
  bool v6_text = memchr(s, ':', alen) != NULL;

  if (alen == 0 || alen >= sizeof(addr))
    return (*why = "not an IP address"), false;
  memcpy(addr, s, alen);
  addr[alen] = '\0';
  if (!corral__addr_parse(addr, &r->net) || (v6_text && addr[0] == '['))
    return (*why = "not an IP address"), false;
  unsigned bits = v6_text ? 128 : 32, prefix = bits;
  if (slash)
    {
      const char *q = slash + 1;
      size_t qn = strlen(q);
      if (qn == 0 || qn > 3 || strspn(q, "0123456789") != qn || (qn > 1 && q[0] == '0'))
        return (*why = "invalid prefix length"), false;
      prefix = (unsigned) atoi(q);
      if (prefix > bits)
        return (*why = "prefix length too long"), false;
    }
  if (v6_text && r->net.family == AF_INET)
    {
      /* ::ffff:a.b.c.d/N: the mapped block is the IPv4 block /N-96. */
      if (prefix < 96)
        return (*why = "prefix spans IPv4-mapped and other IPv6 addresses"), false;
      prefix -= 96;
    }
  r->prefix = prefix;
  r->is_ip = true;
  /* A block with host bits set ("10.0.0.1/8") is almost always a typo for
   * something else: refuse it rather than guess. */
  struct corral__addr masked = r->net;
  unsigned full = r->net.family == AF_INET ? 4 : 16;
  for (unsigned i = 0; i < full; i++)
    {
      unsigned keep = prefix >= (i + 1) * 8 ? 8 : prefix > i * 8 ? prefix - i * 8 : 0;
      masked.b[i] &= (uint8_t) (keep ? 0xff << (8 - keep) : 0);
    }
  if (memcmp(masked.b, r->net.b, sizeof(masked.b)) != 0)
    return (*why = "host bits set after the prefix"), false;
  return true;
}

static void rule_canonical(struct rule *r)
{
  char host[INET6_ADDRSTRLEN + 8], port[8] = "";
  bool v6 = r->is_ip && r->net.family == AF_INET6;
  if (r->port)
    snprintf(port, sizeof(port), ":%u", r->port);
  if (!r->is_ip)
    {
      snprintf(r->text, sizeof(r->text), "%s%s%s", r->wildcard ? "*." : "", r->name, port);
      return;
    }
  corral__addr_format(&r->net, host, sizeof(host));
  unsigned bits = v6 ? 128 : 32;
  char pfx[8] = "";
  if (r->prefix != bits)
    snprintf(pfx, sizeof(pfx), "/%u", r->prefix);
  if (v6 && r->port)
    snprintf(r->text, sizeof(r->text), "[%s%s]%s", host, pfx, port);
  else
    snprintf(r->text, sizeof(r->text), "%s%s%s", host, pfx, port);
}

static bool parse_rule(const char *s, struct rule *r, const char **why)
{
  char host[CORRAL_NET_RULE_MAX + 1];
  const char *port = NULL;
  size_t n = strlen(s);

  memset(r, 0, sizeof(*r));
  if (n == 0)
    return (*why = "empty rule"), false;
  if (n > CORRAL_NET_RULE_MAX)
    return (*why = "rule too long"), false;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char) s[i] <= ' ' || (unsigned char) s[i] >= 0x7f)
      return (*why = "spaces or control characters"), false;
  if (s[0] == '[')
    {
      const char *close = strchr(s, ']');
      if (close == NULL || (close[1] != '\0' && close[1] != ':'))
        return (*why = "unbalanced brackets"), false;
      memcpy(host, s + 1, (size_t) (close - s - 1));
      host[close - s - 1] = '\0';
      if (!strchr(host, ':'))
        return (*why = "brackets around something that is not an IPv6 address"), false;
      if (close[1] == ':')
        port = close + 2;
    }
  else
    {
      const char *colon = strchr(s, ':');
      if (colon && strchr(colon + 1, ':'))
        colon = NULL;           /* bare IPv6: no port without brackets */
      size_t hn = colon ? (size_t) (colon - s) : n;
      memcpy(host, s, hn);
      host[hn] = '\0';
      if (colon)
        port = colon + 1;
    }
  if (port && !parse_port(port, &r->port))
    return (*why = "invalid port (1-65535)"), false;
  if (strchr(host, ':') || strchr(host, '/') || corral__addr_parse(host, &r->net))
    {
      if (!parse_ip_part(host, r, why))
        return false;
    }
  else if (!corral__name_normalize(host, strlen(host), true, r->name))
    return (*why = "neither an IP address, a CIDR block nor a host name"), false;
  else if (r->name[0] == '*')
    {
      r->wildcard = true;
      memmove(r->name, r->name + 2, strlen(r->name + 2) + 1);
    }
  rule_canonical(r);
  return true;
}

int corral_net_policy_add_rule(corral_net_policy_t *p, const char *rule, corral_error_t *err)
{
  struct rule r;
  const char *why = NULL;

  if (p->mode == CORRAL_NET_NONE)
    return corral_error_set(err, EINVAL, "network mode none takes no allow rules");
  if (!parse_rule(rule, &r, &why))
    return corral_error_set(err, EINVAL, "invalid network rule \"%.*s\": %s", CORRAL_NET_RULE_MAX, rule, why);
  for (size_t i = 0; i < p->n; i++)
    if (strcmp(p->rules[i].text, r.text) == 0)
      return 0;                 /* the same rule twice is the rule once */
  if (p->n >= CORRAL_NET_MAX_RULES)
    return corral_error_set(err, E2BIG, "more than %d network rules", CORRAL_NET_MAX_RULES);
  if (p->n == p->cap)
    {
      size_t cap = p->cap ? p->cap * 2 : 8;
      struct rule *v = realloc(p->rules, cap * sizeof(*v));
      if (v == NULL)
        return corral_error_set(err, ENOMEM, "allocating network rules");
      p->rules = v;
      p->cap = cap;
    }
  p->rules[p->n++] = r;
  return 0;
}

/* ---- JSON ---- */

static int policy_from_json(json_t *o, corral_net_policy_t **out, corral_error_t *err)
{
  const char *key;
  json_t *v, *mode = NULL, *allow = NULL;
  corral_net_mode_t m;
  corral_net_policy_t *p = NULL;

  if (!json_is_object(o))
    return corral_error_set(err, EINVAL, "the network policy must be a JSON object");
  json_object_foreach (o, key, v)
    {
      if (strcmp(key, "mode") == 0)
        mode = v;
      else if (strcmp(key, "allow") == 0)
        allow = v;
      else
        return corral_error_set(err, EINVAL, "unknown key \"%s\" in the network policy (expected mode, allow)", key);
    }
  if (!json_is_string(mode))
    return corral_error_set(err, EINVAL, "the network policy needs \"mode\": \"none\", \"allowlist\" or \"open\"");
  if (corral_net_mode_parse(json_string_value(mode), &m, err) < 0)
    return -EINVAL;
  if (allow && !json_is_array(allow))
    return corral_error_set(err, EINVAL, "\"allow\" must be an array of strings");
  if (m == CORRAL_NET_NONE && json_array_size(allow) > 0)
    return corral_error_set(err, EINVAL, "network mode none takes no allow rules");
  if (corral_net_policy_new(m, &p, err) < 0)
    return -ENOMEM;
  size_t i;
  json_array_foreach (allow, i, v)
    {
      if (!json_is_string(v))
        {
          corral_net_policy_unref(p);
          return corral_error_set(err, EINVAL, "allow[%zu] is not a string", i);
        }
      if (strlen(json_string_value(v)) != json_string_length(v))
        {
          corral_net_policy_unref(p);
          return corral_error_set(err, EINVAL, "allow[%zu] holds a NUL character", i);
        }
      if (corral_net_policy_add_rule(p, json_string_value(v), err) < 0)
        {
          corral_net_policy_unref(p);
          return corral_error_wrap(err, "allow[%zu]", i);
        }
    }
  *out = p;
  return 0;
}

int corral_net_policy_parse_json(const char *json, size_t len, corral_net_policy_t **out, corral_error_t *err)
{
  json_error_t je;
  json_t *o = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
  if (o == NULL)
    return corral_error_set(err, EINVAL, "the network policy is not valid JSON: %s", je.text);
  int r = policy_from_json(o, out, err);
  json_decref(o);
  return r;
}

char *corral_net_policy_to_json(const corral_net_policy_t *p)
{
  json_t *allow = json_array();
  for (size_t i = 0; allow && i < p->n; i++)
    json_array_append_new(allow, json_string(p->rules[i].text));
  json_t *o = json_pack("{s:s, s:o*}", "mode", corral_net_mode_name(p->mode), "allow", allow);
  if (o == NULL)
    return NULL;
  char *s = json_dumps(o, JSON_COMPACT);
  json_decref(o);
  return s;
}

/* ---- checks ---- */

static bool port_ok(const struct rule *r, uint16_t port)
{
  return r->port == 0 || r->port == port;
}

static const struct rule *find_name_rule(const corral_net_policy_t *p, const char *name, uint16_t port)
{
  size_t n = strlen(name);
  for (size_t i = 0; i < p->n; i++)
    {
      const struct rule *r = &p->rules[i];
      if (r->is_ip || !port_ok(r, port))
        continue;
      size_t rn = strlen(r->name);
      if (!r->wildcard && strcmp(name, r->name) == 0)
        return r;
      /* "*.example.com": a.example.com and a.b.example.com, never
       * example.com itself nor badexample.com. */
      if (r->wildcard && n > rn + 1 && name[n - rn - 1] == '.' && strcmp(name + n - rn, r->name) == 0)
        return r;
    }
  return NULL;
}

static const struct rule *find_ip_rule(const corral_net_policy_t *p, const struct corral__addr *a, uint16_t port)
{
  for (size_t i = 0; i < p->n; i++)
    if (p->rules[i].is_ip && port_ok(&p->rules[i], port) && corral__addr_in(a, &p->rules[i].net, p->rules[i].prefix))
      return &p->rules[i];
  return NULL;
}

/* A rule lifts the ban on a special range only if it lies inside that
 * range: "10.0.0.0/8" or "10.1.2.3" opens (part of) 10/8, but "0.0.0.0/0",
 * written to mean "any public address", does not open every private
 * network and the metadata service at once. */
static const struct rule *find_exempting_rule(const corral_net_policy_t *p, const struct corral__addr *a,
                                              uint16_t port, const struct corral__addr *range, unsigned range_prefix)
{
  for (size_t i = 0; i < p->n; i++)
    {
      const struct rule *r = &p->rules[i];
      if (r->is_ip && port_ok(r, port) && corral__addr_in(a, &r->net, r->prefix) && r->prefix >= range_prefix
          && corral__addr_in(&r->net, range, range_prefix))
        return r;
    }
  return NULL;
}

static void verdict(corral_net_verdict_t *v, bool allowed, const char *fmt, const char *a, const char *b)
{
  v->allowed = allowed;
  snprintf(v->rule, sizeof(v->rule), fmt, a, b);
}

/* The address connected to: special ranges are refused unless a rule
 * inside the range lists it.  Returns the exempting rule through *via. */
static bool check_address(const corral_net_policy_t *p, const struct corral__addr *a, uint16_t port,
                          const struct rule **via, corral_net_verdict_t *v)
{
  struct corral__addr range;
  unsigned prefix;
  const char *special = corral__special_range(a, &range, &prefix);
  *via = NULL;
  if (special == NULL)
    return true;
  *via = find_exempting_rule(p, a, port, &range, prefix);
  if (*via == NULL)
    {
      verdict(v, false, "deny private %s%s", special, "");
      return false;
    }
  return true;
}

void corral_net_policy_check(const corral_net_policy_t *p, const char *host, uint16_t port,
                             const struct sockaddr *addr, corral_net_verdict_t *v)
{
  struct corral__addr dest_ip, conn_ip;
  char name[CORRAL__NAME_MAX];
  const struct rule *by = NULL, *via = NULL;
  bool literal = corral__addr_parse(host, &dest_ip);

  if (p->mode == CORRAL_NET_NONE)
    return verdict(v, false, "deny mode none%s%s", "", "");
  if (!literal && !corral__name_normalize(host, strlen(host), false, name))
    return verdict(v, false, "deny invalid destination%s%s", "", "");
  if (port == 0)
    return verdict(v, false, "deny invalid port%s%s", "", "");
  /* 1. The destination as asked: a name needs a name rule, an IP literal an
   * IP rule (a name rule never lets an address in, nor the reverse). */
  if (p->mode == CORRAL_NET_ALLOWLIST)
    {
      by = literal ? find_ip_rule(p, &dest_ip, port) : find_name_rule(p, name, port);
      if (by == NULL)
        return verdict(v, false, "deny not listed%s%s", "", "");
    }
  /* 2. The address actually connected to (an IP literal connects to
   * itself): never a special range unless listed. */
  if (addr && !corral__addr_from_sockaddr(addr, &conn_ip))
    return verdict(v, false, "deny invalid address%s%s", "", "");
  if (addr && literal && (conn_ip.family != dest_ip.family || memcmp(conn_ip.b, dest_ip.b, 16) != 0))
    return verdict(v, false, "deny address mismatch%s%s", "", "");
  if (addr || literal)
    {
      if (!check_address(p, addr ? &conn_ip : &dest_ip, port, &via, v))
        return;
    }
  if (by == NULL && via == NULL)
    verdict(v, true, "allow mode open%s%s", "", "");
  else if (by == NULL || via == NULL || by == via)
    verdict(v, true, "allow %s%s", by ? by->text : via->text, "");
  else
    verdict(v, true, "allow %s via %s", by->text, via->text);
}

bool corral__policy_dns_allows(const corral_net_policy_t *p, const char *name, const struct sockaddr *addr)
{
  corral_net_verdict_t v;
  if (p->mode == CORRAL_NET_OPEN)
    return corral_net_policy_check(p, name, 443, addr, &v), v.allowed;
  /* A name is answered when some connection to it would be allowed: try
   * each name rule's own port (443 for a rule without one). */
  for (size_t i = 0; i < p->n; i++)
    if (!p->rules[i].is_ip)
      {
        corral_net_policy_check(p, name, p->rules[i].port ? p->rules[i].port : 443, addr, &v);
        if (v.allowed)
          return true;
      }
  return false;
}
