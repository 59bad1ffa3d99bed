/* Request bodies to values, with a precise reason for every rejection.
 * Pure functions of their input: tests/fuzz/fuzz_decode.c runs them on
 * arbitrary JSON. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include "api.h"

#define MAX_METADATA 64
#define MAX_ENV 256
#define MAX_ARGV 4096
#define MAX_OUTPUT_LIMIT (64ull << 20)
#define DEFAULT_OUTPUT (1ull << 20)

static int why(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int why(char *buf, size_t size, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, size, fmt, ap);
  va_end(ap);
  return -1;
}

bool valid_env_name(const char *k)
{
  if (!k || !*k || (*k >= '0' && *k <= '9'))
    return false;
  for (; *k; k++)
    if (!(*k == '_' || (*k >= 'a' && *k <= 'z') || (*k >= 'A' && *k <= 'Z') || (*k >= '0' && *k <= '9')))
      return false;
  return true;
}

static bool nul_free(json_t *s)
{
  return strlen(json_string_value(s)) == json_string_length(s);
}

/* An object whose values are all strings. */
static int string_map(json_t *v, const char *field, size_t max, bool env_names, json_t **out, char *w, size_t ws)
{
  const char *k;
  json_t *x;
  if (!v || json_is_null(v))
    {
      *out = json_object();
      return 0;
    }
  if (!json_is_object(v))
    return why(w, ws, "`%s` must be an object of strings", field);
  if (json_object_size(v) > max)
    return why(w, ws, "`%s` has more than %zu keys", field, max);
  json_object_foreach(v, k, x)
    {
      if (!json_is_string(x))
        return why(w, ws, "`%s.%s` must be a string", field, k);
      if (env_names && (!valid_env_name(k) || !nul_free(x)))
        return why(w, ws, "`%s`: `%s` is not a valid variable", field, k);
      if (strlen(k) > 256 || json_string_length(x) > 65536)
        return why(w, ws, "`%s.%s` is too long", field, k);
    }
  *out = json_incref(v);
  return 0;
}

/* An integer in [lo, hi]; absent or null keeps *out. */
static int uint_field(json_t *o, const char *field, uint64_t lo, uint64_t hi, uint64_t *out, char *w, size_t ws)
{
  json_t *v = json_object_get(o, field);
  if (!v || json_is_null(v))
    return 0;
  if (!json_is_integer(v))
    return why(w, ws, "`%s` must be an integer", field);
  json_int_t n = json_integer_value(v);
  if (n < 0 || (uint64_t) n < lo || (uint64_t) n > hi)
    return why(w, ws, "`%s` must be between %llu and %llu", field, (unsigned long long) lo, (unsigned long long) hi);
  *out = (uint64_t) n;
  return 0;
}

static int decode_limits(json_t *lim, struct create_req *out, char *w, size_t ws)
{
  const char *k;
  json_t *v;
  if (!lim || json_is_null(lim))
    return 0;
  if (!json_is_object(lim))
    return why(w, ws, "`limits` must be an object");
  json_object_foreach(lim, k, v)
    if (strcmp(k, "memory_mb") && strcmp(k, "pids") && strcmp(k, "disk_mb") && strcmp(k, "cpus"))
      return why(w, ws, "unknown limit `%s` (known: memory_mb, cpus, pids, disk_mb)", k);
  if (uint_field(lim, "memory_mb", 16, 65536, &out->memory_mb, w, ws) < 0
      || uint_field(lim, "pids", 16, 32768, &out->pids, w, ws) < 0
      || uint_field(lim, "disk_mb", 1, 65536, &out->disk_mb, w, ws) < 0)
    return -1;
  if ((v = json_object_get(lim, "cpus")) && !json_is_null(v))
    {
      if (!json_is_number(v) || json_number_value(v) < 0.01 || json_number_value(v) > 64)
        return why(w, ws, "`limits.cpus` must be a number between 0.01 and 64");
      out->cpu_millis = (uint64_t) (json_number_value(v) * 1000 + 0.5);
    }
  return 0;
}

