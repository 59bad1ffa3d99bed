/* Private interface of the sandbox layer: what a one-shot run (run.c) and a
 * long-lived sandbox (box.c) share - the supervisor <-> PID 1 messages and
 * the steps PID 1 takes to build and lock down the jail. */
#ifndef CORRAL_SANDBOX_PRIV_H
#define CORRAL_SANDBOX_PRIV_H

#include <sys/types.h>
#include <corral/run.h>
#include "../isolate/isolate.h"

enum msg_type { MSG_GO = 1, MSG_ERROR, MSG_STARTED, MSG_EXIT };

struct msg
{
  int type;
  int status;    /* MSG_EXIT: wait status; MSG_ERROR: suggested exit code */
  int err_no;
  char text[1024];
};

void corral__send_msg(int fd, int type, int status, int err_no, const char *text);
void __attribute__((noreturn)) corral__init_fail(int sock, int code, corral_error_t *err);
/* In PID 1: join the cgroup, enter the cgroup and time namespaces, build
 * the filesystem and pivot into it, set the hostname, bring up loopback.
 * Calls corral__init_fail() on error. */
void corral__build_sandbox(const corral_config_t *cfg, const int join_fds[], int sock, corral_error_t *err);
/* rlimits, sandbox ids, no capabilities, no_new_privs, Landlock, seccomp.
 * Returns 0, the seccomp listener fd when sc->notify, or negative. */
int corral__lock_down(const corral_config_t *cfg, const struct corral__seccomp *sc, corral_error_t *err);
/* fork() into new user, mount, pid, ipc, uts and net namespaces; with
 * pidfd non-NULL the child's pidfd is stored there (CLONE_PIDFD). */
pid_t corral__clone_sandbox(int *pidfd);
/* The egress policy of a run's config (NULL *out for none); validates. */
struct corral_net_policy;
int corral__config_policy(const corral_config_t *cfg, struct corral_net_policy **out, corral_error_t *err);

#endif
