/* `corral run` and `corral gc`. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>
#include <corral/run.h>
#include "cli.h"

static const char run_usage[] =
  "usage: corral run [OPTIONS] -- COMMAND [ARG...]\n\n"
  "  --rootfs DIR          use DIR as the root filesystem (default: the host's /usr, read-only)\n"
  "  --root                run as root inside the sandbox (uid 0 of its own user namespace)\n"
  "  --memory SIZE         memory limit, no swap (default 1G; 0 = none)\n"
  "  --cpus N              CPU quota, fractional (e.g. 0.5)\n"
  "  --pids N              process limit (default 1024; 0 = none)\n"
  "  --disk SIZE           size of /tmp and of /home/user each (default 512M)\n"
  "  --timeout DURATION    wall-clock limit (10, 1.5, 500ms, 2m); exit code 124\n"
  "  --cpu-time SECONDS    CPU-time limit per process (RLIMIT_CPU)\n"
  "  --env K=V             set an environment variable (repeatable)\n"
  "  --workdir DIR         working directory inside (default /home/user)\n"
  "  --bind SRC:DST[:ro]   bind a host path into the sandbox (repeatable)\n"
  "  --network MODE        none (default: loopback only), allowlist or open: egress only\n"
  "                        through corral's proxy (HTTP_PROXY=127.0.0.1:3128, SOCKS5 on\n"
  "                        127.0.0.1:1080), which allows what --allow lists (open: any\n"
  "                        public destination) and never private ranges unless listed\n"
  "  --allow RULE          allowlist/open rule: example.com, *.example.com, host:443,\n"
  "                        203.0.113.7, 10.0.0.0/8 (repeatable; see docs/network.md)\n"
  "  --net-log FILE|-      one JSON line per connection attempt (allowed or denied)\n"
  "  --secret NAME:HOSTS[:HEADER[:FORMAT]]\n"
  "                        keep $NAME (from corral's environment) out of the sandbox: the\n"
  "                        command sees a placeholder that the proxy replaces in requests\n"
  "                        to HOSTS (comma-separated), e.g. --secret\n"
  "                        ANTHROPIC_API_KEY:api.anthropic.com (needs --network)\n"
  "  --hostname NAME       host name inside (default corral)\n"
  "  --tty, --no-tty       give the command a terminal of its own (default: when stdin\n"
  "                        and stdout are terminals), or never (plain pipes)\n"
  "  --result FILE|-       write a JSON result record to FILE (or stderr)\n";

enum { OPT_ROOTFS = 256, OPT_ROOT, OPT_MEMORY, OPT_CPUS, OPT_PIDS, OPT_DISK, OPT_TIMEOUT, OPT_CPU_TIME,
       OPT_ENV, OPT_WORKDIR, OPT_BIND, OPT_NETWORK, OPT_HOSTNAME, OPT_RESULT, OPT_HELP, OPT_ALLOW,
       OPT_NET_LOG, OPT_TTY, OPT_NO_TTY, OPT_SECRET };

static const struct option run_options[] = {
  { "rootfs", required_argument, NULL, OPT_ROOTFS }, { "root", no_argument, NULL, OPT_ROOT },
  { "memory", required_argument, NULL, OPT_MEMORY }, { "cpus", required_argument, NULL, OPT_CPUS },
  { "pids", required_argument, NULL, OPT_PIDS }, { "disk", required_argument, NULL, OPT_DISK },
  { "timeout", required_argument, NULL, OPT_TIMEOUT }, { "cpu-time", required_argument, NULL, OPT_CPU_TIME },
  { "env", required_argument, NULL, OPT_ENV }, { "workdir", required_argument, NULL, OPT_WORKDIR },
  { "bind", required_argument, NULL, OPT_BIND }, { "network", required_argument, NULL, OPT_NETWORK },
  { "hostname", required_argument, NULL, OPT_HOSTNAME }, { "result", required_argument, NULL, OPT_RESULT },
  { "allow", required_argument, NULL, OPT_ALLOW }, { "net-log", required_argument, NULL, OPT_NET_LOG },
  { "secret", required_argument, NULL, OPT_SECRET },
  { "tty", no_argument, NULL, OPT_TTY }, { "no-tty", no_argument, NULL, OPT_NO_TTY },
  { "help", no_argument, NULL, OPT_HELP }, { NULL, 0, NULL, 0 }
};

static FILE *net_log;

static void log_connection(void *cls, const char *record)
{
  (void) cls;
  fprintf(net_log, "%s\n", record);
  fflush(net_log);
}

static int add_allow(corral_config_t *cfg, const char *arg, corral_error_t *err)
{
  size_t n = 0;
  while (cfg->allow[n])
    n++;
  if (n >= CORRAL_MAX_ALLOW)
    return corral_error_set(err, E2BIG, "too many --allow options (at most %d)", CORRAL_MAX_ALLOW);
  if ((cfg->allow[n] = strdup(arg)) == NULL)
    return corral_error_set(err, ENOMEM, "--allow");
  cfg->allow[n + 1] = NULL;
  return 0;
}

/* NAME:HOSTS[:HEADER[:FORMAT]]; the value comes from our environment, not
 * the command line (which any user of the host can read in /proc). */
