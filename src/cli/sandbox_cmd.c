/* `corral sandbox create|list|info|kill|timeout`: sandboxes of corrald. */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <corral/run.h>
#include "cli.h"

static const char sandbox_usage[] =
  "usage: corral sandbox COMMAND [OPTIONS]\n\n"
  "  create [--template T] [--timeout SECONDS] [--memory SIZE] [--cpus N] [--pids N]\n"
  "         [--disk SIZE] [--metadata K=V]... [--env K=V]... [--network MODE] [--allow RULE]...\n"
  "         [--json]            start a sandbox and print its id\n"
  "  list [--state running|ended] [--metadata K=V]... [--json]\n"
  "                              list sandboxes, newest first\n"
  "  info ID [--json]            show one sandbox\n"
  "  kill ID                     end a sandbox and free everything\n"
  "  timeout ID SECONDS [--json] end the sandbox SECONDS from now; prints the new expiry\n"
  "  network ID MODE [--allow RULE]... [--json]\n"
  "                              change its egress: none, allowlist (only what --allow lists) or\n"
  "                              open (any public destination); see docs/network.md\n\n"
  "common options: --url URL (or CORRAL_URL; unix:/path for a socket), --api-key KEY (or CORRAL_API_KEY)\n";

static const char create_usage[] =
  "usage: corral sandbox create [--template T] [--timeout SECONDS] [--memory SIZE] [--cpus N] [--pids N]\n"
  "                             [--disk SIZE] [--metadata K=V]... [--env K=V]... [--network MODE]\n"
  "                             [--allow RULE]... [--json]\n";
static const char list_usage[] = "usage: corral sandbox list [--state running|ended] [--metadata K=V]... [--json]\n";
static const char info_usage[] = "usage: corral sandbox info ID [--json]\n";
static const char kill_usage[] = "usage: corral sandbox kill ID\n";
static const char timeout_usage[] = "usage: corral sandbox timeout ID SECONDS [--json]\n";
static const char network_usage[] = "usage: corral sandbox network ID none|allowlist|open [--allow RULE]... [--json]\n";

enum { OPT_TEMPLATE = CORRAL_OPT_FIRST_FREE, OPT_TIMEOUT, OPT_MEMORY, OPT_CPUS, OPT_PIDS, OPT_DISK,
       OPT_METADATA, OPT_ENV, OPT_STATE, OPT_NETWORK, OPT_ALLOW };

static const struct option sandbox_options[] = {
  CORRAL_REMOTE_OPTIONS, { "json", no_argument, NULL, CORRAL_OPT_JSON },
  { "template", required_argument, NULL, OPT_TEMPLATE }, { "timeout", required_argument, NULL, OPT_TIMEOUT },
  { "memory", required_argument, NULL, OPT_MEMORY }, { "cpus", required_argument, NULL, OPT_CPUS },
  { "pids", required_argument, NULL, OPT_PIDS }, { "disk", required_argument, NULL, OPT_DISK },
  { "metadata", required_argument, NULL, OPT_METADATA }, { "env", required_argument, NULL, OPT_ENV },
  { "state", required_argument, NULL, OPT_STATE }, { "network", required_argument, NULL, OPT_NETWORK },
  { "allow", required_argument, NULL, OPT_ALLOW }, { NULL, 0, NULL, 0 }
};

/* Each subcommand names the options it takes. */
#define BIT(opt) (1u << ((opt) - CORRAL_OPT_JSON))
#define CREATE_OPTS (BIT(CORRAL_OPT_JSON) | BIT(OPT_TEMPLATE) | BIT(OPT_TIMEOUT) | BIT(OPT_MEMORY) | BIT(OPT_CPUS) \
                     | BIT(OPT_PIDS) | BIT(OPT_DISK) | BIT(OPT_METADATA) | BIT(OPT_ENV) | BIT(OPT_NETWORK)         \
                     | BIT(OPT_ALLOW))
#define LIST_OPTS (BIT(CORRAL_OPT_JSON) | BIT(OPT_STATE) | BIT(OPT_METADATA))

/* What the options of any sandbox subcommand asked for. */
struct sandbox_args {
  const char *usage;
  bool json;
  json_t *create;            /* body of POST /v1/sandboxes (list: its "metadata" filters) */
  const char *state;
  unsigned seen;             /* BIT(option) of each option given */
  char **rest;               /* positional arguments */
  int n_rest;
};

static json_t *child(json_t *parent, const char *key)
{
  json_t *o = json_object_get(parent, key);
  if (o == NULL)
    {
      o = json_object();
      json_object_set_new(parent, key, o);
    }
  return o;
}

