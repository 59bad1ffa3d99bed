/* corral: the sandbox service behind corrald (HTTP/JSON API, docs/api.md).
 *
 * corral_daemon_run() owns the process: it forks the sandbox spawner
 * before any thread exists, opens the state directory, re-adopts the
 * sandboxes a previous run left alive, serves HTTP on a TCP address and a
 * unix socket, and returns after SIGTERM/SIGINT (sandboxes keep running:
 * the next start adopts them again). */
#ifndef CORRAL_DAEMON_H
#define CORRAL_DAEMON_H

#include <stdbool.h>
#include <stdint.h>
#include <corral/error.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct corral_daemon_options_s {
  const char *listen;        /* "ADDR:PORT"; default 127.0.0.1:7070; "" disables TCP */
  const char *socket_path;   /* default <state_dir>/corrald.sock; "" disables */
  const char *state_dir;     /* default /var/lib/corral */
  const char *agent_path;    /* default: corral-agent beside the running binary */
  const char *runners_dir;   /* code-interpreter runners; default: found beside the binary */
  uint64_t max_timeout_s;    /* default 86400 */
  uint64_t retention_s;      /* how long ended sandboxes stay queryable; default 3600 */
  bool metrics_public;       /* GET /metrics without a key */
  uint64_t pool_size;        /* ready sandboxes kept for default-shaped creates; default 4 */
  const char *context_preload; /* Python modules a pooled sandbox's default context imports ahead */
  const char *resolver_file; /* egress proxy: names from this file instead of DNS (tests); NULL: DNS */
  const char *upstream_ca_file; /* egress proxy: CAs trusted besides the system's for intercepted TLS (tests) */
  void (*log)(const char *line); /* NULL: no logging */
} corral_daemon_options_t;

void corral_daemon_options_init(corral_daemon_options_t *o);

/* Serve until SIGTERM or SIGINT.  Returns 0 on a clean stop, negative when
 * it could not start (*err says why). */
int corral_daemon_run(const corral_daemon_options_t *o, corral_error_t *err);

#ifdef __cplusplus
}
#endif
#endif
