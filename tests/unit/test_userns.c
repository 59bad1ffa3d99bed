/* uid/gid range allocation of src/lib/isolate/userns.c: flock-held blocks
 * of 65536 host ids from 2000000000 up, in a private CORRAL_RUN_DIR. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "isolate/isolate.h"
#include "tap.h"

#define BASE 2000000000u

/* On tmpfs when possible, like the real /run/corral: the exhaustion test
 * opens a few thousand lock files. */
static char tmpdir[64];

static bool disjoint(uid_t a, uid_t b)
{
  return a + CORRAL__ID_RANGE <= b || b + CORRAL__ID_RANGE <= a;
}

static bool well_formed(const struct corral__idrange *r)
{
  /* At or above the base, aligned on a block, and the whole block below
   * 2^31 (ids the kernel and every tool treat as non-negative). */
  return r->host_base >= BASE && (r->host_base - BASE) % CORRAL__ID_RANGE == 0
         && (uint64_t) r->host_base + CORRAL__ID_RANGE <= 0x80000000ULL && r->lock_fd >= 0;
}

static void rm_tree(void)
{
  char ids[300];
  snprintf(ids, sizeof(ids), "%s/ids", tmpdir);
  DIR *d = opendir(ids);
  if (d)
    {
      struct dirent *de;
      while ((de = readdir(d)) != NULL)
        if (de->d_name[0] != '.')
          unlinkat(dirfd(d), de->d_name, 0);
      closedir(d);
    }
  rmdir(ids);
  rmdir(tmpdir);
}

static void test_two_ranges(void)
{
  struct corral__idrange a, b;
  corral_error_t err = NULL;

  ok(corral__idrange_acquire(&a, &err) == 0, "acquire a first range (%s)", corral_error_message(err));
  corral_error_release(&err);
  ok(corral__idrange_acquire(&b, &err) == 0, "acquire a second range (%s)", corral_error_message(err));
  corral_error_release(&err);
  ok(well_formed(&a), "first range is well formed (base %u)", a.host_base);
  ok(well_formed(&b), "second range is well formed (base %u)", b.host_base);
  ok(a.host_base != b.host_base, "the two ranges differ (%u, %u)", a.host_base, b.host_base);
  ok(disjoint(a.host_base, b.host_base), "the two ranges do not overlap");

  char ids[300];
  struct stat st = { 0 };
  snprintf(ids, sizeof(ids), "%s/ids", tmpdir);
  ok(stat(ids, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0700,
     "lock directory is CORRAL_RUN_DIR/ids, mode 0700 (%o)", st.st_mode & 0777);

  /* Another process sees both blocks as taken. */
  int p[2];
  uid_t child_base = 0;
  if (pipe(p) == 0)
    {
      tap_flush();
      pid_t pid = fork();
      if (pid == 0)
        {
          struct corral__idrange r;
          close(p[0]);
          if (corral__idrange_acquire(&r, NULL) < 0)
            _exit(1);
          if (write(p[1], &r.host_base, sizeof(r.host_base)) != sizeof(r.host_base))
            _exit(2);
          _exit(0);
        }
      close(p[1]);
      int status;
      bool got = read(p[0], &child_base, sizeof(child_base)) == sizeof(child_base);
      close(p[0]);
      waitpid(pid, &status, 0);
      ok(got && child_base >= BASE && disjoint(child_base, a.host_base) && disjoint(child_base, b.host_base),
         "a concurrent process gets a third, disjoint range (%u)", child_base);
    }

  /* Release the first: it can be taken again. */
  uid_t freed = a.host_base;
  corral__idrange_release(&a);
  is_int(a.lock_fd, -1, "release resets lock_fd");
  corral__idrange_release(&a);
  ok(1, "a second release is harmless");

  bool found = false;
  struct corral__idrange more[4];
  int n = 0;
  /* The search starts at a pid-derived slot, so the freed one is the first
   * free slot it meets; take a few to be sure it comes back. */
  for (; n < 4 && !found; n++)
    {
      if (corral__idrange_acquire(&more[n], &err) < 0)
        break;
      found = more[n].host_base == freed;
      ok(more[n].host_base != b.host_base, "re-acquire does not hand out the range still held (%u)",
         more[n].host_base);
    }
  corral_error_release(&err);
  ok(found, "the released range %u can be acquired again", freed);
  is_u64(more[0].host_base, freed, "and it is the first one handed out");
  for (int i = 0; i < n; i++)
    corral__idrange_release(&more[i]);
  corral__idrange_release(&b);
}

/* With every slot held, acquire fails with EAGAIN; freeing one slot makes
 * exactly that block available.  The slots are locked here directly
 * (lock file CORRAL_RUN_DIR/ids/<slot>), which is what other supervisors
 * holding ranges look like to the library. */
static void test_exhaustion(void)
{
  enum { SLOTS = 2048 };
  static int fds[SLOTS];
  char path[400];
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < SLOTS + 64)
    {
      struct rlimit want = { SLOTS + 64, rl.rlim_max > SLOTS + 64 ? rl.rlim_max : SLOTS + 64 };
      if (setrlimit(RLIMIT_NOFILE, &want) < 0)
        {
          skip(4, "cannot raise RLIMIT_NOFILE for 2048 lock fds");
          return;
        }
    }
  int held = 0;
  for (int i = 0; i < SLOTS; i++)
    {
      snprintf(path, sizeof(path), "%s/ids/%d", tmpdir, i);
      fds[i] = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
      if (fds[i] >= 0 && flock(fds[i], LOCK_EX | LOCK_NB) == 0)
        held++;
    }
  is_int(held, SLOTS, "the test holds all %d slot locks", SLOTS);

  struct corral__idrange r;
  corral_error_t err = NULL;
  ok(corral__idrange_acquire(&r, &err) < 0 && corral_error_status(err) == EAGAIN,
     "with every slot taken, acquire fails with EAGAIN (%s)", corral_error_message(err));
  corral_error_release(&err);

  /* Free the last slot: the search must wrap around to find it. */
  close(fds[SLOTS - 1]);
  fds[SLOTS - 1] = -1;
  ok(corral__idrange_acquire(&r, &err) == 0, "a freed slot can be acquired (%s)", corral_error_message(err));
  corral_error_release(&err);
  is_u64(r.host_base, BASE + (uint64_t) (SLOTS - 1) * CORRAL__ID_RANGE,
         "it is the freed slot's block, the highest one (%u)", r.host_base);
  ok((uint64_t) r.host_base + CORRAL__ID_RANGE <= 0x80000000ULL, "the highest block ends below 2^31");
  corral__idrange_release(&r);
  for (int i = 0; i < SLOTS; i++)
    if (fds[i] >= 0)
      close(fds[i]);
}

int main(void)
{
  snprintf(tmpdir, sizeof(tmpdir), "%s/corral-test-userns-XXXXXX",
           access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
  if (mkdtemp(tmpdir) == NULL)
    {
      perror("mkdtemp");
      return 1;
    }
  setenv("CORRAL_RUN_DIR", tmpdir, 1);
  test_two_ranges();
  test_exhaustion();
  rm_tree();
  return done_testing();
}
