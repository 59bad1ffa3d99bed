/* Limits and accounting for a run: one interface over cgroup v2 and v1.
 *
 * v2 is used when its hierarchy offers the memory and pids controllers
 * (pure v2 hosts, and hybrid hosts whose controllers were moved to v2).
 * Otherwise v1: the memory, pids, cpu and freezer hierarchies.  The parent
 * directory is "corral" below this process's own cgroup (v1) or below the v2
 * root, so a host that confines corral also confines its sandboxes. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <linux/magic.h>
#include "isolate.h"
#include "../common/utils.h"

static const char *const v1_ctrl[CORRAL__CG_V1_MAX] = { "memory", "pids", "cpu", "freezer", "cpuacct" };
enum { V1_MEMORY, V1_PIDS, V1_CPU, V1_FREEZER, V1_CPUACCT };

static const char *cgroup_root(void)
{
  const char *r = getenv("CORRAL_CGROUP_ROOT");
  return r && *r ? r : "/sys/fs/cgroup";
}

static bool is_cgroup2(const char *path)
{
  struct statfs sf;
  return statfs(path, &sf) == 0 && sf.f_type == CGROUP2_SUPER_MAGIC;
}

/* The v2 mount point, or NULL. */
static const char *v2_root(char *buf, size_t size)
{
  snprintf(buf, size, "%s", cgroup_root());
  if (is_cgroup2(buf))
    return buf;
  snprintf(buf, size, "%s/unified", cgroup_root());
  return is_cgroup2(buf) ? buf : NULL;
}

static bool has_word(const char *list, const char *word)
{
  size_t n = strlen(word);
  const char *p = list;
  while ((p = strstr(p, word)) != NULL)
    {
      if ((p == list || p[-1] == ' ' || p[-1] == ',') && (p[n] == '\0' || p[n] == ' ' || p[n] == '\n' || p[n] == ','))
        return true;
      p += n;
    }
  return false;
}

enum corral__cg_mode corral__cgroup_detect(void)
{
  char root[512], ctrls[512], path[600];
  const char *force = getenv("CORRAL_CGROUP");

  if (force && strcmp(force, "none") == 0)
    return CORRAL_CG_NONE;
  /* Forcing v2 on a hybrid host whose v2 tree has no controllers still
   * gives a cgroup to join, kill and account (used by the tests). */
  if (force && strcmp(force, "v2") == 0)
    return v2_root(root, sizeof(root)) ? CORRAL_CG_V2 : CORRAL_CG_NONE;
  if (v2_root(root, sizeof(root)) != NULL
      && corral__read_file_at(AT_FDCWD, (snprintf(path, sizeof(path), "%s/cgroup.controllers", root), path),
                              ctrls, sizeof(ctrls)) >= 0
      && has_word(ctrls, "memory") && has_word(ctrls, "pids")
      && !(force && strcmp(force, "v1") == 0))
    return CORRAL_CG_V2;
  snprintf(path, sizeof(path), "%s/memory", cgroup_root());
  if (access(path, W_OK) == 0)
    return CORRAL_CG_V1;
  return CORRAL_CG_NONE;
}

const char *corral__cgroup_mode_name(enum corral__cg_mode m)
{
  return m == CORRAL_CG_V2 ? "v2" : m == CORRAL_CG_V1 ? "v1" : "none";
}

/* This process's own path in the v1 hierarchy of `ctrl` ("/" if unknown). */
/* /proc/self/cgroup, read once per operation and parsed per controller. */
static void read_self_cgroup(char *buf, size_t size)
{
  if (corral__read_file_at(AT_FDCWD, "/proc/self/cgroup", buf, size) < 0)
    buf[0] = '\0';
}

static void own_v1_path(const char *self, const char *ctrl, char *out, size_t size)
{
  char buf[4096];
  char *line, *save = NULL;
  snprintf(out, size, "/");
  snprintf(buf, sizeof(buf), "%s", self);
  for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
    {
      char *c = strchr(line, ':'), *p = c ? strchr(c + 1, ':') : NULL;
      if (c == NULL || p == NULL)
        continue;
      *p = '\0';
      if (has_word(c + 1, ctrl))
        {
          snprintf(out, size, "%s", p + 1);
          return;
        }
    }
}

static int v1_parent(const char *self, const char *ctrl, char *out, size_t size)
{
  char own[2048];
  own_v1_path(self, ctrl, own, sizeof(own));
  if (strcmp(own, "/") == 0)
    own[0] = '\0';
  /* A process already below a corral cgroup (nested use) keeps to it. */
  return snprintf(out, size, "%s/%s%s/corral", cgroup_root(), ctrl, own) >= (int) size ? -1 : 0;
}

