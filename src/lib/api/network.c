/* Sandboxes' network policies in corrald.  A sandbox whose policy is not
 * `none` gets two listeners on its own loopback (made from outside, see
 * corral__netns_listen): an HTTP proxy on 127.0.0.1:3128 and a SOCKS5 proxy
 * on 127.0.0.1:1080, served by the daemon's egress proxy (src/lib/net),
 * which checks every connection against the policy, connects from the
 * host's side and audits it.  The sandbox itself still has no route out. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <unistd.h>
#include <string.h>
#include "api.h"
#include "../isolate/isolate.h"

static void on_connection(void *cls, const char *sandbox, const char *record)
{
  struct daemon *d = cls;
  json_error_t je;
  json_t *o = json_loads(record, 0, &je);
  char tenant[128] = "";
  if (!o)
    return;
  registry_tenant(d, sandbox, tenant, sizeof(tenant));
  json_object_set_new(o, "action", json_string("net.connect"));
  if (tenant[0])
    json_object_set_new(o, "tenant", json_string(tenant));
  api_audit(d, o);
}

int network_start(struct daemon *d, corral_error_t *err)
{
  corral_proxy_options_t o = { .resolver_file = d->opt.resolver_file, .audit = on_connection, .audit_cls = d,
                               .upstream_ca_file = d->opt.upstream_ca_file };
  if (corral_proxy_new(&o, &d->proxy, err) < 0)
    return -1;
  return corral_dns_new(d->opt.resolver_file, &d->dns, err);
}

void network_stop(struct daemon *d)
{
  if (d->proxy)
    corral_proxy_stop(d->proxy);
  corral_dns_stop(d->dns);
  d->proxy = NULL;
  d->dns = NULL;
}

int network_decode(json_t *v, corral_net_policy_t **out, char *why, size_t why_size)
{
  corral_error_t err = NULL;
  *out = NULL;
  if (!v || json_is_null(v))
    return 0;
  if (json_is_string(v))
    v = json_pack("{s:O}", "mode", v);
  else
    json_incref(v);
  char *s = json_is_object(v) ? json_dumps(v, JSON_COMPACT) : NULL;
  json_decref(v);
  if (!s)
    return snprintf(why, why_size, "`network` must be an object {\"mode\", \"allow\"} or a mode name"), -1;
  int r = corral_net_policy_parse_json(s, strlen(s), out, &err);
  free(s);
  if (r < 0)
    {
      snprintf(why, why_size, "`network`: %s", corral_error_message(err));
      corral_error_release(&err);
      return -1;
    }
  return 0;
}

/* Listeners in the sandbox and a place in the proxy, once per sandbox. */
static int attach(struct daemon *d, const char *id, corral_net_policy_t *policy, corral_error_t *err)
{
  static const uint16_t ports[2] = { CORRAL_NET_HTTP_PORT, CORRAL_NET_SOCKS_PORT };
  int fds[2];
  pid_t pid = registry_pid(d, id);
  if (pid <= 0)
    return corral_error_set(err, ESRCH, "sandbox `%s` is not running", id);
  if (corral__netns_listen(pid, ports, fds, 2, err) < 0)
    return corral_error_wrap(err, "proxy listeners for `%s`", id);
  if (corral_proxy_add(d->proxy, id, fds[0], fds[1], policy, err) < 0)
    {
      close(fds[0]);
      close(fds[1]);
      return -1;
    }
  /* DNS on the sandbox's loopback (its resolv.conf names no server, so
   * resolvers ask 127.0.0.1); without it names simply do not resolve. */
  int udp = corral__netns_udp(pid, 53, err);
  if (udp < 0 || corral_dns_add(d->dns, id, udp, policy, err) < 0)
    {
      if (udp >= 0)
        close(udp);
      api_log(d, "sandbox %s: no DNS: %s", id, corral_error_message(*err));
      corral_error_release(err);
    }
  json_t *vars = json_object();
  for (const char *const *kv = corral_net_proxy_env; *kv; kv++)
    {
      size_t k = strcspn(*kv, "=");
      json_object_setn_new(vars, *kv, k, json_string(*kv + k + 1));
    }
  registry_add_env(d, id, vars);
  json_decref(vars);
  return 0;
}