int decode_create(json_t *body, uint64_t max_timeout_s, struct create_req *out, char *w, size_t ws)
{
  json_t *v;
  memset(out, 0, sizeof(*out));
  snprintf(out->template_name, sizeof(out->template_name), "base");
  out->timeout_s = 300 < max_timeout_s ? 300 : max_timeout_s;
  out->memory_mb = 1024;
  out->pids = 1024;
  out->disk_mb = 512;
  if ((v = json_object_get(body, "template")) && !json_is_null(v))
    {
      if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) >= sizeof(out->template_name)
          || !nul_free(v))
        return why(w, ws, "`template` must be a non-empty string");
      snprintf(out->template_name, sizeof(out->template_name), "%s", json_string_value(v));
    }
  if (uint_field(body, "timeout_s", 1, max_timeout_s, &out->timeout_s, w, ws) < 0
      || decode_limits(json_object_get(body, "limits"), out, w, ws) < 0)
    return -1;
  if (string_map(json_object_get(body, "metadata"), "metadata", MAX_METADATA, false, &out->metadata, w, ws) < 0)
    return -1;
  if (string_map(json_object_get(body, "env"), "env", MAX_ENV, true, &out->env, w, ws) < 0
      || network_decode(json_object_get(body, "network"), &out->network, w, ws) < 0
      || secrets_decode(json_object_get(body, "secrets"), &out->secrets, w, ws) < 0)
    {
      create_req_release(out);
      return -1;
    }
  if (json_array_size(out->secrets) && (!out->network || corral_net_policy_mode(out->network) == CORRAL_NET_NONE))
    {
      create_req_release(out);
      return why(w, ws, "`secrets` need a `network` mode that reaches their hosts (allowlist or open)");
    }
  return 0;
}

void create_req_release(struct create_req *c)
{
  json_decref(c->metadata);
  json_decref(c->env);
  c->metadata = c->env = NULL;
  corral_net_policy_unref(c->network);
  c->network = NULL;
  json_decref(c->secrets);
  c->secrets = NULL;
}

static void strv_free(char **v)
{
  for (char **p = v; p && *p; p++)
    free(*p);
  free(v);
}

static int decode_cmd(json_t *v, struct exec_req *out, char *w, size_t ws)
{
  if (json_is_string(v))
    {
      if (json_string_length(v) == 0 || !nul_free(v))
        return why(w, ws, "`cmd` must be a non-empty string without NUL bytes");
      out->argv = calloc(4, sizeof(char *));
      if (!out->argv)
        return why(w, ws, "out of memory");
      out->argv[0] = strdup("/bin/sh");
      out->argv[1] = strdup("-c");
      out->argv[2] = strdup(json_string_value(v));
      return 0;
    }
  if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > MAX_ARGV)
    return why(w, ws, "`cmd` must be a string or a non-empty array of strings");
  out->argv = calloc(json_array_size(v) + 1, sizeof(char *));
  if (!out->argv)
    return why(w, ws, "out of memory");
  for (size_t i = 0; i < json_array_size(v); i++)
    {
      json_t *a = json_array_get(v, i);
      if (!json_is_string(a) || !nul_free(a))
        return why(w, ws, "`cmd[%zu]` must be a string without NUL bytes", i);
      out->argv[i] = strdup(json_string_value(a));
    }
  if (!out->argv[0][0])
    return why(w, ws, "`cmd[0]` must not be empty");
  return 0;
}

static int decode_exec_env(json_t *v, struct exec_req *out, char *w, size_t ws)
{
  json_t *m = NULL, *x;
  const char *k;
  size_t i = 0;
  if (string_map(v, "env", MAX_ENV, true, &m, w, ws) < 0)
    return -1;
  out->env = calloc(json_object_size(m) + 1, sizeof(char *));
  json_object_foreach(m, k, x)
    if (out->env && asprintf(&out->env[i++], "%s=%s", k, json_string_value(x)) < 0)
      out->env[--i] = NULL;
  json_decref(m);
  return out->env ? 0 : why(w, ws, "out of memory");
}

static int decode_stdin(json_t *v, struct exec_req *out, char *w, size_t ws)
{
  if (!v || json_is_null(v))
    return 0;
  if (!json_is_string(v))
    return why(w, ws, "`stdin` must be a string");
  out->stdin_len = json_string_length(v);
  out->stdin_data = malloc(out->stdin_len + 1);
  if (!out->stdin_data)
    return why(w, ws, "out of memory");
  memcpy(out->stdin_data, json_string_value(v), out->stdin_len + 1);
  return 0;
}

