/* corral: the in-sandbox agent (PID 1 of a long-lived sandbox).
 *
 * corrald starts a sandbox with every protection of corral_run() and execs
 * the agent as its PID 1, running as the sandbox user.  The agent reaps
 * zombies, starts commands, keeps the output of background ones, and does
 * file operations; corrald reaches it over a unix socket on the host that
 * nothing inside the sandbox can open (the agent only inherits the
 * listening fd).  See src/lib/guest/proto.h for the wire format. */
#ifndef CORRAL_AGENT_H
#define CORRAL_AGENT_H

#ifdef __cplusplus
extern "C" {
#endif

/* Fds the agent is started with. */
#define CORRAL_AGENT_LISTEN_FD 3 /* listening SOCK_STREAM unix socket */
#define CORRAL_AGENT_READY_FD 4  /* SOCK_SEQPACKET: "ready" is sent here, then closed */
#define CORRAL_AGENT_LOCK_FD 5   /* flock of the sandbox's uid range: held while it lives */
#define CORRAL_AGENT_SECCOMP_FD 6 /* seccomp listener for the sandbox's denied calls (optional) */

/* Serve forever.  Returns only on a fatal setup error (exit status). */
int corral_agent_main(void);

#ifdef __cplusplus
}
#endif
#endif
