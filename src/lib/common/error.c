/* Errors as values; see include/corral/error.h. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <corral/error.h>

static int make_negative(int status)
{
  return status > 0 ? -status : -1;
}

int corral_error_set(corral_error_t *err, int errno_value, const char *fmt, ...)
{
  char *msg = NULL;
  va_list ap;

  /* The first error is the root cause: later ones (usually from cleanup
   * paths) must not overwrite it. */
  if (err == NULL || *err != NULL)
    return make_negative(errno_value);

  va_start(ap, fmt);
  if (vasprintf(&msg, fmt, ap) < 0)
    msg = NULL;
  va_end(ap);

  if (msg != NULL && errno_value != 0)
    {
      char *full = NULL;
      if (asprintf(&full, "%s: %s", msg, strerror(errno_value)) >= 0)
        {
          free(msg);
          msg = full;
        }
    }

  *err = calloc(1, sizeof(**err));
  if (*err == NULL)
    {
      free(msg);
      return make_negative(errno_value);
    }
  (*err)->status = errno_value;
  (*err)->msg = msg;
  return make_negative(errno_value);
}

int corral_error_wrap(corral_error_t *err, const char *fmt, ...)
{
  char *prefix = NULL, *full = NULL;
  va_list ap;

  if (err == NULL || *err == NULL)
    return -1;

  va_start(ap, fmt);
  if (vasprintf(&prefix, fmt, ap) < 0)
    prefix = NULL;
  va_end(ap);

  if (prefix != NULL && asprintf(&full, "%s: %s", prefix, (*err)->msg ? (*err)->msg : "") >= 0)
    {
      free((*err)->msg);
      (*err)->msg = full;
    }
  free(prefix);
  return make_negative((*err)->status);
}

void corral_error_release(corral_error_t *err)
{
  if (err == NULL || *err == NULL)
    return;
  free((*err)->msg);
  free(*err);
  *err = NULL;
}

int corral_error_status(const corral_error_t err)
{
  return err ? err->status : 0;
}

const char *corral_error_message(const corral_error_t err)
{
  return err && err->msg ? err->msg : "";
}
