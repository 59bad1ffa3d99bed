/* Private interface of the isolate layer: one file per concern of a jail.
 * The order in which sandbox/run.c calls them is the order of defence
 * described in include/corral/run.h. */
#ifndef CORRAL_ISOLATE_H
#define CORRAL_ISOLATE_H

#include <linux/filter.h>
#include <sys/types.h>
#include <corral/run.h>

/* ---- cgroup.c: one interface over cgroup v2 and v1 ---- */
enum corral__cg_mode { CORRAL_CG_NONE = 0, CORRAL_CG_V1, CORRAL_CG_V2 };

#define CORRAL__CG_V1_MAX 5
struct corral__cgroup
{
  enum corral__cg_mode mode;
  char *path;                        /* v2: the cgroup directory */
  char *v1_paths[CORRAL__CG_V1_MAX]; /* v1: memory, pids, cpu, freezer, cpuacct */
};

/* Detect the mode once: v2 when its root offers memory and pids, else v1. */
enum corral__cg_mode corral__cgroup_detect(void);
const char *corral__cgroup_mode_name(enum corral__cg_mode m);
/* Create a cgroup for a run named `name` with cfg's limits. */
int corral__cgroup_create(struct corral__cgroup *cg, const char *name,
                          const corral_config_t *cfg, corral_error_t *err);
int corral__cgroup_enter(struct corral__cgroup *cg, pid_t pid, corral_error_t *err);
/* Joining from inside: the supervisor opens the cgroups' attach files (v1
 * `tasks`, v2 `cgroup.procs`) while it is host root; the new process writes
 * "0" to them itself.  The kernel checks the opener's credentials, and a
 * thread moving itself through v1 `tasks` skips the global threadgroup lock
 * whose RCU grace period otherwise costs ~10 ms per run. */
int corral__cgroup_open_join(struct corral__cgroup *cg, int fds[CORRAL__CG_V1_MAX], corral_error_t *err);
int corral__cgroup_join_self(const int fds[CORRAL__CG_V1_MAX], corral_error_t *err);
void corral__cgroup_close_join(int fds[CORRAL__CG_V1_MAX]);
/* SIGKILL every process in the cgroup. */
void corral__cgroup_kill(struct corral__cgroup *cg);
/* OOM kills, peak memory, CPU (ms) of the cgroup; fields stay 0 if unknown. */
void corral__cgroup_stats(struct corral__cgroup *cg, uint64_t *oom_kills, uint64_t *peak,
                          uint64_t *user_ms, uint64_t *sys_ms);
/* Kill what is left, remove the directories, free cg. */
int corral__cgroup_destroy(struct corral__cgroup *cg, corral_error_t *err);
/* Kill and remove the cgroup `name` under corral's parents in every
 * hierarchy (a sandbox whose record was lost); returns how many went. */
int corral__cgroup_remove_named(const char *name);
/* Remove leftover "run-PID-*" cgroups whose PID is gone. */
int corral__cgroup_gc(corral_error_t *err);

/* ---- userns.c: uid/gid ranges ---- */
#define CORRAL__ID_RANGE 65536
struct corral__idrange
{
  uid_t host_base;   /* sandbox id 0 maps here */
  int lock_fd;       /* flock held while the range is in use */
};
int corral__idrange_acquire(struct corral__idrange *r, corral_error_t *err);
void corral__idrange_release(struct corral__idrange *r);
int corral__write_id_maps(pid_t pid, const struct corral__idrange *r, corral_error_t *err);

/* ---- mount.c: the sandbox's filesystem, run in the new mount ns ---- */
/* Host paths the sandbox mounts, opened (O_PATH) by the supervisor while it
 * is still host root: PID 1 reaches them through /proc/self/fd, so their
 * parent directories need not be searchable by the sandbox's host uid. */
struct corral__sources
{
  int rootfs_fd;                      /* -1: host mode */
  int bind_fds[CORRAL_MAX_BINDS];
  size_t n_binds;
};
int corral__sources_open(const corral_config_t *cfg, struct corral__sources *src, corral_error_t *err);
void corral__sources_close(struct corral__sources *src);
int corral__setup_rootfs(const corral_config_t *cfg, const struct corral__sources *src, corral_error_t *err);

/* ---- net.c ---- */
int corral__loopback_up(corral_error_t *err);
/* Listening TCP sockets on 127.0.0.1:ports[i] inside the network namespace
 * of process pid (created from a short-lived thread that enters it), for
 * the caller to serve from outside.  Needs CAP_SYS_ADMIN over that
 * namespace (root). */
int corral__netns_listen(pid_t pid, const uint16_t *ports, int *fds, size_t n, corral_error_t *err);
/* A UDP socket bound to 127.0.0.1:port in pid's network namespace (DNS). */
int corral__netns_udp(pid_t pid, uint16_t port, corral_error_t *err);
/* A TCP connection to 127.0.0.1:port inside pid's network namespace (a
 * blocking fd), for forwarding to a server the sandbox runs. */
int corral__netns_connect(pid_t pid, uint16_t port, int timeout_ms, corral_error_t *err);

/* ---- seccomp.c ---- */
struct corral__seccomp
{
  struct sock_fprog allow; /* the syscall allowlist */
  struct sock_fprog args;  /* argument checks (ioctl, clone flags, sockets) */
  bool notify;             /* denied calls of the allowlist go to a listener */
};
/* The policy as shipped (precompiled at build time). */
int corral__seccomp_build(struct corral__seccomp *s, corral_error_t *err);
/* The policy compiled now with libseccomp (the build tool and tests). */
int corral__seccomp_compile(struct corral__seccomp *s, corral_error_t *err);
/* Returns 0, or with s->notify the listener fd (> 0), or negative. */
int corral__seccomp_load(const struct corral__seccomp *s, corral_error_t *err);
/* Make the allowlist's EPERM answers user notifications instead: a
 * supervisor (the agent) then answers them with EPERM itself and can
 * count them.  The answer the program sees is the same. */
void corral__seccomp_notify_denials(struct corral__seccomp *s);
void corral__seccomp_release(struct corral__seccomp *s);

/* ---- landlock.c ---- */
/* Returns the ABI version in use (0 when Landlock is unavailable). */
int corral__landlock_apply(const corral_config_t *cfg, corral_error_t *err);
int corral__landlock_abi(void);

/* ---- caps.c ---- */
int corral__set_rlimits(const corral_config_t *cfg, corral_error_t *err);
/* Switch to uid/gid (sandbox ids) and drop every capability for good. */
int corral__drop_privileges(uid_t uid, gid_t gid, corral_error_t *err);
int corral__close_fds_from(int lowfd);

#endif
