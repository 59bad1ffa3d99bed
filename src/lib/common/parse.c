/* Parsers for user input: sizes, CPU counts, durations, binds, env entries.
 * They are the first thing outside input meets, so they are strict (no
 * signs, no trailing junk, no overflow) and fuzzed (tests/fuzz). */
#define _GNU_SOURCE
#include <ctype.h>
#include <string.h>
#include <corral/run.h>
#include "utils.h"

/* A non-negative decimal "123" or "1.25" as whole + frac/den, den <= 1e9. */
struct decimal
{
  uint64_t whole, frac, den;
};

static const char *parse_decimal(const char *s, struct decimal *d)
{
  const char *p = s;
  d->whole = 0;
  d->frac = 0;
  d->den = 1;
  if (!isdigit((unsigned char) *p) && !(*p == '.' && isdigit((unsigned char) p[1])))
    return NULL;
  for (; isdigit((unsigned char) *p); p++)
    {
      if (d->whole > (UINT64_MAX - 9) / 10)
        return NULL;
      d->whole = d->whole * 10 + (uint64_t) (*p - '0');
    }
  if (*p == '.')
    {
      p++;
      if (!isdigit((unsigned char) *p))
        return NULL;
      for (; isdigit((unsigned char) *p); p++)
        if (d->den < 1000000000ULL)
          {
            d->frac = d->frac * 10 + (uint64_t) (*p - '0');
            d->den *= 10;
          }
    }
  return p;
}

/* d * mult, rounded down; -1 on overflow. */
static int scale(const struct decimal *d, uint64_t mult, uint64_t *out)
{
  unsigned __int128 v = (unsigned __int128) d->whole * mult;
  v += (unsigned __int128) d->frac * mult / d->den;
  if (v > UINT64_MAX)
    return -1;
  *out = (uint64_t) v;
  return 0;
}

int corral_parse_size(const char *s, uint64_t *out, corral_error_t *err)
{
  struct decimal d;
  const char *p;
  uint64_t mult = 1;

  if (s == NULL || (p = parse_decimal(s, &d)) == NULL)
    return corral_error_set(err, EINVAL, "invalid size `%s` (expected e.g. 512M, 1G, 65536)",
                            s ? s : "");
  switch (tolower((unsigned char) *p))
    {
    case '\0': break;
    case 'b': mult = 1; p++; break;
    case 'k': mult = 1ULL << 10; p++; break;
    case 'm': mult = 1ULL << 20; p++; break;
    case 'g': mult = 1ULL << 30; p++; break;
    case 't': mult = 1ULL << 40; p++; break;
    default: p = NULL; break;
    }
  /* Accept "512M", "512MB", "512MiB". */
  if (p && mult > 1 && (strcasecmp(p, "b") == 0 || strcasecmp(p, "ib") == 0))
    p += strlen(p);
  if (p == NULL || *p != '\0')
    return corral_error_set(err, EINVAL, "invalid size `%s` (expected e.g. 512M, 1G, 65536)", s);
  if (scale(&d, mult, out) < 0)
    return corral_error_set(err, ERANGE, "size `%s` is too large", s);
  return 0;
}

int corral_parse_cpus(const char *s, uint64_t *out, corral_error_t *err)
{
  struct decimal d;
  const char *p;

  if (s == NULL || (p = parse_decimal(s, &d)) == NULL || *p != '\0')
    return corral_error_set(err, EINVAL, "invalid CPU count `%s` (expected a positive number such as 0.5 or 2)",
                            s ? s : "");
  if (scale(&d, 1000, out) < 0 || *out > 1024 * 1000)
    return corral_error_set(err, ERANGE, "CPU count `%s` is too large (at most 1024)", s);
  if (*out < 10)
    return corral_error_set(err, ERANGE, "CPU count `%s` is too small (at least 0.01)", s);
  return 0;
}