static int add_secret(corral_config_t *cfg, const char *arg, corral_error_t *err)
{
  char *parts[4] = { 0 }, *copy = strdup(arg), *p = copy;
  if (!copy)
    return corral_error_set(err, ENOMEM, "--secret");
  for (int i = 0; i < 4 && p; i++)
    {
      parts[i] = p;
      char *colon = i < 3 ? strchr(p, ':') : NULL;
      if (colon)
        *colon = '\0';
      p = colon ? colon + 1 : NULL;
    }
  const char *value = parts[0] ? getenv(parts[0]) : NULL;
  int r = 0;
  if (!parts[1] || !*parts[0] || !*parts[1])
    r = corral_error_set(err, EINVAL, "--secret `%s`: expected NAME:HOSTS[:HEADER[:FORMAT]]", arg);
  else if (!value || !*value)
    r = corral_error_set(err, EINVAL, "--secret: $%s is not set in corral's environment", parts[0]);
  else if (cfg->n_secrets >= CORRAL_MAX_SECRETS)
    r = corral_error_set(err, E2BIG, "too many --secret options (at most %d)", CORRAL_MAX_SECRETS);
  else
    cfg->secrets[cfg->n_secrets++] = (corral_run_secret_t){
      .name = strdup(parts[0]), .value = strdup(value), .hosts = strdup(parts[1]),
      .header = parts[2] && *parts[2] ? strdup(parts[2]) : NULL, .format = parts[3] ? strdup(parts[3]) : NULL };
  free(copy);
  return r;
}

static int open_net_log(corral_config_t *cfg, const char *arg, corral_error_t *err)
{
  if (net_log && net_log != stderr)
    fclose(net_log);
  net_log = strcmp(arg, "-") == 0 ? stderr : fopen(arg, "ae");
  if (!net_log)
    return corral_error_set(err, errno, "--net-log `%s`", arg);
  cfg->net_audit = log_connection;
  return 0;
}

static int signal_pipe[2] = { -1, -1 };

static void on_signal(int sig)
{
  unsigned char b = (unsigned char) sig;
  int saved = errno;
  if (write(signal_pipe[1], &b, 1) < 0)
    {
    }
  errno = saved;
}

