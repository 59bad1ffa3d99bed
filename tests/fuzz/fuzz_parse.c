/* libFuzzer target: every input parser of include/corral/run.h on the same
 * NUL-terminated input.  Besides crashes, leaks and UB (ASan/UBSan), it
 * checks each parser's contract and aborts when one is broken:
 *   - success leaves no error, failure always fills one (status + message);
 *   - accepted values are in the documented ranges;
 *   - an accepted bind has a non-empty SRC and an absolute DST without a
 *     ".." component; a rejected one leaves no strings behind. */
#define _GNU_SOURCE
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <corral/run.h>

#define CHECK(c) do { if (!(c)) abort(); } while (0)

static void check_outcome(int r, corral_error_t *err)
{
  if (r == 0)
    CHECK(*err == NULL);
  else
    {
      CHECK(r < 0);
      CHECK(*err != NULL);
      CHECK(corral_error_status(*err) != 0);
      CHECK(corral_error_message(*err)[0] != '\0');
    }
  corral_error_release(err);
  CHECK(*err == NULL);
}

static bool has_dotdot_component(const char *p)
{
  for (const char *c = p; (c = strstr(c, "..")) != NULL; c += 2)
    if ((c == p || c[-1] == '/') && (c[2] == '\0' || c[2] == '/'))
      return true;
  return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  char *s = malloc(size + 1);
  corral_error_t err = NULL;
  uint64_t v;
  int r;

  if (s == NULL)
    return 0;
  memcpy(s, data, size);
  s[size] = '\0';

  r = corral_parse_size(s, &v, &err);
  if (r == 0)
    CHECK(isdigit((unsigned char) s[0]) || s[0] == '.');
  check_outcome(r, &err);

  r = corral_parse_cpus(s, &v, &err);
  if (r == 0)
    CHECK(v >= 10 && v <= 1024 * 1000);
  check_outcome(r, &err);

  r = corral_parse_duration_ms(s, &v, &err);
  if (r == 0)
    CHECK(v <= 366ULL * 24 * 3600 * 1000);
  check_outcome(r, &err);

  corral_bind_t b;
  r = corral_parse_bind(s, &b, &err);
  if (r == 0)
    {
      CHECK(b.src != NULL && b.dst != NULL);
      CHECK(b.src[0] != '\0');
      CHECK(b.dst[0] == '/' && strcmp(b.dst, "/") != 0);
      CHECK(!has_dotdot_component(b.dst));
      CHECK(strlen(b.src) + strlen(b.dst) < size); /* both came from s */
      free(b.src);
      free(b.dst);
    }
  else
    CHECK(b.src == NULL && b.dst == NULL);
  check_outcome(r, &err);

  r = corral_parse_env(s, &err);
  if (r == 0)
    {
      CHECK(isalpha((unsigned char) s[0]) || s[0] == '_');
      const char *eq = strchr(s, '=');
      CHECK(eq != NULL);
      for (const char *p = s; p < eq; p++)
        CHECK(isalnum((unsigned char) *p) || *p == '_');
    }
  check_outcome(r, &err);

  /* A NULL error pointer must be fine too. */
  (void) corral_parse_size(s, &v, NULL);
  if (corral_parse_bind(s, &b, NULL) == 0)
    {
      free(b.src);
      free(b.dst);
    }

  free(s);
  return 0;
}