static int write_at(const char *dir, const char *file, const char *val, corral_error_t *err)
{
  char path[4096];
  snprintf(path, sizeof(path), "%s/%s", dir, file);
  return corral__write_file(path, val, strlen(val), err);
}

static int v2_enable_controllers(const char *root, const char *parent, const corral_config_t *cfg,
                                 corral_error_t *err)
{
  static const char *const names[] = { "memory", "pids", "cpu" };
  const bool wanted[] = { cfg->memory_bytes != 0, cfg->pids != 0, cfg->cpu_millis != 0 };
  char ctrls[512], path[4096], want[64] = "";

  snprintf(path, sizeof(path), "%s/cgroup.controllers", root);
  if (corral__read_file_at(AT_FDCWD, path, ctrls, sizeof(ctrls)) < 0)
    return corral_error_set(err, errno, "read `%s`", path);
  for (int i = 0; i < 3; i++)
    {
      if (has_word(ctrls, names[i]))
        snprintf(want + strlen(want), sizeof(want) - strlen(want), "%s+%s", *want ? " " : "", names[i]);
      else if (wanted[i])
        return corral_error_set(err, ENOTSUP, "cgroup v2 at `%s` has no %s controller", root, names[i]);
    }
  if (*want == '\0')
    return 0;
  if (write_at(root, "cgroup.subtree_control", want, err) < 0)
    return -1;
  return write_at(parent, "cgroup.subtree_control", want, err);
}

static int v2_limits(const char *dir, const corral_config_t *cfg, corral_error_t *err)
{
  char v[64];
  if (cfg->memory_bytes)
    {
      snprintf(v, sizeof(v), "%" PRIu64, cfg->memory_bytes);
      if (write_at(dir, "memory.max", v, err) < 0)
        return -1;
      /* No swap: a limit that can be paged out is no limit.  Absent when
       * the kernel has no swap accounting, which means no swap either. */
      char p[4096];
      snprintf(p, sizeof(p), "%s/memory.swap.max", dir);
      if (access(p, F_OK) == 0 && write_at(dir, "memory.swap.max", "0", err) < 0)
        return -1;
    }
  if (cfg->pids)
    {
      snprintf(v, sizeof(v), "%" PRIu64, cfg->pids);
      if (write_at(dir, "pids.max", v, err) < 0)
        return -1;
    }
  if (cfg->cpu_millis)
    {
      snprintf(v, sizeof(v), "%" PRIu64 " 100000", cfg->cpu_millis * 100);
      if (write_at(dir, "cpu.max", v, err) < 0)
        return -1;
    }
  return 0;
}

static int create_v2(struct corral__cgroup *cg, const char *name, const corral_config_t *cfg,
                     corral_error_t *err)
{
  char root[512], parent[1024];
  if (v2_root(root, sizeof(root)) == NULL)
    return corral_error_set(err, ENOENT, "no cgroup v2 hierarchy");
  snprintf(parent, sizeof(parent), "%s/corral", root);
  if (mkdir(parent, 0755) < 0 && errno != EEXIST)
    return corral_error_set(err, errno, "mkdir `%s`", parent);
  if (v2_enable_controllers(root, parent, cfg, err) < 0)
    return -1;
  if (asprintf(&cg->path, "%s/%s", parent, name) < 0)
    return corral_error_set(err, ENOMEM, "cgroup path");
  if (mkdir(cg->path, 0755) < 0)
    {
      int r = corral_error_set(err, errno, "mkdir `%s`", cg->path);
      free(steal_pointer(&cg->path));
      return r;
    }
  return v2_limits(cg->path, cfg, err);
}

