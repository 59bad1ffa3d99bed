/* Table tests for the input parsers of include/corral/run.h: sizes, CPU
 * counts, durations, binds and environment entries. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <corral/run.h>
#include "tap.h"

#define KiB 1024ULL
#define MiB (1024ULL * KiB)
#define GiB (1024ULL * MiB)
#define TiB (1024ULL * GiB)

struct num_case
{
  const char *in;
  int ok;            /* 1: accepted with value `want` */
  uint64_t want;
  int err;           /* when rejected: expected status (0: any non-zero) */
};

typedef int (*num_parser) (const char *, uint64_t *, corral_error_t *);

static void run_num_table(const char *what, num_parser parse, const struct num_case *t, size_t n)
{
  for (size_t i = 0; i < n; i++)
    {
      corral_error_t err = NULL;
      uint64_t out = 0xdeadbeef;
      int r = parse(t[i].in, &out, &err);
      if (t[i].ok)
        {
          if (ok(r == 0 && err == NULL, "%s(\"%s\") is accepted", what, t[i].in))
            is_u64(out, t[i].want, "%s(\"%s\") = %llu", what, t[i].in, (unsigned long long) t[i].want);
          else
            {
              diag("error: %s", corral_error_message(err));
              ok(0, "%s(\"%s\") value", what, t[i].in);
            }
        }
      else
        {
          ok(r < 0 && err != NULL, "%s(\"%s\") is rejected", what, t[i].in);
          if (t[i].err)
            is_int(corral_error_status(err), t[i].err, "%s(\"%s\") fails with %s", what, t[i].in,
                   strerrorname_np(t[i].err));
          else
            ok(corral_error_status(err) != 0 && corral_error_message(err)[0] != '\0',
               "%s(\"%s\") error has a status and message (%s)", what, t[i].in, corral_error_message(err));
        }
      corral_error_release(&err);
    }
}

static const struct num_case size_cases[] = {
  { "512M", 1, 512 * MiB, 0 },
  { "512m", 1, 512 * MiB, 0 },
  { "1g", 1, GiB, 0 },
  { "1G", 1, GiB, 0 },
  { "1.5G", 1, 3 * GiB / 2, 0 },
  { "0.5k", 1, 512, 0 },
  { ".5K", 1, 512, 0 },
  { "64k", 1, 64 * KiB, 0 },
  { "64K", 1, 64 * KiB, 0 },
  { "512MiB", 1, 512 * MiB, 0 },
  { "512MB", 1, 512 * MiB, 0 },
  { "2gib", 1, 2 * GiB, 0 },
  { "1T", 1, TiB, 0 },
  { "4096", 1, 4096, 0 },
  { "4096b", 1, 4096, 0 },
  { "0", 1, 0, 0 },
  { "0M", 1, 0, 0 },
  { "007", 1, 7, 0 },
  { "1.0000000001G", 1, GiB, 0 },            /* digits past 1e-9 are dropped */
  { "16777215T", 1, 16777215ULL * TiB, 0 },  /* largest whole-T value */
  { "", 0, 0, EINVAL },
  { "abc", 0, 0, EINVAL },
  { "-1", 0, 0, EINVAL },
  { "+1", 0, 0, EINVAL },
  { " 1", 0, 0, EINVAL },
  { "1 ", 0, 0, EINVAL },
  { "1x", 0, 0, EINVAL },
  { "1.", 0, 0, EINVAL },
  { ".", 0, 0, EINVAL },
  { "1..5", 0, 0, EINVAL },
  { "1.5.5", 0, 0, EINVAL },
  { "1,5G", 0, 0, EINVAL },
  { "0x10", 0, 0, EINVAL },
  { "1e3", 0, 0, EINVAL },
  { "1Mi", 0, 0, EINVAL },
  { "1MiBx", 0, 0, EINVAL },
  { "1bib", 0, 0, EINVAL },
  { "1MM", 0, 0, EINVAL },
  { "M", 0, 0, EINVAL },
  { "inf", 0, 0, EINVAL },
  { "99999999999999999999", 0, 0, 0 },       /* > UINT64_MAX */
  { "16777216T", 0, 0, ERANGE },             /* exactly 2^64 */
  { "17179869184G", 0, 0, ERANGE },          /* 2^64 again */
  { "99999999999999999T", 0, 0, ERANGE },
};

