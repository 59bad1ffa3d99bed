/* Run configuration and result record. */
#define _GNU_SOURCE
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <corral/net.h>
#include <corral/run.h>
#include "sandbox.h"
#include "../common/utils.h"

void corral_config_init(corral_config_t *cfg)
{
  memset(cfg, 0, sizeof(*cfg));
  cfg->disk_bytes = CORRAL_DEFAULT_DISK;
  cfg->memory_bytes = CORRAL_DEFAULT_MEMORY;
  cfg->pids = CORRAL_DEFAULT_PIDS;
  cfg->signal_fd = -1;
  cfg->tty_in = 0;
  cfg->tty_out = 1;
}

void corral_config_release(corral_config_t *cfg)
{
  free(cfg->rootfs);
  free(cfg->workdir);
  free(cfg->hostname);
  for (size_t i = 0; i < cfg->n_binds; i++)
    {
      free(cfg->binds[i].src);
      free(cfg->binds[i].dst);
    }
  for (size_t i = 0; cfg->env[i]; i++)
    free(cfg->env[i]);
  for (size_t i = 0; cfg->allow[i]; i++)
    free(cfg->allow[i]);
  free(cfg->network);
  cfg->network = NULL;
  for (size_t i = 0; i < cfg->n_secrets; i++)
    {
      corral_run_secret_t *s = &cfg->secrets[i];
      if (s->value)
        memset(s->value, 0, strlen(s->value)); /* not left in freed memory */
      free(s->name), free(s->value), free(s->hosts), free(s->header), free(s->format);
    }
  cfg->n_secrets = 0;
  cfg->allow[0] = NULL;
  cfg->rootfs = cfg->workdir = cfg->hostname = NULL;
  cfg->n_binds = 0;
  cfg->env[0] = NULL;
}

int corral__config_policy(const corral_config_t *cfg, corral_net_policy_t **out, corral_error_t *err)
{
  corral_net_mode_t mode = CORRAL_NET_NONE;
  corral_net_policy_t *p = NULL;
  if (out)
    *out = NULL;
  if (cfg->network && corral_net_mode_parse(cfg->network, &mode, err) < 0)
    return corral_error_wrap(err, "--network");
  if (mode == CORRAL_NET_NONE && cfg->n_secrets)
    return corral_error_set(err, EINVAL, "--secret needs --network allowlist or open");
  if (mode == CORRAL_NET_NONE)
    return cfg->allow[0] ? corral_error_set(err, EINVAL, "--allow needs --network allowlist or open") : 0;
  if (corral_net_policy_new(mode, &p, err) < 0)
    return -1;
  for (size_t i = 0; cfg->allow[i]; i++)
    if (corral_net_policy_add_rule(p, cfg->allow[i], err) < 0)
      {
        corral_net_policy_unref(p);
        return corral_error_wrap(err, "--allow");
      }
  if (out)
    *out = p;
  else
    corral_net_policy_unref(p);
  return 0;
}

static bool valid_hostname(const char *h)
{
  size_t n = strlen(h);
  if (n == 0 || n > 63)
    return false;
  for (const char *p = h; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-'))
      return false;
  return h[0] != '-' && h[n - 1] != '-';
}

int corral_config_validate(const corral_config_t *cfg, corral_error_t *err)
{
  struct stat st;
  if (cfg->argv == NULL || cfg->argv[0] == NULL || cfg->argv[0][0] == '\0')
    return corral_error_set(err, EINVAL, "no command given (usage: corral run [OPTIONS] -- COMMAND [ARG...])");
  if (cfg->rootfs)
    {
      if (cfg->rootfs[0] != '/')
        return corral_error_set(err, EINVAL, "rootfs `%s` must be an absolute path", cfg->rootfs);
      if (stat(cfg->rootfs, &st) < 0)
        return corral_error_set(err, errno, "rootfs `%s`", cfg->rootfs);
      if (!S_ISDIR(st.st_mode))
        return corral_error_set(err, ENOTDIR, "rootfs `%s`", cfg->rootfs);
      /* The image is assembled by the sandbox's own unprivileged uid. */
      if ((st.st_mode & 05) != 05)
        return corral_error_set(err, EACCES, "rootfs `%s` must be readable and searchable by others "
                                             "(chmod o+rx), as image directories are", cfg->rootfs);
    }
  if (cfg->workdir && cfg->workdir[0] != '/')
    return corral_error_set(err, EINVAL, "workdir `%s` must be an absolute path", cfg->workdir);
  if (cfg->hostname && !valid_hostname(cfg->hostname))
    return corral_error_set(err, EINVAL, "invalid hostname `%s`", cfg->hostname);
  if (cfg->disk_bytes < (1 << 20))
    return corral_error_set(err, ERANGE, "disk size must be at least 1M");
  if (cfg->memory_bytes && cfg->memory_bytes < (4 << 20))
    return corral_error_set(err, ERANGE, "memory limit must be at least 4M");
  if (cfg->pids && cfg->pids < 2)
    return corral_error_set(err, ERANGE, "pids limit must be at least 2");
  if (corral__config_policy(cfg, NULL, err) < 0)
    return -1;
  if (cfg->n_binds > CORRAL_MAX_BINDS)
    return corral_error_set(err, E2BIG, "too many binds (at most %d)", CORRAL_MAX_BINDS);
  for (size_t i = 0; i < cfg->n_binds; i++)
    {
      if (cfg->binds[i].src[0] != '/')
        return corral_error_set(err, EINVAL, "bind source `%s` must be an absolute path", cfg->binds[i].src);
      if (stat(cfg->binds[i].src, &st) < 0)
        return corral_error_set(err, errno, "bind source `%s`", cfg->binds[i].src);
    }
  return 0;
}

const char *corral_reason_name(corral_reason_t r)
{
  static const char *const names[] = { "exited", "signaled", "timeout", "oom", "error" };
  return (unsigned) r < sizeof(names) / sizeof(*names) ? names[r] : "error";
}

int corral_result_exit_code(const corral_result_t *res)
{
  switch (res->reason)
    {
    case CORRAL_REASON_EXITED: return res->exit_code;
    case CORRAL_REASON_SIGNALED: return 128 + res->signal;
    case CORRAL_REASON_TIMEOUT: return 124;
    case CORRAL_REASON_OOM: return 137;
    default: return res->exit_code > 0 ? res->exit_code : 125;
    }
}

char *corral_result_to_json(const corral_result_t *res)
{
  json_t *o = json_pack("{s:o, s:o, s:s, s:I, s:I, s:I, s:I, s:s}",
                        "exit_code", res->reason == CORRAL_REASON_EXITED || res->reason == CORRAL_REASON_ERROR
                                       ? json_integer(res->exit_code) : json_null(),
                        "signal", res->signal ? json_integer(res->signal) : json_null(),
                        "reason", corral_reason_name(res->reason),
                        "wall_ms", (json_int_t) res->wall_ms,
                        "cpu_user_ms", (json_int_t) res->cpu_user_ms,
                        "cpu_sys_ms", (json_int_t) res->cpu_sys_ms,
                        "memory_peak_bytes", (json_int_t) res->memory_peak_bytes,
                        "cgroup", res->cgroup_mode[0] ? res->cgroup_mode : "none");
  if (o == NULL)
    return NULL;
  char *s = json_dumps(o, JSON_COMPACT);
  json_decref(o);
  return s;
}
