/* The cgroup layer of src/lib/isolate/cgroup.c against the real hierarchy:
 * create with limits, enter, stats, kill, destroy, gc.  Needs root and a
 * usable hierarchy (v2 with memory+pids, or v1); otherwise skipped. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "isolate/isolate.h"
#include "tap.h"

static const char *cg_root(void)
{
  const char *r = getenv("CORRAL_CGROUP_ROOT");
  return r && *r ? r : "/sys/fs/cgroup";
}

/* Contents of a small file with trailing whitespace removed ("" on error). */
static const char *slurp(const char *dir, const char *file, char *buf, size_t size)
{
  char path[4096];
  snprintf(path, sizeof(path), "%s/%s", dir, file);
  buf[0] = '\0';
  FILE *f = fopen(path, "re");
  if (f == NULL)
    return buf;
  size_t n = fread(buf, 1, size - 1, f);
  fclose(f);
  buf[n] = '\0';
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
    buf[--n] = '\0';
  return buf;
}

static bool exists(const char *p)
{
  struct stat st;
  return p && stat(p, &st) == 0;
}

/* Whether dir/cgroup.procs lists pid. */
static bool lists_pid(const char *dir, pid_t pid)
{
  char buf[8192], *save = NULL;
  slurp(dir, "cgroup.procs", buf, sizeof(buf));
  for (char *t = strtok_r(buf, "\n", &save); t; t = strtok_r(NULL, "\n", &save))
    if (atoi(t) == pid)
      return true;
  return false;
}

static int count_procs(const char *dir)
{
  char buf[8192], *save = NULL;
  int n = 0;
  slurp(dir, "cgroup.procs", buf, sizeof(buf));
  for (char *t = strtok_r(buf, "\n", &save); t; t = strtok_r(NULL, "\n", &save))
    n++;
  return n;
}

/* The v1 path of controller ctrl in cg, found by its mount point. */
static const char *v1_path(const struct corral__cgroup *cg, const char *ctrl)
{
  char prefix[512];
  int n = snprintf(prefix, sizeof(prefix), "%s/%s/", cg_root(), ctrl);
  for (int i = 0; i < CORRAL__CG_V1_MAX; i++)
    if (cg->v1_paths[i] && strncmp(cg->v1_paths[i], prefix, (size_t) n) == 0)
      return cg->v1_paths[i];
  return NULL;
}

/* Where this process sits in the v1 hierarchy of ctrl ("" for the root). */
static void own_v1_cgroup(const char *ctrl, char *out, size_t size)
{
  char line[4096];
  FILE *f = fopen("/proc/self/cgroup", "re");
  out[0] = '\0';
  if (f == NULL)
    return;
  while (fgets(line, sizeof(line), f))
    {
      char *c = strchr(line, ':'), *p = c ? strchr(c + 1, ':') : NULL;
      if (p == NULL)
        continue;
      *p = '\0';
      char *save = NULL;
      for (char *t = strtok_r(c + 1, ",", &save); t; t = strtok_r(NULL, ",", &save))
        if (strcmp(t, ctrl) == 0)
          {
            p[1 + strcspn(p + 1, "\n")] = '\0';
            snprintf(out, size, "%s", strcmp(p + 1, "/") == 0 ? "" : p + 1);
            fclose(f);
            return;
          }
    }
  fclose(f);
}

/* The "corral" parent directories of this process; which existed before. */
#define MAX_PARENTS 8
static char parents[MAX_PARENTS][4096];
static bool parent_existed[MAX_PARENTS];
static int n_parents;

