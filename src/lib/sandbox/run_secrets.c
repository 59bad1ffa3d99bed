/* Secrets of a `corral run`: the proxy keeps the values, the command gets
 * placeholders (sent to the sandbox's init as MSG_ENV before it goes on),
 * and the sandbox trusts the proxy's CA through a bundle file bound
 * read-only at CORRAL__CA_BUNDLE (the system's CAs plus the sandbox's). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <corral/net.h>
#include "sandbox.h"
#include "../common/utils.h"

int corral__run_secrets_prepare(corral_config_t *cfg, char path[64], corral_error_t *err)
{
  path[0] = '\0';
  if (!cfg->n_secrets)
    return 0;
  if (cfg->n_binds >= CORRAL_MAX_BINDS)
    return corral_error_set(err, E2BIG, "too many binds for the CA bundle of --secret");
  snprintf(path, 64, "/tmp/corral-ca-XXXXXX");
  int fd = mkstemp(path);
  if (fd < 0)
    return corral_error_set(err, errno, "CA bundle file");
  /* Read by the sandbox's own (unprivileged) uid through the bind. */
  fchmod(fd, 0644);
  close(fd);
  cfg->binds[cfg->n_binds++] = (corral_bind_t){ .src = path, .dst = (char *) CORRAL__CA_BUNDLE, .read_only = true };
  return 0;
}

static int write_bundle(const char *path, const char *pem, corral_error_t *err)
{
  size_t len = 0;
  char *bundle = corral_net_ca_bundle(pem, &len);
  if (!bundle)
    return corral_error_set(err, ENOMEM, "CA bundle");
  int r = corral__write_file(path, bundle, len, err);
  free(bundle);
  return r < 0 ? corral_error_wrap(err, "write the CA bundle") : 0;
}

static int send_env(int sock, const char *k, const char *v)
{
  char kv[1024];
  if ((size_t) snprintf(kv, sizeof(kv), "%s=%s", k, v) >= sizeof(kv))
    return -1;
  corral__send_msg(sock, MSG_ENV, 0, 0, kv);
  return 0;
}

int corral__run_secrets_apply(corral_proxy_t *p, const corral_config_t *cfg, const char *ca_path, int sock,
                              corral_error_t *err)
{
  corral_secret_t s[CORRAL_MAX_SECRETS];
  const char *hosts[CORRAL_MAX_SECRETS][CORRAL_SECRET_MAX_HOSTS];
  char *copies[CORRAL_MAX_SECRETS] = { 0 }, *pem = NULL;
  int r = 0;
  for (size_t i = 0; i < cfg->n_secrets; i++)
    {
      const corral_run_secret_t *c = &cfg->secrets[i];
      size_t nh = 0;
      copies[i] = strdup(c->hosts ? c->hosts : "");
      for (char *save = NULL, *h = strtok_r(copies[i], ",", &save); h && nh < CORRAL_SECRET_MAX_HOSTS;
           h = strtok_r(NULL, ",", &save))
        hosts[i][nh++] = h;
      s[i] = (corral_secret_t){ .name = c->name, .value = c->value, .hosts = hosts[i], .nhosts = nh,
                                .header = c->header, .format = c->format };
    }
  r = corral_proxy_set_secrets(p, "run", s, cfg->n_secrets, err);
  for (size_t i = 0; r == 0 && i < cfg->n_secrets; i++)
    {
      char ph[CORRAL_SECRET_PLACEHOLDER_MAX];
      if ((r = corral_proxy_secret_placeholder(p, "run", s[i].name, ph, err)) == 0 && send_env(sock, s[i].name, ph) < 0)
        r = corral_error_set(err, E2BIG, "secret `%s`", s[i].name);
    }
  if (r == 0 && (r = corral_proxy_ca_pem(p, "run", &pem, err)) == 0 && (r = write_bundle(ca_path, pem, err)) == 0)
    {
      for (const char *const *name = corral_net_ca_env; *name; name++)
        send_env(sock, *name, CORRAL__CA_BUNDLE);
      send_env(sock, "NODE_EXTRA_CA_CERTS", CORRAL__CA_BUNDLE);
    }
  for (size_t i = 0; i < cfg->n_secrets; i++)
    free(copies[i]);
  free(pem);
  return r;
}
