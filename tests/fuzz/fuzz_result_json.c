/* libFuzzer target: a corral_result_t filled from the input goes through
 * corral_result_to_json(); the output must be one line of JSON that parses
 * back (jansson) to an object whose fields say what the struct said. */
#define _GNU_SOURCE
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <corral/run.h>

#define CHECK(c) do { if (!(c)) abort(); } while (0)

struct reader
{
  const uint8_t *p;
  size_t n;
};

static uint64_t take(struct reader *r, size_t bytes)
{
  uint64_t v = 0;
  for (size_t i = 0; i < bytes; i++)
    {
      v = v << 8 | (r->n ? *r->p : 0);
      if (r->n)
        {
          r->p++;
          r->n--;
        }
    }
  return v;
}

static void check_int(json_t *o, const char *key, uint64_t want)
{
  json_t *v = json_object_get(o, key);
  CHECK(json_is_integer(v));
  CHECK((uint64_t) json_integer_value(v) == want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static const char *const modes[] = { "", "v1", "v2", "none" };
  struct reader rd = { data, size };
  corral_result_t res;
  json_error_t je;

  memset(&res, 0, sizeof(res));
  /* Mostly valid reasons, sometimes out of range to hit the fallback. */
  uint8_t rb = (uint8_t) take(&rd, 1);
  res.reason = (corral_reason_t) (rb < 240 ? rb % 5 : (int8_t) rb);
  res.exit_code = (int) (int32_t) take(&rd, 4);
  res.signal = (int) (int32_t) take(&rd, 4);
  res.wall_ms = take(&rd, 8);
  res.cpu_user_ms = take(&rd, 8);
  res.cpu_sys_ms = take(&rd, 8);
  res.memory_peak_bytes = take(&rd, 8);
  strcpy(res.cgroup_mode, modes[take(&rd, 1) % 4]);

  char *s = corral_result_to_json(&res);
  CHECK(s != NULL);
  CHECK(strchr(s, '\n') == NULL);
  json_t *o = json_loads(s, 0, &je);
  CHECK(o != NULL && json_is_object(o));

  json_t *reason = json_object_get(o, "reason");
  CHECK(json_is_string(reason));
  CHECK(strcmp(json_string_value(reason), corral_reason_name(res.reason)) == 0);

  json_t *ec = json_object_get(o, "exit_code");
  if (res.reason == CORRAL_REASON_EXITED)
    CHECK(json_is_integer(ec) && json_integer_value(ec) == res.exit_code);
  else
    CHECK(ec != NULL && (json_is_null(ec) || json_is_integer(ec)));

  json_t *sig = json_object_get(o, "signal");
  if (res.signal)
    CHECK(json_is_integer(sig) && json_integer_value(sig) == res.signal);
  else
    CHECK(json_is_null(sig));

  check_int(o, "wall_ms", res.wall_ms);
  check_int(o, "cpu_user_ms", res.cpu_user_ms);
  check_int(o, "cpu_sys_ms", res.cpu_sys_ms);
  check_int(o, "memory_peak_bytes", res.memory_peak_bytes);

  json_t *cg = json_object_get(o, "cgroup");
  CHECK(json_is_string(cg));
  CHECK(strcmp(json_string_value(cg), res.cgroup_mode[0] ? res.cgroup_mode : "none") == 0);

  /* exit codes stay in what a shell can report for sane inputs */
  if (res.reason == CORRAL_REASON_TIMEOUT)
    CHECK(corral_result_exit_code(&res) == 124);
  if (res.reason == CORRAL_REASON_OOM)
    CHECK(corral_result_exit_code(&res) == 137);

  json_decref(o);
  free(s);
  return 0;
}
