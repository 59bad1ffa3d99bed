/* libFuzzer target: the DNS query parser and answer builder of the
 * in-sandbox DNS responder (src/lib/net/dns.c).  Besides crashes and UB it
 * checks their contract: an accepted query has a non-empty lower-case name
 * of legal characters and a question inside the input; its answer (with an
 * A and an AAAA address) echoes the id and the question, fits the buffer,
 * and holds only records of the type asked. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "net/net.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
  struct corral__dns_query q;
  uint8_t out[512];
  struct sockaddr_storage a[2];
  memset(a, 0, sizeof(a));
  ((struct sockaddr_in *) &a[0])->sin_family = AF_INET;
  ((struct sockaddr_in *) &a[0])->sin_addr.s_addr = htonl(0xcb007105);
  ((struct sockaddr_in6 *) &a[1])->sin6_family = AF_INET6;
  if (corral__dns_parse_query(d, n, &q) < 0)
    return 0;
  size_t len = strlen(q.name);
  CHECK(len > 0 && len < CORRAL__NAME_MAX);
  for (size_t i = 0; i < len; i++)
    CHECK(q.name[i] != '\0' && !(q.name[i] >= 'A' && q.name[i] <= 'Z'));
  CHECK(q.question == d + 12 && 12 + q.question_len <= n);
  for (int rcode = 0; rcode < 4; rcode += 3)
    {
      size_t m = corral__dns_answer(&q, rcode, a, 2, out, sizeof(out));
      CHECK(m >= 12 + q.question_len && m <= sizeof(out));
      CHECK(out[0] == d[0] && out[1] == d[1] && (out[3] & 0x0f) == rcode);
      CHECK(memcmp(out + 12, q.question, q.question_len) == 0);
      unsigned an = (unsigned) ((out[6] << 8) | out[7]);
      CHECK(rcode == 0 || an == 0);
      CHECK(an <= 1 && m == 12 + q.question_len + an * (12 + (q.qtype == 1 ? 4 : 16)));
    }
  return 0;
}