/* SIZE ("512M", "1G") in MiB, rounded up. */
static int size_mb(const char *opt, const char *arg, json_t *limits, const char *key, const char *usage)
{
  corral_error_t err = NULL;
  uint64_t bytes;
  if (corral_parse_size(arg, &bytes, &err) < 0)
    {
      corral_error_release(&err);
      return corral_usage_error(usage, "%s: invalid size `%s` (e.g. 512M, 2G)", opt, arg);
    }
  json_object_set_new(limits, key, json_integer((json_int_t) ((bytes + (1 << 20) - 1) >> 20)));
  return 0;
}

static int set_timeout_s(json_t *body, const char *arg, const char *usage)
{
  corral_error_t err = NULL;
  uint64_t ms;
  if (corral_parse_duration_ms(arg, &ms, &err) < 0)
    {
      corral_error_release(&err);
      return corral_usage_error(usage, "--timeout: invalid duration `%s` (seconds, or 500ms, 2m, 1h)", arg);
    }
  json_object_set_new(body, "timeout_s", json_integer((json_int_t) ((ms + 999) / 1000)));
  return 0;
}

static int set_limit(struct sandbox_args *a, int opt, const char *arg)
{
  corral_error_t err = NULL;
  unsigned long long n;
  uint64_t millis;
  json_t *limits = child(a->create, "limits");
  switch (opt)
    {
    case OPT_MEMORY: return size_mb("--memory", arg, limits, "memory_mb", a->usage);
    case OPT_DISK: return size_mb("--disk", arg, limits, "disk_mb", a->usage);
    case OPT_PIDS:
      if (corral_parse_uint(arg, 1ULL << 31, &n) < 0)
        return corral_usage_error(a->usage, "--pids: invalid number `%s`", arg);
      json_object_set_new(limits, "pids", json_integer((json_int_t) n));
      return 0;
    default:
      if (corral_parse_cpus(arg, &millis, &err) < 0)
        {
          corral_error_release(&err);
          return corral_usage_error(a->usage, "--cpus: invalid CPU count `%s` (e.g. 0.5, 2)", arg);
        }
      json_object_set_new(limits, "cpus", json_real((double) millis / 1000.0));
      return 0;
    }
}

static int take_option(struct sandbox_args *a, int opt, const char *arg)
{
  switch (opt)
    {
    case CORRAL_OPT_JSON: a->json = true; return 0;
    case OPT_TEMPLATE: json_object_set_new(a->create, "template", json_string(arg)); return 0;
    case OPT_TIMEOUT: return set_timeout_s(a->create, arg, a->usage);
    case OPT_MEMORY: case OPT_DISK: case OPT_PIDS: case OPT_CPUS: return set_limit(a, opt, arg);
    case OPT_METADATA:
      return corral_kv_set(child(a->create, "metadata"), arg, "--metadata") < 0 ? CORRAL_EXIT_USAGE : 0;
    case OPT_ENV: return corral_kv_set(child(a->create, "env"), arg, "--env") < 0 ? CORRAL_EXIT_USAGE : 0;
    case OPT_STATE: a->state = arg; return 0;
    case OPT_NETWORK: json_object_set_new(child(a->create, "network"), "mode", json_string(arg)); return 0;
    case OPT_ALLOW:
      {
        json_t *net = child(a->create, "network"), *allow = json_object_get(net, "allow");
        if (!allow)
          json_object_set_new(net, "allow", allow = json_array());
        json_array_append_new(allow, json_string(arg));
        return 0;
      }
    default: return 0;
    }
}

/* Parse argv (argv[0] is the subcommand).  Returns -1 on --help (usage
 * printed), a usage exit code, or 0. */
static int parse_args(struct sandbox_args *a, int argc, char **argv)
{
  int opt, rc;
  optind = 0;
  opterr = 0;
  while ((opt = getopt_long(argc, argv, "h", sandbox_options, NULL)) != -1)
    {
      if (opt == 'h' || opt == CORRAL_OPT_HELP)
        {
          fputs(a->usage, stdout);
          return -1;
        }
      if (opt == '?' || opt == ':')
        return corral_bad_option(a->usage, argv);
      if (corral_remote_option(opt, optarg))
        continue;
      a->seen |= BIT(opt);
      if ((rc = take_option(a, opt, optarg)) != 0)
        return rc;
    }
  a->rest = argv + optind;
  a->n_rest = argc - optind;
  return 0;
}

