/* The in-sandbox DNS responder (include/corral/net.h, "DNS"): its query
 * parser and answer builder, then the responder itself over a UDP socket on
 * this machine's loopback standing in for a sandbox's 127.0.0.1:53, with
 * names from a resolver file (no real DNS). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <corral/net.h>
#include "net/net.h"
#include "tap.h"

static size_t query(uint8_t *b, uint16_t id, const char *name, uint16_t qtype, uint16_t qd)
{
  size_t n = 12;
  memset(b, 0, 12);
  b[0] = (uint8_t) (id >> 8), b[1] = (uint8_t) id, b[2] = 0x01, b[5] = (uint8_t) qd;
  for (const char *p = name; *p;)
    {
      size_t l = strcspn(p, ".");
      b[n++] = (uint8_t) l;
      memcpy(b + n, p, l);
      n += l;
      p += l + (p[l] == '.');
    }
  b[n++] = 0;
  b[n++] = (uint8_t) (qtype >> 8), b[n++] = (uint8_t) qtype, b[n++] = 0, b[n++] = 1;
  return n;
}

static void test_parser(void)
{
  uint8_t b[600], out[512];
  struct corral__dns_query q;
  size_t n = query(b, 0x4242, "API.Example.com", 1, 1);
  ok(corral__dns_parse_query(b, n, &q) == 0 && strcmp(q.name, "api.example.com") == 0 && q.qtype == 1
         && q.id == 0x4242 && q.rd,
     "a query parses, its name lower-cased");
  is_int(corral__dns_parse_query(b, 11, &q), -1, "shorter than a header");
  is_int(corral__dns_parse_query(b, n - 1, &q), -1, "a truncated question");
  n = query(b, 1, "x.test", 1, 2);
  is_int(corral__dns_parse_query(b, n, &q), -1, "two questions");
  n = query(b, 1, "x.test", 1, 1);
  b[2] |= 0x80;
  is_int(corral__dns_parse_query(b, n, &q), -1, "a response is not a query");
  n = query(b, 1, "x.test", 1, 1);
  b[12] = 0xc0;
  is_int(corral__dns_parse_query(b, n, &q), -1, "a compression pointer in the question");
  n = query(b, 1, "a\\x00b.test", 1, 1);
  b[14] = 0;
  is_int(corral__dns_parse_query(b, n, &q), -1, "a NUL inside a label");
  memset(b, 0, sizeof(b));
  is_int(corral__dns_parse_query(b, 600, &q), -1, "over 512 bytes");

  struct sockaddr_storage a[2] = { 0 };
  ((struct sockaddr_in *) &a[0])->sin_family = AF_INET;
  inet_pton(AF_INET, "203.0.113.7", &((struct sockaddr_in *) &a[0])->sin_addr);
  ((struct sockaddr_in6 *) &a[1])->sin6_family = AF_INET6;
  inet_pton(AF_INET6, "2001:db8::7", &((struct sockaddr_in6 *) &a[1])->sin6_addr);
  n = query(b, 7, "x.test", 1, 1);
  corral__dns_parse_query(b, n, &q);
  size_t m = corral__dns_answer(&q, 0, a, 2, out, sizeof(out));
  ok(m == n + 16 && out[0] == 0 && out[1] == 7 && (out[2] & 0x80) && out[7] == 1, "an A answer: one record");
  ok(memcmp(out + m - 4, &((struct sockaddr_in *) &a[0])->sin_addr, 4) == 0, "holding the IPv4 address");
  m = corral__dns_answer(&q, 3, a, 2, out, sizeof(out));
  ok(m == n && (out[3] & 0x0f) == 3 && out[7] == 0, "NXDOMAIN carries no record");
  is_int(corral__dns_answer(&q, 0, a, 2, out, 10), 0, "a buffer too small is refused");
}

/* Ask the responder on port; the answer's rcode and addresses. */
static int ask(uint16_t port, const char *name, uint16_t qtype, char *addrs, size_t size)
{
  uint8_t b[512], r[512];
  struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  size_t n = query(b, 0x99, name, qtype, 1);
  addrs[0] = '\0';
  sendto(fd, b, n, 0, (struct sockaddr *) &to, sizeof(to));
  struct pollfd p = { fd, POLLIN, 0 };
  ssize_t m = poll(&p, 1, 3000) == 1 ? recv(fd, r, sizeof(r), 0) : -1;
  close(fd);
  if (m < 12 || r[0] != 0 || r[1] != 0x99)
    return -1;
  size_t off = n, an = (size_t) r[7];
  for (size_t i = 0; i < an && off + 12 <= (size_t) m; i++)
    {
      size_t rdlen = (size_t) r[off + 11];
      char t[64];
      inet_ntop(rdlen == 4 ? AF_INET : AF_INET6, r + off + 12, t, sizeof(t));
      snprintf(addrs + strlen(addrs), size - strlen(addrs), "%s%s", addrs[0] ? "," : "", t);
      off += 12 + rdlen;
    }
  return r[3] & 0x0f;
}

