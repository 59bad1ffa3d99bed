/* corral: command-line front end over libcorral (run, gc) and client of
 * corrald (sandbox, exec, code, files, tenant, key). */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include "cli.h"

#define CORRAL_VERSION "0.1.0"

static void usage(FILE *out)
{
  fputs("usage: corral [--url URL] [--api-key KEY] COMMAND [OPTIONS]\n\n"
        "local sandboxes:\n"
        "  run [OPTIONS] -- CMD [ARG...]   run CMD in a fresh sandbox (see corral run --help)\n"
        "  gc                              remove cgroups left by killed runs\n\n"
        "clients of corrald (URL from --url or CORRAL_URL, default http://127.0.0.1:7070,\n"
        "or unix:/path/to.sock; key from --api-key or CORRAL_API_KEY):\n"
        "  sandbox create|list|info|kill|timeout   sandboxes (corral sandbox --help)\n"
        "  exec [OPTIONS] SANDBOX -- CMD [ARG...]  run a command in a sandbox (corral exec --help)\n"
        "  code [OPTIONS] SANDBOX [CODE]           run code in a persistent interpreter (corral code --help)\n"
        "  files get|put|ls|stat|mkdir|mv|rm       files in a sandbox (corral files --help)\n"
        "  tenant create|list|delete               tenants (admin key)\n"
        "  key create|list|delete                  API keys of a tenant (admin key)\n\n"
        "  version                         print the version\n", out);
}

/* `--url URL` / `--api-key KEY` (or --url=URL) before the command.  Returns
 * how many arguments they took, or -1 when a value is missing. */
static int global_options(int argc, char **argv)
{
  static const struct { const char *name; int opt; } globals[] = {
    { "--url", CORRAL_OPT_URL }, { "--api-key", CORRAL_OPT_API_KEY },
  };
  size_t n = sizeof(globals) / sizeof(*globals), k;
  int i = 1;
  for (; i < argc; i++)
    {
      for (k = 0; k < n; k++)
        {
          size_t len = strlen(globals[k].name);
          if (strncmp(argv[i], globals[k].name, len) != 0 || (argv[i][len] != '\0' && argv[i][len] != '='))
            continue;
          if (argv[i][len] == '=')
            corral_remote_option(globals[k].opt, argv[i] + len + 1);
          else if (++i < argc)
            corral_remote_option(globals[k].opt, argv[i]);
          else
            return -1;
          break;
        }
      if (k == n)
        break;
    }
  return i - 1;
}

static const struct {
  const char *name;
  int (*run)(int argc, char **argv);
} commands[] = {
  { "run", corral_cli_run }, { "gc", corral_cli_gc }, { "sandbox", corral_cli_sandbox },
  { "sandboxes", corral_cli_sandbox }, { "exec", corral_cli_exec }, { "code", corral_cli_code },
  { "files", corral_cli_files }, { "tenant", corral_cli_tenant }, { "tenants", corral_cli_tenant },
  { "key", corral_cli_key }, { "keys", corral_cli_key },
};

int main(int argc, char **argv)
{
  int skip = global_options(argc, argv);
  if (skip < 0)
    {
      fprintf(stderr, "corral: %s needs a value\n", argv[argc - 1]);
      usage(stderr);
      return CORRAL_EXIT_USAGE;
    }
  argc -= skip;
  argv += skip;
  if (argc < 2)
    {
      usage(stderr);
      return 125;
    }
  for (size_t i = 0; i < sizeof(commands) / sizeof(*commands); i++)
    if (strcmp(argv[1], commands[i].name) == 0)
      return commands[i].run(argc - 1, argv + 1);
  if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0)
    {
      printf("corral %s\n", CORRAL_VERSION);
      return 0;
    }
  if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
    {
      usage(stdout);
      return 0;
    }
  fprintf(stderr, "corral: unknown command `%s`\n", argv[1]);
  usage(stderr);
  return 125;
}