static void note_parents(enum corral__cg_mode mode)
{
  static const char *const ctrls[] = { "memory", "pids", "cpu", "freezer" };
  if (mode == CORRAL_CG_V2)
    {
      char unified[600];
      snprintf(unified, sizeof(unified), "%s/unified/cgroup.controllers", cg_root());
      snprintf(parents[0], sizeof(parents[0]), "%s%s/corral", cg_root(), exists(unified) ? "/unified" : "");
      n_parents = 1;
    }
  else
    for (n_parents = 0; n_parents < 4; n_parents++)
      {
        char own[2048];
        own_v1_cgroup(ctrls[n_parents], own, sizeof(own));
        snprintf(parents[n_parents], sizeof(parents[0]), "%s/%s%s/corral", cg_root(), ctrls[n_parents], own);
      }
  for (int i = 0; i < n_parents; i++)
    parent_existed[i] = exists(parents[i]);
}

/* Remove parents this test created (only if now empty: rmdir refuses otherwise). */
static void remove_new_parents(void)
{
  for (int i = 0; i < n_parents; i++)
    if (!parent_existed[i] && exists(parents[i]))
      rmdir(parents[i]);
}

static bool dir_is_parent(const char *path, const char *parent)
{
  char copy[4096];
  snprintf(copy, sizeof(copy), "%s", path);
  return strcmp(dirname(copy), parent) == 0;
}

/* Children: wait for a byte on `go`, then fork a grandchild and touch
 * `touch_mb` MiB of memory; sleep until killed. */
static pid_t spawn_sleeper(int go_rd, int go_wr, int ready_wr, size_t touch_mb)
{
  tap_flush();
  pid_t pid = fork();
  if (pid != 0)
    return pid;
  char b;
  close(go_wr);
  if (read(go_rd, &b, 1) != 1)
    _exit(1);
  pid_t gc = fork();
  if (gc < 0)
    _exit(2);
  if (gc == 0)
    for (;;)
      pause();
  /* Burn 200 ms of CPU so the accounting has something to show. */
  struct timespec t0, t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
  do
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  while ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 < 200);
  if (touch_mb)
    {
      volatile char *m = malloc(touch_mb << 20);
      if (m == NULL)
        _exit(3);
      for (size_t i = 0; i < (touch_mb << 20); i += 4096)
        m[i] = (char) i;
    }
  if (write(ready_wr, &gc, sizeof(gc)) != sizeof(gc))
    _exit(4);
  for (;;)
    pause();
}

static void check_limits(const struct corral__cgroup *cg)
{
  char buf[256];
  if (cg->mode == CORRAL_CG_V2)
    {
      ok(cg->path != NULL && dir_is_parent(cg->path, parents[0]), "v2 cgroup is under %s (%s)", parents[0],
         cg->path);
      is_str(slurp(cg->path, "memory.max", buf, sizeof(buf)), "67108864", "memory.max is 64M");
      is_str(slurp(cg->path, "pids.max", buf, sizeof(buf)), "16", "pids.max is 16");
      is_str(slurp(cg->path, "cpu.max", buf, sizeof(buf)), "50000 100000", "cpu.max is half a CPU");
      return;
    }
  const char *mem = v1_path(cg, "memory"), *pids = v1_path(cg, "pids"), *cpu = v1_path(cg, "cpu");
  const char *fz = v1_path(cg, "freezer");
  ok(mem && exists(mem), "v1 memory cgroup exists (%s)", mem ? mem : "NULL");
  ok(pids && exists(pids), "v1 pids cgroup exists (%s)", pids ? pids : "NULL");
  ok(cpu && exists(cpu), "v1 cpu cgroup exists (%s)", cpu ? cpu : "NULL");
  ok(fz && exists(fz), "v1 freezer cgroup exists (%s)", fz ? fz : "NULL");
  if (!mem || !pids || !cpu)
    return;
  ok(dir_is_parent(mem, parents[0]), "memory cgroup is below this process's own: %s", parents[0]);
  ok(dir_is_parent(pids, parents[1]), "pids cgroup is below this process's own: %s", parents[1]);
  is_str(slurp(mem, "memory.limit_in_bytes", buf, sizeof(buf)), "67108864", "memory.limit_in_bytes is 64M");
  char p[4200];
  snprintf(p, sizeof(p), "%s/memory.memsw.limit_in_bytes", mem);
  if (exists(p))
    is_str(slurp(mem, "memory.memsw.limit_in_bytes", buf, sizeof(buf)), "67108864",
           "memory.memsw.limit_in_bytes is 64M (no swap beyond the limit)");
  else
    skip(1, "no memory.memsw.limit_in_bytes (no swap accounting)");
  is_str(slurp(pids, "pids.max", buf, sizeof(buf)), "16", "pids.max is 16");
  is_str(slurp(cpu, "cpu.cfs_period_us", buf, sizeof(buf)), "100000", "cpu.cfs_period_us is 100000");
  is_str(slurp(cpu, "cpu.cfs_quota_us", buf, sizeof(buf)), "50000", "cpu.cfs_quota_us is 50000 (0.5 CPU)");
}

