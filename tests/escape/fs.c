/* Filesystem, host data and devices. */
#include "escape.h"

/* ------------------------------------------------------------------ */
/* Devices                                                              */

void esc_chk_mknod_char(void) { DENIED(mknod("/tmp/escape-mem", S_IFCHR | 0666, makedev(1, 1))); }
void esc_chk_mknod_block(void) { DENIED(mknodat(AT_FDCWD, "/tmp/escape-vda", S_IFBLK | 0666, makedev(253, 0))); }

void esc_chk_mknod_highbits(void)
{
  DENIED(syscall(SYS_mknod, "/tmp/escape-mem2", (1UL << 32) | S_IFCHR | 0666, makedev(1, 1)));
  DENIED(syscall(SYS_mknodat, AT_FDCWD, "/tmp/escape-mem3", (1UL << 32) | S_IFBLK | 0666, makedev(8, 0)));
}

static void expect_absent(const char *const *paths)
{
  for (int i = 0; paths[i]; i++)
    {
      struct stat st;
      errno = 0;
      long r = lstat(paths[i], &st);
      char what[128];
      snprintf(what, sizeof(what), "stat(%s)", paths[i]);
      esc_expect_errno(r, errno, ENOENT, what);
    }
}

void esc_chk_dev_mem_absent(void)
{
  static const char *const p[] = { "/dev/mem", "/dev/kmem", "/dev/port", NULL };
  expect_absent(p);
  EXPECT(ENOENT, open("/dev/mem", O_RDONLY | O_CLOEXEC));
}

void esc_chk_dev_kmsg_absent(void)
{
  static const char *const p[] = { "/dev/kmsg", "/dev/console", "/dev/tty0", "/dev/tty1", "/dev/vcs", NULL };
  expect_absent(p);
}

void esc_chk_dev_disks_absent(void)
{
  static const char *const p[] = { "/dev/sda", "/dev/vda", "/dev/nvme0n1", "/dev/xvda", "/dev/loop0",
                                   "/dev/loop-control", "/dev/mapper", "/dev/dm-0", "/dev/disk", NULL };
  expect_absent(p);
}

void esc_chk_dev_misc_absent(void)
{
  static const char *const p[] = { "/dev/kvm", "/dev/fuse", "/dev/net", "/dev/userfaultfd", "/dev/autofs",
                                   "/dev/btrfs-control", "/dev/cpu", "/dev/hwrng", "/dev/vhost-net", "/dev/vsock",
                                   "/dev/uinput", "/dev/snapshot", NULL };
  expect_absent(p);
}

/* Walk /dev: no block device anywhere, only the harmless character ones. */
void esc_chk_dev_nodes_minimal(void)
{
  static const char *const ok[] = { "null", "zero", "full", "random", "urandom", "tty", "ptmx", NULL };
  static const char *const dirs[] = { "/dev", "/dev/pts", "/dev/shm", NULL };
  for (int d = 0; dirs[d]; d++)
    {
      DIR *dir = opendir(dirs[d]);
      struct dirent *de;
      if (dir == NULL)
        esc_fail("opendir %s: %s", dirs[d], strerror(errno));
      while ((de = readdir(dir)) != NULL)
        {
          char p[300];
          struct stat st;
          snprintf(p, sizeof(p), "%s/%s", dirs[d], de->d_name);
          if (lstat(p, &st) < 0)
            continue;
          if (S_ISBLK(st.st_mode))
            esc_fail("block device %s", p);
          if (!S_ISCHR(st.st_mode))
            continue;
          bool allowed = false;
          for (int i = 0; ok[i]; i++)
            allowed |= strcmp(de->d_name, ok[i]) == 0;
          /* Our own pty slaves live under /dev/pts. */
          if (!allowed && !(d == 1 && major(st.st_rdev) >= 136 && major(st.st_rdev) <= 143))
            esc_fail("unexpected device %s (%u:%u)", p, major(st.st_rdev), minor(st.st_rdev));
        }
      closedir(dir);
    }
}

/* ------------------------------------------------------------------ */
/* Filesystem                                                           */

void esc_chk_write_usr_bin(void)
{
  EXPECT(EROFS, open("/usr/bin/corral-escape", O_WRONLY | O_CREAT | O_CLOEXEC, 0755));
}

void esc_chk_write_etc_passwd(void)
{
  WRITE_DENIED(OPEN_W("/etc/passwd"));
  WRITE_DENIED(open("/etc/passwd", O_WRONLY | O_APPEND | O_CLOEXEC));
}