int network_apply(struct daemon *d, const char *id, corral_net_policy_t *policy, bool persist, corral_error_t *err)
{
  int r = corral_proxy_set_policy(d->proxy, id, policy, err);
  if (r == 0)
    corral_dns_set_policy(d->dns, id, policy, NULL);
  if (r < 0 && corral_error_status(*err) == ENOENT)
    {
      corral_error_release(err);
      /* Nothing to serve for a sandbox that never had a way out. */
      r = corral_net_policy_mode(policy) == CORRAL_NET_NONE ? 0 : attach(d, id, policy, err);
    }
  if (r < 0 || !persist)
    return r;
  char *json = corral_net_policy_to_json(policy);
  if (!json)
    return corral_error_set(err, ENOMEM, "network policy");
  r = corral_store_sandbox_set_network(d->store, id, json, err);
  free(json);
  return r;
}

void network_forget(struct daemon *d, const char *id)
{
  if (d->proxy)
    corral_proxy_remove(d->proxy, id);
  corral_dns_remove(d->dns, id);
}

void network_readopt(struct daemon *d, const char *id, const char *network_json)
{
  corral_net_policy_t *p = NULL;
  corral_error_t err = NULL;
  if (!network_json || !d->proxy)
    return;
  if (corral_net_policy_parse_json(network_json, strlen(network_json), &p, &err) < 0
      || network_apply(d, id, p, false, &err) < 0)
    {
      api_log(d, "sandbox %s: network policy not restored: %s", id, corral_error_message(err));
      corral_error_release(&err);
    }
  corral_net_policy_unref(p);
}

json_t *network_json(const char *network_json_text)
{
  json_error_t je;
  json_t *v = network_json_text ? json_loads(network_json_text, 0, &je) : NULL;
  return v ? v : json_pack("{s:s, s:[]}", "mode", "none", "allow");
}

int route_sandbox_network(struct req *r)
{
  char why[512];
  corral_sandbox_rec_t rec;
  corral_net_policy_t *p = NULL;
  corral_error_t err = NULL;
  json_t *body = api_body_object(r);
  if (!body)
    return MHD_YES;
  int bad = network_decode(body, &p, why, sizeof(why));
  json_decref(body);
  if (bad < 0)
    return api_fail(r, 400, "invalid_argument", "%s", why);
  if (sandbox_visible(r, r->params[0], &rec) < 0)
    {
      corral_net_policy_unref(p);
      return MHD_YES;
    }
  if (strcmp(rec.state, "running") != 0)
    api_fail(r, 409, "sandbox_not_running", "sandbox `%s` is not running", rec.id);
  else if (network_apply(r->d, rec.id, p, true, &err) < 0)
    {
      api_fail_err(r, err, "network");
      corral_error_release(&err);
    }
  else
    {
      char *json = corral_net_policy_to_json(p);
      json_t *o = network_json(json);
      free(json);
      api_audit(r->d, json_pack("{s:s, s:s, s:s, s:O}", "action", "sandbox.network", "tenant", r->tenant,
                                "sandbox", rec.id, "network", o));
      api_json(r, 200, o);
    }
  corral_sandbox_rec_release(&rec);
  corral_net_policy_unref(p);
  return MHD_YES;
}

/* ---- secrets: values stay in the proxy, the sandbox gets placeholders ---- */

int secrets_decode(json_t *v, json_t **out, char *why, size_t why_size)
{
  size_t i;
  json_t *s;
  *out = NULL;
  if (!v || json_is_null(v))
    return 0;
  if (!json_is_array(v) || json_array_size(v) > CORRAL_PROXY_MAX_SECRETS)
    return snprintf(why, why_size, "`secrets` must be an array of at most %d objects", CORRAL_PROXY_MAX_SECRETS), -1;
  json_array_foreach(v, i, s)
    {
      json_t *hosts = json_object_get(s, "hosts"), *h;
      size_t j;
      const char *k;
      json_t *x;
      if (!json_is_object(s) || !json_is_string(json_object_get(s, "name"))
          || !json_is_string(json_object_get(s, "value")) || !json_is_array(hosts) || json_array_size(hosts) == 0)
        return snprintf(why, why_size, "`secrets[%zu]` needs `name`, `value` and a non-empty `hosts`", i), -1;
      if (!valid_env_name(json_string_value(json_object_get(s, "name"))))
        return snprintf(why, why_size, "`secrets[%zu].name` must be a variable name", i), -1;
      json_array_foreach(hosts, j, h)
        if (!json_is_string(h))
          return snprintf(why, why_size, "`secrets[%zu].hosts` must hold names", i), -1;
      json_object_foreach(s, k, x)
        if (strcmp(k, "name") && strcmp(k, "value") && strcmp(k, "hosts") && strcmp(k, "header") && strcmp(k, "format"))
          return snprintf(why, why_size, "`secrets[%zu]`: unknown field `%s`", i, k), -1;
      if ((json_object_get(s, "header") && !json_is_string(json_object_get(s, "header")))
          || (json_object_get(s, "format") && !json_is_string(json_object_get(s, "format"))))
        return snprintf(why, why_size, "`secrets[%zu]`: `header` and `format` must be strings", i), -1;
    }
  *out = json_incref(v);
  return 0;
}

