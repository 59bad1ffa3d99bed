/* The error machinery of include/corral/error.h: set, wrap, first error
 * wins, status and message accessors, release. */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <corral/error.h>
#include "tap.h"

static void test_set(void)
{
  corral_error_t err = NULL;
  int r = corral_error_set(&err, ENOENT, "open `%s`", "/x");
  is_int(r, -ENOENT, "set returns -errno");
  ok(err != NULL, "set fills the error");
  is_int(corral_error_status(err), ENOENT, "status is the errno");
  char want[256];
  snprintf(want, sizeof(want), "open `/x`: %s", strerror(ENOENT));
  is_str(corral_error_message(err), want, "message has the strerror suffix");
  corral_error_release(&err);
  ok(err == NULL, "release resets the pointer to NULL");

  r = corral_error_set(&err, 0, "plain %d", 42);
  ok(r < 0, "set with errno 0 still returns a negative value (%d)", r);
  is_int(corral_error_status(err), 0, "status 0 without errno");
  is_str(corral_error_message(err), "plain 42", "no strerror suffix without errno");
  corral_error_release(&err);

  /* A NULL err: the caller does not want details, the return value stays. */
  is_int(corral_error_set(NULL, EACCES, "ignored"), -EACCES, "set(NULL) returns -errno");
  ok(corral_error_set(NULL, 0, "ignored") < 0, "set(NULL, 0) returns negative");
}

static void test_first_wins(void)
{
  corral_error_t err = NULL;
  corral_error_set(&err, EACCES, "root cause");
  int r = corral_error_set(&err, EBUSY, "cleanup failure");
  is_int(r, -EBUSY, "second set still returns its own -errno");
  is_int(corral_error_status(err), EACCES, "first error's status is kept");
  ok(strncmp(corral_error_message(err), "root cause", 10) == 0, "first error's message is kept: %s",
     corral_error_message(err));
  ok(strstr(corral_error_message(err), "cleanup") == NULL, "second message is dropped");
  corral_error_release(&err);
}

static void test_wrap(void)
{
  corral_error_t err = NULL;
  is_int(corral_error_wrap(&err, "context"), -1, "wrap on an empty error returns -1");
  ok(err == NULL, "wrap on an empty error does not create one");
  is_int(corral_error_wrap(NULL, "context"), -1, "wrap(NULL) returns -1");

  corral_error_set(&err, EPERM, "mount");
  int r = corral_error_wrap(&err, "setup %s", "rootfs");
  is_int(r, -EPERM, "wrap returns -status");
  r = corral_error_wrap(&err, "run");
  is_int(r, -EPERM, "second wrap returns -status");
  char want[256];
  snprintf(want, sizeof(want), "run: setup rootfs: mount: %s", strerror(EPERM));
  is_str(corral_error_message(err), want, "wraps chain outermost first");
  is_int(corral_error_status(err), EPERM, "wrap keeps the status");
  corral_error_release(&err);

  corral_error_set(&err, 0, "bad");
  is_int(corral_error_wrap(&err, "ctx"), -1, "wrap of a status-0 error returns -1");
  is_str(corral_error_message(err), "ctx: bad", "wrap of a status-0 error");
  corral_error_release(&err);
}

static void test_release_and_accessors(void)
{
  corral_error_t err = NULL;
  corral_error_release(NULL);
  corral_error_release(&err);
  ok(err == NULL, "release of NULL and of an empty error are no-ops");
  is_int(corral_error_status(NULL), 0, "status(NULL) is 0");
  is_str(corral_error_message(NULL), "", "message(NULL) is \"\"");

  /* Release then reuse: the next set must work again. */
  corral_error_set(&err, EIO, "one");
  corral_error_release(&err);
  corral_error_set(&err, EINVAL, "two");
  is_int(corral_error_status(err), EINVAL, "error is reusable after release");
  corral_error_release(&err);
  corral_error_release(&err);
  ok(err == NULL, "double release is safe");

  /* Long messages are not truncated. */
  char big[5000];
  memset(big, 'x', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  corral_error_set(&err, 0, "%s", big);
  is_int(strlen(corral_error_message(err)), sizeof(big) - 1, "long message kept whole");
  corral_error_release(&err);
}

int main(void)
{
  test_set();
  test_first_wins();
  test_wrap();
  test_release_and_accessors();
  return done_testing();
}
