/* Small file and clock helpers. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include "utils.h"

void corral__kill_and_reap(pid_t *pid)
{
  if (*pid > 0)
    {
      int saved = errno;
      kill(*pid, SIGKILL);
      while (waitpid(*pid, NULL, 0) < 0 && errno == EINTR)
        ;
      *pid = -1;
      errno = saved;
    }
}

int corral__write_all(int fd, const void *buf, size_t len)
{
  const char *p = buf;
  while (len > 0)
    {
      ssize_t n = write(fd, p, len);
      if (n < 0)
        {
          if (errno == EINTR)
            continue;
          return -1;
        }
      p += n;
      len -= (size_t) n;
    }
  return 0;
}

ssize_t corral__read_all(int fd, void *buf, size_t len)
{
  char *p = buf;
  size_t got = 0;
  while (got < len)
    {
      ssize_t n = read(fd, p + got, len - got);
      if (n < 0)
        {
          if (errno == EINTR)
            continue;
          return -1;
        }
      if (n == 0)
        break;
      got += (size_t) n;
    }
  return (ssize_t) got;
}

int corral__write_file_at(int dirfd, const char *name, const char *buf, size_t len,
                          corral_error_t *err)
{
  cleanup_close int fd = openat(dirfd, name, O_WRONLY | O_CLOEXEC);
  if (fd < 0)
    return corral_error_set(err, errno, "open `%s`", name);
  if (corral__write_all(fd, buf, len) < 0)
    return corral_error_set(err, errno, "write `%s`", name);
  return 0;
}

int corral__write_file(const char *path, const char *buf, size_t len, corral_error_t *err)
{
  return corral__write_file_at(AT_FDCWD, path, buf, len, err);
}

int corral__create_file(const char *path, const char *buf, size_t len, mode_t mode,
                        corral_error_t *err)
{
  cleanup_close int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
  if (fd < 0)
    return corral_error_set(err, errno, "create `%s`", path);
  if (corral__write_all(fd, buf, len) < 0)
    return corral_error_set(err, errno, "write `%s`", path);
  return 0;
}

ssize_t corral__read_file_at(int dirfd, const char *name, char *buf, size_t bufsize)
{
  cleanup_close int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
  ssize_t n;
  if (fd < 0 || bufsize == 0)
    return -1;
  n = corral__read_all(fd, buf, bufsize - 1);
  if (n < 0)
    return -1;
  buf[n] = '\0';
  return n;
}

int corral__mkdir_p(const char *path, mode_t mode, corral_error_t *err)
{
  cleanup_free char *copy = strdup(path);
  char *p;
  if (copy == NULL)
    return corral_error_set(err, ENOMEM, "mkdir `%s`", path);
  for (p = copy + 1; *p; p++)
    {
      if (*p != '/')
        continue;
      *p = '\0';
      if (mkdir(copy, mode) < 0 && errno != EEXIST)
        return corral_error_set(err, errno, "mkdir `%s`", copy);
      *p = '/';
    }
  if (mkdir(copy, mode) < 0 && errno != EEXIST)
    return corral_error_set(err, errno, "mkdir `%s`", copy);
  return 0;
}

uint64_t corral__now_us(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000ULL;
}

uint64_t corral__now_ms(void)
{
  return corral__now_us() / 1000ULL;
}
