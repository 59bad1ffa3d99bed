/* corral CLI: the subcommands and the corrald HTTP client they share. */
#ifndef CORRAL_CLI_H
#define CORRAL_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

/* ---- local sandboxes (run.c) ---- */
int corral_cli_run(int argc, char **argv);
int corral_cli_gc(int argc, char **argv);

/* ---- clients of corrald (sandbox_cmd.c, exec_cmd.c, code_cmd.c, files_cmd.c, tenant_cmd.c) ---- */
int corral_cli_sandbox(int argc, char **argv);
int corral_cli_exec(int argc, char **argv);
int corral_cli_code(int argc, char **argv);
int corral_cli_files(int argc, char **argv);
int corral_cli_tenant(int argc, char **argv);
int corral_cli_key(int argc, char **argv);

/* Exit codes of the remote subcommands. */
enum { CORRAL_EXIT_OK = 0, CORRAL_EXIT_FAIL = 1, CORRAL_EXIT_USAGE = 2, CORRAL_EXIT_EXEC_FAIL = 125 };

/* getopt_long values of the options every remote subcommand accepts. */
enum { CORRAL_OPT_URL = 0x1000, CORRAL_OPT_API_KEY, CORRAL_OPT_JSON, CORRAL_OPT_HELP, CORRAL_OPT_FIRST_FREE };
#define CORRAL_REMOTE_OPTIONS                                                  \
  { "url", required_argument, NULL, CORRAL_OPT_URL },                          \
  { "api-key", required_argument, NULL, CORRAL_OPT_API_KEY },                  \
  { "help", no_argument, NULL, CORRAL_OPT_HELP }

/* ---- remote.c ---- */

/* Take --url / --api-key (they override CORRAL_URL / CORRAL_API_KEY).
 * Returns true when opt was one of them. */
bool corral_remote_option(int opt, const char *arg);

/* Receives the body of a successful (2xx) response as it arrives.
 * Return negative to abort the transfer (after printing why). */
typedef int (*corral_sink_fn)(const char *data, size_t len, void *ctx);

typedef struct corral_call_s {
  const char *method;        /* "GET", "POST", "PUT", "DELETE" */
  const char *path;          /* "/v1/...", query already escaped */
  json_t *body;              /* JSON request body, or NULL */
  FILE *upload;              /* raw request body streamed from here, or NULL */
  long long upload_size;     /* its size, or -1 (chunked) */
  const char *accept;        /* Accept header, or NULL */
  corral_sink_fn sink;       /* NULL: buffer the body and parse it as JSON */
  void *sink_ctx;
  int (*tick)(void *ctx);    /* called about once a second; negative aborts */
  void *tick_ctx;
} corral_call_t;

/* Perform call.  On a 2xx answer returns the status and sets *out (if out
 * is non-NULL) to the parsed JSON body, or NULL when it was empty or went
 * to a sink.  Otherwise prints one line on stderr ("corral: MESSAGE (HTTP
 * STATUS)" or "corral: cannot reach corrald at URL: ...") and returns -1. */
int corral_remote_call(const corral_call_t *call, json_t **out);

/* A JSON request without a sink: method, body (not stolen; may be NULL),
 * path as a printf format.  Same returns as corral_remote_call(). */
int corral_remote_json(const char *method, json_t *body, json_t **out, const char *path_fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* URL-escape s for a path segment or a query value (malloc'd; exits on ENOMEM). */
char *corral_remote_escape(const char *s);

/* ---- ndjson: split a byte stream into JSON lines (remote.c) ---- */
typedef int (*corral_line_fn)(json_t *event, void *ctx);
typedef struct corral_ndjson_s {
  char *buf;
  size_t len, cap;
  corral_line_fn on_event;   /* each complete line, parsed; negative aborts */
  void *ctx;
} corral_ndjson_t;
/* A corral_sink_fn: ctx is a corral_ndjson_t. */
int corral_ndjson_feed(const char *data, size_t len, void *ctx);
/* Parse a last line without a newline, free the buffer. */
int corral_ndjson_finish(corral_ndjson_t *nd);

/* ---- small helpers for the subcommands (remote.c) ---- */

/* "K=V" into obj[K] = V; prints why and returns -1 when malformed. */
int corral_kv_set(json_t *obj, const char *kv, const char *what);
/* All of stdin as a JSON string, or NULL after printing `corral: <not_text>`
 * (not UTF-8) or a read error. */
json_t *corral_read_stdin_text(const char *not_text);
/* Print JSON (indented) on stdout. */
void corral_print_json(const json_t *j);
/* The scalar obj[key] as text in buf ("-" when missing or null). */
const char *corral_json_text(const json_t *obj, const char *key, char *buf, size_t size);
/* A usage error: "corral: MESSAGE" then the usage text on stderr; returns CORRAL_EXIT_USAGE. */
int corral_usage_error(const char *usage, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Unknown option or missing value seen by getopt (argv[optind - 1]). */
int corral_bad_option(const char *usage, char **argv);
/* Parse a non-negative integer (at most max); -1 when invalid. */
int corral_parse_uint(const char *s, unsigned long long max, unsigned long long *out);

#endif
