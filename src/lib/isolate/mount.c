/* The sandbox's filesystem, assembled inside a new mount namespace.
 *
 * Runs in the sandbox's PID 1, which is root only inside a user namespace
 * whose ids map to an unprivileged host block: nothing here can change the
 * host's mount table (the namespace is private to the sandbox and vanishes
 * with it) or write host files (host-owned inodes are not ours).
 *
 * Layout, following bubblewrap's approach: a scratch tmpfs over /tmp becomes
 * a temporary root with the host tree below /oldroot; /newroot (another
 * tmpfs) is filled with read-only binds, a generated /etc, /dev and /proc,
 * then entered with pivot_root(".", ".") and the old tree detached. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include "isolate.h"
#include "../common/utils.h"

#define OLD "/oldroot"
#define NEW "/newroot"

/* Where PID 1 finds a host path: through the supervisor's fd, or (host
 * mode) below the old root. */
static void source_path(char *buf, size_t size, int fd, const char *suffix)
{
  if (fd < 0)
    snprintf(buf, size, OLD "%s", suffix);
  else
    snprintf(buf, size, OLD "/proc/self/fd/%d%s", fd, strcmp(suffix, "/") == 0 ? "" : suffix);
}

int corral__sources_open(const corral_config_t *cfg, struct corral__sources *src, corral_error_t *err)
{
  src->rootfs_fd = -1;
  src->n_binds = 0;
  if (cfg->rootfs && (src->rootfs_fd = open(cfg->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
    return corral_error_set(err, errno, "rootfs `%s`", cfg->rootfs);
  for (; src->n_binds < cfg->n_binds; src->n_binds++)
    {
      int fd = open(cfg->binds[src->n_binds].src, O_PATH | O_CLOEXEC);
      if (fd < 0)
        {
          int r = corral_error_set(err, errno, "bind source `%s`", cfg->binds[src->n_binds].src);
          corral__sources_close(src);
          return r;
        }
      src->bind_fds[src->n_binds] = fd;
    }
  return 0;
}

void corral__sources_close(struct corral__sources *src)
{
  if (src->rootfs_fd >= 0)
    close(src->rootfs_fd);
  for (size_t i = 0; i < src->n_binds; i++)
    close(src->bind_fds[i]);
  src->rootfs_fd = -1;
  src->n_binds = 0;
}

static int mnt(const char *src, const char *dst, const char *type, unsigned long flags,
               const char *data, corral_error_t *err)
{
  if (mount(src, dst, type, flags, data) < 0)
    return corral_error_set(err, errno, "mount %s on `%s`", type ? type : src ? src : "(propagation)", dst);
  return 0;
}

static int set_attr(const char *path, uint64_t attr, bool recursive, corral_error_t *err)
{
  struct mount_attr a = { .attr_set = attr };
  if (mount_setattr(AT_FDCWD, path, recursive ? AT_RECURSIVE : 0, &a, sizeof(a)) < 0)
    return corral_error_set(err, errno, "make `%s` read-only", path);
  return 0;
}

/* Bind src on dst read-only, for mounts made after the new root as a
 * whole became read-only. */
static int bind_ro(const char *src, const char *dst, corral_error_t *err)
{
  if (mnt(src, dst, NULL, MS_BIND | MS_REC, NULL, err) < 0)
    return -1;
  return set_attr(dst, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, true, err);
}

static int make_mountpoint(const char *path, bool dir, corral_error_t *err)
{
  if (dir)
    {
      if (mkdir(path, 0755) < 0 && errno != EEXIST)
        return corral_error_set(err, errno, "mkdir `%s`", path);
      return 0;
    }
  int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0)
    return corral_error_set(err, errno, "create `%s`", path);
  close(fd);
  return 0;
}

/* Mirror src at dst: symlinks are copied, everything else bound. */
static int mirror(const char *src, const char *dst, corral_error_t *err)
{
  struct stat st;
  if (lstat(src, &st) < 0)
    return corral_error_set(err, errno, "stat `%s`", src);
  if (S_ISLNK(st.st_mode))
    {
      char target[4096];
      ssize_t n = readlink(src, target, sizeof(target) - 1);
      if (n < 0)
        return corral_error_set(err, errno, "readlink `%s`", src);
      target[n] = '\0';
      if (symlink(target, dst) < 0)
        return corral_error_set(err, errno, "symlink `%s`", dst);
      return 0;
    }
  if (make_mountpoint(dst, S_ISDIR(st.st_mode), err) < 0)
    return -1;
  /* Read-write only until build_tree() turns the whole new root
   * read-only; no sandbox code runs before then. */
  return mnt(src, dst, NULL, MS_BIND | MS_REC, NULL, err);
}

typedef bool (*entry_filter) (const char *name);

/* Mirror each entry of directory src into dst that `keep` accepts. */
static int mirror_dir(const char *src, const char *dst, entry_filter keep, corral_error_t *err)
{
  DIR *d = opendir(src);
  struct dirent *de;
  int r = 0;
  if (d == NULL)
    return corral_error_set(err, errno, "open `%s`", src);
  while (r == 0 && (de = readdir(d)) != NULL)
    {
      char s[4096], t[4096];
      if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 || !keep(de->d_name))
        continue;
      snprintf(s, sizeof(s), "%s/%s", src, de->d_name);
      snprintf(t, sizeof(t), "%s/%s", dst, de->d_name);
      r = mirror(s, t, err);
    }
  closedir(d);
  return r;
}

static bool in_list(const char *name, const char *const *list)
{
  for (; *list; list++)
    if (strcmp(name, *list) == 0)
      return true;
  return false;
}

/* Host mode shares only the system's code, never its data or secrets. */
static bool host_root_entry(const char *name)
{
  static const char *const keep[] = { "usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", NULL };
  return in_list(name, keep);
}

/* With --rootfs the image is the user's own: take it all but the places the
 * sandbox provides itself. */
static bool image_root_entry(const char *name)
{
  static const char *const own[] = { "proc", "dev", "sys", "tmp", "run", "etc", "home", "root", "mnt", "media", NULL };
  return !in_list(name, own);
}

static const char *const generated_etc[] = { "passwd", "group", "hosts", "hostname", "resolv.conf",
                                             "nsswitch.conf", "mtab", "shadow", "gshadow", NULL };

/* Only files that carry no secrets and that programs need to run: the
 * linker cache, alternatives links, CA certificates, locale and time data,
 * interpreter configuration.  Never shadow, ssh, ssl/private, sudoers,
 * credentials of package managers and the like. */
static bool host_etc_entry(const char *name)
{
  static const char *const keep[] = {
    "alternatives", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "ca-certificates",
    "ca-certificates.conf", "localtime", "timezone", "os-release", "debian_version", "mime.types",
    "matplotlibrc", "fonts", "protocols", "services", "bash.bashrc", "profile", "inputrc",
    "locale.alias", "magic", "magic.mime", "gai.conf", "host.conf", "networks", "rpc",
    "ethertypes", "papersize", "bindresvport.blacklist", "manpath.config", NULL
  };
  return in_list(name, keep) || strncmp(name, "python3", 7) == 0;
}

static bool image_etc_entry(const char *name)
{
  return !in_list(name, generated_etc);
}

static int write_etc(const char *name, const char *content, corral_error_t *err)
{
  char path[256];
  snprintf(path, sizeof(path), NEW "/etc/%s", name);
  return corral__create_file(path, content, strlen(content), 0644, err);
}

static int populate_etc(const corral_config_t *cfg, const struct corral__sources *srcs, const char *hostname,
                        corral_error_t *err)
{
  char src[4200], hosts[512], hn[300];
  if (make_mountpoint(NEW "/etc", true, err) < 0)
    return -1;
  snprintf(hosts, sizeof(hosts),
           "127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\tlocalhost ip6-localhost ip6-loopback\n", hostname);
  snprintf(hn, sizeof(hn), "%s\n", hostname);
  if (write_etc("passwd",
                "root:x:0:0:root:/root:/bin/bash\n"
                "user:x:1000:1000:user:/home/user:/bin/bash\n"
                "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n", err) < 0
      || write_etc("group", "root:x:0:\ntty:x:5:\nuser:x:1000:\nnogroup:x:65534:\n", err) < 0
      || write_etc("hosts", hosts, err) < 0 || write_etc("hostname", hn, err) < 0
      || write_etc("resolv.conf", "# corral: this sandbox has no network\n", err) < 0
      || write_etc("nsswitch.conf", "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n"
                                    "networks: files\nprotocols: files\nservices: files\n", err) < 0)
    return -1;
  if (symlink("../proc/self/mounts", NEW "/etc/mtab") < 0)
    return corral_error_set(err, errno, "symlink /etc/mtab");
  source_path(src, sizeof(src), srcs->rootfs_fd, "/etc");
  if (cfg->rootfs)
    return access(src, F_OK) == 0 ? mirror_dir(src, NEW "/etc", image_etc_entry, err) : 0;
  return mirror_dir(src, NEW "/etc", host_etc_entry, err);
}

static int populate_dev(corral_error_t *err)
{
  static const char *const nodes[] = { "null", "zero", "full", "random", "urandom", "tty", NULL };
  static const char *const links[][2] = {
    { "pts/ptmx", "ptmx" }, { "/proc/self/fd", "fd" }, { "/proc/self/fd/0", "stdin" },
    { "/proc/self/fd/1", "stdout" }, { "/proc/self/fd/2", "stderr" }, { NULL, NULL }
  };
  if (make_mountpoint(NEW "/dev", true, err) < 0
      || mnt("tmpfs", NEW "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k,nr_inodes=64", err) < 0)
    return -1;
  /* Device nodes cannot be created in a user namespace; binding the host's
   * harmless ones is the only way to have them. */
  for (int i = 0; nodes[i]; i++)
    {
      char s[64], d[64];
      snprintf(s, sizeof(s), OLD "/dev/%s", nodes[i]);
      snprintf(d, sizeof(d), NEW "/dev/%s", nodes[i]);
      if (make_mountpoint(d, false, err) < 0 || mnt(s, d, NULL, MS_BIND, NULL, err) < 0)
        return -1;
    }
  for (int i = 0; links[i][0]; i++)
    {
      char d[64];
      snprintf(d, sizeof(d), NEW "/dev/%s", links[i][1]);
      if (symlink(links[i][0], d) < 0)
        return corral_error_set(err, errno, "symlink `%s`", d);
    }
  if (make_mountpoint(NEW "/dev/pts", true, err) < 0 || make_mountpoint(NEW "/dev/shm", true, err) < 0)
    return -1;
  return 0;
}

/* Kernel interfaces that leak host information or allow host-wide changes:
 * read-only where programs read them, hidden where nobody should. */
static int mask_proc(corral_error_t *err)
{
  static const char *const ro[] = { "sys", "sysrq-trigger", "irq", "bus", "fs", "pressure", NULL };
  static const char *const hide_files[] = { "kcore", "keys", "key-users", "timer_list", "sched_debug",
                                            "latency_stats", "kallsyms", "kmsg", "config.gz",
                                            "kpagecount", "kpageflags", "kpagecgroup", "pagetypeinfo", NULL };
  static const char *const hide_dirs[] = { "acpi", "scsi", "asound", "firmware", "driver", "sysvipc_host", NULL };
  char p[128];
  struct stat st;

  for (int i = 0; ro[i]; i++)
    {
      snprintf(p, sizeof(p), NEW "/proc/%s", ro[i]);
      if (lstat(p, &st) == 0 && bind_ro(p, p, err) < 0)
        return -1;
    }
  for (int i = 0; hide_files[i]; i++)
    {
      snprintf(p, sizeof(p), NEW "/proc/%s", hide_files[i]);
      if (lstat(p, &st) == 0 && bind_ro(OLD "/dev/null", p, err) < 0)
        return -1;
    }
  for (int i = 0; hide_dirs[i]; i++)
    {
      snprintf(p, sizeof(p), NEW "/proc/%s", hide_dirs[i]);
      if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)
          && mnt("tmpfs", p, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0,nr_inodes=1", err) < 0)
        return -1;
    }
  return 0;
}

static int mount_scratch(const corral_config_t *cfg, corral_error_t *err)
{
  char opts[128];
  uid_t owner = cfg->as_root ? 0 : CORRAL_SANDBOX_UID;
  unsigned long fl = MS_NOSUID | MS_NODEV;

  snprintf(opts, sizeof(opts), "mode=1777,size=%llu", (unsigned long long) cfg->disk_bytes);
  if (mnt("tmpfs", NEW "/tmp", "tmpfs", fl, opts, err) < 0
      || mnt("tmpfs", NEW "/dev/shm", "tmpfs", fl | MS_NOEXEC, opts, err) < 0)
    return -1;
  snprintf(opts, sizeof(opts), "mode=0755,uid=%u,gid=%u,size=%llu", owner, owner,
           (unsigned long long) cfg->disk_bytes);
  if (mnt("tmpfs", NEW "/home/user", "tmpfs", fl, opts, err) < 0)
    return -1;
  return mnt("devpts", NEW "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
             "newinstance,ptmxmode=0666,mode=0620,gid=5", err);
}

/* Create the mountpoint of a user bind: before the root turns read-only for
 * destinations in the root tmpfs, again afterwards for ones in /tmp etc. */
static void precreate_bind_targets(const corral_config_t *cfg, const struct corral__sources *srcs)
{
  for (size_t i = 0; i < cfg->n_binds; i++)
    {
      char s[4200], d[4200], *slash;
      struct stat st;
      source_path(s, sizeof(s), srcs->bind_fds[i], "");
      snprintf(d, sizeof(d), NEW "%s", cfg->binds[i].dst);
      if (stat(s, &st) < 0 || lstat(d, &st) == 0)
        continue;
      slash = strrchr(d, '/');
      *slash = '\0';
      corral__mkdir_p(d, 0755, NULL);
      *slash = '/';
      make_mountpoint(d, S_ISDIR(st.st_mode), NULL);
    }
}

static int user_binds(const corral_config_t *cfg, const struct corral__sources *srcs, corral_error_t *err)
{
  precreate_bind_targets(cfg, srcs);
  for (size_t i = 0; i < cfg->n_binds; i++)
    {
      char s[4200], d[4200];
      struct stat st;
      source_path(s, sizeof(s), srcs->bind_fds[i], "");
      snprintf(d, sizeof(d), NEW "%s", cfg->binds[i].dst);
      if (lstat(d, &st) < 0)
        return corral_error_set(err, errno, "bind destination `%s` cannot be created", cfg->binds[i].dst);
      if (mnt(s, d, NULL, MS_BIND | MS_REC, NULL, err) < 0)
        return corral_error_wrap(err, "bind `%s`", cfg->binds[i].src);
      uint64_t attr = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | (cfg->binds[i].read_only ? MOUNT_ATTR_RDONLY : 0);
      if (set_attr(d, attr, true, err) < 0)
        return -1;
    }
  return 0;
}

static int build_tree(const corral_config_t *cfg, const struct corral__sources *srcs, corral_error_t *err)
{
  char src[4200];
  source_path(src, sizeof(src), srcs->rootfs_fd, "/");
  if (mirror_dir(src, NEW, cfg->rootfs ? image_root_entry : host_root_entry, err) < 0)
    return corral_error_wrap(err, "root filesystem");
  if (populate_etc(cfg, srcs, cfg->hostname ? cfg->hostname : "corral", err) < 0)
    return corral_error_wrap(err, "/etc");
  if (populate_dev(err) < 0)
    return corral_error_wrap(err, "/dev");
  if (make_mountpoint(NEW "/proc", true, err) < 0 || make_mountpoint(NEW "/tmp", true, err) < 0
      || make_mountpoint(NEW "/home", true, err) < 0 || make_mountpoint(NEW "/home/user", true, err) < 0
      || make_mountpoint(NEW "/root", true, err) < 0)
    return -1;
  precreate_bind_targets(cfg, srcs);
  /* Everything so far - the root tmpfs, /etc, /dev, host binds - becomes
   * read-only (and nosuid) in one recursive step. */
  if (set_attr(NEW, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, true, err) < 0)
    return -1;
  if (mnt("proc", NEW "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, err) < 0 || mask_proc(err) < 0)
    return corral_error_wrap(err, "/proc");
  if (mount_scratch(cfg, err) < 0)
    return -1;
  return user_binds(cfg, srcs, err);
}

int corral__setup_rootfs(const corral_config_t *cfg, const struct corral__sources *srcs, corral_error_t *err)
{
  /* Slave, not private: unmounts on the host still reach our copy, so the
   * sandbox never keeps a host filesystem busy; nothing flows back. */
  if (mnt(NULL, "/", NULL, MS_SLAVE | MS_REC, NULL, err) < 0)
    return -1;
  if (mnt("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64k", err) < 0)
    return -1;
  if (chdir("/tmp") < 0 || mkdir("newroot", 0755) < 0 || mkdir("oldroot", 0755) < 0)
    return corral_error_set(err, errno, "prepare scratch root");
  if (syscall(SYS_pivot_root, ".", "oldroot") < 0)
    return corral_error_set(err, errno, "pivot_root to scratch");
  if (chdir("/") < 0)
    return corral_error_set(err, errno, "chdir /");
  if (mnt("tmpfs", NEW, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m", err) < 0)
    return -1;
  if (build_tree(cfg, srcs, err) < 0)
    return -1;
  /* pivot_root(".", ".") stacks the old root on the new one; detaching it
   * drops every host mount from this namespace. */
  if (chdir(NEW) < 0 || syscall(SYS_pivot_root, ".", ".") < 0)
    return corral_error_set(err, errno, "pivot_root into the sandbox");
  if (umount2(".", MNT_DETACH) < 0)
    return corral_error_set(err, errno, "detach the host filesystem");
  if (chdir("/") < 0)
    return corral_error_set(err, errno, "chdir /");
  return 0;
}
