/* corral: run one command in a fresh sandbox (the isolation core).
 *
 * corral_run() builds a jail in this order, each step a separate layer of
 * defence: a cgroup for limits, new user/mount/pid/ipc/uts/net/cgroup/time
 * namespaces, a read-only root assembled on tmpfs and entered with
 * pivot_root, a loopback-only network, then - in the process that becomes the
 * command - rlimits, setsid, closed inherited fds, dropped capabilities,
 * no_new_privs, Landlock and a seccomp allowlist.  It returns when the
 * command has ended and every process it started is gone.
 */
#ifndef CORRAL_RUN_H
#define CORRAL_RUN_H

#include <stdint.h>
#include <stdbool.h>
#include <corral/error.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CORRAL_SANDBOX_UID 1000
#define CORRAL_SANDBOX_GID 1000
#define CORRAL_DEFAULT_DISK (512ULL << 20)
#define CORRAL_DEFAULT_MEMORY (1ULL << 30)
#define CORRAL_DEFAULT_PIDS 1024
#define CORRAL_MAX_BINDS 64
#define CORRAL_MAX_ENV 256
#define CORRAL_MAX_ALLOW 256
#define CORRAL_MAX_SECRETS 64

/* A secret for the egress proxy (docs/network.md): the command sees only a
 * placeholder in the variable `name`; the proxy puts `value` in its place in
 * requests to `hosts` (comma-separated, "*.example.com" for subdomains). */
typedef struct corral_run_secret_s {
  char *name, *value, *hosts;
  char *header, *format;       /* optional, e.g. "Authorization", "Bearer {value}" */
} corral_run_secret_t;

typedef struct corral_bind_s {
  char *src;          /* host path */
  char *dst;          /* absolute path inside the sandbox */
  bool read_only;
} corral_bind_t;

typedef struct corral_config_s {
  char **argv;                 /* command to run; argv[0] searched in PATH */
  char *rootfs;                /* NULL: the host's /usr etc. read-only */
  char *workdir;               /* NULL: home directory */
  char *hostname;              /* NULL: "corral" */
  bool as_root;                /* run as uid 0 in the namespace */
  uint64_t disk_bytes;         /* size of /tmp and of /home/user each */
  uint64_t memory_bytes;       /* 0: no memory limit */
  uint64_t cpu_millis;         /* 0: no CPU quota; 1500 = 1.5 CPUs */
  uint64_t pids;               /* 0: no pids limit */
  uint64_t timeout_ms;         /* wall clock; 0: none */
  uint64_t cpu_time_s;         /* RLIMIT_CPU; 0: none */
  char *env[CORRAL_MAX_ENV + 1]; /* extra K=V, NULL terminated */
  corral_bind_t binds[CORRAL_MAX_BINDS];
  size_t n_binds;
  int signal_fd;               /* -1, or a pipe: each byte read is a signal
                                  number to forward to the command */
  /* Egress (docs/network.md): "none" (NULL), "allowlist" or "open".  Not
   * none: corral_run serves the sandbox an HTTP proxy on its 127.0.0.1:3128
   * and a SOCKS5 proxy on 127.0.0.1:1080 (HTTP_PROXY & co. are set) that
   * allow only what the rules in allow[] say, from a thread of the caller. */
  char *network;
  char *allow[CORRAL_MAX_ALLOW + 1];  /* rules, NULL terminated */
  const char *resolver_file;          /* names from this file, not DNS (tests) */
  const char *upstream_ca_file;       /* CAs trusted besides the system's for secrets' TLS (tests) */
  /* Called (on the proxy's thread) with one JSON record per connection. */
  void (*net_audit)(void *cls, const char *json_record);
  void *net_audit_cls;
  corral_run_secret_t secrets[CORRAL_MAX_SECRETS]; /* need a network mode */
  size_t n_secrets;
  /* A terminal for the command (corral run --tty): a new pseudo-terminal
   * of the sandbox's own devpts becomes its controlling terminal and its
   * stdin, stdout and stderr, and corral_run relays bytes between its
   * master and tty_in/tty_out (the caller's fds, left as they are: raw mode
   * for a terminal is the caller's to set).  The initial size is tty_in's
   * (or tty_out's); a SIGWINCH byte on signal_fd resizes it rather than
   * being forwarded.  No host terminal is ever inside the sandbox. */
  bool tty;
  int tty_in, tty_out;         /* default 0 and 1 */
} corral_config_t;

typedef enum {
  CORRAL_REASON_EXITED = 0,
  CORRAL_REASON_SIGNALED,
  CORRAL_REASON_TIMEOUT,
  CORRAL_REASON_OOM,
  CORRAL_REASON_ERROR,
} corral_reason_t;

typedef struct corral_result_s {
  corral_reason_t reason;
  int exit_code;               /* valid when reason == EXITED */
  int signal;                  /* signal that ended the command, or 0 */
  uint64_t wall_ms;
  uint64_t cpu_user_ms;
  uint64_t cpu_sys_ms;
  uint64_t memory_peak_bytes;  /* 0 when the kernel does not report it */
  char cgroup_mode[8];         /* "v1", "v2" or "none" */
} corral_result_t;

/* Defaults for every field; argv is left NULL. */
void corral_config_init(corral_config_t *cfg);
/* Free what the CLI parser allocated inside cfg. */
void corral_config_release(corral_config_t *cfg);

/* Check a configuration before anything is created.  Returns 0 or negative
 * with *err describing the first invalid field. */
int corral_config_validate(const corral_config_t *cfg, corral_error_t *err);

/* Run cfg->argv in a new sandbox and wait for it.  Returns 0 when the
 * command ran (whatever its exit status: see *res), negative when corral
 * could not build or supervise the sandbox (*err says why; res->reason is
 * CORRAL_REASON_ERROR).  Never leaves a mount, cgroup or process behind. */
int corral_run(const corral_config_t *cfg, corral_result_t *res, corral_error_t *err);

/* The exit code a shell-like front end should use for res: the command's
 * code, 128+N for a signal, 124 for a timeout, 137 for an OOM kill. */
int corral_result_exit_code(const corral_result_t *res);

/* "exited", "signaled", "timeout", "oom" or "error". */
const char *corral_reason_name(corral_reason_t r);

/* Result as a one-line JSON object (malloc'd) or NULL on ENOMEM. */
char *corral_result_to_json(const corral_result_t *res);

/* Remove cgroups left by corral processes that no longer exist (a run whose
 * supervisor was SIGKILLed), and the sockets and cgroups of corrald
 * sandboxes whose agent is gone.  Returns the number removed, or negative. */
int corral_gc(corral_error_t *err);

/* ---- input parsers (shared by the CLI, the daemon and the fuzzers) ---- */

/* "512M", "1g", "4096", "1.5G", "64k": bytes.  Suffixes are binary (K=1024). */
int corral_parse_size(const char *s, uint64_t *out, corral_error_t *err);
/* "1", "0.5", "2.25": CPUs in thousandths (millicpus); must be > 0. */
int corral_parse_cpus(const char *s, uint64_t *out, corral_error_t *err);
/* "10", "1.5", "500ms", "2s", "1m", "1h": milliseconds. */
int corral_parse_duration_ms(const char *s, uint64_t *out, corral_error_t *err);
/* "SRC:DST[:ro|:rw]" into b (strings malloc'd). */
int corral_parse_bind(const char *s, corral_bind_t *b, corral_error_t *err);
/* "KEY=VALUE" with a valid shell-ish KEY. */
int corral_parse_env(const char *s, corral_error_t *err);

#ifdef __cplusplus
}
#endif
#endif
