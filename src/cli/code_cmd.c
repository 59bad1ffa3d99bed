/* `corral code`: run code in a persistent interpreter (a code context) of a
 * sandbox of corrald, streaming what it prints.
 *
 * stdout and stderr events go to our stdout and stderr as they arrive; each
 * result is printed in its text form (a placeholder such as `[png image,
 * 1234 bytes]` for a binary format when it has none); an exception's
 * traceback goes to stderr and makes us exit 1.  --json prints the events
 * themselves, one JSON object per line. */
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

static const char code_usage_line[] =
  "usage: corral code [--language L | --context ID] [--env K=V]... [--timeout DURATION]\n"
  "                   [--max-output SIZE] [--json] SANDBOX [CODE | -]\n";

static const char code_help[] =
  "\n"
  "Runs CODE (or stdin when CODE is missing or `-`) in a code context of SANDBOX:\n"
  "a persistent interpreter whose variables and imports survive from one run to\n"
  "the next.  Without --context the sandbox's `default` Python context is used.\n\n"
  "  --language L          language of the default context (python, the only one today)\n"
  "  --context ID          a context made with POST /v1/sandboxes/SANDBOX/contexts\n"
  "  --env K=V             set an environment variable before the code runs (repeatable)\n"
  "  --timeout DURATION    interrupt the code after DURATION (10, 1.5, 500ms, 2m): it gets\n"
  "                        a KeyboardInterrupt and the context keeps its state\n"
  "  --max-output SIZE     cap of the output kept (default 1M)\n"
  "  --json                print every event as a JSON line, as corrald sends it\n"
  "  --url URL, --api-key KEY   corrald to talk to (default CORRAL_URL, CORRAL_API_KEY)\n\n"
  "Output goes to stdout and stderr as it is produced; each result is printed as\n"
  "text (binary formats without one as `[png image, N bytes]`).  Exits 1 when the\n"
  "code raised (its traceback on stderr) or the request failed, 2 on a usage\n"
  "error, 0 otherwise.  Ctrl-C disconnects, which interrupts the code.\n";

enum { OPT_LANGUAGE = CORRAL_OPT_FIRST_FREE, OPT_CONTEXT, OPT_ENV, OPT_TIMEOUT, OPT_MAX_OUTPUT };

static const struct option code_options[] = {
  CORRAL_REMOTE_OPTIONS, { "json", no_argument, NULL, CORRAL_OPT_JSON },
  { "language", required_argument, NULL, OPT_LANGUAGE }, { "context", required_argument, NULL, OPT_CONTEXT },
  { "env", required_argument, NULL, OPT_ENV }, { "timeout", required_argument, NULL, OPT_TIMEOUT },
  { "max-output", required_argument, NULL, OPT_MAX_OUTPUT }, { NULL, 0, NULL, 0 }
};

