/* Check plumbing: reporting from a check, errno expectations, small helpers. */
#include "escape.h"

static void __attribute__((noreturn, format(printf, 2, 0))) finish(int code, const char *fmt, va_list ap)
{
  char buf[1024];
  int n = vsnprintf(buf, sizeof(buf), fmt, ap);
  if (n > 0 && detail_fd >= 0)
    {
      size_t len = (size_t) n < sizeof(buf) ? (size_t) n : sizeof(buf) - 1;
      for (size_t i = 0; i < len; i++)
        if (buf[i] == '\n')
          buf[i] = ' ';
      if (write(detail_fd, buf, len) < 0)
        { /* nothing to do */ }
    }
  _exit(code);
}

void __attribute__((noreturn, format(printf, 1, 2))) esc_fail(const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  finish(1, fmt, ap);
}

void __attribute__((noreturn, format(printf, 1, 2))) esc_skip(const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  finish(77, fmt, ap);
}

/* A passing check may leave a note (printed as a TAP comment). */
void __attribute__((format(printf, 1, 2))) esc_note(const char *fmt, ...)
{
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  if (n > 0 && detail_fd >= 0 && write(detail_fd, buf, (size_t) n < sizeof(buf) ? (size_t) n : sizeof(buf) - 1) < 0)
    { /* ignore */ }
}

const char *esc_ename(int e)
{
  const char *s = strerrorname_np(e);
  return s ? s : "E?";
}

/* The call must fail with errno `want`. */
void esc_expect_errno(long r, int e, int want, const char *what)
{
  if (r != -1)
    esc_fail("%s succeeded (returned %ld)", what, r);
  if (e != want)
    esc_fail("%s: errno %s, expected %s", what, esc_ename(e), esc_ename(want));
}

/* The call must fail with one of the errnos in the 0-terminated list. */
void esc_expect_errno_in(long r, int e, const int *ok, const char *what)
{
  char list[256] = "";
  if (r != -1)
    esc_fail("%s succeeded (returned %ld)", what, r);
  for (const int *p = ok; *p; p++)
    {
      if (e == *p)
        return;
      snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", p == ok ? "" : "/", esc_ename(*p));
    }
  esc_fail("%s: errno %s, expected %s", what, esc_ename(e), list);
}

const char *esc_env_or_skip(const char *name)
{
  const char *v = getenv(name);
  if (v == NULL || *v == '\0')
    esc_skip("%s not set", name);
  return v;
}

ssize_t esc_read_small(const char *path, char *buf, size_t size)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0)
    return -1;
  ssize_t n = read(fd, buf, size - 1);
  int e = errno;
  close(fd);
  errno = e;
  if (n >= 0)
    buf[n] = '\0';
  return n;
}

/* The value of a "Key:\t..." line of /proc/self/status. */
bool esc_status_field(const char *key, char *out, size_t size)
{
  char buf[8192];
  if (esc_read_small("/proc/self/status", buf, sizeof(buf)) < 0)
    return false;
  size_t kl = strlen(key);
  for (char *line = buf; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
    if (strncmp(line, key, kl) == 0 && line[kl] == ':')
      {
        char *v = line + kl + 1;
        while (*v == ' ' || *v == '\t')
          v++;
        size_t n = strcspn(v, "\n");
        snprintf(out, size, "%.*s", (int) n, v);
        return true;
      }
  return false;
}

int esc_count_entries(const char *dir, const char *except)
{
  DIR *d = opendir(dir);
  struct dirent *de;
  int n = 0;
  if (d == NULL)
    return -1;
  while ((de = readdir(d)) != NULL)
    if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") && !(except && strcmp(de->d_name, except) == 0))
      n++;
  closedir(d);
  return n;
}

/* Run fn in a grandchild; return its wait status. */
int esc_in_child(void (*fn)(void))
{
  pid_t p = fork();
  int st;
  if (p < 0)
    esc_fail("fork: %s", strerror(errno));
  if (p == 0)
    {
      fn();
      _exit(0);
    }
  while (waitpid(p, &st, 0) < 0)
    if (errno != EINTR)
      esc_fail("waitpid: %s", strerror(errno));
  return st;
}

void esc_expect_sigsys(int st, const char *what)
{
  if (WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS)
    return;
  if (WIFSIGNALED(st))
    esc_fail("%s: killed by signal %d, expected SIGSYS", what, WTERMSIG(st));
  if (WEXITSTATUS(st) == 0)
    esc_fail("%s: the call succeeded", what);
  esc_fail("%s: exited %d (the call failed without killing), expected SIGSYS", what, WEXITSTATUS(st));
}

pid_t esc_spawn_sleeper(void)
{
  pid_t p = fork();
  if (p < 0)
    esc_fail("fork: %s", strerror(errno));
  if (p == 0)
    {
      for (;;)
        pause();
    }
  return p;
}

void esc_reap(pid_t p)
{
  kill(p, SIGKILL);
  waitpid(p, NULL, 0);
}
