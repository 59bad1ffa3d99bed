/* `corral tenant create|list|delete` and `corral key create|list|delete`:
 * tenants and their API keys (admin key only). */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <corral/run.h>
#include "cli.h"

static const char tenant_usage[] =
  "usage: corral tenant COMMAND [OPTIONS]   (needs the admin key)\n\n"
  "  create NAME [--max-sandboxes N] [--max-memory SIZE] [--json]\n"
  "                              add a tenant (quotas: 0 = none)\n"
  "  list [--json]               list tenants\n"
  "  delete NAME                 delete a tenant, its sandboxes and keys\n\n"
  "common options: --url URL (or CORRAL_URL), --api-key KEY (or CORRAL_API_KEY)\n";

static const char key_usage[] =
  "usage: corral key COMMAND [OPTIONS]   (needs the admin key)\n\n"
  "  create TENANT [--e2b] [--json]   make a key and print it (shown only once;\n"
  "                                   --e2b: in E2B's e2b_... format)\n"
  "  list TENANT [--json]             list the tenant's keys (prefixes only)\n"
  "  delete TENANT KEY_ID             revoke a key\n\n"
  "common options: --url URL (or CORRAL_URL), --api-key KEY (or CORRAL_API_KEY)\n";

enum { OPT_MAX_SANDBOXES = CORRAL_OPT_FIRST_FREE, OPT_MAX_MEMORY, OPT_E2B };

static const struct option tenant_options[] = {
  CORRAL_REMOTE_OPTIONS, { "json", no_argument, NULL, CORRAL_OPT_JSON },
  { "max-sandboxes", required_argument, NULL, OPT_MAX_SANDBOXES },
  { "max-memory", required_argument, NULL, OPT_MAX_MEMORY }, { "e2b", no_argument, NULL, OPT_E2B },
  { NULL, 0, NULL, 0 }
};

struct tenant_args {
  const char *usage;
  bool json;
  bool e2b;
  json_t *body;              /* quotas of tenant create */
  char **rest;
  int n_rest;
};

static int take_quota(struct tenant_args *a, int opt, const char *arg)
{
  unsigned long long n;
  uint64_t bytes;
  corral_error_t err = NULL;
  if (opt == OPT_MAX_SANDBOXES)
    {
      if (corral_parse_uint(arg, 1ULL << 31, &n) < 0)
        return corral_usage_error(a->usage, "--max-sandboxes: invalid number `%s`", arg);
      json_object_set_new(a->body, "max_sandboxes", json_integer((json_int_t) n));
      return 0;
    }
  if (corral_parse_size(arg, &bytes, &err) < 0)
    {
      corral_error_release(&err);
      return corral_usage_error(a->usage, "--max-memory: invalid size `%s` (e.g. 64G)", arg);
    }
  json_object_set_new(a->body, "max_memory_mb", json_integer((json_int_t) ((bytes + (1 << 20) - 1) >> 20)));
  return 0;
}

static int parse_tenant(struct tenant_args *a, int argc, char **argv)
{
  int opt, rc;
  optind = 0;
  opterr = 0;
  while ((opt = getopt_long(argc, argv, "h", tenant_options, NULL)) != -1)
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
      if (opt == CORRAL_OPT_JSON)
        a->json = true;
      else if (opt == OPT_E2B)
        a->e2b = true;
      else if ((rc = take_quota(a, opt, optarg)) != 0)
        return rc;
    }
  a->rest = argv + optind;
  a->n_rest = argc - optind;
  return 0;
}

static int want_args(const struct tenant_args *a, int n, const char *what)
{
  if (a->n_rest != n)
    return corral_usage_error(a->usage, "expected %s", what);
  return 0;
}

/* ---- tenants ---- */

static int tenant_create(struct tenant_args *a)
{
  json_t *res = NULL;
  int rc = want_args(a, 1, "NAME");
  if (rc)
    return rc;
  json_object_set_new(a->body, "name", json_string(a->rest[0]));
  if (corral_remote_json("POST", a->body, &res, "/v1/tenants") < 0)
    return CORRAL_EXIT_FAIL;
  if (a->json)
    corral_print_json(res);
  else
    printf("%s\n", json_string_value(json_object_get(res, "name")) ?: a->rest[0]);
  json_decref(res);
  return 0;
}

static int tenant_list(struct tenant_args *a)
{
  json_t *res = NULL, *t;
  char name[80], maxsb[32], maxmem[32], created[40];
  size_t i;
  int rc = want_args(a, 0, "no arguments");
  if (rc)
    return rc;
  if (corral_remote_json("GET", NULL, &res, "/v1/tenants") < 0)
    return CORRAL_EXIT_FAIL;
  if (a->json)
    corral_print_json(res);
  else
    {
      printf("%-24s  %13s  %13s  %s\n", "NAME", "MAX_SANDBOXES", "MAX_MEMORY_MB", "CREATED");
      json_array_foreach(json_object_get(res, "tenants"), i, t)
        printf("%-24s  %13s  %13s  %s\n", corral_json_text(t, "name", name, sizeof(name)),
               corral_json_text(t, "max_sandboxes", maxsb, sizeof(maxsb)),
               corral_json_text(t, "max_memory_mb", maxmem, sizeof(maxmem)),
               corral_json_text(t, "created_at", created, sizeof(created)));
    }
  json_decref(res);
  return 0;
}