static int reap(pid_t pid, int *st)
{
  int r;
  while ((r = waitpid(pid, st, 0)) < 0 && errno == EINTR)
    ;
  return r;
}

static void test_lifecycle(void)
{
  struct corral__cgroup cg, dup;
  corral_config_t cfg;
  corral_error_t err = NULL;
  char name[64], saved[CORRAL__CG_V1_MAX + 1][4096];
  int go[2], ready[2], st;
  uint64_t oom, peak, user, sys;

  corral_config_init(&cfg);
  cfg.memory_bytes = 64ULL << 20;
  cfg.pids = 16;
  cfg.cpu_millis = 500;
  snprintf(name, sizeof(name), "unit-%d", getpid());
  if (!ok(corral__cgroup_create(&cg, name, &cfg, &err) == 0, "create cgroup %s (%s)", name,
          corral_error_message(err)))
    {
      corral_error_release(&err);
      return;
    }
  is_int(cg.mode, corral__cgroup_detect(), "cgroup mode is the detected one (%s)",
         corral__cgroup_mode_name(cg.mode));
  check_limits(&cg);

  /* The same name again must fail and leave the first cgroup alone. */
  ok(corral__cgroup_create(&dup, name, &cfg, &err) < 0 && corral_error_status(err) == EEXIST,
     "a second cgroup with the same name fails with EEXIST (%s)", corral_error_message(err));
  corral_error_release(&err);
  const char *any = cg.mode == CORRAL_CG_V2 ? cg.path : v1_path(&cg, "memory");
  ok(exists(any), "the failed duplicate did not remove the first cgroup");

  /* Remember the directories to check they are gone after destroy. */
  int n_saved = 0;
  if (cg.path)
    snprintf(saved[n_saved++], sizeof(saved[0]), "%s", cg.path);
  for (int i = 0; i < CORRAL__CG_V1_MAX; i++)
    if (cg.v1_paths[i])
      snprintf(saved[n_saved++], sizeof(saved[0]), "%s", cg.v1_paths[i]);

  if (pipe2(go, O_CLOEXEC) < 0 || pipe2(ready, O_CLOEXEC) < 0)
    {
      ok(0, "pipe: %s", strerror(errno));
      return;
    }
  pid_t child = spawn_sleeper(go[0], go[1], ready[1], 8);
  close(go[0]);
  close(ready[1]);
  ok(child > 0, "fork a sleeping child");
  ok(corral__cgroup_enter(&cg, child, &err) == 0, "enter the child into the cgroup (%s)",
     corral_error_message(err));
  corral_error_release(&err);
  if (cg.mode == CORRAL_CG_V2)
    ok(lists_pid(cg.path, child), "child %d is listed in cgroup.procs", child);
  else
    for (int i = 0; i < CORRAL__CG_V1_MAX; i++)
      if (cg.v1_paths[i])
        ok(lists_pid(cg.v1_paths[i], child), "child %d is listed in %s/cgroup.procs", child, cg.v1_paths[i]);

  /* Let it fork a grandchild (inherits the cgroup) and touch 8 MiB. */
  pid_t grandchild = -1;
  bool went = write(go[1], "g", 1) == 1 && read(ready[0], &grandchild, sizeof(grandchild)) == sizeof(grandchild);
  ok(went, "child forked grandchild %d, burnt CPU and touched its memory", grandchild);
  close(go[1]);
  close(ready[0]);
  const char *procs_dir = cg.mode == CORRAL_CG_V2 ? cg.path : v1_path(&cg, "pids");
  ok(grandchild > 0 && lists_pid(procs_dir, grandchild), "the grandchild is in the cgroup too");
  is_int(count_procs(procs_dir), 2, "two processes in the cgroup");

  corral__cgroup_stats(&cg, &oom, &peak, &user, &sys);
  is_u64(oom, 0, "no OOM kill so far");
  ok(peak >= (8ULL << 20), "peak memory covers the 8 MiB touched (%llu)", (unsigned long long) peak);
  if (cg.mode == CORRAL_CG_V2 || v1_path(&cg, "cpuacct"))
    ok(user + sys >= 100, "CPU accounting sees the 200 ms burnt (user %llu ms, sys %llu ms)",
       (unsigned long long) user, (unsigned long long) sys);
  else
    skip(1, "no cpuacct hierarchy: CPU time is not accounted");

  corral__cgroup_kill(&cg);
  ok(reap(child, &st) == child && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "kill: child ended by SIGKILL");
  /* We are a child subreaper: the orphaned grandchild comes back to us. */
  ok(grandchild > 0 && reap(grandchild, &st) == grandchild && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
     "kill: grandchild ended by SIGKILL");
  is_int(count_procs(procs_dir), 0, "cgroup is empty after the kill");
  if (cg.mode == CORRAL_CG_V1 && v1_path(&cg, "freezer"))
    {
      char buf[64];
      is_str(slurp(v1_path(&cg, "freezer"), "freezer.state", buf, sizeof(buf)), "THAWED",
             "the freezer is thawed again after the kill");
    }

  ok(corral__cgroup_destroy(&cg, &err) == 0, "destroy (%s)", corral_error_message(err));
  corral_error_release(&err);
  bool gone = n_saved > 0;
  for (int i = 0; i < n_saved; i++)
    if (exists(saved[i]))
      {
        diag("still there: %s", saved[i]);
        gone = false;
      }
  ok(gone, "destroy removed all %d cgroup directories", n_saved);
  ok(cg.path == NULL && cg.v1_paths[0] == NULL && cg.mode == CORRAL_CG_NONE, "destroy resets the struct");
  ok(corral__cgroup_destroy(&cg, &err) == 0, "destroying an empty struct again is harmless");
  corral_error_release(&err);
}

