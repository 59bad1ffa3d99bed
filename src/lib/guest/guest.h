/* Private interface of the guest layer (the in-sandbox agent). */
#ifndef CORRAL_GUEST_H
#define CORRAL_GUEST_H

#include "proto.h"

/* Serve one file request (FREAD ... REMOVE) on a blocking connection, in a
 * process forked for it.  Returns the exit status for that process. */
int corral__files_serve(int fd, const struct corral__msg *req);

/* Reply helpers shared by the agent. */
int corral__reply_error(int fd, int err_no, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