int corral_parse_duration_ms(const char *s, uint64_t *out, corral_error_t *err)
{
  struct decimal d;
  const char *p;
  uint64_t mult = 1000;

  if (s == NULL || (p = parse_decimal(s, &d)) == NULL)
    return corral_error_set(err, EINVAL, "invalid duration `%s` (expected e.g. 10, 1.5, 500ms, 2m)",
                            s ? s : "");
  if (strcmp(p, "ms") == 0)
    mult = 1;
  else if (strcmp(p, "") == 0 || strcmp(p, "s") == 0)
    mult = 1000;
  else if (strcmp(p, "m") == 0)
    mult = 60 * 1000;
  else if (strcmp(p, "h") == 0)
    mult = 3600 * 1000;
  else
    return corral_error_set(err, EINVAL, "invalid duration `%s` (expected e.g. 10, 1.5, 500ms, 2m)", s);
  /* A year is far past any sane sandbox lifetime; refusing it keeps
   * later arithmetic (deadlines in microseconds) from overflowing. */
  if (scale(&d, mult, out) < 0 || *out > 366ULL * 24 * 3600 * 1000)
    return corral_error_set(err, ERANGE, "duration `%s` is too long", s);
  return 0;
}

/* An absolute path naming something below the root: no "." or ".."
 * component (".." could climb out of the new root while it is assembled,
 * and "//" or "/." would bind over the root itself). */
static bool valid_sandbox_path(const char *p)
{
  bool named = false;
  if (p[0] != '/' || strlen(p) >= 4096)
    return false;
  for (const char *c = p; *c;)
    {
      size_t n;
      while (*c == '/')
        c++;
      if ((n = strcspn(c, "/")) == 0)
        break;
      if ((n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
        return false;
      named = true;
      c += n;
    }
  return named;
}

int corral_parse_bind(const char *s, corral_bind_t *b, corral_error_t *err)
{
  cleanup_free char *copy = NULL;
  char *src, *dst, *mode;

  memset(b, 0, sizeof(*b));
  if (s == NULL || (copy = strdup(s)) == NULL)
    return corral_error_set(err, ENOMEM, "invalid bind");
  src = copy;
  dst = strchr(src, ':');
  if (dst == NULL)
    return corral_error_set(err, EINVAL, "invalid bind `%s` (expected SRC:DST[:ro])", s);
  *dst++ = '\0';
  mode = strchr(dst, ':');
  if (mode)
    *mode++ = '\0';
  if (mode && strcmp(mode, "ro") != 0 && strcmp(mode, "rw") != 0)
    return corral_error_set(err, EINVAL, "invalid bind mode `%s` in `%s` (expected ro or rw)", mode, s);
  if (*src == '\0' || !valid_sandbox_path(dst))
    return corral_error_set(err, EINVAL,
                            "invalid bind `%s` (SRC must be set, DST absolute, not / and without ..)", s);
  b->read_only = mode != NULL && strcmp(mode, "ro") == 0;
  b->src = strdup(src);
  b->dst = strdup(dst);
  if (b->src == NULL || b->dst == NULL)
    {
      free(b->src);
      free(b->dst);
      b->src = b->dst = NULL;
      return corral_error_set(err, ENOMEM, "invalid bind");
    }
  return 0;
}

int corral_parse_env(const char *s, corral_error_t *err)
{
  const char *p;
  if (s == NULL || !(isalpha((unsigned char) s[0]) || s[0] == '_'))
    return corral_error_set(err, EINVAL, "invalid environment entry `%s` (expected KEY=VALUE)",
                            s ? s : "");
  for (p = s; *p && *p != '='; p++)
    if (!(isalnum((unsigned char) *p) || *p == '_'))
      return corral_error_set(err, EINVAL, "invalid environment entry `%s` (expected KEY=VALUE)", s);
  if (*p != '=')
    return corral_error_set(err, EINVAL, "invalid environment entry `%s` (expected KEY=VALUE)", s);
  return 0;
}