/* A cgroup whose only process allocates past its memory limit: the OOM
 * killer ends it and the stats count the kill. */
static void test_oom(void)
{
  struct corral__cgroup cg;
  corral_config_t cfg;
  corral_error_t err = NULL;
  char name[64];
  int go[2], ready[2], st;
  uint64_t oom, peak, user, sys;

  corral_config_init(&cfg);
  cfg.memory_bytes = 16ULL << 20;
  cfg.pids = 16;
  snprintf(name, sizeof(name), "unit-%d-oom", getpid());
  if (!ok(corral__cgroup_create(&cg, name, &cfg, &err) == 0, "create cgroup %s (%s)", name,
          corral_error_message(err)))
    {
      corral_error_release(&err);
      return;
    }
  if (pipe2(go, O_CLOEXEC) < 0 || pipe2(ready, O_CLOEXEC) < 0)
    {
      ok(0, "pipe");
      corral__cgroup_destroy(&cg, NULL);
      return;
    }
  pid_t child = spawn_sleeper(go[0], go[1], ready[1], 64);
  close(go[0]);
  close(ready[1]);
  ok(corral__cgroup_enter(&cg, child, &err) == 0, "enter the child (%s)", corral_error_message(err));
  corral_error_release(&err);
  ok(write(go[1], "g", 1) == 1, "let the child allocate 64 MiB under a 16 MiB limit");
  close(go[1]);
  /* Wait up to 30 s for the OOM killer (the grandchild keeps `ready` open,
   * so its EOF cannot be the signal). */
  pid_t r = 0;
  for (int i = 0; i < 3000 && (r = waitpid(child, &st, WNOHANG)) == 0; i++)
    usleep(10000);
  if (r == 0)
    {
      diag("the child outlived its memory limit; killing it");
      corral__cgroup_kill(&cg);
      r = reap(child, &st);
    }
  pid_t gc = 0;
  fcntl(ready[0], F_SETFL, O_NONBLOCK);
  ok(read(ready[0], &gc, sizeof(gc)) <= 0 || gc <= 0, "the child never finished touching the memory");
  close(ready[0]);
  ok(r == child && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "the child was SIGKILLed");
  corral__cgroup_stats(&cg, &oom, &peak, &user, &sys);
  ok(oom >= 1, "stats count the OOM kill (%llu)", (unsigned long long) oom);
  ok(peak > 0 && peak <= cfg.memory_bytes, "peak memory is within the limit (%llu)", (unsigned long long) peak);
  ok(corral__cgroup_destroy(&cg, &err) == 0, "destroy (grandchild killed on the way) (%s)",
     corral_error_message(err));
  corral_error_release(&err);
  /* Reap the grandchild that destroy killed. */
  while (waitpid(-1, &st, WNOHANG) > 0)
    ;
}

