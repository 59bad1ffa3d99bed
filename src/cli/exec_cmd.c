/* `corral exec`: run a command in a sandbox of corrald, streaming its output.
 *
 * The command's stdout and stderr events go to our stdout and stderr as they
 * arrive (ndjson), and we exit with its exit code, so `corral exec` can stand
 * in for the command in a script.  125 means the command could not be run. */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <corral/run.h>
#include "cli.h"

static const char exec_usage_line[] =
  "usage: corral exec [--env K=V]... [--cwd DIR] [--timeout DURATION] [--background] [--no-stdin]\n"
  "                   [--max-output SIZE] SANDBOX -- CMD [ARG...]\n";

/* What a foreground command may print per stream unless --max-output says
 * otherwise: the most corrald allows, as the output is streamed, not kept. */
#define STREAMED_MAX_OUTPUT (64LL << 20)

static const char exec_help[] =
  "\n"
  "  --env K=V             set an environment variable for the command (repeatable)\n"
  "  --cwd DIR             working directory inside (default /home/user)\n"
  "  --timeout DURATION    kill the command after DURATION (10, 1.5, 500ms, 2m); exit code 124\n"
  "  --background          start the command, print its pid and return at once\n"
  "  -n, --no-stdin        do not send our stdin (it is sent when it is not a terminal)\n"
  "  --max-output SIZE     cap of each of stdout and stderr (default 64M, with --background 1M)\n"
  "  --url URL, --api-key KEY   corrald to talk to (default CORRAL_URL, CORRAL_API_KEY)\n\n"
  "Exits with the command's exit code (128+N for signal N, 124 on a timeout); 125\n"
  "when it could not be run.  Ctrl-C (or SIGTERM, SIGHUP) disconnects, which makes\n"
  "corrald kill the command; corral then exits with 128+N.\n";

enum { OPT_ENV = CORRAL_OPT_FIRST_FREE, OPT_CWD, OPT_TIMEOUT, OPT_BACKGROUND, OPT_NO_STDIN, OPT_MAX_OUTPUT };

static const struct option exec_options[] = {
  CORRAL_REMOTE_OPTIONS,
  { "env", required_argument, NULL, OPT_ENV }, { "cwd", required_argument, NULL, OPT_CWD },
  { "timeout", required_argument, NULL, OPT_TIMEOUT }, { "background", no_argument, NULL, OPT_BACKGROUND },
  { "no-stdin", no_argument, NULL, OPT_NO_STDIN }, { "max-output", required_argument, NULL, OPT_MAX_OUTPUT },
  { NULL, 0, NULL, 0 }
};

/* State of one streamed run. */
struct exec_run {
  json_t *exit;              /* the exit event */
  int interrupted;           /* the signal that made us hang up, or 0 */
  bool failed;               /* an error event came instead of the exit */
};

static volatile sig_atomic_t pending_signal;

static void on_signal(int sig)
{
  pending_signal = sig;
}

static void catch_stop_signals(void)
{
  static const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESTART;
  for (size_t i = 0; i < sizeof(sigs) / sizeof(*sigs); i++)
    {
      struct sigaction old;
      /* A signal ignored by whoever started us (nohup) stays ignored. */
      if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler != SIG_IGN)
        sigaction(sigs[i], &sa, NULL);
    }
}

/* ---- request ---- */

static int set_max_output(json_t *body, const char *arg)
{
  corral_error_t err = NULL;
  uint64_t bytes;
  if (corral_parse_size(arg, &bytes, &err) < 0 || bytes == 0)
    {
      corral_error_release(&err);
      return corral_usage_error(exec_usage_line, "--max-output: invalid size `%s` (e.g. 4M)", arg);
    }
  json_object_set_new(body, "max_output", json_integer((json_int_t) bytes));
  return 0;
}