/* SIGWINCH only with a terminal: the library resizes the command's. */
static void install_forwarding(corral_config_t *cfg)
{
  static const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH };
  struct sigaction sa;
  if (pipe2(signal_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
    return;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESTART;
  for (size_t i = 0; i < sizeof(sigs) / sizeof(*sigs); i++)
    if (sigs[i] != SIGWINCH || cfg->tty)
      sigaction(sigs[i], &sa, NULL);
  cfg->signal_fd = signal_pipe[0];
}

/* ---- the caller's terminal in raw mode while the command has its own ----
 * Every byte, ^C included, goes to the command's terminal, whose line
 * discipline decides what it means.  The caller's modes come back on every
 * way out: the normal return, and any signal that would end or stop us. */

static int raw_fd = -1;
static struct termios raw_saved, raw_mode;

static void restore_terminal(void)
{
  if (raw_fd >= 0)
    tcsetattr(raw_fd, TCSADRAIN, &raw_saved);
  raw_fd = -1;
}

static void on_fatal(int sig)
{
  restore_terminal();
  signal(sig, SIG_DFL);
  raise(sig);
}

/* Stopped from outside (kill -TSTP): give the shell its terminal back,
 * and take it again, at the new size, when continued. */
static void on_stop(int sig)
{
  int saved = errno, fd = raw_fd;
  (void) sig;
  restore_terminal();
  raise(SIGSTOP);
  if (fd >= 0 && tcsetattr(fd, TCSADRAIN, &raw_mode) == 0)
    raw_fd = fd;
  on_signal(SIGWINCH);
  errno = saved;
}

static void enter_raw_mode(int fd)
{
  static const int fatal[] = { SIGALRM, SIGVTALRM, SIGPROF, SIGXCPU, SIGXFSZ, SIGSEGV, SIGBUS,
                               SIGFPE, SIGILL, SIGABRT, SIGSYS, SIGTRAP };
  struct sigaction sa;
  if (!isatty(fd) || tcgetattr(fd, &raw_saved) < 0)
    return;
  raw_mode = raw_saved;
  cfmakeraw(&raw_mode);
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_fatal;
  for (size_t i = 0; i < sizeof(fatal) / sizeof(*fatal); i++)
    sigaction(fatal[i], &sa, NULL);
  sa.sa_handler = on_stop;
  sa.sa_flags = SA_RESTART;
  sigaction(SIGTSTP, &sa, NULL);
  /* Output that nobody reads hangs the command's terminal up (EPIPE). */
  signal(SIGPIPE, SIG_IGN);
  if (tcsetattr(fd, TCSADRAIN, &raw_mode) == 0)
    raw_fd = fd;
}

/* A terminal of its own by default only when both ends are terminals
 * (`corral run -- cmd > file` keeps plain output) and we are in the
 * foreground: a background run (`&`) would stop at raw mode (SIGTTOU), and
 * keeps today's behaviour instead. */
static bool want_tty(void)
{
  pid_t fg = tcgetpgrp(0);
  return isatty(0) && isatty(1) && (fg < 0 || fg == getpgrp());
}

static int parse_count(const char *s, uint64_t *out, corral_error_t *err)
{
  char *end;
  errno = 0;
  if (s[0] < '0' || s[0] > '9')
    return corral_error_set(err, EINVAL, "invalid number `%s`", s);
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || *end || v > 4194304)
    return corral_error_set(err, EINVAL, "invalid number `%s` (0 to 4194304)", s);
  *out = v;
  return 0;
}

static int set_path(char **field, const char *value, const char *what, corral_error_t *err)
{
  char *p = value[0] == '/' || strcmp(what, "rootfs") != 0 ? strdup(value) : realpath(value, NULL);
  if (p == NULL)
    return corral_error_set(err, errno, "%s `%s`", what, value);
  free(*field);
  *field = p;
  return 0;
}

static int add_bind(corral_config_t *cfg, const char *arg, corral_error_t *err)
{
  corral_bind_t b;
  if (cfg->n_binds >= CORRAL_MAX_BINDS)
    return corral_error_set(err, E2BIG, "too many --bind options (at most %d)", CORRAL_MAX_BINDS);
  if (corral_parse_bind(arg, &b, err) < 0)
    return -1;
  if (b.src[0] != '/')
    {
      char *abs = realpath(b.src, NULL);
      if (abs == NULL)
        {
          int e = errno;
          free(b.src);
          free(b.dst);
          return corral_error_set(err, e, "bind source `%s`", arg);
        }
      free(b.src);
      b.src = abs;
    }
  cfg->binds[cfg->n_binds++] = b;
  return 0;
}

static int add_env(corral_config_t *cfg, const char *arg, corral_error_t *err)
{
  size_t n = 0;
  if (corral_parse_env(arg, err) < 0)
    return -1;
  while (cfg->env[n])
    n++;
  if (n >= CORRAL_MAX_ENV)
    return corral_error_set(err, E2BIG, "too many --env options (at most %d)", CORRAL_MAX_ENV);
  if ((cfg->env[n] = strdup(arg)) == NULL)
    return corral_error_set(err, ENOMEM, "--env");
  cfg->env[n + 1] = NULL;
  return 0;
}