int decode_exec(json_t *body, struct exec_req *out, char *w, size_t ws)
{
  json_t *v;
  memset(out, 0, sizeof(*out));
  out->max_output = DEFAULT_OUTPUT;
  if (!(v = json_object_get(body, "cmd")))
    return why(w, ws, "`cmd` is required");
  if (decode_cmd(v, out, w, ws) < 0 || decode_exec_env(json_object_get(body, "env"), out, w, ws) < 0)
    goto fail;
  if ((v = json_object_get(body, "cwd")) && !json_is_null(v))
    {
      if (!json_is_string(v) || json_string_length(v) == 0 || !nul_free(v))
        {
          why(w, ws, "`cwd` must be a non-empty string");
          goto fail;
        }
      out->cwd = strdup(json_string_value(v));
    }
  if (uint_field(body, "timeout_ms", 0, 86400000ull, &out->timeout_ms, w, ws) < 0
      || uint_field(body, "max_output", 1, MAX_OUTPUT_LIMIT, &out->max_output, w, ws) < 0
      || decode_stdin(json_object_get(body, "stdin"), out, w, ws) < 0)
    goto fail;
  if ((v = json_object_get(body, "background")) && !json_is_null(v))
    {
      if (!json_is_boolean(v))
        {
          why(w, ws, "`background` must be a boolean");
          goto fail;
        }
      out->background = json_is_true(v);
    }
  return 0;
fail:
  exec_req_release(out);
  return -1;
}

void exec_req_release(struct exec_req *e)
{
  strv_free(e->argv);
  strv_free(e->env);
  free(e->cwd);
  free(e->stdin_data);
  memset(e, 0, sizeof(*e));
}

static const struct
{
  const char *name;
  int sig;
} signals[] = {
  { "HUP", SIGHUP },   { "INT", SIGINT },   { "QUIT", SIGQUIT }, { "ILL", SIGILL },    { "TRAP", SIGTRAP },
  { "ABRT", SIGABRT }, { "BUS", SIGBUS },   { "FPE", SIGFPE },   { "KILL", SIGKILL },  { "USR1", SIGUSR1 },
  { "SEGV", SIGSEGV }, { "USR2", SIGUSR2 }, { "PIPE", SIGPIPE }, { "ALRM", SIGALRM },  { "TERM", SIGTERM },
  { "CHLD", SIGCHLD }, { "CONT", SIGCONT }, { "STOP", SIGSTOP }, { "TSTP", SIGTSTP },  { "TTIN", SIGTTIN },
  { "TTOU", SIGTTOU }, { "URG", SIGURG },   { "XCPU", SIGXCPU }, { "XFSZ", SIGXFSZ },  { "VTALRM", SIGVTALRM },
  { "PROF", SIGPROF }, { "WINCH", SIGWINCH }, { "IO", SIGIO },   { "PWR", SIGPWR },    { "SYS", SIGSYS },
};

int decode_signal(json_t *v)
{
  if (json_is_integer(v))
    return json_integer_value(v) > 0 && json_integer_value(v) < 65 ? (int) json_integer_value(v) : 0;
  if (!json_is_string(v))
    return 0;
  const char *s = json_string_value(v);
  if (strncasecmp(s, "SIG", 3) == 0)
    s += 3;
  for (size_t i = 0; i < sizeof(signals) / sizeof(*signals); i++)
    if (strcasecmp(s, signals[i].name) == 0)
      return signals[i].sig;
  char *end;
  long n = strtol(s, &end, 10);
  return *s && !*end && n > 0 && n < 65 ? (int) n : 0;
}

const char *signal_name(int sig)
{
  static __thread char buf[16];
  for (size_t i = 0; i < sizeof(signals) / sizeof(*signals); i++)
    if (signals[i].sig == sig)
      {
        snprintf(buf, sizeof(buf), "SIG%s", signals[i].name);
        return buf;
      }
  snprintf(buf, sizeof(buf), "SIG%d", sig);
  return buf;
}
