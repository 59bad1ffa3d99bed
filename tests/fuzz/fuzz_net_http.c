/* libFuzzer target: the HTTP proxy request-head wrapper around http_parser
 * (src/lib/net/httphead.c): head accumulation, destination and Host check,
 * origin-form rewrite and body tracking.  Besides crashes and UB it checks:
 *   - feeding the input in two pieces gives the same outcome as in one;
 *   - a complete head ends inside the input;
 *   - a rewritten head is one HTTP head: it ends with "Connection:
 *     close\r\n\r\n", holds no other blank line, and http_parser reads it
 *     back as a complete request with the same method;
 *   - the body tracker never claims more bytes than it was given. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "net/net.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)

static int feed_split(struct corral__http_head *h, const char *d, size_t n, size_t split)
{
  corral__http_head_init(h);
  int r = 0;
  if (split > 0 && split < n)
    r = corral__http_head_feed(h, d, split);
  if (r == 0)
    r = corral__http_head_feed(h, d, n);
  return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static struct corral__http_head h, h2, back;
  static char out[CORRAL__HTTP_MAX_HEAD + 4096];
  const char *d = (const char *) data;
  if (size == 0 || size > CORRAL__HTTP_MAX_HEAD)
    return 0;
  int r = feed_split(&h, d, size, 0);
  int r2 = feed_split(&h2, d, size, (size_t) data[0] % size);
  CHECK(r == r2);
  if (r != 1)
    return 0;
  CHECK(h.head_end > 0 && h.head_end <= size && h.head_end == h2.head_end);
  struct corral__http_target t;
  int tr = corral__http_head_target(&h, d, &t);
  CHECK(tr == 0 || tr == -400 || tr == -403);
  if (tr != 0)
    return 0;
  CHECK(t.port > 0 && t.host[0] != '\0');
  if (!t.is_connect)
    {
      ssize_t n = corral__http_head_rewrite(&h, d, out, sizeof(out));
      if (n > 0)
        {
          static const char tail[] = "Connection: close\r\n\r\n";
          CHECK((size_t) n > sizeof(tail) && memcmp(out + n - (sizeof(tail) - 1), tail, sizeof(tail) - 1) == 0);
          char *blank = memmem(out, (size_t) n, "\r\n\r\n", 4);
          CHECK(blank == out + n - 4);
          CHECK(memchr(out, '\0', (size_t) n) == NULL);
          /* read back (the rewrite may add Host and Connection: two
           * fields over our own limit on what clients send) */
          if (h.nhdr + 2 <= CORRAL__HTTP_MAX_HEADERS)
            {
              corral__http_head_init(&back);
              CHECK(corral__http_head_feed(&back, out, (size_t) n) == 1);
              CHECK(back.parser.method == h.parser.method && back.head_end == (size_t) n);
            }
        }
    }
  bool done;
  ssize_t m = corral__http_body_feed(&h, d + h.head_end, size - h.head_end, &done);
  CHECK(m <= (ssize_t) (size - h.head_end));
  return 0;
}
