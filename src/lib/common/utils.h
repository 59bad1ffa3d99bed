/* Private helpers shared by every layer of libcorral. */
#ifndef CORRAL_UTILS_H
#define CORRAL_UTILS_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/types.h>
#include <corral/error.h>

static inline void corral__freep(void *p)
{
  free(*(void **) p);
}

static inline void corral__closep(int *fd)
{
  if (*fd >= 0)
    {
      int saved = errno;
      close(*fd);
      errno = saved;
    }
}

static inline void corral__errorp(corral_error_t *e)
{
  corral_error_release(e);
}

void corral__kill_and_reap(pid_t *pid);

#define cleanup_free __attribute__((cleanup(corral__freep)))
#define cleanup_close __attribute__((cleanup(corral__closep)))
#define cleanup_error __attribute__((cleanup(corral__errorp)))
/* A child pid that is SIGKILLed and reaped if still owned at scope exit. */
#define cleanup_pid __attribute__((cleanup(corral__kill_and_reap)))

static inline void *corral__steal(void *pp)
{
  void **p = pp;
  void *v = *p;
  *p = NULL;
  return v;
}
#define steal_pointer(pp) corral__steal(pp)

static inline int corral__steal_fd(int *fd)
{
  int v = *fd;
  *fd = -1;
  return v;
}

/* Write all of buf to path (O_WRONLY, no create).  Retries on EINTR. */
int corral__write_file(const char *path, const char *buf, size_t len, corral_error_t *err);
/* Same at dirfd. */
int corral__write_file_at(int dirfd, const char *name, const char *buf, size_t len,
                          corral_error_t *err);
/* Create (O_CREAT|O_TRUNC) and write a file. */
int corral__create_file(const char *path, const char *buf, size_t len, mode_t mode,
                        corral_error_t *err);
/* Read up to bufsize-1 bytes of a small file and NUL-terminate. */
ssize_t corral__read_file_at(int dirfd, const char *name, char *buf, size_t bufsize);
/* write() until done, retrying EINTR. */
int corral__write_all(int fd, const void *buf, size_t len);
/* read() exactly len bytes; returns bytes read (< len on EOF) or -1. */
ssize_t corral__read_all(int fd, void *buf, size_t len);
/* mkdir -p with mode; existing directories are fine. */
int corral__mkdir_p(const char *path, mode_t mode, corral_error_t *err);
/* Monotonic clock in milliseconds / microseconds. */
uint64_t corral__now_ms(void);
uint64_t corral__now_us(void);

#endif
