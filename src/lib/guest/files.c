/* File operations of the agent.  Each request runs in its own forked
 * process with blocking I/O, so a 100 MB transfer never stalls the agent's
 * command loop.
 *
 * Every path is resolved with openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
 * from the sandbox's "/": `..` and absolute symlinks stay inside, and
 * /proc magic links (/proc/N/root, /proc/N/fd/...) cannot be followed out.
 * The agent already runs inside the sandbox's root as the sandbox user, so
 * this is a second fence, and the kernel's permission checks do the rest. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include "guest.h"
#include "../common/utils.h"

#define HOME "/home/user"
#define CHUNK (256u << 10)

int corral__reply_error(int fd, int err_no, const char *fmt, ...)
{
  struct corral__frame f;
  char text[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof(text), fmt, ap);
  va_end(ap);
  corral__frame_init(&f, CORRAL__R_ERROR);
  corral__frame_add_u64(&f, CORRAL__T_ERRNO, (uint64_t) err_no);
  corral__frame_add_str(&f, CORRAL__T_TEXT, text);
  return corral__frame_send(fd, &f);
}

static int resolve(const char *path, int flags, mode_t mode)
{
  struct open_how how = { .flags = (uint64_t) flags | O_CLOEXEC, .mode = mode,
                          .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS };
  if (flags & O_CREAT)
    how.flags |= O_NOFOLLOW;
  return (int) syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof(how));
}

/* Absolute path: relative ones are under the home. */
static int absolute(const char *in, char *out, size_t size)
{
  if (!in || !*in || strlen(in) >= PATH_MAX - sizeof(HOME))
    return errno = EINVAL, -1;
  snprintf(out, size, "%s%s%s", in[0] == '/' ? "" : HOME, in[0] == '/' ? "" : "/", in);
  size_t n = strlen(out);
  while (n > 1 && out[n - 1] == '/')
    out[--n] = '\0';
  return 0;
}

/* Open the parent directory of abs (O_PATH) and point *base at the last
 * component. */
static int open_parent(char *abs, const char **base)
{
  char *slash = strrchr(abs, '/');
  if (!slash || slash[1] == '\0' || strcmp(slash + 1, ".") == 0 || strcmp(slash + 1, "..") == 0)
    return errno = EINVAL, -1;
  *slash = '\0';
  int fd = resolve(*abs ? abs : "/", O_PATH | O_DIRECTORY, 0);
  *slash = '/';
  *base = slash + 1;
  return fd;
}

static int mkdir_parents(const char *abs, bool include_last)
{
  char buf[PATH_MAX];
  snprintf(buf, sizeof(buf), "%s", abs);
  size_t n = strlen(buf);
  if (!include_last)
    {
      char *s = strrchr(buf, '/');
      n = s ? (size_t) (s - buf) : 0;
      buf[n] = '\0';
    }
  for (size_t i = 1; i <= n; i++)
    {
      if (buf[i] != '/' && buf[i] != '\0')
        continue;
      char saved = buf[i];
      buf[i] = '\0';
      const char *base = strrchr(buf, '/') + 1;
      /* "//", "." and ".." need no directory; openat2 resolves them later. */
      if (*base && strcmp(base, ".") && strcmp(base, ".."))
        {
          cleanup_close int pfd = open_parent(buf, &base);
          if (pfd < 0 || (mkdirat(pfd, base, 0755) < 0 && errno != EEXIST))
            return -1;
        }
      buf[i] = saved;
    }
  return 0;
}

static const char *type_name(mode_t m)
{
  return S_ISREG(m) ? "file" : S_ISDIR(m) ? "dir" : S_ISLNK(m) ? "symlink" : "other";
}

/* One R_ENTRY frame for the object open at fd (O_PATH|O_NOFOLLOW). */
static int send_entry(int out, int fd, const char *abs)
{
  struct stat st;
  struct corral__frame f;
  const char *name = strrchr(abs, '/');
  if (fstat(fd, &st) < 0)
    return -1;
  corral__frame_init(&f, CORRAL__R_ENTRY);
  corral__frame_add_str(&f, CORRAL__T_NAME, name && name[1] ? name + 1 : "/");
  corral__frame_add_str(&f, CORRAL__T_PATH, abs);
  corral__frame_add_str(&f, CORRAL__T_TYPE, type_name(st.st_mode));
  corral__frame_add_u64(&f, CORRAL__T_SIZE, (uint64_t) st.st_size);
  corral__frame_add_u64(&f, CORRAL__T_MODE, (uint64_t) (st.st_mode & 07777));
  corral__frame_add_u64(&f, CORRAL__T_MTIME,
                        (uint64_t) st.st_mtim.tv_sec * 1000 + (uint64_t) st.st_mtim.tv_nsec / 1000000);
  if (S_ISLNK(st.st_mode))
    {
      char target[PATH_MAX];
      ssize_t n = readlinkat(fd, "", target, sizeof(target) - 1);
      if (n >= 0)
        corral__frame_add(&f, CORRAL__T_TARGET, target, (size_t) n);
    }
  return corral__frame_send(out, &f);
}