static int v1_limits(struct corral__cgroup *cg, const corral_config_t *cfg, corral_error_t *err)
{
  char v[64];
  const char *mem = cg->v1_paths[V1_MEMORY];
  if (cfg->memory_bytes && mem)
    {
      char p[4096];
      snprintf(v, sizeof(v), "%" PRIu64, cfg->memory_bytes);
      if (write_at(mem, "memory.limit_in_bytes", v, err) < 0)
        return -1;
      snprintf(p, sizeof(p), "%s/memory.memsw.limit_in_bytes", mem);
      if (access(p, F_OK) == 0 && write_at(mem, "memory.memsw.limit_in_bytes", v, err) < 0)
        return -1;
      snprintf(p, sizeof(p), "%s/memory.swappiness", mem);
      if (access(p, F_OK) == 0)
        write_at(mem, "memory.swappiness", "0", NULL);
    }
  if (cfg->pids && cg->v1_paths[V1_PIDS])
    {
      snprintf(v, sizeof(v), "%" PRIu64, cfg->pids);
      if (write_at(cg->v1_paths[V1_PIDS], "pids.max", v, err) < 0)
        return -1;
    }
  if (cfg->cpu_millis && cg->v1_paths[V1_CPU])
    {
      if (write_at(cg->v1_paths[V1_CPU], "cpu.cfs_period_us", "100000", err) < 0)
        return -1;
      snprintf(v, sizeof(v), "%" PRIu64, cfg->cpu_millis * 100);
      if (write_at(cg->v1_paths[V1_CPU], "cpu.cfs_quota_us", v, err) < 0)
        return -1;
    }
  return 0;
}

/* Co-mounted controllers (cpu,cpuacct) reach one directory by two names. */
static bool shares_hierarchy(struct corral__cgroup *cg, int i)
{
  char a[4096], b[4096];
  if (realpath(cg->v1_paths[i], a) == NULL)
    return false;
  for (int j = 0; j < i; j++)
    if (cg->v1_paths[j] && realpath(cg->v1_paths[j], b) != NULL && strcmp(a, b) == 0)
      return true;
  return false;
}

static int create_v1(struct corral__cgroup *cg, const char *name, const corral_config_t *cfg,
                     corral_error_t *err)
{
  char self[4096];
  read_self_cgroup(self, sizeof(self));
  for (int i = 0; i < CORRAL__CG_V1_MAX; i++)
    {
      char parent[4096], mnt[4096];
      snprintf(mnt, sizeof(mnt), "%s/%s", cgroup_root(), v1_ctrl[i]);
      if (access(mnt, W_OK) != 0)
        {
          if (i == V1_MEMORY || i == V1_PIDS)
            return corral_error_set(err, errno, "cgroup v1 controller `%s` is not available", v1_ctrl[i]);
          continue;
        }
      if (v1_parent(self, v1_ctrl[i], parent, sizeof(parent)) < 0
          || corral__mkdir_p(parent, 0755, err) < 0)
        return corral_error_set(err, ENAMETOOLONG, "cgroup parent for %s", v1_ctrl[i]);
      if (asprintf(&cg->v1_paths[i], "%s/%s", parent, name) < 0)
        return corral_error_set(err, ENOMEM, "cgroup path");
      if (shares_hierarchy(cg, i))
        continue;
      if (mkdir(cg->v1_paths[i], 0755) < 0)
        {
          int r = corral_error_set(err, errno, "mkdir `%s`", cg->v1_paths[i]);
          free(steal_pointer(&cg->v1_paths[i]));
          return r;
        }
    }
  return v1_limits(cg, cfg, err);
}

int corral__cgroup_create(struct corral__cgroup *cg, const char *name, const corral_config_t *cfg,
                          corral_error_t *err)
{
  int r = 0;
  memset(cg, 0, sizeof(*cg));
  cg->mode = corral__cgroup_detect();
  if (cg->mode == CORRAL_CG_V2)
    r = create_v2(cg, name, cfg, err);
  else if (cg->mode == CORRAL_CG_V1)
    r = create_v1(cg, name, cfg, err);
  else if (cfg->memory_bytes || cfg->pids || cfg->cpu_millis)
    return corral_error_set(err, ENOTSUP,
                            "no usable cgroup hierarchy for --memory/--cpus/--pids (need cgroup v2 with "
                            "memory+pids, or v1 memory+pids mounted under %s)", cgroup_root());
  if (r < 0)
    {
      const char *mode = corral__cgroup_mode_name(cg->mode);
      corral__cgroup_destroy(cg, NULL);
      return corral_error_wrap(err, "create cgroup (%s)", mode);
    }
  return 0;
}

int corral__cgroup_enter(struct corral__cgroup *cg, pid_t pid, corral_error_t *err)
{
  char v[32];
  snprintf(v, sizeof(v), "%d", pid);
  if (cg->mode == CORRAL_CG_V2)
    return write_at(cg->path, "cgroup.procs", v, err);
  for (int i = 0; i < CORRAL__CG_V1_MAX; i++)
    if (cg->v1_paths[i] && write_at(cg->v1_paths[i], "cgroup.procs", v, err) < 0)
      return -1;
  return 0;
}

