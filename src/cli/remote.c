/* The CLI's HTTP client of corrald: libcurl for the transport, jansson for
 * JSON, a line splitter for ndjson streams.
 *
 * One easy handle per call: the CLI makes a handful of requests per run, so
 * connection reuse is not worth the shared state.  Bodies of successful
 * answers can go to a sink as they arrive (file downloads, command output);
 * error bodies are always buffered so their message can be printed. */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "curl_dl.h"
#include "cli.h"

#define DEFAULT_URL "http://127.0.0.1:7070"
/* An error body longer than this is cut: only its message is wanted. */
#define MAX_ERROR_BODY (1 << 20)

static const char *opt_url;
static const char *opt_api_key;

bool corral_remote_option(int opt, const char *arg)
{
  if (opt == CORRAL_OPT_URL)
    opt_url = arg;
  else if (opt == CORRAL_OPT_API_KEY)
    opt_api_key = arg;
  else
    return false;
  return true;
}

static const char *remote_url(void)
{
  const char *env = getenv("CORRAL_URL");
  if (opt_url && *opt_url)
    return opt_url;
  return env && *env ? env : DEFAULT_URL;
}

static const char *remote_key(void)
{
  return opt_api_key ? opt_api_key : getenv("CORRAL_API_KEY");
}

static void out_of_memory(void)
{
  fputs("corral: out of memory\n", stderr);
  exit(CORRAL_EXIT_FAIL);
}

static void *xrealloc(void *p, size_t n)
{
  void *q = realloc(p, n ? n : 1);
  if (q == NULL)
    out_of_memory();
  return q;
}

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
{
  va_list ap;
  char *s;
  va_start(ap, fmt);
  int n = vasprintf(&s, fmt, ap);
  va_end(ap);
  if (n < 0)
    out_of_memory();
  return s;
}

/* libcurl, loaded on first use; without it the remote commands cannot work. */
static const struct cli_curl_api *C(void)
{
  const char *why = NULL;
  const struct cli_curl_api *api = cli_curl_load(&why);
  if (!api)
    {
      fprintf(stderr, "corral: the remote commands need libcurl (apt-get install libcurl4): %s\n", why);
      exit(1);
    }
  return api;
}

char *corral_remote_escape(const char *s)
{
  char *e = C()->easy_escape(NULL, s, 0);
  char *copy = e ? strdup(e) : NULL;
  C()->free(e);
  if (copy == NULL)
    out_of_memory();
  return copy;
}

/* ---- one transfer ---- */

struct transfer {
  CURL *curl;
  const corral_call_t *call;
  long status;               /* final status, once the body starts */
  char *buf;                 /* the buffered answer */
  size_t len, cap;
  bool sink_failed;
  bool tick_failed;
};

static void buffer_append(struct transfer *t, const char *data, size_t len)
{
  if (t->len + len + 1 > t->cap)
    {
      t->cap = (t->len + len + 1) * 2;
      t->buf = xrealloc(t->buf, t->cap);
    }
  memcpy(t->buf + t->len, data, len);
  t->len += len;
  t->buf[t->len] = '\0';
}

static bool success(long status)
{
  return status >= 200 && status < 300;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *ctx)
{
  struct transfer *t = ctx;
  size_t len = size * nmemb;
  if (t->status == 0)
    C()->easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &t->status);
  if (t->call->sink && success(t->status))
    {
      if (t->call->sink(data, len, t->call->sink_ctx) < 0)
        {
          t->sink_failed = true;
          return 0;
        }
      return len;
    }
  if (t->len < MAX_ERROR_BODY || success(t->status))
    buffer_append(t, data, len);
  return len;
}

static size_t on_upload(char *buf, size_t size, size_t nmemb, void *ctx)
{
  FILE *f = ctx;
  size_t n = fread(buf, 1, size * nmemb, f);
  if (n == 0 && ferror(f))
    {
      fprintf(stderr, "corral: cannot read the upload: %s\n", strerror(errno));
      return CURL_READFUNC_ABORT;
    }
  return n;
}

