/* corrald: the sandbox service daemon; the work is in libcorral. */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <corral/daemon.h>

static void usage(FILE *out)
{
  fputs("usage: corrald [--listen ADDR:PORT] [--socket PATH] [--state-dir DIR] [--foreground]\n"
        "               [--agent PATH] [--max-timeout SECONDS] [--retention SECONDS] [--pool N] [--preload M,..]\n"
        "               [--metrics-public] [--resolver-file PATH]\n\n"
        "  --listen ADDR:PORT   HTTP address (default 127.0.0.1:7070; \"\" disables)\n"
        "  --socket PATH        unix socket (default STATE_DIR/corrald.sock; \"\" disables)\n"
        "  --state-dir DIR      database, audit log, admin key (default /var/lib/corral)\n"
        "  --foreground         log every event to stderr (corrald never forks away)\n"
        "  --max-timeout SECS   longest sandbox timeout a client may ask (default 86400)\n"
        "  --retention SECS     how long ended sandboxes stay queryable (default 3600)\n"
        "  --pool N             sandboxes kept ready for default-shaped creates (default 4; 0 = none)\n"
        "  --runners DIR        code-interpreter runners (default: share/corral/runners or the\n"
        "                       source tree's runners/, found beside the binary)\n"
        "  --preload MODULES    Python modules (comma-separated) the pooled sandboxes' default\n"
        "                       code context imports ahead, e.g. numpy,pandas,matplotlib.pyplot\n"
        "  --resolver-file PATH the egress proxy resolves names from this file (\"name addr...\"\n"
        "                       lines) instead of DNS: for tests\n"
        "  --upstream-ca-file F  CAs (PEM) the proxy trusts besides the system's when it\n"
        "                       intercepts TLS for secrets: for tests\n"
        "environment: CORRAL_ADMIN_KEY (else generated into STATE_DIR/admin.key)\n", out);
}

static void log_line(const char *line)
{
  char ts[32];
  time_t t = time(NULL);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
  fprintf(stderr, "%s corrald: %s\n", ts, line);
}

static int parse_seconds(const char *s, uint64_t *out)
{
  char *end;
  unsigned long long v = strtoull(s, &end, 10);
  if (!*s || *end || v == 0)
    return -1;
  *out = v;
  return 0;
}

int main(int argc, char **argv)
{
  static const struct option longopts[] = {
    { "listen", required_argument, NULL, 'l' },      { "socket", required_argument, NULL, 's' },
    { "state-dir", required_argument, NULL, 'd' },   { "foreground", no_argument, NULL, 'f' },
    { "agent", required_argument, NULL, 'a' },       { "max-timeout", required_argument, NULL, 'm' },
    { "retention", required_argument, NULL, 'r' },   { "metrics-public", no_argument, NULL, 'p' },
    { "pool", required_argument, NULL, 'P' },        { "preload", required_argument, NULL, 'I' },
    { "runners", required_argument, NULL, 'R' },     { "resolver-file", required_argument, NULL, 'N' },
    { "upstream-ca-file", required_argument, NULL, 'U' },
    { "help", no_argument, NULL, 'h' },              { NULL, 0, NULL, 0 },
  };
  corral_daemon_options_t o;
  corral_error_t err = NULL;
  bool foreground = false;
  int c;
  corral_daemon_options_init(&o);
  while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1)
    switch (c)
      {
      case 'l': o.listen = optarg; break;
      case 's': o.socket_path = optarg; break;
      case 'd': o.state_dir = optarg; break;
      case 'f': foreground = true; break;
      case 'a': o.agent_path = optarg; break;
      case 'm':
      case 'r':
        if (parse_seconds(optarg, c == 'm' ? &o.max_timeout_s : &o.retention_s) < 0)
          {
            fprintf(stderr, "corrald: --%s wants a positive number of seconds\n", c == 'm' ? "max-timeout" : "retention");
            return 2;
          }
        break;
      case 'p': o.metrics_public = true; break;
      case 'I': o.context_preload = optarg; break;
      case 'R': o.runners_dir = optarg; break;
      case 'N': o.resolver_file = optarg; break;
      case 'U': o.upstream_ca_file = optarg; break;
      case 'P':
        {
          char *end;
          unsigned long long n = strtoull(optarg, &end, 10);
          if (!*optarg || *end || n > 1024)
            {
              fprintf(stderr, "corrald: --pool wants a number of sandboxes (0..1024)\n");
              return 2;
            }
          o.pool_size = n;
          break;
        }
      case 'h': usage(stdout); return 0;
      default: usage(stderr); return 2;
      }
  if (optind < argc)
    {
      usage(stderr);
      return 2;
    }
  o.log = foreground ? log_line : NULL;
  if (corral_daemon_run(&o, &err) < 0)
    {
      fprintf(stderr, "corrald: %s\n", corral_error_message(err));
      corral_error_release(&err);
      return 1;
    }
  return 0;
}