int corral__cgroup_open_join(struct corral__cgroup *cg, int fds[CORRAL__CG_V1_MAX], corral_error_t *err)
{
  char path[4096];
  for (int i = 0; i < CORRAL__CG_V1_MAX; i++)
    fds[i] = -1;
  for (int i = 0; i < CORRAL__CG_V1_MAX; i++)
    {
      const char *dir = cg->mode == CORRAL_CG_V2 ? (i == 0 ? cg->path : NULL) : cg->v1_paths[i];
      if (dir == NULL)
        continue;
      snprintf(path, sizeof(path), "%s/%s", dir, cg->mode == CORRAL_CG_V2 ? "cgroup.procs" : "tasks");
      if ((fds[i] = open(path, O_WRONLY | O_CLOEXEC)) < 0)
        {
          int r = corral_error_set(err, errno, "open `%s`", path);
          corral__cgroup_close_join(fds);
          return r;
        }
    }
  return 0;
}

int corral__cgroup_join_self(const int fds[CORRAL__CG_V1_MAX], corral_error_t *err)
{
  for (int i = 0; i < CORRAL__CG_V1_MAX; i++)
    if (fds[i] >= 0 && corral__write_all(fds[i], "0", 1) < 0)
      return corral_error_set(err, errno, "join cgroup");
  return 0;
}

void corral__cgroup_close_join(int fds[CORRAL__CG_V1_MAX])
{
  for (int i = 0; i < CORRAL__CG_V1_MAX; i++)
    if (fds[i] >= 0)
      {
        close(fds[i]);
        fds[i] = -1;
      }
}

/* SIGKILL each pid listed in dir/cgroup.procs; returns how many were seen. */
static int kill_listed(const char *dir)
{
  char path[4096];
  int n = 0;
  snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
  FILE *f = fopen(path, "re");
  if (f == NULL)
    return 0;
  for (int pid; fscanf(f, "%d", &pid) == 1; n++)
    if (pid > 0)
      kill(pid, SIGKILL);
  fclose(f);
  return n;
}

void corral__cgroup_kill(struct corral__cgroup *cg)
{
  if (cg->mode == CORRAL_CG_V2)
    {
      /* cgroup.kill (5.14+) kills atomically, even a fork bomb mid-fork. */
      if (write_at(cg->path, "cgroup.kill", "1", NULL) < 0)
        kill_listed(cg->path);
      return;
    }
  const char *fz = cg->v1_paths[V1_FREEZER];
  const char *any = fz ? fz : cg->v1_paths[V1_PIDS] ? cg->v1_paths[V1_PIDS] : cg->v1_paths[V1_MEMORY];
  if (any == NULL)
    return;
  /* Freeze first so nothing can fork between reading the list and the kill. */
  if (fz)
    write_at(fz, "freezer.state", "FROZEN", NULL);
  for (int round = 0; round < 8 && kill_listed(any) > 0; round++)
    ;
  if (fz)
    write_at(fz, "freezer.state", "THAWED", NULL);
}