/* Only the options a subcommand understands are allowed, and exactly n_rest arguments. */
static int check_args(const struct sandbox_args *a, unsigned allowed, int n_rest)
{
  for (const struct option *o = sandbox_options; o->name; o++)
    if (o->val >= CORRAL_OPT_JSON && (a->seen & BIT(o->val) & ~allowed))
      return corral_usage_error(a->usage, "--%s is not valid here", o->name);
  if (a->n_rest != n_rest)
    return corral_usage_error(a->usage, "expected %d argument%s, got %d", n_rest, n_rest == 1 ? "" : "s",
                              a->n_rest);
  return 0;
}

static int cmd_create(struct sandbox_args *a)
{
  json_t *sb = NULL;
  int rc = check_args(a, CREATE_OPTS, 0);
  if (rc)
    return rc;
  if (corral_remote_json("POST", a->create, &sb, "/v1/sandboxes") < 0)
    return CORRAL_EXIT_FAIL;
  if (a->json)
    corral_print_json(sb);
  else
    printf("%s\n", json_string_value(json_object_get(sb, "id")) ?: "");
  json_decref(sb);
  return 0;
}

/* "?state=...&metadata.K=V..." or "" (malloc'd). */
static char *list_query(const struct sandbox_args *a)
{
  size_t size = 0;
  char *q = NULL;
  const char *key;
  json_t *val;
  FILE *f = open_memstream(&q, &size);
  if (f == NULL)
    return NULL;
  if (a->state)
    {
      char *s = corral_remote_escape(a->state);
      fprintf(f, "&state=%s", s);
      free(s);
    }
  json_object_foreach(json_object_get(a->create, "metadata"), key, val)
    {
      char *k = corral_remote_escape(key), *v = corral_remote_escape(json_string_value(val));
      fprintf(f, "&metadata.%s=%s", k, v);
      free(k);
      free(v);
    }
  if (fclose(f) != 0)
    {
      free(q);
      return NULL;
    }
  if (q[0] == '&')
    q[0] = '?';
  return q;
}

static void print_sandbox_row(const json_t *sb)
{
  char id[64], state[16], tpl[64], created[40], expires[40], reason[40];
  printf("%-23s  %-7s  %-10s  %-24s  %-24s  %s\n", corral_json_text(sb, "id", id, sizeof(id)),
         corral_json_text(sb, "state", state, sizeof(state)), corral_json_text(sb, "template", tpl, sizeof(tpl)),
         corral_json_text(sb, "created_at", created, sizeof(created)),
         corral_json_text(sb, "expires_at", expires, sizeof(expires)),
         corral_json_text(sb, "end_reason", reason, sizeof(reason)));
}

static int cmd_list(struct sandbox_args *a)
{
  json_t *res = NULL, *sb;
  size_t i;
  int rc = check_args(a, LIST_OPTS, 0);
  if (rc)
    return rc;
  char *query = list_query(a);
  if (query == NULL)
    return CORRAL_EXIT_FAIL;
  rc = corral_remote_json("GET", NULL, &res, "/v1/sandboxes%s", query);
  free(query);
  if (rc < 0)
    return CORRAL_EXIT_FAIL;
  if (a->json)
    corral_print_json(res);
  else
    {
      printf("%-23s  %-7s  %-10s  %-24s  %-24s  %s\n", "ID", "STATE", "TEMPLATE", "CREATED", "EXPIRES", "END_REASON");
      json_array_foreach(json_object_get(res, "sandboxes"), i, sb)
        print_sandbox_row(sb);
    }
  json_decref(res);
  return 0;
}

/* "label:     k=v k=v" for an object of scalars. */
static void print_object_line(const char *label, json_t *obj)
{
  const char *key;
  json_t *val;
  char buf[256];
  bool first = true;
  printf("%-12s", label);
  json_object_foreach(obj, key, val)
    {
      json_t *wrap = json_pack("{sO}", "v", val);
      printf("%s%s=%s", first ? "" : " ", key, corral_json_text(wrap, "v", buf, sizeof(buf)));
      json_decref(wrap);
      first = false;
    }
  printf("%s\n", first ? "-" : "");
}

static void print_network(json_t *net)
{
  size_t i;
  json_t *r;
  printf("%-12s%s", "network:", json_string_value(json_object_get(net, "mode")) ?: "none");
  json_array_foreach(json_object_get(net, "allow"), i, r)
    printf("%s%s", i ? " " : " allow ", json_string_value(r));
  printf("\n");
}

