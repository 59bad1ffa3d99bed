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
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <sys/syscall.h>
#include "guest.h"
#include "../common/utils.h"
#include "../isolate/isolate.h"

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

#define META_PREFIX "user.e2b.meta."

/* E2B's file metadata: user xattrs, so that it stays with the file (moves
 * included) and needs no store of its own. */
static int set_meta(int fd, const struct corral__msg *req)
{
  char **meta = corral__msg_strv(req, CORRAL__T_META, NULL);
  int r = 0;
  for (char **kv = meta; kv && *kv && r == 0; kv++)
    {
      char name[256], *eq = strchr(*kv, '=');
      if (!eq || eq == *kv || (size_t) (eq - *kv) >= sizeof(name) - sizeof(META_PREFIX))
        {
          errno = EINVAL;
          r = -1;
          break;
        }
      snprintf(name, sizeof(name), META_PREFIX "%.*s", (int) (eq - *kv), *kv);
      r = fsetxattr(fd, name, eq + 1, strlen(eq + 1), 0);
    }
  corral__strv_free(meta);
  return r;
}

/* The metadata of a regular file as META fields (none when it has none or
 * the filesystem keeps no xattrs). */
static void add_meta(struct corral__frame *f, const char *abs)
{
  char names[4096], value[1024], kv[1300];
  ssize_t n = llistxattr(abs, names, sizeof(names));
  for (ssize_t off = 0; n > 0 && off < n; off += (ssize_t) strlen(names + off) + 1)
    {
      const char *name = names + off;
      if (strncmp(name, META_PREFIX, strlen(META_PREFIX)) != 0)
        continue;
      ssize_t l = lgetxattr(abs, name, value, sizeof(value) - 1);
      if (l < 0)
        continue;
      value[l] = '\0';
      snprintf(kv, sizeof(kv), "%s=%s", name + strlen(META_PREFIX), value);
      corral__frame_add_str(f, CORRAL__T_META, kv);
    }
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
  if (S_ISREG(st.st_mode))
    add_meta(&f, abs);
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

static int do_write(int out, const char *abs, mode_t mode, const struct corral__msg *req)
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
  if (set_meta(fd, req) < 0)
    return corral__reply_error(out, errno, "set the metadata of `%s`", abs);
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

/* ---- watching a directory ----
 *
 * inotify on the directory (and with RECURSIVE on every directory under
 * it, those made later included), one R_EVENT per change, until the daemon
 * hangs up.  Names are relative to the watched directory; inotify reports
 * the same kinds as Go's fsnotify, which envd uses, and is mapped the same
 * way. */

#define MAX_WATCHES 4096  /* directories watched by one request */
#define MAX_WATCH_DEPTH 32
#define WATCH_MASK (IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_MODIFY | IN_DELETE | IN_ATTRIB | IN_DELETE_SELF \
                    | IN_MOVE_SELF | IN_ONLYDIR | IN_DONT_FOLLOW | IN_EXCL_UNLINK)

struct watch
{
  int wd;
  char *rel; /* path under the watched directory; "" for itself */
};

struct watcher
{
  int out, ifd, root; /* the connection, the inotify instance, the watched directory (O_PATH) */
  const char *abs;    /* the watched directory's path, for entries */
  bool recursive, with_entry;
  size_t n;
  struct watch w[MAX_WATCHES];
};

/* rel/name, or NULL (ENOMEM, ENAMETOOLONG). */
static char *join(const char *rel, const char *name)
{
  char *s = NULL;
  if (strlen(rel) + strlen(name) + 2 > PATH_MAX)
    return errno = ENAMETOOLONG, NULL;
  if (asprintf(&s, "%s%s%s", rel, *rel ? "/" : "", name) < 0)
    return NULL;
  return s;
}

/* Open a path under the watched directory without following any symlink:
 * whatever was swapped in since it was seen, nothing outside is reached. */
static int open_beneath(const struct watcher *W, const char *rel, int flags)
{
  struct open_how how = { .flags = (uint64_t) flags | O_NOFOLLOW | O_CLOEXEC,
                          .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS };
  return (int) syscall(SYS_openat2, W->root, *rel ? rel : ".", &how, sizeof(how));
}

static struct watch *watch_find(struct watcher *W, int wd)
{
  for (size_t i = 0; i < W->n; i++)
    if (W->w[i].wd == wd)
      return &W->w[i];
  return NULL;
}

static void watch_drop(struct watcher *W, struct watch *x)
{
  free(x->rel);
  *x = W->w[--W->n];
}

static int watch_record(struct watcher *W, int wd, const char *rel)
{
  char *copy = strdup(rel);
  struct watch *x = watch_find(W, wd);
  if (!copy)
    return -1;
  if (!x)
    {
      x = &W->w[W->n++];
      x->wd = wd;
    }
  else
    free(x->rel);
  x->rel = copy;
  return 0;
}

