/* Long-lived sandboxes ("boxes") whose PID 1 is the agent.
 *
 * A box outlives the daemon that made it: PID 1 is not tied to corrald's
 * life, it holds its own uid-range lock, and everything needed to find it
 * again (pid and start time, cgroup paths, agent socket) is the runtime
 * record that corrald stores and re-adopts after a restart. */
#ifndef CORRAL_SANDBOX_BOX_H
#define CORRAL_SANDBOX_BOX_H

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>
#include <corral/run.h>
#include "../isolate/isolate.h"

#define CORRAL__AGENT_PATH "/.corral/corral-agent"
#define CORRAL__RUNNERS_PATH "/.corral/runners"

/* The spawner: a single-threaded process forked from the daemon before it
 * starts any thread, so that raw clone() with its namespace flags never
 * runs in a multithreaded process (a lock held by another thread would stay
 * held forever in the child). */
struct corral__spawner
{
  pid_t pid;
  int sock;
  pthread_mutex_t lock;
  char *run_dir;
};

struct corral__box
{
  char id[64];
  pid_t pid;              /* host pid of PID 1 */
  int pidfd;              /* readable once PID 1 is gone */
  uint64_t start_ticks;   /* /proc/PID/stat starttime, against pid reuse */
  char sock_path[256];    /* the agent's socket on the host */
  struct corral__cgroup cg;
};

/* Fork the spawner.  agent_path: the corral-agent binary on the host;
 * runners_dir: the code-interpreter runners (NULL: none), bound read-only
 * at /.corral/runners; run_dir: where agent sockets live
 * (<run_dir>/sb/<id>.sock). */
int corral__spawner_start(struct corral__spawner *sp, const char *agent_path, const char *runners_dir,
                          const char *run_dir, corral_error_t *err);
void corral__spawner_stop(struct corral__spawner *sp);

/* Create a box with cfg's limits (argv unused) and wait until its agent
 * serves; nice > 0 builds it at that lower priority.  On success *b is
 * filled (pidfd open). */
int corral__box_create(struct corral__spawner *sp, const char *id, const corral_config_t *cfg, int nice,
                       struct corral__box *b, corral_error_t *err);
/* Set PID 1's nice value (the commands it starts afterwards inherit it). */
void corral__box_renice(struct corral__box *b, int nice);
/* Serialise what corrald stores to find the box again (malloc'd JSON). */
char *corral__box_runtime_json(const struct corral__box *b);
/* Returns 1 when the box is alive (b filled, pidfd open), 0 when it is gone
 * (b filled enough for corral__box_cleanup), negative on a bad record. */
int corral__box_adopt(const char *id, const char *runtime_json, struct corral__box *b, corral_error_t *err);
/* SIGKILL everything in the box. */
void corral__box_kill(struct corral__box *b);
/* OOM kills the box's cgroup has seen. */
uint64_t corral__box_oom_kills(struct corral__box *b);
/* After PID 1 is gone: remove the cgroup and the socket, close the pidfd. */
void corral__box_cleanup(struct corral__box *b);
/* Free the box's memory only (the daemon stops watching; the box lives on). */
void corral__box_forget(struct corral__box *b);
/* Remove what a sandbox without a runtime record may have left (its
 * cgroup, killing what is in it, and its socket): a create cut short by a
 * crash of the daemon. */
void corral__box_sweep(const char *run_dir, const char *id);
/* Sweep corrald run dirs for sandboxes whose agent is gone (no listener on
 * the socket): their cgroups and sockets.  Live agents are left alone: a
 * stopped corrald re-adopts them.  Returns how many were swept. */
int corral__box_gc(void);
/* A new connection to the agent (blocking, CLOEXEC). */
int corral__box_connect(const struct corral__box *b, corral_error_t *err);

#endif