static int send_entry_path(int out, const char *abs)
{
  cleanup_close int fd = resolve(abs, O_PATH | O_NOFOLLOW, 0);
  if (fd < 0)
    return corral__reply_error(out, errno, "`%s`", abs);
  return send_entry(out, fd, abs);
}

static int send_end(int out)
{
  struct corral__frame f;
  corral__frame_init(&f, CORRAL__M_END);
  return corral__frame_send(out, &f);
}

static int send_ok_size(int out, uint64_t size)
{
  struct corral__frame f;
  corral__frame_init(&f, CORRAL__R_OK);
  corral__frame_add_u64(&f, CORRAL__T_SIZE, size);
  return corral__frame_send(out, &f);
}

static int do_read(int out, const char *abs)
{
  cleanup_close int fd = resolve(abs, O_RDONLY, 0);
  struct stat st;
  cleanup_free char *buf = malloc(CHUNK);
  if (fd < 0 || fstat(fd, &st) < 0)
    return corral__reply_error(out, errno, "`%s`", abs);
  if (S_ISDIR(st.st_mode))
    return corral__reply_error(out, EISDIR, "`%s` is a directory", abs);
  if (!buf)
    return corral__reply_error(out, ENOMEM, "read buffer");
  if (send_ok_size(out, S_ISREG(st.st_mode) ? (uint64_t) st.st_size : UINT64_MAX) < 0)
    return -1;
  for (;;)
    {
      ssize_t n = read(fd, buf, CHUNK);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        return corral__reply_error(out, errno, "read `%s`", abs);
      if (n == 0)
        return send_end(out);
      if (corral__send_data(out, CORRAL__M_DATA, buf, (size_t) n) < 0)
        return -1;
    }
}

static int do_write(int out, const char *abs, mode_t mode)
{
  uint8_t *buf = NULL;
  size_t cap = 0;
  uint64_t total = 0;
  struct corral__msg m;
  int r;
  if (mkdir_parents(abs, false) < 0)
    return corral__reply_error(out, errno, "create the parents of `%s`", abs);
  cleanup_close int fd = resolve(abs, O_WRONLY | O_CREAT | O_TRUNC, mode);
  if (fd < 0)
    return corral__reply_error(out, errno, "`%s`", abs);
  if (send_ok_size(out, 0) < 0)
    return -1;
  while ((r = corral__frame_recv(out, &buf, &cap, &m, 60000)) > 0 && m.type == CORRAL__M_DATA)
    {
      const uint8_t *d;
      uint32_t l;
      if (!corral__msg_get(&m, CORRAL__T_DATA, &d, &l))
        continue;
      if (corral__write_all(fd, d, l) < 0)
        {
          int e = errno;
          free(buf);
          return corral__reply_error(out, e, "write `%s`", abs);
        }
      total += l;
    }
  free(buf);
  if (r <= 0 || m.type != CORRAL__M_END)
    return -1; /* the upload was cut: the caller reports it */
  return send_ok_size(out, total);
}