static int on_progress(void *ctx, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
  struct transfer *t = ctx;
  (void) dltotal, (void) dlnow, (void) ultotal, (void) ulnow;
  if (t->call->tick(t->call->tick_ctx) < 0)
    {
      t->tick_failed = true;
      return 1;
    }
  return 0;
}

static struct curl_slist *add_header(struct curl_slist *h, const char *name, const char *value)
{
  char *line = xasprintf("%s: %s", name, value);
  struct curl_slist *n = C()->slist_append(h, line);
  free(line);
  if (n == NULL)
    out_of_memory();
  return n;
}

static struct curl_slist *build_headers(const corral_call_t *call)
{
  struct curl_slist *h = NULL;
  const char *key = remote_key();
  char *bearer;
  if (key && *key)
    {
      bearer = xasprintf("Bearer %s", key);
      h = add_header(h, "Authorization", bearer);
      free(bearer);
    }
  if (call->accept)
    h = add_header(h, "Accept", call->accept);
  if (call->body)
    h = add_header(h, "Content-Type", "application/json");
  else if (call->upload)
    h = add_header(h, "Content-Type", "application/octet-stream");
  return h;
}

/* The request body: JSON text (kept in *json until the transfer is over), or
 * a file streamed with a read callback, or nothing. */
static void set_body(CURL *c, const corral_call_t *call, char **json)
{
  if (call->body)
    {
      if ((*json = json_dumps(call->body, JSON_COMPACT)) == NULL)
        out_of_memory();
      C()->easy_setopt(c, CURLOPT_POSTFIELDS, *json);
      C()->easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) strlen(*json));
    }
  else if (call->upload)
    {
      C()->easy_setopt(c, CURLOPT_UPLOAD, 1L);
      C()->easy_setopt(c, CURLOPT_READFUNCTION, on_upload);
      C()->easy_setopt(c, CURLOPT_READDATA, call->upload);
      if (call->upload_size >= 0)
        C()->easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t) call->upload_size);
    }
  else if (strcmp(call->method, "POST") == 0 || strcmp(call->method, "PUT") == 0)
    {
      C()->easy_setopt(c, CURLOPT_POSTFIELDS, "");
      C()->easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) 0);
    }
}

/* The URL for curl; a "unix:/path" base becomes http://localhost over that socket. */
static char *target_url(CURL *c, const char *path)
{
  const char *base = remote_url();
  size_t n;
  if (strncmp(base, "unix:", 5) == 0)
    {
      C()->easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, base + 5);
      return xasprintf("http://localhost%s", path);
    }
  n = strlen(base);
  while (n > 0 && base[n - 1] == '/')
    n--;
  return xasprintf("%.*s%s", (int) n, base, path);
}

static void setup(struct transfer *t, char *errbuf, char **json, char **url, struct curl_slist *headers)
{
  CURL *c = t->curl;
  const corral_call_t *call = t->call;
  *url = target_url(c, call->path);
  C()->easy_setopt(c, CURLOPT_URL, *url);
  C()->easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  C()->easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  C()->easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
  C()->easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  C()->easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  C()->easy_setopt(c, CURLOPT_WRITEDATA, t);
  set_body(c, call, json);
  /* After the body options: CURLOPT_UPLOAD alone would make it a PUT. */
  if (strcmp(call->method, "GET") != 0)
    C()->easy_setopt(c, CURLOPT_CUSTOMREQUEST, call->method);
  if (call->tick)
    {
      C()->easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
      C()->easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
      C()->easy_setopt(c, CURLOPT_XFERINFODATA, t);
    }
}

/* ---- reporting ---- */

