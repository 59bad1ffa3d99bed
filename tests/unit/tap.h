/* A tiny TAP (Test Anything Protocol) producer for the unit tests, in the
 * spirit of crun's tests/tests_libcrun_*.c: every check prints one
 * "ok N - description" or "not ok N - description" line, failures add a
 * "# " diagnostic with the file, line and the values involved, and
 * done_testing() returns the exit status for main() (0 only when every
 * test passed and the count matched the plan).  `prove -f` reads it.
 *
 *   plan(3);                       or no plan: done_testing() prints it
 *   ok(x > 0, "x is positive");
 *   is_int(f(), 4, "f() is %d", 4);
 *   is_str(name, "corral", "name");
 *   skip(2, "no cgroups");         counts 2 passing "# SKIP" tests
 *   return done_testing();
 *
 * Tests that fork must fflush(stdout) first (tap_flush()) and children must
 * leave with _exit(): only the parent prints TAP lines. */
#ifndef CORRAL_TAP_H
#define CORRAL_TAP_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tap_state
{
  int planned;   /* -1: no plan yet */
  int run;
  int failed;
};

static struct tap_state tap __attribute__((unused)) = { -1, 0, 0 };

static inline void tap_flush(void)
{
  fflush(stdout);
  fflush(stderr);
}

static inline void plan(int n)
{
  tap.planned = n;
  printf("1..%d\n", n);
  fflush(stdout);
}

/* Skip the whole file: "1..0 # SKIP reason", exits 0. */
__attribute__((noreturn, format(printf, 1, 2))) static inline void plan_skip_all(const char *fmt, ...)
{
  va_list ap;
  printf("1..0 # SKIP ");
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  printf("\n");
  fflush(stdout);
  exit(0);
}

__attribute__((format(printf, 1, 2))) static inline void diag(const char *fmt, ...)
{
  va_list ap;
  fflush(stdout);
  fputs("# ", stdout);
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  fputs("\n", stdout);
  fflush(stdout);
}

static inline bool tap_vresult(bool pass, const char *file, int line, const char *fmt, va_list ap)
{
  tap.run++;
  if (!pass)
    tap.failed++;
  printf("%s %d - ", pass ? "ok" : "not ok", tap.run);
  vprintf(fmt, ap);
  printf("\n");
  if (!pass)
    printf("#   Failed test at %s line %d.\n", file, line);
  fflush(stdout);
  return pass;
}

__attribute__((format(printf, 4, 5))) static inline bool tap_ok(bool pass, const char *file, int line,
                                                                 const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  bool r = tap_vresult(pass, file, line, fmt, ap);
  va_end(ap);
  return r;
}

__attribute__((format(printf, 5, 6))) static inline bool tap_is_int(long long got, long long want,
                                                                     const char *file, int line,
                                                                     const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  bool r = tap_vresult(got == want, file, line, fmt, ap);
  va_end(ap);
  if (!r)
    printf("#          got: %lld\n#     expected: %lld\n", got, want);
  return r;
}

__attribute__((format(printf, 5, 6))) static inline bool tap_is_u64(uint64_t got, uint64_t want,
                                                                     const char *file, int line,
                                                                     const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  bool r = tap_vresult(got == want, file, line, fmt, ap);
  va_end(ap);
  if (!r)
    printf("#          got: %llu\n#     expected: %llu\n", (unsigned long long) got,
           (unsigned long long) want);
  return r;
}

__attribute__((format(printf, 5, 6))) static inline bool tap_is_str(const char *got, const char *want,
                                                                     const char *file, int line,
                                                                     const char *fmt, ...)
{
  va_list ap;
  bool pass = (got == NULL && want == NULL) || (got && want && strcmp(got, want) == 0);
  va_start(ap, fmt);
  bool r = tap_vresult(pass, file, line, fmt, ap);
  va_end(ap);
  if (!r)
    printf("#          got: %s%s%s\n#     expected: %s%s%s\n", got ? "'" : "", got ? got : "NULL",
           got ? "'" : "", want ? "'" : "", want ? want : "NULL", want ? "'" : "");
  return r;
}

/* The checked values are evaluated before the description's arguments, so
 * a description may show what the check itself produced, e.g.
 *   ok(f(&err) == 0, "f works (%s)", corral_error_message(err)); */
#define ok(cond, ...) \
  ({ bool tap_c_ = !!(cond); tap_ok(tap_c_, __FILE__, __LINE__, __VA_ARGS__); })
#define is_int(got, want, ...) \
  ({ long long tap_g_ = (long long) (got), tap_w_ = (long long) (want); \
     tap_is_int(tap_g_, tap_w_, __FILE__, __LINE__, __VA_ARGS__); })
#define is_u64(got, want, ...) \
  ({ uint64_t tap_g_ = (uint64_t) (got), tap_w_ = (uint64_t) (want); \
     tap_is_u64(tap_g_, tap_w_, __FILE__, __LINE__, __VA_ARGS__); })
#define is_str(got, want, ...) \
  ({ const char *tap_g_ = (got), *tap_w_ = (want); \
     tap_is_str(tap_g_, tap_w_, __FILE__, __LINE__, __VA_ARGS__); })

/* Count n tests as skipped (they pass, with a "# SKIP reason" directive). */
static inline void skip(int n, const char *reason)
{
  for (int i = 0; i < n; i++)
    {
      tap.run++;
      printf("ok %d # SKIP %s\n", tap.run, reason);
    }
  fflush(stdout);
}

/* Print the plan if there was none; return the exit status for main(). */
static inline int done_testing(void)
{
  if (tap.planned < 0)
    printf("1..%d\n", tap.run);
  else if (tap.planned != tap.run)
    printf("# Looks like you planned %d tests but ran %d.\n", tap.planned, tap.run);
  if (tap.failed)
    printf("# Looks like you failed %d test%s of %d.\n", tap.failed, tap.failed == 1 ? "" : "s", tap.run);
  fflush(stdout);
  if (tap.failed)
    return tap.failed > 254 ? 254 : tap.failed;
  return tap.planned >= 0 && tap.planned != tap.run ? 255 : 0;
}

#endif
