/* libFuzzer target: the TLS ClientHello SNI parser (src/lib/net/sni.c).
 * Besides crashes and UB, it checks:
 *   - a found name is 1..255 bytes with no NUL;
 *   - the answer is decided by the bytes alone: any prefix of an input
 *     either needs more bytes or gives the same answer and name;
 *   - only input starting with a handshake record (0x16) is TLS. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "net/net.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  char name[256], pname[256];
  enum corral__sni_result r = corral__sni_parse(data, size, name);
  if (size == 0)
    CHECK(r == CORRAL__SNI_NEED_MORE);
  else
    CHECK((r == CORRAL__SNI_NOT_TLS) == (data[0] != 0x16));
  if (r == CORRAL__SNI_FOUND)
    {
      size_t n = strnlen(name, sizeof(name));
      CHECK(n > 0 && n < sizeof(name));
    }
  else
    CHECK(name[0] == '\0');
  size_t steps[] = { 1, 5, 9, size / 3, size / 2, size > 0 ? size - 1 : 0 };
  for (size_t i = 0; i < sizeof(steps) / sizeof(*steps); i++)
    {
      if (steps[i] == 0 || steps[i] >= size)
        continue;
      enum corral__sni_result p = corral__sni_parse(data, steps[i], pname);
      CHECK(p == CORRAL__SNI_NEED_MORE || p == r);
      if (p == CORRAL__SNI_FOUND)
        CHECK(strcmp(pname, name) == 0);
    }
  return 0;
}
