/* Private interface of the sandbox layer: what a one-shot run (run.c) and a
 * long-lived sandbox (box.c) share - the supervisor <-> PID 1 messages and
 * the steps PID 1 takes to build and lock down the jail. */
#ifndef CORRAL_SANDBOX_PRIV_H
#define CORRAL_SANDBOX_PRIV_H

#include <poll.h>
#include <sys/ioctl.h>
#include <sys/types.h>
#include <corral/run.h>
#include "../isolate/isolate.h"

/* MSG_TTY carries the master of the command's terminal (SCM_RIGHTS). */
/* MSG_ENV ("K=V", before MSG_GO): variables the supervisor learns only
 * after the clone (secrets' placeholders). */
enum msg_type { MSG_GO = 1, MSG_ERROR, MSG_STARTED, MSG_EXIT, MSG_TTY, MSG_ENV };

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
/* Secrets of a run (run_secrets.c): a bind for the CA bundle (path filled,
 * "" when no secrets), then, once the proxy serves the sandbox, the secrets
 * given to it and their placeholders and the CA's variables sent as
 * MSG_ENV. */
#define CORRAL__CA_BUNDLE "/run/corral/ca-bundle.pem"
struct corral_proxy;
int corral__run_secrets_prepare(corral_config_t *cfg, char path[64], corral_error_t *err);
int corral__run_secrets_apply(struct corral_proxy *p, const corral_config_t *cfg, const char *ca_path, int sock,
                              corral_error_t *err);


/* ---- the terminal of a run with cfg->tty (tty.c) ---- */

/* Bytes between the caller's fds and the master, one buffer each way. */
struct corral__relay
{
  int in, out, master;  /* -1: ended (in, out are the caller's: never closed) */
  size_t to_master_len, to_master_off, to_out_len, to_out_off;
  char last_in;         /* the last byte of input, 0 before any */
  bool idle;            /* master at EIO: no slave open (for now) */
  char to_master[4096];
  char to_out[16384];
};

/* The caller's window size (cfg->tty_in, else tty_out), else 24x80. */
void corral__tty_size(const corral_config_t *cfg, struct winsize *ws);
/* In PID 1: a new terminal of the sandbox's devpts, the slave owned by owner. */
int corral__tty_open(const struct winsize *ws, uid_t owner, int *master, int *slave, corral_error_t *err);
/* A message with one fd attached; 0 or -1. */
int corral__send_fd_msg(int sock, int type, int fd);
/* recvmsg(MSG_DONTWAIT) of one message; *fd the fd it carried, or -1. */
ssize_t corral__recv_msg(int sock, struct msg *m, int *fd);
/* Take master (closed if it is not a pty master, or one is already there). */
int corral__relay_start(struct corral__relay *r, const corral_config_t *cfg, int master);
void corral__relay_resize(struct corral__relay *r, const corral_config_t *cfg);
/* A poll timeout (ms) for the relay's sake, or -1. */
int corral__relay_timeout(const struct corral__relay *r);
/* Fill three pollfds (in, master, out; fd -1 for none), then act on them. */
void corral__relay_poll(const struct corral__relay *r, struct pollfd p[3]);
void corral__relay_step(struct corral__relay *r, const struct pollfd p[3]);
/* After the sandbox ended: copy the master's last bytes out, close it. */
void corral__relay_finish(struct corral__relay *r);

#endif