static void test_gc(void)
{
  struct corral__cgroup dead, live;
  corral_config_t cfg;
  corral_error_t err = NULL;
  char name[64];
  int st;

  /* A pid that surely no longer exists: a child we have reaped. */
  tap_flush();
  pid_t gone = fork();
  if (gone == 0)
    _exit(0);
  reap(gone, &st);

  corral_config_init(&cfg);
  cfg.memory_bytes = 0;
  cfg.pids = 0;
  snprintf(name, sizeof(name), "run-%d-7", gone);
  ok(corral__cgroup_create(&dead, name, &cfg, &err) == 0, "create a leftover %s (%s)", name,
     corral_error_message(err));
  corral_error_release(&err);
  snprintf(name, sizeof(name), "run-%d-7", getpid());
  ok(corral__cgroup_create(&live, name, &cfg, &err) == 0, "create a live run's %s (%s)", name,
     corral_error_message(err));
  corral_error_release(&err);

  const char *dead_dir = dead.mode == CORRAL_CG_V2 ? dead.path : v1_path(&dead, "memory");
  const char *live_dir = live.mode == CORRAL_CG_V2 ? live.path : v1_path(&live, "memory");
  int r = corral__cgroup_gc(&err);
  ok(r >= 1, "gc returns the number removed (%d) (%s)", r, corral_error_message(err));
  corral_error_release(&err);
  ok(dead_dir && !exists(dead_dir), "gc removed the leftover of a dead pid");
  ok(live_dir && exists(live_dir), "gc kept the cgroup of a live pid");
  r = corral__cgroup_gc(&err);
  ok(r >= 0, "a second gc succeeds (%d)", r);
  corral_error_release(&err);

  corral__cgroup_destroy(&dead, NULL); /* frees the paths; dirs are gone */
  ok(corral__cgroup_destroy(&live, &err) == 0, "destroy the live one (%s)", corral_error_message(err));
  corral_error_release(&err);
}

int main(void)
{
  if (geteuid() != 0)
    plan_skip_all("cgroup tests need root");
  enum corral__cg_mode mode = corral__cgroup_detect();
  if (mode == CORRAL_CG_NONE)
    plan_skip_all("no usable cgroup hierarchy");
  diag("cgroup mode: %s", corral__cgroup_mode_name(mode));
  ok(strcmp(corral__cgroup_mode_name(mode), mode == CORRAL_CG_V2 ? "v2" : "v1") == 0, "mode name");
  is_str(corral__cgroup_mode_name(CORRAL_CG_NONE), "none", "mode name of NONE");

  prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
  note_parents(mode);
  test_lifecycle();
  test_oom();
  test_gc();
  remove_new_parents();
  return done_testing();
}