/* Watch the directory open at fd (closed here) as rel, and with recursion
 * the directories under it.  -1 when the directory itself cannot be
 * watched or the table is full (ENOSPC); a subdirectory that vanished or is
 * not ours to read is skipped. */
static int watch_tree(struct watcher *W, int fd, const char *rel, unsigned depth)
{
  if (W->n >= MAX_WATCHES)
    return close(fd), errno = ENOSPC, -1;
  /* By the open directory, not a path that could be swapped meanwhile. */
  int wd = fchdir(fd) == 0 ? inotify_add_watch(W->ifd, ".", WATCH_MASK) : -1;
  if (wd < 0 || watch_record(W, wd, rel) < 0)
    {
      int e = errno;
      close(fd);
      return errno = e, -1;
    }
  DIR *d = W->recursive && depth < MAX_WATCH_DEPTH ? fdopendir(fd) : NULL;
  if (!d)
    return close(fd), 0;
  struct dirent *e;
  int r = 0;
  while (r == 0 && (e = readdir(d)))
    {
      if ((e->d_type != DT_DIR && e->d_type != DT_UNKNOWN) || strcmp(e->d_name, ".") == 0
          || strcmp(e->d_name, "..") == 0)
        continue;
      cleanup_free char *child = join(rel, e->d_name);
      int cfd = child ? openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) : -1;
      if (cfd >= 0 && watch_tree(W, cfd, child, depth + 1) < 0 && errno == ENOSPC)
        r = -1;
    }
  closedir(d);
  return r;
}

/* A directory moved away: drop its watches, which would report it under
 * its old name (a move within the tree is a move away, then a move in). */
static void unwatch_tree(struct watcher *W, const char *rel)
{
  size_t len = strlen(rel);
  for (size_t i = 0; i < W->n;)
    if (strncmp(W->w[i].rel, rel, len) == 0 && (W->w[i].rel[len] == '\0' || W->w[i].rel[len] == '/'))
      {
        inotify_rm_watch(W->ifd, W->w[i].wd);
        watch_drop(W, &W->w[i]);
      }
    else
      i++;
}

/* A directory appeared under a recursive watch: watch it too.  Past the
 * table's bound it goes unwatched; the watch goes on. */
static void track_dir(struct watcher *W, const char *rel, uint32_t mask)
{
  if (mask & IN_MOVED_FROM)
    unwatch_tree(W, rel);
  if (!(mask & (IN_CREATE | IN_MOVED_TO)))
    return;
  unsigned depth = 1;
  for (const char *c = rel; *c; c++)
    depth += *c == '/';
  int fd = open_beneath(W, rel, O_RDONLY | O_DIRECTORY);
  if (fd >= 0)
    watch_tree(W, fd, rel, depth);
}

static int send_event(struct watcher *W, const char *name, uint64_t type)
{
  struct corral__frame f;
  if (W->with_entry && type != CORRAL__EV_REMOVE && type != CORRAL__EV_RENAME)
    {
      char abs[PATH_MAX];
      bool self = strcmp(name, ".") == 0;
      cleanup_close int fd = open_beneath(W, self ? "" : name, O_PATH);
      snprintf(abs, sizeof(abs), "%s%s%s", W->abs, self || strcmp(W->abs, "/") == 0 ? "" : "/", self ? "" : name);
      /* Gone again already: the event goes without its entry. */
      if (fd >= 0 && send_entry(W->out, fd, abs) < 0)
        return -1;
    }
  corral__frame_init(&f, CORRAL__R_EVENT);
  corral__frame_add_str(&f, CORRAL__T_NAME, name);
  corral__frame_add_u64(&f, CORRAL__T_TYPE, type);
  return corral__frame_send(W->out, &f);
}

static int handle_event(struct watcher *W, const struct inotify_event *ev)
{
  static const struct
  {
    uint32_t mask;
    uint64_t type;
  } kinds[] = { { IN_CREATE | IN_MOVED_TO, CORRAL__EV_CREATE }, { IN_MOVED_FROM, CORRAL__EV_RENAME },
                { IN_ATTRIB, CORRAL__EV_CHMOD },                { IN_MODIFY, CORRAL__EV_WRITE },
                { IN_DELETE, CORRAL__EV_REMOVE } };
  if (ev->mask & IN_Q_OVERFLOW)
    return corral__reply_error(W->out, ENOBUFS, "too many changes at once: events were lost"), -1;
  struct watch *x = watch_find(W, ev->wd);
  if (!x)
    return 0;
  if (ev->mask & IN_IGNORED)
    return watch_drop(W, x), 0;
  /* A subdirectory's own going is its parent's IN_DELETE / IN_MOVED_FROM. */
  if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF))
    return x->rel[0] ? 0 : send_event(W, ".", ev->mask & IN_DELETE_SELF ? CORRAL__EV_REMOVE : CORRAL__EV_RENAME);
  /* The directory's own attributes: its parent's event, but for the
   * watched directory itself. */
  if (ev->len == 0 || ev->name[0] == '\0')
    return x->rel[0] == '\0' && (ev->mask & IN_ATTRIB) ? send_event(W, ".", CORRAL__EV_CHMOD) : 0;
  cleanup_free char *name = join(x->rel, ev->name);
  if (!name)
    return 0;
  if (W->recursive && (ev->mask & IN_ISDIR))
    track_dir(W, name, ev->mask); /* x may have moved: not used below */
  for (size_t i = 0; i < sizeof(kinds) / sizeof(*kinds); i++)
    if ((ev->mask & kinds[i].mask) && send_event(W, name, kinds[i].type) < 0)
      return -1;
  return 0;
}