static int parse_option(corral_config_t *cfg, int opt, const char *arg, const char **result, bool *tty_set,
                        corral_error_t *err)
{
  uint64_t v;
  switch (opt)
    {
    case OPT_ROOTFS: return set_path(&cfg->rootfs, arg, "rootfs", err);
    case OPT_ROOT: cfg->as_root = true; return 0;
    case OPT_MEMORY: return corral_parse_size(arg, &cfg->memory_bytes, err);
    case OPT_CPUS: return corral_parse_cpus(arg, &cfg->cpu_millis, err);
    case OPT_PIDS: return parse_count(arg, &cfg->pids, err);
    case OPT_DISK: return corral_parse_size(arg, &cfg->disk_bytes, err);
    case OPT_TIMEOUT:
      if (corral_parse_duration_ms(arg, &cfg->timeout_ms, err) < 0)
        return -1;
      return cfg->timeout_ms ? 0 : corral_error_set(err, EINVAL, "--timeout must be more than 0");
    case OPT_CPU_TIME:
      if (corral_parse_duration_ms(arg, &v, err) < 0)
        return -1;
      cfg->cpu_time_s = (v + 999) / 1000;
      return cfg->cpu_time_s ? 0 : corral_error_set(err, EINVAL, "--cpu-time must be more than 0");
    case OPT_ENV: return add_env(cfg, arg, err);
    case OPT_WORKDIR: return set_path(&cfg->workdir, arg, "workdir", err);
    case OPT_BIND: return add_bind(cfg, arg, err);
    case OPT_NETWORK:
      free(cfg->network);
      return (cfg->network = strdup(arg)) ? 0 : corral_error_set(err, ENOMEM, "--network");
    case OPT_ALLOW: return add_allow(cfg, arg, err);
    case OPT_NET_LOG: return open_net_log(cfg, arg, err);
    case OPT_SECRET: return add_secret(cfg, arg, err);
    case OPT_HOSTNAME: return set_path(&cfg->hostname, arg, "hostname", err);
    case OPT_RESULT: *result = arg; return 0;
    case OPT_TTY: cfg->tty = true; *tty_set = true; return 0;
    case OPT_NO_TTY: cfg->tty = false; *tty_set = true; return 0;
    default: return corral_error_set(err, EINVAL, "unknown option (see corral run --help)");
    }
}

static void write_result(const char *dest, const corral_result_t *res)
{
  char *json = corral_result_to_json(res);
  if (json == NULL)
    return;
  if (strcmp(dest, "-") == 0)
    fprintf(stderr, "%s\n", json);
  else
    {
      FILE *f = fopen(dest, "we");
      if (f == NULL)
        fprintf(stderr, "corral: cannot write result to `%s`: %s\n", dest, strerror(errno));
      else
        {
          fprintf(f, "%s\n", json);
          fclose(f);
        }
    }
  free(json);
}

int corral_cli_run(int argc, char **argv)
{
  corral_config_t cfg;
  corral_result_t res;
  corral_error_t err = NULL;
  const char *result = NULL;
  bool tty_set = false;
  int opt, code;

  corral_config_init(&cfg);
  opterr = 0;
  while ((opt = getopt_long(argc, argv, "+h", run_options, NULL)) != -1)
    {
      if (opt == 'h' || opt == OPT_HELP)
        {
          fputs(run_usage, stdout);
          corral_config_release(&cfg);
          return 0;
        }
      if (opt == '?' || opt == ':')
        {
          fprintf(stderr, "corral: unknown option or missing value: `%s` (see corral run --help)\n",
                  argv[optind - 1]);
          corral_config_release(&cfg);
          return 125;
        }
      if (parse_option(&cfg, opt, optarg, &result, &tty_set, &err) < 0)
        {
          fprintf(stderr, "corral: %s\n", corral_error_message(err));
          corral_error_release(&err);
          corral_config_release(&cfg);
          return 125;
        }
    }
  cfg.argv = argv + optind;
  cfg.resolver_file = getenv("CORRAL_RESOLVER_FILE");       /* tests: names without DNS */
  cfg.upstream_ca_file = getenv("CORRAL_UPSTREAM_CA_FILE"); /* tests: a private upstream CA */
  if (!tty_set)
    cfg.tty = want_tty();
  install_forwarding(&cfg);
  if (cfg.tty)
    enter_raw_mode(0);
  int r = corral_run(&cfg, &res, &err);
  restore_terminal();
  if (r < 0)
    fprintf(stderr, "corral: %s\n", corral_error_message(err));
  if (result)
    write_result(result, &res);
  code = corral_result_exit_code(&res);
  corral_error_release(&err);
  corral_config_release(&cfg);
  return code;
}

int corral_cli_gc(int argc, char **argv)
{
  corral_error_t err = NULL;
  (void) argv;
  if (argc > 1)
    {
      fprintf(stderr, "corral: gc takes no arguments\n");
      return 125;
    }
  int n = corral_gc(&err);
  if (n < 0)
    {
      fprintf(stderr, "corral: gc: %s\n", corral_error_message(err));
      corral_error_release(&err);
      return 125;
    }
  printf("removed %d leftover%s (cgroups of killed runs, dead corrald sandboxes)\n", n, n == 1 ? "" : "s");
  return 0;
}