/* The message of an error body: error.message of the JSON, else its first line. */
static void print_http_error(const struct transfer *t)
{
  json_t *j = t->len ? json_loadb(t->buf, t->len, 0, NULL) : NULL;
  const char *msg = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
  if (msg)
    fprintf(stderr, "corral: %s (HTTP %ld)\n", msg, t->status);
  else if (t->len)
    fprintf(stderr, "corral: %.*s (HTTP %ld)\n", (int) strcspn(t->buf, "\r\n"), t->buf, t->status);
  else
    fprintf(stderr, "corral: request failed (HTTP %ld)\n", t->status);
  json_decref(j);
}

static int finish(struct transfer *t, CURLcode rc, const char *errbuf, json_t **out)
{
  json_error_t jerr;
  if (t->status == 0)
    C()->easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &t->status);
  if (t->sink_failed || t->tick_failed)
    return -1;
  /* A server that refuses an upload may answer and close before reading it
   * all: its answer is worth more than curl's send error. */
  if (t->status >= 300 && (rc == CURLE_OK || t->len))
    {
      print_http_error(t);
      return -1;
    }
  if (rc != CURLE_OK)
    {
      const char *why = errbuf[0] ? errbuf : C()->easy_strerror(rc);
      if (t->status == 0)
        fprintf(stderr, "corral: cannot reach corrald at %s: %s\n", remote_url(), why);
      else
        fprintf(stderr, "corral: transfer from corrald at %s failed: %s\n", remote_url(), why);
      return -1;
    }
  if (out == NULL || t->len == 0)
    return (int) t->status;
  if ((*out = json_loadb(t->buf, t->len, 0, &jerr)) == NULL)
    {
      fprintf(stderr, "corral: corrald sent invalid JSON: %s\n", jerr.text);
      return -1;
    }
  return (int) t->status;
}

int corral_remote_call(const corral_call_t *call, json_t **out)
{
  struct transfer t = { .call = call };
  char errbuf[CURL_ERROR_SIZE] = "";
  char *json = NULL, *url = NULL;
  struct curl_slist *headers;
  CURLcode rc;
  int ret;

  if (out)
    *out = NULL;
  C()->global_init(CURL_GLOBAL_DEFAULT);
  if ((t.curl = C()->easy_init()) == NULL)
    {
      fputs("corral: cannot initialise libcurl\n", stderr);
      return -1;
    }
  headers = build_headers(call);
  setup(&t, errbuf, &json, &url, headers);
  rc = C()->easy_perform(t.curl);
  ret = finish(&t, rc, errbuf, out);
  C()->easy_cleanup(t.curl);
  C()->slist_free_all(headers);
  free(json);
  free(url);
  free(t.buf);
  return ret;
}

int corral_remote_json(const char *method, json_t *body, json_t **out, const char *path_fmt, ...)
{
  va_list ap;
  char *path;
  va_start(ap, path_fmt);
  int n = vasprintf(&path, path_fmt, ap);
  va_end(ap);
  if (n < 0)
    out_of_memory();
  corral_call_t call = { .method = method, .path = path, .body = body, .upload_size = -1 };
  int ret = corral_remote_call(&call, out);
  free(path);
  return ret;
}

/* ---- ndjson ---- */

static int ndjson_line(corral_ndjson_t *nd, const char *line, size_t len)
{
  json_error_t jerr;
  json_t *ev;
  int ret;
  while (len && (line[len - 1] == '\r' || line[len - 1] == ' '))
    len--;
  if (len == 0)
    return 0;
  if ((ev = json_loadb(line, len, 0, &jerr)) == NULL)
    {
      fprintf(stderr, "corral: corrald sent an invalid event: %s\n", jerr.text);
      return -1;
    }
  ret = nd->on_event(ev, nd->ctx);
  json_decref(ev);
  return ret;
}

