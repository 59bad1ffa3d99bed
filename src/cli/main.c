/* corral: command-line front end over libcorral. */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include "cli.h"

#define CORRAL_VERSION "0.1.0"

static void usage(FILE *out)
{
  fputs("usage: corral COMMAND [OPTIONS]\n\n"
        "commands:\n"
        "  run [OPTIONS] -- CMD [ARG...]   run CMD in a fresh sandbox (see corral run --help)\n"
        "  gc                              remove cgroups left by killed runs\n"
        "  version                         print the version\n", out);
}

int main(int argc, char **argv)
{
  if (argc < 2)
    {
      usage(stderr);
      return 125;
    }
  if (strcmp(argv[1], "run") == 0)
    return corral_cli_run(argc - 1, argv + 1);
  if (strcmp(argv[1], "gc") == 0)
    return corral_cli_gc(argc - 1, argv + 1);
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