static const struct num_case cpu_cases[] = {
  { "0.5", 1, 500, 0 },
  { "2", 1, 2000, 0 },
  { "1", 1, 1000, 0 },
  { "2.25", 1, 2250, 0 },
  { ".5", 1, 500, 0 },
  { "0.01", 1, 10, 0 },
  { "1024", 1, 1024000, 0 },
  { "1024.0", 1, 1024000, 0 },
  { "1.2345", 1, 1234, 0 },
  { "0", 0, 0, ERANGE },
  { "0.0", 0, 0, ERANGE },
  { "0.001", 0, 0, ERANGE },
  { "0.009", 0, 0, ERANGE },
  { "1024.001", 0, 0, ERANGE },
  { "1025", 0, 0, ERANGE },
  { "18446744073709551", 0, 0, ERANGE },
  { "99999999999999999999", 0, 0, 0 },
  { "-1", 0, 0, EINVAL },
  { "abc", 0, 0, EINVAL },
  { "", 0, 0, EINVAL },
  { "1c", 0, 0, EINVAL },
  { "1k", 0, 0, EINVAL },
  { "1e2", 0, 0, EINVAL },
  { "1.", 0, 0, EINVAL },
  { " 1", 0, 0, EINVAL },
};

#define DAY (24ULL * 3600 * 1000)
static const struct num_case duration_cases[] = {
  { "10", 1, 10000, 0 },
  { "1.5", 1, 1500, 0 },
  { "500ms", 1, 500, 0 },
  { "2s", 1, 2000, 0 },
  { "0.25s", 1, 250, 0 },
  { "2m", 1, 120000, 0 },
  { "1h", 1, 3600000, 0 },
  { "1.5h", 1, 5400000, 0 },
  { "0", 1, 0, 0 },
  { "8784h", 1, 366 * DAY, 0 },               /* the one-year cap itself */
  { "", 0, 0, EINVAL },
  { "-1", 0, 0, EINVAL },
  { "5d", 0, 0, EINVAL },
  { "1x", 0, 0, EINVAL },
  { "10sec", 0, 0, EINVAL },
  { "1 s", 0, 0, EINVAL },
  { "ms", 0, 0, EINVAL },
  { "s", 0, 0, EINVAL },
  { "1.", 0, 0, EINVAL },
  { "1e3", 0, 0, EINVAL },
  { "8785h", 0, 0, ERANGE },
  { "31622400001ms", 0, 0, ERANGE },
  { "18446744073709551h", 0, 0, ERANGE },     /* overflows uint64 in ms */
  { "99999999999999999999", 0, 0, 0 },
};

static void test_null_inputs(void)
{
  corral_error_t err = NULL;
  uint64_t v;
  corral_bind_t b;
  ok(corral_parse_size(NULL, &v, &err) < 0 && err != NULL, "parse_size(NULL) is rejected");
  corral_error_release(&err);
  ok(corral_parse_cpus(NULL, &v, &err) < 0 && err != NULL, "parse_cpus(NULL) is rejected");
  corral_error_release(&err);
  ok(corral_parse_duration_ms(NULL, &v, &err) < 0 && err != NULL, "parse_duration_ms(NULL) is rejected");
  corral_error_release(&err);
  ok(corral_parse_bind(NULL, &b, &err) < 0 && err != NULL, "parse_bind(NULL) is rejected");
  corral_error_release(&err);
  ok(corral_parse_env(NULL, &err) < 0 && err != NULL, "parse_env(NULL) is rejected");
  corral_error_release(&err);
  /* Without an error object the return value alone reports the failure. */
  ok(corral_parse_size("junk", &v, NULL) < 0, "parse_size with err == NULL still fails");
  ok(corral_parse_bind("junk", &b, NULL) < 0, "parse_bind with err == NULL still fails");
}

struct bind_case
{
  const char *in;
  int ok;
  const char *src, *dst;
  bool ro;
};

static const struct bind_case bind_cases[] = {
  { "/src:/dst", 1, "/src", "/dst", false },
  { "/src:/dst:ro", 1, "/src", "/dst", true },
  { "/src:/dst:rw", 1, "/src", "/dst", false },
  { "/a/b c:/x/y z", 1, "/a/b c", "/x/y z", false },
  { "/src:/a/..b/c..", 1, "/src", "/a/..b/c..", false }, /* names with dots are fine */
  { "/src:/opt/", 1, "/src", "/opt/", false },
  { "/src", 0, NULL, NULL, false },                      /* no colon */
  { "", 0, NULL, NULL, false },
  { "/src:dst", 0, NULL, NULL, false },                  /* relative DST */
  { "/src:", 0, NULL, NULL, false },                     /* empty DST */
  { ":/dst", 0, NULL, NULL, false },                     /* empty SRC */
  { "/src:/a/../b", 0, NULL, NULL, false },
  { "/src:/..", 0, NULL, NULL, false },
  { "/src:/a/..", 0, NULL, NULL, false },
  { "/src:..", 0, NULL, NULL, false },
  { "/src:/", 0, NULL, NULL, false },
  /* Other spellings of the sandbox root: "/" is refused, so these must be. */
  { "/src://", 0, NULL, NULL, false },
  { "/src:/.", 0, NULL, NULL, false },
  { "/src:/./", 0, NULL, NULL, false },
  { "/src:/dst:rx", 0, NULL, NULL, false },              /* bad mode */
  { "/src:/dst:RO", 0, NULL, NULL, false },
  { "/src:/dst:", 0, NULL, NULL, false },                /* empty mode */
  { "/src:/dst:ro:x", 0, NULL, NULL, false },
};

