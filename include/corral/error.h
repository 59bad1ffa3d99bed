/* corral: errors as values.
 *
 * Every fallible function returns a negative number on failure and fills a
 * corral_error_t: the errno that caused it plus a message.  Callers higher up
 * prefix their own context with corral_error_wrap(), so the final message
 * reads from the outermost operation down to the syscall that failed.
 * The library never prints; front ends decide what to do with the error.
 */
#ifndef CORRAL_ERROR_H
#define CORRAL_ERROR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct corral_error_s {
  int status;     /* errno value (0 when the failure has no errno) */
  char *msg;      /* heap-allocated message, owned by the error */
} *corral_error_t;

/* Fill *err (if err is non-NULL and still empty) with errno_value and a
 * printf-style message; if errno_value is non-zero ": strerror" is appended.
 * Always returns -1 - errno_value style negative value (never 0). */
int corral_error_set(corral_error_t *err, int errno_value, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefix the message already in *err with more context: "context: old". */
int corral_error_wrap(corral_error_t *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Release the error and reset *err to NULL.  Safe on NULL / empty. */
void corral_error_release(corral_error_t *err);

/* errno of the error, or 0. */
int corral_error_status(const corral_error_t err);

/* Message of the error, or "" when there is none. */
const char *corral_error_message(const corral_error_t err);

#ifdef __cplusplus
}
#endif
#endif
