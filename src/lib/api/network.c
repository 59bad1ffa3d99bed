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

#define HTTP_PORT 3128
#define SOCKS_PORT 1080

/* The variables that point programs at the proxy (curl, pip, npm, git,
 * requests, node's fetch with a proxy agent...). */
static const char *const proxy_env[][2] = {
  { "HTTP_PROXY", "http://127.0.0.1:3128" },     { "HTTPS_PROXY", "http://127.0.0.1:3128" },
  { "http_proxy", "http://127.0.0.1:3128" },     { "https_proxy", "http://127.0.0.1:3128" },
  { "ALL_PROXY", "socks5h://127.0.0.1:1080" },   { "all_proxy", "socks5h://127.0.0.1:1080" },
  { "NO_PROXY", "localhost,127.0.0.1,::1" },     { "no_proxy", "localhost,127.0.0.1,::1" },
};

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
  corral_proxy_options_t o = { .resolver_file = d->opt.resolver_file, .audit = on_connection, .audit_cls = d };
  return corral_proxy_new(&o, &d->proxy, err);
}

void network_stop(struct daemon *d)
{
  if (d->proxy)
    corral_proxy_stop(d->proxy);
  d->proxy = NULL;
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
  static const uint16_t ports[2] = { HTTP_PORT, SOCKS_PORT };
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
  json_t *vars = json_object();
  for (size_t i = 0; i < sizeof(proxy_env) / sizeof(*proxy_env); i++)
    json_object_set_new(vars, proxy_env[i][0], json_string(proxy_env[i][1]));
  registry_add_env(d, id, vars);
  json_decref(vars);
  return 0;
}

int network_apply(struct daemon *d, const char *id, corral_net_policy_t *policy, bool persist, corral_error_t *err)
{
  int r = corral_proxy_set_policy(d->proxy, id, policy, err);
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