int corral_ndjson_feed(const char *data, size_t len, void *ctx)
{
  corral_ndjson_t *nd = ctx;
  size_t start = 0;
  if (nd->len + len > nd->cap)
    {
      nd->cap = (nd->len + len) * 2;
      nd->buf = xrealloc(nd->buf, nd->cap);
    }
  memcpy(nd->buf + nd->len, data, len);
  nd->len += len;
  for (size_t i = nd->len - len; i < nd->len; i++)
    if (nd->buf[i] == '\n')
      {
        if (ndjson_line(nd, nd->buf + start, i - start) < 0)
          return -1;
        start = i + 1;
      }
  memmove(nd->buf, nd->buf + start, nd->len - start);
  nd->len -= start;
  return 0;
}

int corral_ndjson_finish(corral_ndjson_t *nd)
{
  int ret = nd->len ? ndjson_line(nd, nd->buf, nd->len) : 0;
  free(nd->buf);
  nd->buf = NULL;
  nd->len = nd->cap = 0;
  return ret;
}

/* ---- helpers ---- */

int corral_kv_set(json_t *obj, const char *kv, const char *what)
{
  const char *eq = strchr(kv, '=');
  if (eq == NULL || eq == kv)
    {
      fprintf(stderr, "corral: %s needs KEY=VALUE, not `%s`\n", what, kv);
      return -1;
    }
  char *key = strndup(kv, (size_t) (eq - kv));
  json_t *val = json_string(eq + 1);
  if (key == NULL || val == NULL)
    {
      fprintf(stderr, "corral: %s `%s` is not valid UTF-8\n", what, kv);
      free(key);
      json_decref(val);
      return -1;
    }
  json_object_set_new(obj, key, val);
  free(key);
  return 0;
}

void corral_print_json(const json_t *j)
{
  json_dumpf(j, stdout, JSON_INDENT(2));
  fputc('\n', stdout);
}

const char *corral_json_text(const json_t *obj, const char *key, char *buf, size_t size)
{
  const json_t *v = json_object_get(obj, key);
  switch (json_typeof(v))
    {
    case JSON_STRING: snprintf(buf, size, "%s", json_string_value(v)); break;
    case JSON_INTEGER: snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v)); break;
    case JSON_REAL: snprintf(buf, size, "%g", json_real_value(v)); break;
    case JSON_TRUE: snprintf(buf, size, "true"); break;
    case JSON_FALSE: snprintf(buf, size, "false"); break;
    default: snprintf(buf, size, "-"); break;
    }
  return buf;
}

int corral_usage_error(const char *usage, const char *fmt, ...)
{
  va_list ap;
  fputs("corral: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  fputs(usage, stderr);
  return CORRAL_EXIT_USAGE;
}

int corral_bad_option(const char *usage, char **argv)
{
  return corral_usage_error(usage, "unknown option or missing value: `%s`", argv[optind - 1]);
}

int corral_parse_uint(const char *s, unsigned long long max, unsigned long long *out)
{
  char *end;
  if (s[0] < '0' || s[0] > '9')
    return -1;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || *end || v > max)
    return -1;
  *out = v;
  return 0;
}

json_t *corral_read_stdin_text(const char *not_text)
{
  char *buf = NULL;
  size_t len = 0, cap = 0;
  json_t *s;
  for (;;)
    {
      if (len + 65536 > cap)
        {
          char *bigger = realloc(buf, cap = (len + 65536) * 2);
          if (bigger == NULL)
            {
              fputs("corral: out of memory reading stdin\n", stderr);
              free(buf);
              return NULL;
            }
          buf = bigger;
        }
      ssize_t n = read(STDIN_FILENO, buf + len, cap - len);
      if (n == 0 || (n < 0 && errno == EBADF))
        break;
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        {
          fprintf(stderr, "corral: cannot read stdin: %s\n", strerror(errno));
          free(buf);
          return NULL;
        }
      len += (size_t) n;
    }
  if ((s = json_stringn(buf, len)) == NULL)
    fprintf(stderr, "corral: %s\n", not_text);
  free(buf);
  return s;
}