static void test_bind(void)
{
  for (size_t i = 0; i < sizeof(bind_cases) / sizeof(*bind_cases); i++)
    {
      const struct bind_case *c = &bind_cases[i];
      corral_error_t err = NULL;
      corral_bind_t b;
      memset(&b, 0x5a, sizeof(b));
      int r = corral_parse_bind(c->in, &b, &err);
      if (c->ok)
        {
          ok(r == 0 && err == NULL, "bind \"%s\" is accepted%s%s", c->in, err ? ": " : "",
             corral_error_message(err));
          if (r == 0)
            {
              is_str(b.src, c->src, "bind \"%s\" src", c->in);
              is_str(b.dst, c->dst, "bind \"%s\" dst", c->in);
              is_int(b.read_only, c->ro, "bind \"%s\" read_only = %d", c->in, c->ro);
              free(b.src);
              free(b.dst);
            }
        }
      else
        {
          ok(r < 0 && err != NULL && corral_error_status(err) == EINVAL, "bind \"%s\" is rejected (EINVAL)",
             c->in);
          if (r < 0)
            ok(b.src == NULL && b.dst == NULL, "bind \"%s\" leaves no strings behind", c->in);
          else
            {
              free(b.src);
              free(b.dst);
            }
        }
      corral_error_release(&err);
    }

  /* A DST at the 4096-byte PATH_MAX is refused, just below is fine. */
  char *s = malloc(4200);
  corral_bind_t b;
  corral_error_t err = NULL;
  strcpy(s, "/src:/");
  memset(s + 6, 'a', 4094);
  s[6 + 4094] = '\0'; /* dst length 4095 */
  ok(corral_parse_bind(s, &b, &err) == 0, "bind with a 4095-byte DST is accepted");
  free(b.src);
  free(b.dst);
  corral_error_release(&err);
  strcpy(s + 6 + 4094, "a"); /* 4096 */
  ok(corral_parse_bind(s, &b, &err) < 0, "bind with a 4096-byte DST is rejected");
  corral_error_release(&err);
  free(s);
}

/* The input with control characters escaped, for a one-line TAP description. */
static const char *printable(const char *s, char *buf, size_t size)
{
  size_t n = 0;
  for (; *s && n + 5 < size; s++)
    n += (unsigned char) *s < 0x20 ? (size_t) snprintf(buf + n, size - n, "\\x%02x", (unsigned char) *s)
                                   : (size_t) snprintf(buf + n, size - n, "%c", *s);
  buf[n] = '\0';
  return buf;
}

static void test_env(void)
{
  char pb[128];
  static const char *const good[] = { "KEY=VALUE", "_X=1", "A=", "A==b", "a1_B=x y z", "PATH=/bin:/usr/bin",
                                      "LD_PRELOAD=x" };
  static const char *const bad[] = { "", "=v", "1A=v", "A", "KEY", "A-B=v", "A B=v", "A.B=v", "\xc3\x84=v",
                                     " A=v", "A\n=v" };
  for (size_t i = 0; i < sizeof(good) / sizeof(*good); i++)
    {
      corral_error_t err = NULL;
      ok(corral_parse_env(good[i], &err) == 0 && err == NULL, "env \"%s\" is accepted", good[i]);
      corral_error_release(&err);
    }
  for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
    {
      corral_error_t err = NULL;
      ok(corral_parse_env(bad[i], &err) < 0 && corral_error_status(err) == EINVAL, "env \"%s\" is rejected",
         printable(bad[i], pb, sizeof(pb)));
      corral_error_release(&err);
    }
}

int main(void)
{
  run_num_table("parse_size", corral_parse_size, size_cases, sizeof(size_cases) / sizeof(*size_cases));
  run_num_table("parse_cpus", corral_parse_cpus, cpu_cases, sizeof(cpu_cases) / sizeof(*cpu_cases));
  run_num_table("parse_duration_ms", corral_parse_duration_ms, duration_cases,
                sizeof(duration_cases) / sizeof(*duration_cases));
  test_null_inputs();
  test_bind();
  test_env();
  return done_testing();
}
