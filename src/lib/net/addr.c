/* Addresses, host names and the special-purpose ranges the proxy refuses to
 * reach unless a rule lists them. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include "net.h"

static const uint8_t v4_mapped_prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

/* ::ffff:a.b.c.d reaches a.b.c.d: keep only the IPv4 form, so that a rule
 * or a private range written in IPv4 covers the mapped spelling too. */
static void addr_unmap(struct corral__addr *a)
{
  if (a->family == AF_INET6 && memcmp(a->b, v4_mapped_prefix, 12) == 0)
    {
      uint8_t v4[4];
      memcpy(v4, a->b + 12, 4);
      memset(a->b, 0, sizeof(a->b));
      memcpy(a->b, v4, 4);
      a->family = AF_INET;
    }
}

bool corral__addr_parse(const char *s, struct corral__addr *out)
{
  char tmp[INET6_ADDRSTRLEN + 2];
  size_t n = strlen(s);

  memset(out, 0, sizeof(*out));
  if (inet_pton(AF_INET, s, out->b) == 1)
    {
      out->family = AF_INET;
      return true;
    }
  if (n >= 2 && s[0] == '[' && s[n - 1] == ']')
    {
      if (n - 2 >= sizeof(tmp))
        return false;
      memcpy(tmp, s + 1, n - 2);
      tmp[n - 2] = '\0';
      s = tmp;
    }
  if (inet_pton(AF_INET6, s, out->b) != 1)
    return false;
  out->family = AF_INET6;
  addr_unmap(out);
  return true;
}

bool corral__addr_from_sockaddr(const struct sockaddr *sa, struct corral__addr *out)
{
  memset(out, 0, sizeof(*out));
  if (sa->sa_family == AF_INET)
    {
      memcpy(out->b, &((const struct sockaddr_in *) sa)->sin_addr, 4);
      out->family = AF_INET;
      return true;
    }
  if (sa->sa_family == AF_INET6)
    {
      memcpy(out->b, &((const struct sockaddr_in6 *) sa)->sin6_addr, 16);
      out->family = AF_INET6;
      addr_unmap(out);
      return true;
    }
  return false;
}

void corral__addr_format(const struct corral__addr *a, char *buf, size_t size)
{
  if (inet_ntop(a->family, a->b, buf, (socklen_t) size) == NULL && size > 0)
    buf[0] = '\0';
}

void corral__sockaddr_format(const struct sockaddr *sa, char *buf, size_t size)
{
  struct corral__addr a;
  if (!corral__addr_from_sockaddr(sa, &a))
    {
      snprintf(buf, size, "?");
      return;
    }
  /* The address as connected to: keep the mapped spelling visible. */
  if (sa->sa_family == AF_INET6)
    {
      if (inet_ntop(AF_INET6, &((const struct sockaddr_in6 *) sa)->sin6_addr, buf, (socklen_t) size) == NULL)
        snprintf(buf, size, "?");
      return;
    }
  corral__addr_format(&a, buf, size);
}

bool corral__addr_in(const struct corral__addr *a, const struct corral__addr *net, unsigned prefix)
{
  unsigned bits = a->family == AF_INET ? 32 : 128;
  if (a->family != net->family || prefix > bits)
    return false;
  unsigned full = prefix / 8, rest = prefix % 8;
  if (memcmp(a->b, net->b, full) != 0)
    return false;
  if (rest == 0)
    return true;
  uint8_t mask = (uint8_t) (0xff << (8 - rest));
  return (a->b[full] & mask) == (net->b[full] & mask);
}