static int set_option(json_t *body, int opt, const char *arg, bool *no_stdin)
{
  corral_error_t err = NULL;
  uint64_t ms;
  switch (opt)
    {
    case OPT_MAX_OUTPUT: return set_max_output(body, arg);
    case OPT_ENV:
      return corral_kv_set(json_object_get(body, "env"), arg, "--env") < 0 ? CORRAL_EXIT_USAGE : 0;
    case OPT_CWD: json_object_set_new(body, "cwd", json_string(arg)); return 0;
    case OPT_BACKGROUND: json_object_set_new(body, "background", json_true()); return 0;
    case 'n':
    case OPT_NO_STDIN: *no_stdin = true; return 0;
    case OPT_TIMEOUT:
      if (corral_parse_duration_ms(arg, &ms, &err) < 0 || ms == 0)
        {
          corral_error_release(&err);
          return corral_usage_error(exec_usage_line, "--timeout: invalid duration `%s` (10, 1.5, 500ms, 2m)", arg);
        }
      json_object_set_new(body, "timeout_ms", json_integer((json_int_t) ms));
      return 0;
    default: return 0;
    }
}

/* argv after the options: SANDBOX [--] CMD [ARG...] (getopt already took a
 * `--` placed before SANDBOX).  Options stop at SANDBOX. */
static int parse_exec(int argc, char **argv, json_t *body, const char **sandbox, bool *no_stdin)
{
  int opt, rc;
  optind = 0;
  opterr = 0;
  while ((opt = getopt_long(argc, argv, "+hn", exec_options, NULL)) != -1)
    {
      if (opt == 'h' || opt == CORRAL_OPT_HELP)
        {
          printf("%s%s", exec_usage_line, exec_help);
          return -1;
        }
      if (opt == '?' || opt == ':')
        return corral_bad_option(exec_usage_line, argv);
      if (!corral_remote_option(opt, optarg) && (rc = set_option(body, opt, optarg, no_stdin)) != 0)
        return rc;
    }
  if (optind >= argc)
    return corral_usage_error(exec_usage_line, "exec: missing SANDBOX");
  *sandbox = argv[optind++];
  if (optind < argc && strcmp(argv[optind], "--") == 0)
    optind++;
  if (optind >= argc)
    return corral_usage_error(exec_usage_line, "exec: missing the command to run (after --)");
  json_t *cmd = json_array();
  json_object_set_new(body, "cmd", cmd);
  for (; optind < argc; optind++)
    if (json_array_append_new(cmd, json_string(argv[optind])) < 0)
      return corral_usage_error(exec_usage_line, "exec: argument `%s` is not valid UTF-8", argv[optind]);
  return 0;
}

/* ---- events ---- */

static int write_data(FILE *out, const json_t *ev)
{
  const json_t *data = json_object_get(ev, "data");
  size_t len = json_string_length(data);
  if (len && fwrite(json_string_value(data), 1, len, out) != len)
    return -1;
  fflush(out);
  return 0;
}

static int on_event(json_t *ev, void *ctx)
{
  struct exec_run *run = ctx;
  const char *type = json_string_value(json_object_get(ev, "type"));
  if (type == NULL)
    return 0;
  if (strcmp(type, "stdout") == 0)
    return write_data(stdout, ev);
  if (strcmp(type, "stderr") == 0)
    return write_data(stderr, ev);
  if (strcmp(type, "exit") == 0)
    {
      json_decref(run->exit);
      run->exit = json_incref(ev);
    }
  else if (strcmp(type, "error") == 0)
    {
      const char *msg = json_string_value(json_object_get(ev, "message"));
      fprintf(stderr, "corral: %s\n", msg ? msg : "the command failed");
      run->failed = true;
    }
  return 0;
}

/* Ctrl-C and friends hang up: corrald kills a foreground command whose
 * client went away (the stream does not say the pid to signal it). */
static int on_tick(void *ctx)
{
  struct exec_run *run = ctx;
  if (pending_signal == 0)
    return 0;
  run->interrupted = pending_signal;
  return -1;
}