static int tenant_delete(struct tenant_args *a)
{
  int rc = want_args(a, 1, "NAME");
  if (rc)
    return rc;
  char *name = corral_remote_escape(a->rest[0]);
  rc = corral_remote_json("DELETE", NULL, NULL, "/v1/tenants/%s", name);
  free(name);
  return rc < 0 ? CORRAL_EXIT_FAIL : 0;
}

/* ---- keys ---- */

static int key_create(struct tenant_args *a)
{
  json_t *res = NULL, *body = a->e2b ? json_pack("{ss}", "format", "e2b") : json_object();
  int rc = want_args(a, 1, "TENANT");
  if (rc == 0)
    {
      char *name = corral_remote_escape(a->rest[0]);
      rc = corral_remote_json("POST", body, &res, "/v1/tenants/%s/keys", name) < 0 ? CORRAL_EXIT_FAIL : 0;
      free(name);
    }
  if (rc == 0 && a->json)
    corral_print_json(res);
  else if (rc == 0)
    printf("%s\n", json_string_value(json_object_get(res, "key")) ?: "");
  json_decref(body);
  json_decref(res);
  return rc;
}

static int key_list(struct tenant_args *a)
{
  json_t *res = NULL, *k;
  char id[64], prefix[64], created[40];
  size_t i;
  int rc = want_args(a, 1, "TENANT");
  if (rc)
    return rc;
  char *name = corral_remote_escape(a->rest[0]);
  rc = corral_remote_json("GET", NULL, &res, "/v1/tenants/%s/keys", name);
  free(name);
  if (rc < 0)
    return CORRAL_EXIT_FAIL;
  if (a->json)
    corral_print_json(res);
  else
    {
      printf("%-22s  %-12s  %s\n", "ID", "PREFIX", "CREATED");
      json_array_foreach(json_object_get(res, "keys"), i, k)
        printf("%-22s  %-12s  %s\n", corral_json_text(k, "id", id, sizeof(id)),
               corral_json_text(k, "prefix", prefix, sizeof(prefix)),
               corral_json_text(k, "created_at", created, sizeof(created)));
    }
  json_decref(res);
  return 0;
}

static int key_delete(struct tenant_args *a)
{
  int rc = want_args(a, 2, "TENANT KEY_ID");
  if (rc)
    return rc;
  char *name = corral_remote_escape(a->rest[0]), *id = corral_remote_escape(a->rest[1]);
  rc = corral_remote_json("DELETE", NULL, NULL, "/v1/tenants/%s/keys/%s", name, id);
  free(name);
  free(id);
  return rc < 0 ? CORRAL_EXIT_FAIL : 0;
}

/* ---- dispatch ---- */

struct subcommand {
  const char *name;
  int (*run)(struct tenant_args *a);
  bool quotas, e2b;          /* options it takes besides --json */
};

static int dispatch(const char *group, const char *usage, const struct subcommand *cmds, size_t n, int argc,
                    char **argv)
{
  if (argc < 2)
    return corral_usage_error(usage, "%s: missing command", group);
  if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
    {
      fputs(usage, stdout);
      return 0;
    }
  for (size_t i = 0; i < n; i++)
    if (strcmp(argv[1], cmds[i].name) == 0)
      {
        struct tenant_args a = { .usage = usage, .body = json_object() };
        int rc = parse_tenant(&a, argc - 1, argv + 1);
        if (rc == 0 && ((json_object_size(a.body) && !cmds[i].quotas) || (a.e2b && !cmds[i].e2b)))
          rc = corral_usage_error(usage, "%s %s: option not valid here", group, argv[1]);
        if (rc == 0)
          rc = cmds[i].run(&a);
        json_decref(a.body);
        return rc < 0 ? 0 : rc;
      }
  return corral_usage_error(usage, "%s: unknown command `%s`", group, argv[1]);
}

int corral_cli_tenant(int argc, char **argv)
{
  static const struct subcommand cmds[] = {
    { "create", tenant_create, true, false }, { "list", tenant_list, false, false },
    { "ls", tenant_list, false, false }, { "delete", tenant_delete, false, false },
    { "rm", tenant_delete, false, false },
  };
  return dispatch("tenant", tenant_usage, cmds, sizeof(cmds) / sizeof(*cmds), argc, argv);
}

int corral_cli_key(int argc, char **argv)
{
  static const struct subcommand cmds[] = {
    { "create", key_create, false, true }, { "list", key_list, false, false },
    { "ls", key_list, false, false }, { "delete", key_delete, false, false }, { "rm", key_delete, false, false },
  };
  return dispatch("key", key_usage, cmds, sizeof(cmds) / sizeof(*cmds), argc, argv);
}