static uint64_t read_u64_key(const char *dir, const char *file, const char *key)
{
  char path[4096], buf[8192];
  snprintf(path, sizeof(path), "%s/%s", dir, file);
  if (corral__read_file_at(AT_FDCWD, path, buf, sizeof(buf)) < 0)
    return 0;
  if (key == NULL)
    return strtoull(buf, NULL, 10);
  size_t n = strlen(key);
  for (char *line = buf; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
    if (strncmp(line, key, n) == 0 && line[n] == ' ')
      return strtoull(line + n + 1, NULL, 10);
  return 0;
}

void corral__cgroup_stats(struct corral__cgroup *cg, uint64_t *oom_kills, uint64_t *peak,
                          uint64_t *user_ms, uint64_t *sys_ms)
{
  *oom_kills = *peak = *user_ms = *sys_ms = 0;
  if (cg->mode == CORRAL_CG_V2)
    {
      *oom_kills = read_u64_key(cg->path, "memory.events", "oom_kill");
      *peak = read_u64_key(cg->path, "memory.peak", NULL);
      *user_ms = read_u64_key(cg->path, "cpu.stat", "user_usec") / 1000;
      *sys_ms = read_u64_key(cg->path, "cpu.stat", "system_usec") / 1000;
    }
  else if (cg->mode == CORRAL_CG_V1 && cg->v1_paths[V1_MEMORY])
    {
      *oom_kills = read_u64_key(cg->v1_paths[V1_MEMORY], "memory.oom_control", "oom_kill");
      *peak = read_u64_key(cg->v1_paths[V1_MEMORY], "memory.max_usage_in_bytes", NULL);
      if (cg->v1_paths[V1_CPUACCT])
        {
          *user_ms = read_u64_key(cg->v1_paths[V1_CPUACCT], "cpuacct.usage_user", NULL) / 1000000;
          *sys_ms = read_u64_key(cg->v1_paths[V1_CPUACCT], "cpuacct.usage_sys", NULL) / 1000000;
        }
    }
}

/* rmdir, retrying while the last killed tasks are still being released. */
static int remove_dir(const char *dir, corral_error_t *err)
{
  for (int i = 0; i < 200; i++)
    {
      if (rmdir(dir) == 0 || errno == ENOENT)
        return 0;
      if (errno != EBUSY)
        break;
      kill_listed(dir);
      usleep(i < 20 ? 500 : 5000);
    }
  return corral_error_set(err, errno, "remove cgroup `%s`", dir);
}

/* Kill and remove a leftover cgroup directory, whatever its state. */
static int remove_leftover(const char *path)
{
  write_at(path, "freezer.state", "THAWED", NULL);
  write_at(path, "cgroup.kill", "1", NULL);
  return remove_dir(path, NULL);
}

int corral__cgroup_destroy(struct corral__cgroup *cg, corral_error_t *err)
{
  int r = 0;
  if (cg->mode == CORRAL_CG_V2 && cg->path)
    {
      corral__cgroup_kill(cg);
      r = remove_dir(cg->path, err);
    }
  for (int i = 0; i < CORRAL__CG_V1_MAX; i++)
    if (cg->v1_paths[i] && remove_dir(cg->v1_paths[i], err) < 0)
      r = -1;
  free(cg->path);
  for (int i = 0; i < CORRAL__CG_V1_MAX; i++)
    free(cg->v1_paths[i]);
  memset(cg, 0, sizeof(*cg));
  return r;
}

/* Leftovers are "run-PID-N" directories whose supervisor PID is gone. */
static int gc_dir(const char *parent, corral_error_t *err)
{
  DIR *d = opendir(parent);
  struct dirent *de;
  int removed = 0;
  if (d == NULL)
    return errno == ENOENT ? 0 : corral_error_set(err, errno, "open `%s`", parent);
  while ((de = readdir(d)) != NULL)
    {
      int pid;
      char path[4096];
      if (sscanf(de->d_name, "run-%d-", &pid) != 1 || pid <= 0)
        continue;
      if (kill(pid, 0) == 0 || errno != ESRCH)
        continue;
      snprintf(path, sizeof(path), "%s/%s", parent, de->d_name);
      /* Whichever of these the hierarchy has: a frozen leftover cannot
       * die, and cgroup.kill ends what a killed supervisor left running. */
      if (remove_leftover(path) == 0)
        removed++;
    }
  closedir(d);
  return removed;
}

int corral__cgroup_remove_named(const char *name)
{
  char root[512], parent[4096], self[4096], path[4200];
  int removed = 0;
  if (strchr(name, '/') || name[0] == '.')
    return 0;
  read_self_cgroup(self, sizeof(self));
  if (v2_root(root, sizeof(root)) != NULL)
    {
      snprintf(path, sizeof(path), "%s/corral/%s", root, name);
      removed += access(path, F_OK) == 0 && remove_leftover(path) == 0;
    }
  for (int i = 0; i < CORRAL__CG_V1_MAX; i++)
    {
      if (v1_parent(self, v1_ctrl[i], parent, sizeof(parent)) < 0)
        continue;
      snprintf(path, sizeof(path), "%s/%s", parent, name);
      removed += access(path, F_OK) == 0 && remove_leftover(path) == 0;
    }
  return removed;
}

int corral__cgroup_gc(corral_error_t *err)
{
  char root[512], parent[4096], self[4096];
  int total = 0, r;
  read_self_cgroup(self, sizeof(self));
  if (v2_root(root, sizeof(root)) != NULL)
    {
      snprintf(parent, sizeof(parent), "%s/corral", root);
      if ((r = gc_dir(parent, err)) < 0)
        return r;
      total += r;
    }
  for (int i = 0; i < CORRAL__CG_V1_MAX; i++)
    {
      if (v1_parent(self, v1_ctrl[i], parent, sizeof(parent)) < 0)
        continue;
      if ((r = gc_dir(parent, err)) < 0)
        return r;
      total += r;
    }
  return total;
}