static void report_dropped(const json_t *ex, const char *stream)
{
  char key[32];
  snprintf(key, sizeof(key), "%s_dropped_bytes", stream);
  json_int_t n = json_integer_value(json_object_get(ex, key));
  if (n > 0)
    fprintf(stderr, "corral: %lld bytes of %s were dropped (over the output limit)\n", (long long) n, stream);
}

static int exit_code(const json_t *ex)
{
  const json_t *code = json_object_get(ex, "exit_code");
  const char *reason = json_string_value(json_object_get(ex, "reason"));
  report_dropped(ex, "stdout");
  report_dropped(ex, "stderr");
  if (json_is_integer(code))
    return (int) json_integer_value(code);
  if (reason && strcmp(reason, "timeout") == 0)
    return 124;
  if (reason && strcmp(reason, "oom") == 0)
    return 137;
  fprintf(stderr, "corral: the command ended without an exit code (%s)\n", reason ? reason : "unknown");
  return CORRAL_EXIT_EXEC_FAIL;
}

static int run_streamed(json_t *body, const char *sandbox)
{
  struct exec_run run = { 0 };
  corral_ndjson_t nd = { .on_event = on_event, .ctx = &run };
  char *path;
  int rc;
  if (json_object_get(body, "max_output") == NULL)
    json_object_set_new(body, "max_output", json_integer(STREAMED_MAX_OUTPUT));
  if (asprintf(&path, "/v1/sandboxes/%s/commands", sandbox) < 0)
    return CORRAL_EXIT_EXEC_FAIL;
  corral_call_t call = { .method = "POST", .path = path, .body = body, .upload_size = -1,
                         .accept = "application/x-ndjson", .sink = corral_ndjson_feed, .sink_ctx = &nd,
                         .tick = on_tick, .tick_ctx = &run };
  catch_stop_signals();
  rc = corral_remote_call(&call, NULL);
  free(path);
  if (run.interrupted)
    rc = 128 + run.interrupted;
  else if (corral_ndjson_finish(&nd) < 0 || rc < 0 || run.failed)
    rc = CORRAL_EXIT_EXEC_FAIL;
  else if (run.exit == NULL)
    {
      fputs("corral: the connection ended before the command did\n", stderr);
      rc = CORRAL_EXIT_EXEC_FAIL;
    }
  else
    rc = exit_code(run.exit);
  free(nd.buf);
  json_decref(run.exit);
  return rc;
}

static int run_background(json_t *body, const char *sandbox)
{
  json_t *res = NULL;
  char buf[32];
  if (corral_remote_json("POST", body, &res, "/v1/sandboxes/%s/commands", sandbox) < 0)
    return CORRAL_EXIT_EXEC_FAIL;
  printf("%s\n", corral_json_text(res, "pid", buf, sizeof(buf)));
  json_decref(res);
  return 0;
}

int corral_cli_exec(int argc, char **argv)
{
  json_t *body = json_pack("{s{}}", "env");
  const char *sandbox = NULL;
  bool no_stdin = false;
  int rc = parse_exec(argc, argv, body, &sandbox, &no_stdin);
  if (rc == 0 && !no_stdin && !isatty(STDIN_FILENO))
    {
      json_t *in = corral_read_stdin_text("stdin is not UTF-8 text (send binary data with `corral files put`)");
      if (in == NULL)
        rc = CORRAL_EXIT_EXEC_FAIL;
      else if (json_string_length(in) > 0)
        json_object_set(body, "stdin", in);
      json_decref(in);
    }
  if (json_object_size(json_object_get(body, "env")) == 0)
    json_object_del(body, "env");
  if (rc == 0)
    {
      char *id = corral_remote_escape(sandbox);
      rc = json_is_true(json_object_get(body, "background")) ? run_background(body, id) : run_streamed(body, id);
      free(id);
    }
  json_decref(body);
  return rc < 0 ? 0 : rc;
}