static bool label_char(char c)
{
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

bool corral__name_normalize(const char *in, size_t len, bool allow_wildcard, char out[CORRAL__NAME_MAX])
{
  size_t o = 0, label = 0;
  bool digits_only = true;

  if (len > 0 && in[len - 1] == '.')
    len--;                      /* "example.com." is "example.com" */
  if (len == 0 || len >= CORRAL__NAME_MAX)
    return false;
  if (allow_wildcard && len > 2 && in[0] == '*' && in[1] == '.')
    {
      out[o++] = '*';
      out[o++] = '.';
      in += 2;
      len -= 2;
    }
  for (size_t i = 0; i < len; i++)
    {
      char c = (char) tolower((unsigned char) in[i]);
      if (c == '.')
        {
          if (label == 0)
            return false;       /* empty label: "a..b", ".a" */
          label = 0;
          digits_only = true;
        }
      else if (!label_char(c) || ++label > 63)
        return false;
      else if (!(c >= '0' && c <= '9'))
        digits_only = false;
      out[o++] = c;
    }
  /* An all-digit last label would make "10.1" or "2130706433" a "name"
   * that getaddrinfo() turns into an address behind our back. */
  if (label == 0 || digits_only)
    return false;
  out[o] = '\0';
  return true;
}

/* Special-purpose ranges: private (RFC 1918, RFC 4193), shared (RFC 6598),
 * loopback, link-local (where cloud metadata services live), multicast,
 * reserved and unspecified.  Reaching them from a sandbox would expose the
 * host and its neighbours, so they are refused unless listed explicitly. */
struct special
{
  const char *text;
  int family;
  uint8_t b[16];
  unsigned prefix;
};

static const struct special specials[] = {
  { "0.0.0.0/8", AF_INET, { 0 }, 8 },
  { "10.0.0.0/8", AF_INET, { 10 }, 8 },
  { "100.64.0.0/10", AF_INET, { 100, 64 }, 10 },
  { "127.0.0.0/8", AF_INET, { 127 }, 8 },
  { "169.254.0.0/16", AF_INET, { 169, 254 }, 16 },
  { "172.16.0.0/12", AF_INET, { 172, 16 }, 12 },
  { "192.168.0.0/16", AF_INET, { 192, 168 }, 16 },
  { "224.0.0.0/4", AF_INET, { 224 }, 4 },
  { "255.255.255.255/32", AF_INET, { 255, 255, 255, 255 }, 32 },
  { "240.0.0.0/4", AF_INET, { 240 }, 4 },
  { "::/128", AF_INET6, { 0 }, 128 },
  { "::1/128", AF_INET6, { [15] = 1 }, 128 },
  /* IPv4-compatible addresses (deprecated) embed an IPv4 address. */
  { "::/96", AF_INET6, { 0 }, 96 },
  { "fc00::/7", AF_INET6, { 0xfc }, 7 },
  { "fe80::/10", AF_INET6, { 0xfe, 0x80 }, 10 },
  { "fec0::/10", AF_INET6, { 0xfe, 0xc0 }, 10 },
  { "ff00::/8", AF_INET6, { 0xff }, 8 },
};

static const char *special_v4(const struct corral__addr *a, struct corral__addr *net, unsigned *prefix)
{
  for (size_t i = 0; i < sizeof(specials) / sizeof(*specials); i++)
    {
      struct corral__addr n = { .family = specials[i].family };
      memcpy(n.b, specials[i].b, sizeof(n.b));
      if (corral__addr_in(a, &n, specials[i].prefix))
        {
          *net = n;
          *prefix = specials[i].prefix;
          return specials[i].text;
        }
    }
  return NULL;
}

const char *corral__special_range(const struct corral__addr *a, struct corral__addr *net, unsigned *prefix)
{
  const char *r = special_v4(a, net, prefix);
  if (r != NULL || a->family != AF_INET6)
    return r;
  /* NAT64 (64:ff9b::/96) and 6to4 (2002::/16) addresses are translated to
   * the IPv4 address they embed by a gateway that may be on this host's
   * path: judge them by that address, and report the IPv6 range. */
  struct corral__addr v4 = { .family = AF_INET };
  static const uint8_t nat64[12] = { 0, 0x64, 0xff, 0x9b };
  if (memcmp(a->b, nat64, 12) == 0)
    {
      memcpy(v4.b, a->b + 12, 4);
      if (special_v4(&v4, net, prefix) != NULL)
        {
          *net = *a;
          memset(net->b + 12, 0, 4);
          *prefix = 96;
          return "64:ff9b::/96";
        }
    }
  if (a->b[0] == 0x20 && a->b[1] == 0x02)
    {
      memcpy(v4.b, a->b + 2, 4);
      if (special_v4(&v4, net, prefix) != NULL)
        {
          *net = (struct corral__addr) { .family = AF_INET6, .b = { 0x20, 0x02 } };
          *prefix = 16;
          return "2002::/16";
        }
    }
  return NULL;
}
