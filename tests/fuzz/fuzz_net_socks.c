/* libFuzzer target: the SOCKS5 handshake parsers (src/lib/net/socks.c).
 * Besides crashes and UB, it checks their contract and aborts when it
 * breaks:
 *   - a result never claims more bytes than it was given;
 *   - an accepted request has a NUL-terminated host of the right length
 *     (a domain exactly as long as its length byte, with no NUL inside);
 *   - parsing is incremental: any shorter prefix of an input either needs
 *     more bytes or fails the same way (never succeeds differently). */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "net/net.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)

static void check_greeting(const uint8_t *d, size_t n)
{
  bool noauth;
  ssize_t r = corral__socks_parse_greeting(d, n, &noauth);
  CHECK(r >= -1 && r <= (ssize_t) n);
  if (r > 0)
    {
      CHECK(r == 2 + d[1]);
      CHECK(noauth == (memchr(d + 2, 0, d[1]) != NULL));
    }
  for (size_t k = 0; k < n && k < 8; k++)
    {
      ssize_t p = corral__socks_parse_greeting(d, k, &noauth);
      CHECK(p == 0 || p == r);
    }
}

static void check_request(const uint8_t *d, size_t n)
{
  struct corral__socks_request req;
  ssize_t r = corral__socks_parse_request(d, n, &req);
  CHECK(r <= (ssize_t) n);
  CHECK(r >= 0 || r == -CORRAL__SOCKS_REP_FAILURE || r == -CORRAL__SOCKS_REP_CMD || r == -CORRAL__SOCKS_REP_ATYP);
  if (r > 0)
    {
      size_t hl = strnlen(req.host, sizeof(req.host));
      CHECK(hl > 0 && hl < sizeof(req.host));
      CHECK(req.cmd == 1);
      if (req.atyp == 3)
        CHECK(hl == d[4] && r == (ssize_t) (5 + d[4] + 2));
      else
        CHECK(req.atyp == 1 ? r == 10 : r == 22);
      CHECK(req.port == (uint16_t) (d[r - 2] << 8 | d[r - 1]));
    }
  size_t steps[] = { 0, 1, 3, 4, 5, n / 2, n > 0 ? n - 1 : 0 };
  for (size_t i = 0; i < sizeof(steps) / sizeof(*steps); i++)
    if (steps[i] < n)
      {
        ssize_t p = corral__socks_parse_request(d, steps[i], &req);
        CHECK(p == 0 || p == r);
      }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  check_greeting(data, size);
  check_request(data, size);
  /* a whole handshake: greeting then request, as the proxy reads them */
  bool noauth;
  ssize_t g = corral__socks_parse_greeting(data, size, &noauth);
  if (g > 0)
    check_request(data + g, size - (size_t) g);
  return 0;
}