static void print_sandbox(const json_t *sb)
{
  static const char *const fields[] = { "id", "state", "template", "tenant", "created_at",
                                        "expires_at", "ended_at", "end_reason" };
  char buf[256], label[32];
  for (size_t i = 0; i < sizeof(fields) / sizeof(*fields); i++)
    {
      snprintf(label, sizeof(label), "%s:", fields[i]);
      printf("%-12s%s\n", label, corral_json_text(sb, fields[i], buf, sizeof(buf)));
    }
  print_object_line("metadata:", json_object_get(sb, "metadata"));
  print_object_line("limits:", json_object_get(sb, "limits"));
  print_network(json_object_get(sb, "network"));
}

static int cmd_info(struct sandbox_args *a)
{
  json_t *sb = NULL;
  int rc = check_args(a, BIT(CORRAL_OPT_JSON), 1);
  if (rc)
    return rc;
  char *id = corral_remote_escape(a->rest[0]);
  rc = corral_remote_json("GET", NULL, &sb, "/v1/sandboxes/%s", id);
  free(id);
  if (rc < 0)
    return CORRAL_EXIT_FAIL;
  if (a->json)
    corral_print_json(sb);
  else
    print_sandbox(sb);
  json_decref(sb);
  return 0;
}

static int cmd_kill(struct sandbox_args *a)
{
  int rc = check_args(a, 0, 1);
  if (rc)
    return rc;
  char *id = corral_remote_escape(a->rest[0]);
  rc = corral_remote_json("DELETE", NULL, NULL, "/v1/sandboxes/%s", id);
  free(id);
  return rc < 0 ? CORRAL_EXIT_FAIL : 0;
}

static int cmd_timeout(struct sandbox_args *a)
{
  unsigned long long secs;
  json_t *sb = NULL;
  char buf[64];
  int rc = check_args(a, BIT(CORRAL_OPT_JSON), 2);
  if (rc)
    return rc;
  if (corral_parse_uint(a->rest[1], 1ULL << 40, &secs) < 0)
    return corral_usage_error(a->usage, "invalid number of seconds `%s`", a->rest[1]);
  json_t *body = json_pack("{sI}", "timeout_s", (json_int_t) secs);
  char *id = corral_remote_escape(a->rest[0]);
  rc = corral_remote_json("POST", body, &sb, "/v1/sandboxes/%s/timeout", id);
  free(id);
  json_decref(body);
  if (rc < 0)
    return CORRAL_EXIT_FAIL;
  if (a->json)
    corral_print_json(sb);
  else
    printf("%s\n", corral_json_text(sb, "expires_at", buf, sizeof(buf)));
  json_decref(sb);
  return 0;
}

static int cmd_network(struct sandbox_args *a)
{
  json_t *res = NULL;
  int rc = check_args(a, BIT(CORRAL_OPT_JSON) | BIT(OPT_ALLOW), 2);
  if (rc)
    return rc;
  json_t *body = json_deep_copy(child(a->create, "network"));
  json_object_set_new(body, "mode", json_string(a->rest[1]));
  char *id = corral_remote_escape(a->rest[0]);
  rc = corral_remote_json("PUT", body, &res, "/v1/sandboxes/%s/network", id);
  free(id);
  json_decref(body);
  if (rc < 0)
    return CORRAL_EXIT_FAIL;
  if (a->json)
    corral_print_json(res);
  else
    print_network(res);
  json_decref(res);
  return 0;
}

static const struct {
  const char *name;
  const char *usage;
  int (*run)(struct sandbox_args *a);
} sandbox_commands[] = {
  { "create", create_usage, cmd_create }, { "list", list_usage, cmd_list }, { "ls", list_usage, cmd_list },
  { "info", info_usage, cmd_info }, { "kill", kill_usage, cmd_kill }, { "rm", kill_usage, cmd_kill },
  { "timeout", timeout_usage, cmd_timeout }, { "network", network_usage, cmd_network },
};

int corral_cli_sandbox(int argc, char **argv)
{
  if (argc < 2)
    return corral_usage_error(sandbox_usage, "sandbox: missing command");
  if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
    {
      fputs(sandbox_usage, stdout);
      return 0;
    }
  for (size_t i = 0; i < sizeof(sandbox_commands) / sizeof(*sandbox_commands); i++)
    if (strcmp(argv[1], sandbox_commands[i].name) == 0)
      {
        struct sandbox_args a = { .usage = sandbox_commands[i].usage, .create = json_object() };
        int rc = parse_args(&a, argc - 1, argv + 1);
        if (rc == 0)
          rc = sandbox_commands[i].run(&a);
        json_decref(a.create);
        return rc < 0 ? 0 : rc;
      }
  return corral_usage_error(sandbox_usage, "sandbox: unknown command `%s`", argv[1]);
}