void esc_chk_etc_ld_so_preload(void)
{
  EXPECT(EROFS, open("/etc/ld.so.preload", O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
}

void esc_chk_write_root(void)
{
  EXPECT(EROFS, open("/x", O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
  EXPECT(EROFS, mkdir("/escape", 0755));
  EXPECT(EROFS, symlink("/tmp", "/escape-link"));
}

void esc_chk_modify_usr_binary(void)
{
  WRITE_DENIED(truncate("/usr/bin/env", 0));
  WRITE_DENIED(chmod("/usr/bin/env", 04755));
  WRITE_DENIED(unlink("/usr/bin/env"));
}

void esc_chk_hardlink_host_file(void)
{
  EXPECT_IN(link("/usr/bin/env", "/tmp/escape-env"), EXDEV, EPERM, EACCES);
}

/* File capabilities and trusted xattrs need CAP_SETFCAP / CAP_SYS_ADMIN. */
void esc_chk_privileged_xattrs(void)
{
  const char *p = "/tmp/escape-xattr";
  int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0755);
  if (fd < 0)
    esc_fail("create %s: %s", p, strerror(errno));
  close(fd);
  /* VFS_CAP_REVISION_2 granting CAP_SYS_ADMIN, effective. */
  uint32_t caps[5] = { 0x02000001, 1u << CAP_SYS_ADMIN, 1u << CAP_SYS_ADMIN, 0, 0 };
  EXPECT_IN(syscall(SYS_setxattr, p, "security.capability", caps, sizeof(caps), 0), EPERM, EOPNOTSUPP);
  EXPECT_IN(syscall(SYS_setxattr, p, "trusted.overlay.opaque", "y", 1, 0), EPERM, EOPNOTSUPP);
}

/* A host file handed in as stdin read-only must not be reopened for
 * writing through the /proc/self/fd magic link (Landlock: it is not under
 * any writable sandbox path), nor stdout for reading. */
void esc_chk_reopen_stdin_write(void)
{
  struct stat st;
  if (fstat(0, &st) < 0 || !S_ISREG(st.st_mode))
    esc_skip("stdin is not a regular file");
  EXPECT_IN(open("/proc/self/fd/0", O_WRONLY | O_CLOEXEC), EACCES, EPERM);
  EXPECT_IN(open("/proc/self/fd/0", O_RDWR | O_TRUNC | O_CLOEXEC), EACCES, EPERM);
  EXPECT_IN(truncate("/proc/self/fd/0", 0), EACCES, EPERM);
  EXPECT_IN(fchmod(0, 0777), EPERM, EACCES);
}

void esc_chk_reopen_stdout_read(void)
{
  struct stat st;
  if (fstat(1, &st) < 0 || !S_ISREG(st.st_mode))
    esc_skip("stdout is not a regular file");
  EXPECT_IN(open("/proc/self/fd/1", O_RDONLY | O_CLOEXEC), EACCES, EPERM);
  char c;
  EXPECT(EBADF, read(1, &c, 1));
}

void esc_chk_mount_flags(void)
{
  static const struct { const char *path; unsigned long must; } m[] = {
    { "/", ST_RDONLY | ST_NOSUID }, { "/usr", ST_RDONLY | ST_NOSUID }, { "/etc", ST_RDONLY | ST_NOSUID },
    { "/dev", ST_RDONLY | ST_NOSUID }, { "/tmp", ST_NOSUID | ST_NODEV }, { "/home/user", ST_NOSUID | ST_NODEV },
    { "/dev/shm", ST_NOSUID | ST_NODEV | ST_NOEXEC }, { "/proc", ST_NOSUID | ST_NODEV | ST_NOEXEC },
  };
  for (size_t i = 0; i < sizeof(m) / sizeof(*m); i++)
    {
      struct statvfs sv;
      if (statvfs(m[i].path, &sv) < 0)
        esc_fail("statvfs %s: %s", m[i].path, strerror(errno));
      if ((sv.f_flag & m[i].must) != m[i].must)
        esc_fail("%s mount flags %#lx lack %#lx", m[i].path, sv.f_flag, m[i].must & ~sv.f_flag);
    }
}

void esc_chk_etc_shadow_absent(void)
{
  EXPECT(ENOENT, open("/etc/shadow", O_RDONLY | O_CLOEXEC));
  EXPECT(ENOENT, open("/etc/gshadow", O_RDONLY | O_CLOEXEC));
}

void esc_chk_etc_secrets_absent(void)
{
  static const char *const p[] = { "/etc/ssh", "/etc/sudoers", "/etc/sudoers.d", "/etc/ssl/private",
                                   "/etc/machine-id", "/etc/subuid", "/etc/pam.d", "/etc/security", NULL };
  expect_absent(p);
}

void esc_chk_host_secret_file(void)
{
  const char *path = esc_env_or_skip("ESCAPE_HOST_SECRET");
  EXPECT(ENOENT, open(path, O_RDONLY | O_CLOEXEC));
  struct stat st;
  EXPECT(ENOENT, stat(path, &st));
}

void esc_chk_host_root_home(void)
{
  int n = esc_count_entries("/root", NULL);
  if (n > 0)
    esc_fail("/root holds %d entries (host's /root?)", n);
  n = esc_count_entries("/home", "user");
  if (n > 0)
    esc_fail("/home holds %d entries besides user", n);
  if (startup_home > 0)
    esc_fail("/home/user held %d entries at startup", startup_home);
}

void esc_chk_host_dirs_absent(void)
{
  static const char *const p[] = { "/var", "/boot", "/srv", "/mnt", "/media", "/lost+found", "/snap", NULL };
  expect_absent(p);
}

void esc_chk_run_corral_absent(void)
{
  static const char *const p[] = { "/run/corral", "/var/run/corral", "/run", NULL };
  expect_absent(p);
}

void esc_chk_tmp_private(void)
{
  if (startup_tmp != 0)
    esc_fail("/tmp held %d entries at startup (host's /tmp?)", startup_tmp);
}

void esc_chk_dev_shm_private(void)
{
  if (startup_shm != 0)
    esc_fail("/dev/shm held %d entries at startup (host's /dev/shm?)", startup_shm);
}