static int list_dir(int out, const char *abs, unsigned depth)
{
  cleanup_close int fd = resolve(abs, O_RDONLY | O_DIRECTORY, 0);
  if (fd < 0)
    return -1;
  DIR *d = fdopendir(fd);
  if (!d)
    return -1;
  fd = -1;
  struct dirent *e;
  int r = 0;
  while (r == 0 && (e = readdir(d)))
    {
      char child[PATH_MAX];
      if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
        continue;
      snprintf(child, sizeof(child), "%s%s%s", abs, strcmp(abs, "/") ? "/" : "", e->d_name);
      cleanup_close int cfd = openat(dirfd(d), e->d_name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
      if (cfd < 0)
        continue;
      r = send_entry(out, cfd, child);
      if (r == 0 && depth > 1 && e->d_type == DT_DIR)
        list_dir(out, child, depth - 1);
    }
  closedir(d);
  return r;
}

static int do_list(int out, const char *abs, uint64_t depth)
{
  struct stat st;
  cleanup_close int fd = resolve(abs, O_PATH, 0);
  if (fd < 0 || fstat(fd, &st) < 0)
    return corral__reply_error(out, errno, "`%s`", abs);
  if (!S_ISDIR(st.st_mode))
    return corral__reply_error(out, ENOTDIR, "`%s` is not a directory", abs);
  if (list_dir(out, abs, depth < 1 ? 1 : depth > 16 ? 16 : (unsigned) depth) < 0)
    return corral__reply_error(out, errno, "list `%s`", abs);
  return send_end(out);
}

static int remove_tree(int pfd, const char *base)
{
  if (unlinkat(pfd, base, 0) == 0)
    return 0;
  if (errno != EISDIR && errno != EPERM)
    return -1;
  cleanup_close int fd = openat(pfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return -1;
  DIR *d = fdopendir(fd);
  if (!d)
    return -1;
  fd = -1;
  struct dirent *e;
  while ((e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && remove_tree(dirfd(d), e->d_name) < 0)
      {
        closedir(d);
        return -1;
      }
  closedir(d);
  return unlinkat(pfd, base, AT_REMOVEDIR);
}

static int do_remove(int out, char *abs, bool recursive)
{
  const char *base;
  struct stat st;
  cleanup_close int pfd = open_parent(abs, &base);
  if (pfd < 0 || fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0)
    return corral__reply_error(out, errno, "`%s`", abs);
  int r = S_ISDIR(st.st_mode) ? (recursive ? remove_tree(pfd, base) : unlinkat(pfd, base, AT_REMOVEDIR))
                              : unlinkat(pfd, base, 0);
  if (r < 0)
    return corral__reply_error(out, errno, "remove `%s`", abs);
  return send_ok_size(out, 0);
}

static int do_move(int out, char *from, char *to)
{
  const char *b1, *b2;
  cleanup_close int p1 = open_parent(from, &b1);
  if (p1 < 0)
    return corral__reply_error(out, errno, "`%s`", from);
  if (mkdir_parents(to, false) < 0)
    return corral__reply_error(out, errno, "create the parents of `%s`", to);
  cleanup_close int p2 = open_parent(to, &b2);
  if (p2 < 0)
    return corral__reply_error(out, errno, "`%s`", to);
  if (renameat(p1, b1, p2, b2) < 0)
    return corral__reply_error(out, errno, "move `%s` to `%s`", from, to);
  return send_entry_path(out, to);
}

int corral__files_serve(int fd, const struct corral__msg *req)
{
  char abs[PATH_MAX], to[PATH_MAX];
  cleanup_free char *path = corral__msg_strdup(req, CORRAL__T_PATH);
  uint64_t v = 0;
  if (absolute(path, abs, sizeof(abs)) < 0)
    return corral__reply_error(fd, EINVAL, "a path is required") < 0;
  switch (req->type)
    {
    case CORRAL__REQ_FREAD: return do_read(fd, abs) < 0;
    case CORRAL__REQ_FWRITE:
      if (!corral__msg_u64(req, CORRAL__T_MODE, &v) || v > 07777)
        v = 0644;
      return do_write(fd, abs, (mode_t) v) < 0;
    case CORRAL__REQ_FLIST:
      corral__msg_u64(req, CORRAL__T_DEPTH, &v);
      return do_list(fd, abs, v) < 0;
    case CORRAL__REQ_FSTAT: return send_entry_path(fd, abs) < 0;
    case CORRAL__REQ_MKDIR:
      if (mkdir_parents(abs, true) < 0)
        return corral__reply_error(fd, errno, "mkdir `%s`", abs) < 0;
      return send_entry_path(fd, abs) < 0;
    case CORRAL__REQ_MOVE:
      {
        cleanup_free char *dst = corral__msg_strdup(req, CORRAL__T_TO);
        if (absolute(dst, to, sizeof(to)) < 0)
          return corral__reply_error(fd, EINVAL, "a destination is required") < 0;
        return do_move(fd, abs, to) < 0;
      }
    case CORRAL__REQ_REMOVE:
      corral__msg_u64(req, CORRAL__T_RECURSIVE, &v);
      return do_remove(fd, abs, v != 0) < 0;
    default: return corral__reply_error(fd, EINVAL, "unknown file request") < 0;
    }
}