/* Write a file inside the sandbox (as its user) through the agent. */
static int put_file(struct daemon *d, const char *id, const char *path, const char *data, size_t len,
                    corral_error_t *err)
{
  struct sbx_ref ref;
  struct agent_file w;
  if (registry_ref(d, id, &ref) != 1)
    return corral_error_set(err, ESRCH, "sandbox `%s` is not running", id);
  json_decref(ref.env);
  int r = agent_file_open(&w, &ref, path, 0644, NULL, err) < 0 || agent_file_write(&w, data, len, err) < 0
              || agent_file_close(&w, NULL, err) < 0
              ? -1
              : 0;
  agent_file_release(&w);
  return r;
}

#define CA_BUNDLE "/home/user/.corral/ca-bundle.pem"

/* The sandbox trusts its own CA besides the usual ones: a bundle of the
 * host's CAs and the sandbox's, named by the variables TLS clients read. */
static int install_ca(struct daemon *d, const char *id, json_t *vars, corral_error_t *err)
{
  char *pem = NULL, *bundle;
  size_t size = 0;
  if (corral_proxy_ca_pem(d->proxy, id, &pem, err) < 0)
    return -1;
  bundle = corral_net_ca_bundle(pem, &size);
  int r = bundle ? put_file(d, id, CA_BUNDLE, bundle, size, err) : corral_error_set(err, ENOMEM, "CA bundle");
  if (r == 0)
    r = put_file(d, id, "/home/user/.corral/ca.pem", pem, strlen(pem), err);
  free(bundle);
  free(pem);
  for (const char *const *name = corral_net_ca_env; r == 0 && *name; name++)
    json_object_set_new(vars, *name, json_string(CA_BUNDLE));
  if (r == 0)
    json_object_set_new(vars, "NODE_EXTRA_CA_CERTS", json_string("/home/user/.corral/ca.pem"));
  return r;
}

int secrets_apply(struct daemon *d, const char *id, json_t *secrets, corral_error_t *err)
{
  size_t n = json_array_size(secrets), i;
  corral_secret_t s[CORRAL_PROXY_MAX_SECRETS];
  const char *hosts[CORRAL_PROXY_MAX_SECRETS][CORRAL_SECRET_MAX_HOSTS];
  json_t *e, *vars = json_object();
  if (n > CORRAL_PROXY_MAX_SECRETS)
    return json_decref(vars), corral_error_set(err, E2BIG, "too many secrets");
  json_array_foreach(secrets, i, e)
    {
      json_t *hs = json_object_get(e, "hosts"), *h;
      size_t j;
      s[i] = (corral_secret_t){ .name = json_string_value(json_object_get(e, "name")),
                                .value = json_string_value(json_object_get(e, "value")),
                                .hosts = hosts[i],
                                .header = json_string_value(json_object_get(e, "header")),
                                .format = json_string_value(json_object_get(e, "format")) };
      json_array_foreach(hs, j, h)
        if (j < CORRAL_SECRET_MAX_HOSTS)
          hosts[i][j] = json_string_value(h);
      s[i].nhosts = json_array_size(hs) < CORRAL_SECRET_MAX_HOSTS ? json_array_size(hs) : CORRAL_SECRET_MAX_HOSTS;
    }
  int r = corral_proxy_set_secrets(d->proxy, id, s, n, err);
  for (i = 0; r == 0 && i < n; i++)
    {
      char ph[CORRAL_SECRET_PLACEHOLDER_MAX];
      if ((r = corral_proxy_secret_placeholder(d->proxy, id, s[i].name, ph, err)) == 0)
        json_object_set_new(vars, s[i].name, json_string(ph));
    }
  if (r == 0 && n)
    r = install_ca(d, id, vars, err);
  if (r == 0)
    registry_add_env(d, id, vars);
  json_decref(vars);
  return r;
}