static void test_responder(void)
{
  char dir[] = "/tmp/corral-test-dns-XXXXXX", file[80], got[256];
  corral_error_t err = NULL;
  corral_dns_t *dns = NULL;
  corral_net_policy_t *p = NULL, *none = NULL;
  if (!mkdtemp(dir))
    return (void) ok(false, "mkdtemp");
  snprintf(file, sizeof(file), "%s/hosts", dir);
  FILE *f = fopen(file, "w");
  fputs("api.test 203.0.113.7 2001:db8::7\nlocal.test 127.0.0.2\nmeta.test 169.254.169.254\n"
        "other.test 203.0.113.8\n", f);
  fclose(f);
  struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
  socklen_t al = sizeof(a);
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  bind(fd, (struct sockaddr *) &a, sizeof(a));
  getsockname(fd, (struct sockaddr *) &a, &al);
  uint16_t port = ntohs(a.sin_port);
  const char *json = "{\"mode\":\"allowlist\",\"allow\":[\"api.test\",\"local.test\",\"meta.test\",\"127.0.0.2\"]}";
  ok(corral_net_policy_parse_json(json, strlen(json), &p, &err) == 0, "a policy");
  ok(corral_dns_new(file, &dns, &err) == 0 && corral_dns_add(dns, "sb", fd, p, &err) == 0, "a responder (%s)",
     corral_error_message(err));
  is_int(ask(port, "api.test", 1, got, sizeof(got)), 0, "a listed name resolves");
  is_str(got, "203.0.113.7", "to its IPv4 address for A");
  is_int(ask(port, "API.test", 28, got, sizeof(got)), 0, "and for AAAA");
  is_str(got, "2001:db8::7", "to its IPv6 address");
  is_int(ask(port, "other.test", 1, got, sizeof(got)), 3, "an unlisted name: NXDOMAIN");
  is_int(ask(port, "meta.test", 1, got, sizeof(got)), 3, "a listed name on the metadata address: NXDOMAIN");
  is_int(ask(port, "local.test", 1, got, sizeof(got)), 0, "a private address listed by an IP rule resolves");
  is_str(got, "127.0.0.2", "to it");
  ok(corral_net_policy_parse_json("{\"mode\":\"none\"}", 15, &none, &err) == 0
         && corral_dns_set_policy(dns, "sb", none, &err) == 0, "the policy changes to none");
  is_int(ask(port, "api.test", 1, got, sizeof(got)), 3, "then nothing resolves");
  ok(corral_dns_set_policy(dns, "nope", none, &err) < 0 && corral_error_status(err) == ENOENT, "unknown sandbox");
  corral_error_release(&err);
  corral_dns_remove(dns, "sb");
  is_int(ask(port, "api.test", 1, got, sizeof(got)), -1, "a removed sandbox gets no answer");
  corral_dns_stop(dns);
  corral_net_policy_unref(p);
  corral_net_policy_unref(none);
  unlink(file);
  rmdir(dir);
}

int main(void)
{
  test_parser();
  test_responder();
  return done_testing();
}
