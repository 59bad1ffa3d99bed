/* libFuzzer target: network policies (src/lib/net/policy.c, addr.c).
 * The input is read three ways: as a JSON policy, as a list of rules (one
 * per line, the first byte choosing the mode), and as destinations to
 * check against that list.  Besides crashes, leaks and UB it checks:
 *   - success leaves no error, failure always fills one (status + message);
 *   - canonical forms are fixed points: a policy or rule printed and parsed
 *     again prints the same;
 *   - a verdict always has a rule text that starts with "allow " exactly
 *     when it allows, mode none allows nothing, and without any IP rule no
 *     check allows connecting to a special-purpose address. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <corral/net.h>
#include "net/net.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)

static void check_outcome(int r, corral_error_t *err)
{
  if (r == 0)
    CHECK(*err == NULL);
  else
    {
      CHECK(r < 0 && *err != NULL);
      CHECK(corral_error_status(*err) != 0 && corral_error_message(*err)[0] != '\0');
    }
  corral_error_release(err);
}

static void check_json_fixed_point(const char *text, size_t len)
{
  corral_net_policy_t *p = NULL, *q = NULL;
  corral_error_t err = NULL;
  int r = corral_net_policy_parse_json(text, len, &p, &err);
  check_outcome(r, &err);
  if (r < 0)
    return;
  char *a = corral_net_policy_to_json(p);
  CHECK(a != NULL);
  r = corral_net_policy_parse_json(a, strlen(a), &q, &err);
  check_outcome(r, &err);
  CHECK(r == 0);
  char *b = corral_net_policy_to_json(q);
  CHECK(b && strcmp(a, b) == 0);
  CHECK(corral_net_policy_rule_count(p) == corral_net_policy_rule_count(q));
  free(a);
  free(b);
  corral_net_policy_unref(p);
  corral_net_policy_unref(q);
}

/* An address from 17 bytes of input: family bit + 16 bytes. */
static void addr_from(const uint8_t *d, struct sockaddr_storage *ss)
{
  memset(ss, 0, sizeof(*ss));
  if (d[0] & 1)
    {
      ss->ss_family = AF_INET6;
      memcpy(&((struct sockaddr_in6 *) ss)->sin6_addr, d + 1, 16);
    }
  else
    {
      ss->ss_family = AF_INET;
      memcpy(&((struct sockaddr_in *) ss)->sin_addr, d + 1, 4);
    }
}

static void check_verdicts(const corral_net_policy_t *p, bool has_ip_rule, const char *host, const uint8_t *d, size_t n)
{
  struct sockaddr_storage ss;
  corral_net_verdict_t v;
  uint16_t port = n >= 2 ? (uint16_t) (d[0] << 8 | d[1]) : 443;
  corral_net_policy_check(p, host, port, NULL, &v);
  CHECK(v.rule[0] != '\0' && (strncmp(v.rule, "allow ", 6) == 0) == v.allowed);
  if (corral_net_policy_mode(p) == CORRAL_NET_NONE)
    CHECK(!v.allowed);
  if (n < 17)
    return;
  addr_from(d, &ss);
  corral_net_policy_check(p, host, port, (struct sockaddr *) &ss, &v);
  CHECK(v.rule[0] != '\0' && (strncmp(v.rule, "allow ", 6) == 0) == v.allowed);
  struct corral__addr a, net;
  unsigned prefix;
  CHECK(corral__addr_from_sockaddr((struct sockaddr *) &ss, &a));
  if (!has_ip_rule && corral__special_range(&a, &net, &prefix) != NULL)
    CHECK(!v.allowed);
  if (corral_net_policy_mode(p) == CORRAL_NET_NONE)
    CHECK(!v.allowed);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size == 0 || size > 4096)
    return 0;
  char *text = strndup((const char *) data, size);
  check_json_fixed_point((const char *) data, size);

  corral_net_policy_t *p = NULL;
  corral_error_t err = NULL;
  CHECK(corral_net_policy_new((corral_net_mode_t) (data[0] % 3), &p, &err) == 0);
  bool has_ip_rule = false;
  char *save = NULL;
  for (char *line = strtok_r(text + 1, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
    {
      int r = corral_net_policy_add_rule(p, line, &err);
      check_outcome(r, &err);
      if (r == 0)
        {
          /* the rule as printed is accepted again, and prints the same */
          char *j = corral_net_policy_to_json(p);
          corral_net_policy_t *q = NULL;
          CHECK(j && corral_net_policy_parse_json(j, strlen(j), &q, &err) == 0);
          char *k = corral_net_policy_to_json(q);
          CHECK(k && strcmp(j, k) == 0);
          free(j);
          free(k);
          corral_net_policy_unref(q);
          struct corral__addr a;
          has_ip_rule |= strchr(line, '/') || strchr(line, ':') || strchr(line, '[')
                         || corral__addr_parse(line, &a);
        }
    }
  /* every line is also a destination */
  free(text);
  text = strndup((const char *) data, size);
  save = NULL;
  for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
    check_verdicts(p, has_ip_rule, line, data, size);
  free(text);
  corral_net_policy_unref(p);
  return 0;
}
