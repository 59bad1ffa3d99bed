/* libFuzzer target: the API request decoders of src/lib/api/decode.c
 * (decode_create, decode_exec, decode_signal) on arbitrary JSON.  The
 * input is parsed as corrald parses a body (JSON_REJECT_DUPLICATES), plus
 * JSON_ALLOW_NUL and JSON_DECODE_ANY so that strings with NUL bytes and
 * bare values reach the decoders too.  Besides crashes, leaks and UB
 * (ASan/UBSan), it checks each decoder's contract:
 *   - failure fills `why` and leaves nothing allocated (the routes do not
 *     release a failed decode: LeakSanitizer sees anything left behind);
 *   - success gives values in the documented ranges (docs/api.md): limits,
 *     timeouts, a non-empty argv of C strings, "K=V" env with valid names;
 *   - decode_signal gives 0 or 1..64, and signal_name() of what it returns
 *     decodes back to the same number. */
#define _GNU_SOURCE
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "api/api.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)

static void check_string_map(json_t *o, size_t max, bool env_names)
{
  const char *k;
  json_t *v;
  CHECK(json_is_object(o));
  CHECK(json_object_size(o) <= max);
  json_object_foreach(o, k, v)
    {
      CHECK(json_is_string(v));
      CHECK(strlen(k) <= 256 && json_string_length(v) <= 65536);
      if (env_names)
        CHECK(valid_env_name(k) && strlen(json_string_value(v)) == json_string_length(v));
    }
}

static void fuzz_create(json_t *body, uint64_t max_timeout_s)
{
  struct create_req c;
  char why[512];
  why[0] = '\0';
  memset(&c, 0xa5, sizeof(c));
  if (decode_create(body, max_timeout_s, &c, why, sizeof(why)) < 0)
    {
      CHECK(why[0] != '\0');
      CHECK(c.metadata == NULL && c.env == NULL);
      return;
    }
  size_t tl = strnlen(c.template_name, sizeof(c.template_name));
  CHECK(tl > 0 && tl < sizeof(c.template_name));
  CHECK(c.timeout_s >= 1 && c.timeout_s <= max_timeout_s);
  CHECK(c.memory_mb >= 16 && c.memory_mb <= 65536);
  CHECK(c.pids >= 16 && c.pids <= 32768);
  CHECK(c.disk_mb >= 1 && c.disk_mb <= 65536);
  CHECK(c.cpu_millis == 0 || (c.cpu_millis >= 10 && c.cpu_millis <= 64000));
  check_string_map(c.metadata, 64, false);
  check_string_map(c.env, 256, true);
  create_req_release(&c);
  CHECK(c.metadata == NULL && c.env == NULL);
}

static void fuzz_exec(json_t *body)
{
  struct exec_req e;
  char why[512];
  why[0] = '\0';
  memset(&e, 0xa5, sizeof(e));
  if (decode_exec(body, &e, why, sizeof(why)) < 0)
    {
      CHECK(why[0] != '\0');
      CHECK(e.argv == NULL && e.env == NULL && e.cwd == NULL && e.stdin_data == NULL);
      return;
    }
  CHECK(e.argv != NULL && e.argv[0] != NULL && e.argv[0][0] != '\0');
  size_t argc = 0;
  while (e.argv[argc])
    argc++;
  CHECK(argc <= 4096);
  CHECK(e.env != NULL);
  size_t envc = 0;
  for (char **p = e.env; *p; p++, envc++)
    {
      char *eq = strchr(*p, '=');
      CHECK(eq != NULL);
      *eq = '\0';
      CHECK(valid_env_name(*p));
      *eq = '=';
    }
  CHECK(envc <= 256);
  CHECK(e.cwd == NULL || e.cwd[0] != '\0');
  CHECK(e.timeout_ms <= 86400000ull);
  CHECK(e.max_output >= 1 && e.max_output <= (64ull << 20));
  if (e.stdin_data)
    CHECK(e.stdin_data[e.stdin_len] == '\0');
  else
    CHECK(e.stdin_len == 0);
  exec_req_release(&e);
  CHECK(e.argv == NULL && e.env == NULL && e.cwd == NULL && e.stdin_data == NULL);
}

static void fuzz_signal(json_t *v)
{
  int sig = decode_signal(v);
  CHECK(sig >= 0 && sig <= 64);
  if (sig)
    {
      const char *name = signal_name(sig);
      CHECK(strncmp(name, "SIG", 3) == 0);
      json_t *s = json_string(name);
      CHECK(s != NULL && decode_signal(s) == sig);
      json_decref(s);
      json_t *n = json_integer(sig);
      CHECK(decode_signal(n) == sig);
      json_decref(n);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  json_error_t je;
  json_t *v = json_loadb((const char *) data, size, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL | JSON_DECODE_ANY, &je);
  if (!v)
    return 0;
  fuzz_signal(v);
  if (json_is_object(v))
    {
      fuzz_create(v, 86400);
      fuzz_create(v, 30);
      fuzz_exec(v);
      fuzz_signal(json_object_get(v, "signal"));
      /* Nested objects are request bodies too (e.g. a batch of them). */
      const char *k;
      json_t *x;
      json_object_foreach(v, k, x)
        if (json_is_object(x))
          {
            fuzz_create(x, 86400);
            fuzz_exec(x);
          }
    }
  else if (json_is_array(v))
    for (size_t i = 0; i < json_array_size(v) && i < 16; i++)
      {
        json_t *x = json_array_get(v, i);
        fuzz_signal(x);
        if (json_is_object(x))
          {
            fuzz_create(x, 86400);
            fuzz_exec(x);
          }
      }
  json_decref(v);
  return 0;
}