static int watch_loop(struct watcher *W)
{
  cleanup_free char *buf = malloc(64u << 10); /* malloc's alignment suits inotify_event */
  struct pollfd p[2] = { { W->ifd, POLLIN, 0 }, { W->out, POLLIN | POLLRDHUP, 0 } };
  if (!buf)
    return -1;
  for (;;)
    {
      if (poll(p, 2, -1) < 0)
        {
          if (errno == EINTR)
            continue;
          return -1;
        }
      /* The daemon sends nothing after the request: anything on the
       * connection is its going, and the worker goes with it. */
      if (p[1].revents)
        return 0;
      if (p[0].revents & (POLLERR | POLLNVAL))
        return -1;
      ssize_t n = read(W->ifd, buf, 64u << 10);
      if (n < 0 && (errno == EINTR || errno == EAGAIN))
        continue;
      if (n <= 0)
        return -1;
      for (ssize_t off = 0; off + (ssize_t) sizeof(struct inotify_event) <= n;)
        {
          const struct inotify_event *ev = (const void *) (buf + off);
          if (handle_event(W, ev) < 0)
            return -1;
          off += (ssize_t) (sizeof(*ev) + ev->len);
        }
    }
}

static void watcher_free(struct watcher *W)
{
  while (W->n)
    watch_drop(W, &W->w[0]);
  if (W->ifd >= 0)
    close(W->ifd);
  if (W->root >= 0)
    close(W->root);
  free(W);
}

/* This worker lives as long as its client: it must hold nothing else of
 * the agent's (other connections, the pipes of commands), or their other
 * ends would never see EOF.  The connection becomes fd 3. */
static int keep_only(int fd)
{
  if (fd != 3 && dup2(fd, 3) < 0)
    return -1;
  corral__close_fds_from(4);
  return 3;
}

static int do_watch(int out, const char *abs, bool recursive, bool with_entry)
{
  struct watcher *W = calloc(1, sizeof(*W));
  if ((out = keep_only(out)) < 0 || !W)
    return free(W), -1;
  *W = (struct watcher) { .out = out, .ifd = -1, .abs = abs, .recursive = recursive, .with_entry = with_entry };
  int r = -1;
  if ((W->root = resolve(abs, O_PATH | O_DIRECTORY, 0)) < 0)
    r = corral__reply_error(out, errno, errno == ENOTDIR ? "`%s` is not a directory" : "`%s`", abs);
  else if ((W->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) < 0 && errno == EMFILE)
    /* The uid's instances, shared with other sandboxes: no file of ours. */
    r = corral__reply_error(out, ENOSPC, "too many directory watches at once (fs.inotify.max_user_instances)");
  else if (W->ifd < 0)
    r = corral__reply_error(out, errno, "watch `%s`", abs);
  else
    {
      int fd = openat(W->root, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      int w = fd < 0 ? -1 : watch_tree(W, fd, "", 0);
      if (w < 0 && errno == ENOSPC)
        r = corral__reply_error(out, ENOSPC, "too many directories under `%s` to watch (at most %d)", abs,
                                MAX_WATCHES);
      else if (w < 0)
        r = corral__reply_error(out, errno, "watch `%s`", abs);
      else if (send_ok_size(out, 0) == 0)
        r = watch_loop(W);
    }
  watcher_free(W);
  return r;
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
      return do_write(fd, abs, (mode_t) v, req) < 0;
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
    case CORRAL__REQ_WATCH:
      {
        uint64_t with_entry = 0;
        corral__msg_u64(req, CORRAL__T_RECURSIVE, &v);
        corral__msg_u64(req, CORRAL__T_WITH_ENTRY, &with_entry);
        return do_watch(fd, abs, v != 0, with_entry != 0) < 0;
      }
    default: return corral__reply_error(fd, EINVAL, "unknown file request") < 0;
    }
}
