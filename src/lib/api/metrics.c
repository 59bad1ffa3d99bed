/* Prometheus metrics: counters and fixed-bucket histograms, lock-free. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "api.h"

static const double buckets[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60 };
#define NB (sizeof(buckets) / sizeof(*buckets))
#define N_REASONS 5
#define N_METHODS 5

struct histogram
{
  atomic_ullong counts[NB + 1];
  atomic_ullong sum_us, n;
};

static const char *const end_reasons[N_REASONS] = { "killed", "timeout", "oom", "error", "daemon_restart_lost" };
static const char *const codes[] = { "invalid_json", "invalid_argument", "unauthorized", "forbidden", "not_found",
                                     "template_not_found", "method_not_allowed", "sandbox_not_running", "conflict",
                                     "payload_too_large", "quota_exceeded", "internal", "unavailable",
                                     "insufficient_storage", "timeout" };
#define N_CODES (sizeof(codes) / sizeof(*codes))
static const char *const methods[N_METHODS] = { "GET", "POST", "PUT", "DELETE", "other" };

struct metrics
{
  struct histogram create, command;
  atomic_ullong ended[N_REASONS], errors[N_CODES], requests[N_METHODS];
  atomic_ullong oom_commands, timeout_commands, seccomp_denials;
};

void metrics_init(struct daemon *d)
{
  d->metrics = calloc(1, sizeof(*d->metrics));
}

static void observe(struct histogram *h, uint64_t us)
{
  size_t i = 0;
  while (i < NB && (double) us / 1e6 > buckets[i])
    i++;
  atomic_fetch_add(&h->counts[i], 1);
  atomic_fetch_add(&h->sum_us, us);
  atomic_fetch_add(&h->n, 1);
}

void metrics_request(struct daemon *d, const char *method, unsigned status, const char *code)
{
  struct metrics *m = d->metrics;
  size_t i;
  (void) status;
  if (!m)
    return;
  for (i = 0; i < N_METHODS - 1 && strcmp(methods[i], method); i++)
    ;
  atomic_fetch_add(&m->requests[i], 1);
  for (i = 0; code && i < N_CODES; i++)
    if (strcmp(codes[i], code) == 0)
      atomic_fetch_add(&m->errors[i], 1);
}

void metrics_create(struct daemon *d, uint64_t us)
{
  if (d->metrics)
    observe(&d->metrics->create, us);
}

void metrics_command(struct daemon *d, uint64_t us, const char *reason)
{
  if (!d->metrics)
    return;
  observe(&d->metrics->command, us);
  if (strcmp(reason, "oom") == 0)
    atomic_fetch_add(&d->metrics->oom_commands, 1);
  if (strcmp(reason, "timeout") == 0)
    atomic_fetch_add(&d->metrics->timeout_commands, 1);
}

void metrics_seccomp(struct daemon *d, uint64_t denials)
{
  if (d->metrics && denials)
    atomic_fetch_add(&d->metrics->seccomp_denials, denials);
}

void metrics_ended(struct daemon *d, const char *reason)
{
  for (size_t i = 0; d->metrics && i < N_REASONS; i++)
    if (strcmp(end_reasons[i], reason) == 0)
      atomic_fetch_add(&d->metrics->ended[i], 1);
}

struct text
{
  char *buf;
  size_t len, cap;
};

static void put(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct text *t, const char *fmt, ...)
{
  va_list ap;
  for (;;)
    {
      va_start(ap, fmt);
      int n = t->buf ? vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap) : -1;
      va_end(ap);
      if (n >= 0 && (size_t) n < t->cap - t->len)
        {
          t->len += (size_t) n;
          return;
        }
      size_t ncap = t->cap ? t->cap * 2 : 8192;
      char *b = realloc(t->buf, ncap);
      if (!b)
        return;
      t->buf = b;
      t->cap = ncap;
    }
}

static void histogram(struct text *t, const char *name, const char *help, struct histogram *h)
{
  unsigned long long cum = 0;
  put(t, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
  for (size_t i = 0; i < NB; i++)
    {
      cum += atomic_load(&h->counts[i]);
      put(t, "%s_bucket{le=\"%g\"} %llu\n", name, buckets[i], cum);
    }
  cum += atomic_load(&h->counts[NB]);
  put(t, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name, cum, name,
      (double) atomic_load(&h->sum_us) / 1e6, name, (unsigned long long) atomic_load(&h->n));
}

static void counter(struct text *t, const char *name, const char *help, unsigned long long v)
{
  put(t, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name, v);
}

char *metrics_render(struct daemon *d)
{
  struct metrics *m = d->metrics;
  struct text t = { 0 };
  corral_sandbox_rec_t *recs = NULL;
  size_t n_ended = 0;
  if (!m)
    return NULL;
  if (corral_store_sandbox_list(d->store, NULL, "ended", &recs, &n_ended, NULL) == 0)
    corral_sandbox_recs_free(recs, n_ended);
  put(&t, "# HELP corral_sandboxes Sandboxes by state.\n# TYPE corral_sandboxes gauge\n");
  put(&t, "corral_sandboxes{state=\"running\"} %zu\ncorral_sandboxes{state=\"ended\"} %zu\n", registry_count(d),
      n_ended);
  put(&t, "# HELP corral_pool_ready Ready sandboxes waiting in the pool.\n# TYPE corral_pool_ready gauge\n"
          "corral_pool_ready %zu\n", registry_pooled(d, true));
  histogram(&t, "corral_sandbox_create_seconds", "Time to create a sandbox (request to agent ready).", &m->create);
  histogram(&t, "corral_command_seconds", "Duration of commands run through the API.", &m->command);
  put(&t, "# HELP corral_sandboxes_ended_total Sandboxes ended, by reason.\n"
          "# TYPE corral_sandboxes_ended_total counter\n");
  for (size_t i = 0; i < N_REASONS; i++)
    put(&t, "corral_sandboxes_ended_total{reason=\"%s\"} %llu\n", end_reasons[i],
        (unsigned long long) atomic_load(&m->ended[i]));
  counter(&t, "corral_oom_kills_total", "Commands and sandboxes killed by their memory limit.",
          atomic_load(&m->oom_commands) + atomic_load(&m->ended[2]));
  counter(&t, "corral_timeouts_total", "Commands and sandboxes ended by a timeout.",
          atomic_load(&m->timeout_commands) + atomic_load(&m->ended[1]));
  counter(&t, "corral_seccomp_denials_total", "System calls the sandboxes' seccomp policy refused (EPERM list).",
          atomic_load(&m->seccomp_denials));
  corral_proxy_stats_t ps = { 0 };
  if (d->proxy)
    corral_proxy_stats(d->proxy, NULL, &ps);
  put(&t, "# HELP corral_egress_connections_total Connections sandboxes made through the egress proxy, by "
          "outcome.\n# TYPE corral_egress_connections_total counter\n"
          "corral_egress_connections_total{result=\"allowed\"} %llu\n"
          "corral_egress_connections_total{result=\"denied\"} %llu\n"
          "corral_egress_connections_total{result=\"failed\"} %llu\n",
      (unsigned long long) ps.connections_allowed, (unsigned long long) ps.connections_denied,
      (unsigned long long) ps.connections_failed);
  put(&t, "# HELP corral_egress_bytes_total Bytes relayed by the egress proxy.\n"
          "# TYPE corral_egress_bytes_total counter\n"
          "corral_egress_bytes_total{direction=\"up\"} %llu\ncorral_egress_bytes_total{direction=\"down\"} %llu\n",
      (unsigned long long) ps.bytes_up, (unsigned long long) ps.bytes_down);
  put(&t, "# HELP corral_egress_connections_active Open connections through the egress proxy.\n"
          "# TYPE corral_egress_connections_active gauge\ncorral_egress_connections_active %llu\n",
      (unsigned long long) ps.connections_active);
  put(&t, "# HELP corral_api_errors_total API errors by code.\n# TYPE corral_api_errors_total counter\n");
  for (size_t i = 0; i < N_CODES; i++)
    put(&t, "corral_api_errors_total{code=\"%s\"} %llu\n", codes[i], (unsigned long long) atomic_load(&m->errors[i]));
  put(&t, "# HELP corral_http_requests_total HTTP requests by method.\n"
          "# TYPE corral_http_requests_total counter\n");
  for (size_t i = 0; i < N_METHODS; i++)
    put(&t, "corral_http_requests_total{method=\"%s\"} %llu\n", methods[i],
        (unsigned long long) atomic_load(&m->requests[i]));
  return t.buf;
}