/* State of one streamed execution. */
struct code_run {
  bool json;                 /* --json: print the events */
  bool ended;                /* the end event came */
  bool error;                /* an error event came */
  bool io_failed;            /* writing our output failed */
  int interrupted;           /* the signal that made us hang up, or 0 */
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

static int set_option(json_t *body, int opt, const char *arg, bool *json_out)
{
  corral_error_t err = NULL;
  uint64_t n;
  switch (opt)
    {
    case CORRAL_OPT_JSON: *json_out = true; return 0;
    case OPT_LANGUAGE:
    case OPT_CONTEXT:
      if (json_object_get(body, opt == OPT_LANGUAGE ? "context_id" : "language"))
        return corral_usage_error(code_usage_line, "code: give --language or --context, not both");
      json_object_set_new(body, opt == OPT_LANGUAGE ? "language" : "context_id", json_string(arg));
      if (!json_object_get(body, opt == OPT_LANGUAGE ? "language" : "context_id"))
        return corral_usage_error(code_usage_line, "code: `%s` is not valid UTF-8", arg);
      return 0;
    case OPT_ENV:
      return corral_kv_set(json_object_get(body, "env"), arg, "--env") < 0 ? CORRAL_EXIT_USAGE : 0;
    case OPT_TIMEOUT:
      if (corral_parse_duration_ms(arg, &n, &err) < 0 || n == 0)
        {
          corral_error_release(&err);
          return corral_usage_error(code_usage_line, "--timeout: invalid duration `%s` (10, 1.5, 500ms, 2m)", arg);
        }
      json_object_set_new(body, "timeout_ms", json_integer((json_int_t) n));
      return 0;
    case OPT_MAX_OUTPUT:
      if (corral_parse_size(arg, &n, &err) < 0 || n == 0 || n > (64ULL << 20))
        {
          corral_error_release(&err);
          return corral_usage_error(code_usage_line, "--max-output: invalid size `%s` (1 to 64M)", arg);
        }
      json_object_set_new(body, "max_output", json_integer((json_int_t) n));
      return 0;
    default: return 0;
    }
}

/* argv: [OPTIONS] SANDBOX [CODE | -]; options may come anywhere before `--`. */
static int parse_code(int argc, char **argv, json_t *body, const char **sandbox, bool *json_out)
{
  int opt, rc;
  optind = 0;
  opterr = 0;
  while ((opt = getopt_long(argc, argv, "h", code_options, NULL)) != -1)
    {
      if (opt == 'h' || opt == CORRAL_OPT_HELP)
        {
          printf("%s%s", code_usage_line, code_help);
          return -1;
        }
      if (opt == '?' || opt == ':')
        return corral_bad_option(code_usage_line, argv);
      if (!corral_remote_option(opt, optarg) && (rc = set_option(body, opt, optarg, json_out)) != 0)
        return rc;
    }
  if (optind >= argc)
    return corral_usage_error(code_usage_line, "code: missing SANDBOX");
  *sandbox = argv[optind++];
  if (optind < argc - 1)
    return corral_usage_error(code_usage_line, "code: too many arguments (quote the code as one argument)");
  json_t *code = NULL;
  if (optind < argc && strcmp(argv[optind], "-") != 0)
    {
      if ((code = json_string(argv[optind])) == NULL)
        return corral_usage_error(code_usage_line, "code: the code is not valid UTF-8");
    }
  else if ((code = corral_read_stdin_text("the code on stdin is not UTF-8 text")) == NULL)
    return CORRAL_EXIT_FAIL;
  if (json_string_length(code) == 0)
    {
      json_decref(code);
      return corral_usage_error(code_usage_line, "code: no code to run");
    }
  json_object_set_new(body, "code", code);
  return 0;
}

/* ---- events ---- */

static int put_text(struct code_run *run, FILE *out, const char *s, size_t len, bool newline)
{
  if ((len && fwrite(s, 1, len, out) != len) || (newline && (len == 0 || s[len - 1] != '\n') && fputc('\n', out) == EOF)
      || fflush(out) == EOF)
    {
      if (!run->io_failed)
        fprintf(stderr, "corral: cannot write the output: %s\n", strerror(errno));
      run->io_failed = true;
      return -1;
    }
  return 0;
}

static int put_string(struct code_run *run, FILE *out, const json_t *s, bool newline)
{
  return put_text(run, out, json_string_value(s), json_string_length(s), newline);
}

/* Decoded size of base64 text. */
static size_t base64_size(const json_t *s)
{
  const char *p = json_string_value(s);
  size_t len = json_string_length(s), chars = 0;
  for (size_t i = 0; i < len; i++)
    if (p[i] != '=' && p[i] != '\n' && p[i] != '\r' && p[i] != ' ')
      chars++;
  return chars * 3 / 4;
}

/* A result: its text, else each of its formats as text or a placeholder. */
static int print_result(struct code_run *run, const json_t *ev)
{
  static const struct { const char *key, *binary; } formats[] = {
    { "markdown", NULL }, { "latex", NULL }, { "json", NULL }, { "html", NULL }, { "svg", NULL },
    { "javascript", NULL }, { "png", "png image" }, { "jpeg", "jpeg image" }, { "pdf", "pdf document" },
  };
  const json_t *text = json_object_get(ev, "text");
  if (json_is_string(text))
    return put_string(run, stdout, text, true);
  for (size_t i = 0; i < sizeof(formats) / sizeof(*formats); i++)
    {
      const json_t *v = json_object_get(ev, formats[i].key);
      int r = 0;
      if (v == NULL || json_is_null(v))
        continue;
      if (formats[i].binary && json_is_string(v))
        {
          char line[96];
          snprintf(line, sizeof(line), "[%s, %zu bytes]", formats[i].binary, base64_size(v));
          r = put_text(run, stdout, line, strlen(line), true);
        }
      else if (json_is_string(v))
        r = put_string(run, stdout, v, true);
      else
        {
          char *dump = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
          r = dump ? put_text(run, stdout, dump, strlen(dump), true) : 0;
          free(dump);
        }
      if (r < 0)
        return r;
    }
  return 0;
}

static int print_error(struct code_run *run, const json_t *ev)
{
  const json_t *tb = json_object_get(ev, "traceback");
  const char *name = json_string_value(json_object_get(ev, "name"));
  const char *value = json_string_value(json_object_get(ev, "value"));
  fflush(stdout);
  if (json_string_length(tb) > 0)
    return put_string(run, stderr, tb, true);
  char *line = NULL;
  int n = value && *value ? asprintf(&line, "%s: %s", name ? name : "Error", value)
                          : asprintf(&line, "%s", name ? name : "Error");
  if (n < 0)
    return -1;
  int r = put_text(run, stderr, line, (size_t) n, true);
  free(line);
  return r;
}

static int on_event(json_t *ev, void *ctx)
{
  struct code_run *run = ctx;
  const char *type = json_string_value(json_object_get(ev, "type"));
  if (type == NULL)
    return 0;
  if (strcmp(type, "end") == 0)
    run->ended = true;
  else if (strcmp(type, "error") == 0)
    run->error = true;
  if (run->json)
    {
      char *line = json_dumps(ev, JSON_COMPACT);
      int r = line ? put_text(run, stdout, line, strlen(line), true) : -1;
      free(line);
      return r;
    }
  if (strcmp(type, "stdout") == 0 || strcmp(type, "stderr") == 0)
    return put_string(run, type[3] == 'o' ? stdout : stderr, json_object_get(ev, "text"), false);
  if (strcmp(type, "result") == 0)
    return print_result(run, ev);
  if (strcmp(type, "error") == 0)
    return print_error(run, ev);
  return 0;
}

/* Ctrl-C and friends hang up: corrald interrupts code whose client went away. */
static int on_tick(void *ctx)
{
  struct code_run *run = ctx;
  if (pending_signal == 0)
    return 0;
  run->interrupted = pending_signal;
  return -1;
}

static int run_code(json_t *body, const char *sandbox, bool json_out)
{
  struct code_run run = { .json = json_out };
  corral_ndjson_t nd = { .on_event = on_event, .ctx = &run };
  char *path;
  int rc;
  if (asprintf(&path, "/v1/sandboxes/%s/execute", sandbox) < 0)
    return CORRAL_EXIT_FAIL;
  corral_call_t call = { .method = "POST", .path = path, .body = body, .upload_size = -1,
                         .accept = "application/x-ndjson", .sink = corral_ndjson_feed, .sink_ctx = &nd,
                         .tick = on_tick, .tick_ctx = &run };
  catch_stop_signals();
  rc = corral_remote_call(&call, NULL);
  free(path);
  if (run.interrupted)
    rc = 128 + run.interrupted;
  else if (corral_ndjson_finish(&nd) < 0 || rc < 0 || run.io_failed)
    rc = CORRAL_EXIT_FAIL;
  else if (!run.ended)
    {
      fputs("corral: the connection ended before the execution did\n", stderr);
      rc = CORRAL_EXIT_FAIL;
    }
  else
    rc = run.error ? CORRAL_EXIT_FAIL : CORRAL_EXIT_OK;
  free(nd.buf);
  return rc;
}

int corral_cli_code(int argc, char **argv)
{
  json_t *body = json_pack("{s{}}", "env");
  const char *sandbox = NULL;
  bool json_out = false;
  int rc = parse_code(argc, argv, body, &sandbox, &json_out);
  if (json_object_size(json_object_get(body, "env")) == 0)
    json_object_del(body, "env");
  if (rc == 0)
    {
      char *id = corral_remote_escape(sandbox);
      rc = run_code(body, id, json_out);
      free(id);
    }
  json_decref(body);
  return rc < 0 ? 0 : rc;
}
