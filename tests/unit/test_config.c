/* corral_config_init / _validate / _release, the result's exit-code mapping
 * and its JSON form. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <corral/run.h>
#include "tap.h"

static char tmpdir[] = "/tmp/corral-test-config-XXXXXX";
static char *argv_true[] = { "true", NULL };

static void test_defaults(void)
{
  corral_config_t cfg;
  memset(&cfg, 0x5a, sizeof(cfg));
  corral_config_init(&cfg);
  ok(cfg.argv == NULL, "default argv is NULL");
  ok(cfg.rootfs == NULL && cfg.workdir == NULL && cfg.hostname == NULL, "default rootfs/workdir/hostname NULL");
  ok(!cfg.as_root, "default is not root");
  is_u64(cfg.disk_bytes, CORRAL_DEFAULT_DISK, "default disk is 512M");
  is_u64(cfg.disk_bytes, 512ULL << 20, "CORRAL_DEFAULT_DISK is 512M");
  is_u64(cfg.memory_bytes, CORRAL_DEFAULT_MEMORY, "default memory is 1G");
  is_u64(cfg.memory_bytes, 1ULL << 30, "CORRAL_DEFAULT_MEMORY is 1G");
  is_u64(cfg.pids, CORRAL_DEFAULT_PIDS, "default pids is 1024");
  is_u64(cfg.cpu_millis, 0, "default: no CPU quota");
  is_u64(cfg.timeout_ms, 0, "default: no timeout");
  is_u64(cfg.cpu_time_s, 0, "default: no CPU time limit");
  ok(cfg.env[0] == NULL, "default env is empty");
  is_int(cfg.n_binds, 0, "default: no binds");
  is_int(cfg.signal_fd, -1, "default signal_fd is -1");

  cfg.argv = argv_true;
  corral_error_t err = NULL;
  is_int(corral_config_validate(&cfg, &err), 0, "defaults plus a command validate (%s)", corral_error_message(err));
  corral_error_release(&err);

  /* release frees what the CLI allocated and empties the config. */
  cfg.rootfs = strdup("/r");
  cfg.workdir = strdup("/w");
  cfg.hostname = strdup("h");
  cfg.env[0] = strdup("A=1");
  cfg.env[1] = strdup("B=2");
  cfg.env[2] = NULL;
  cfg.binds[0].src = strdup("/s");
  cfg.binds[0].dst = strdup("/d");
  cfg.n_binds = 1;
  corral_config_release(&cfg);
  ok(cfg.rootfs == NULL && cfg.workdir == NULL && cfg.hostname == NULL && cfg.env[0] == NULL
         && cfg.n_binds == 0, "release empties the config");
  corral_config_release(&cfg);
  ok(1, "a second release is harmless");
}

/* Validate cfg and check the outcome: 0, or the errno of the error. */
static void check_validate(const corral_config_t *cfg, int want_status, const char *what)
{
  corral_error_t err = NULL;
  int r = corral_config_validate(cfg, &err);
  if (want_status == 0)
    ok(r == 0 && err == NULL, "%s is valid%s%s", what, err ? ": " : "", corral_error_message(err));
  else
    {
      ok(r < 0 && err != NULL, "%s is invalid (%s)", what, corral_error_message(err));
      is_int(corral_error_status(err), want_status, "%s fails with %s", what, strerrorname_np(want_status));
    }
  corral_error_release(&err);
}

static void test_validate(void)
{
  corral_config_t cfg;
  char path[256], file[300];
  char *argv_empty[] = { NULL };
  char *argv_blank[] = { "", NULL };

  corral_config_init(&cfg);
  check_validate(&cfg, EINVAL, "no argv");
  cfg.argv = argv_empty;
  check_validate(&cfg, EINVAL, "empty argv");
  cfg.argv = argv_blank;
  check_validate(&cfg, EINVAL, "argv[0] \"\"");
  cfg.argv = argv_true;
  check_validate(&cfg, 0, "argv {true}");

  /* rootfs */
  cfg.rootfs = "relative/root";
  check_validate(&cfg, EINVAL, "relative rootfs");
  snprintf(path, sizeof(path), "%s/does-not-exist", tmpdir);
  cfg.rootfs = path;
  check_validate(&cfg, ENOENT, "nonexistent rootfs");
  snprintf(file, sizeof(file), "%s/file", tmpdir);
  int fd = open(file, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
  ok(fd >= 0, "create a plain file");
  close(fd);
  cfg.rootfs = file;
  check_validate(&cfg, ENOTDIR, "rootfs that is a file");
  cfg.rootfs = tmpdir;
  chmod(tmpdir, 0700);
  check_validate(&cfg, EACCES, "rootfs directory without o+rx");
  chmod(tmpdir, 0755);
  check_validate(&cfg, 0, "rootfs that is a directory (0755)");
  cfg.rootfs = NULL;

  /* workdir */
  cfg.workdir = "work";
  check_validate(&cfg, EINVAL, "relative workdir");
  cfg.workdir = "/work";
  check_validate(&cfg, 0, "absolute workdir");
  cfg.workdir = NULL;

  /* hostname */
  static const char *const bad_hosts[] = { "", "bad_host", "-lead", "a.b", "sp ace", "caf\xc3\xa9",
                                           "0123456789012345678901234567890123456789012345678901234567890123" };
  static const char *const good_hosts[] = { "corral", "a-b1", "X", "012345678901234567890123456789012345678901234567890123456789012" };
  for (size_t i = 0; i < sizeof(bad_hosts) / sizeof(*bad_hosts); i++)
    {
      char what[128];
      cfg.hostname = (char *) bad_hosts[i];
      snprintf(what, sizeof(what), "hostname \"%.20s\" (%zu chars)", bad_hosts[i], strlen(bad_hosts[i]));
      check_validate(&cfg, EINVAL, what);
    }
  for (size_t i = 0; i < sizeof(good_hosts) / sizeof(*good_hosts); i++)
    {
      char what[128];
      cfg.hostname = (char *) good_hosts[i];
      snprintf(what, sizeof(what), "hostname \"%.20s\" (%zu chars)", good_hosts[i], strlen(good_hosts[i]));
      check_validate(&cfg, 0, what);
    }
  cfg.hostname = NULL;

  /* sizes */
  cfg.disk_bytes = (1 << 20) - 1;
  check_validate(&cfg, ERANGE, "disk just under 1M");
  cfg.disk_bytes = 0;
  check_validate(&cfg, ERANGE, "disk 0");
  cfg.disk_bytes = 1 << 20;
  check_validate(&cfg, 0, "disk 1M");
  cfg.disk_bytes = CORRAL_DEFAULT_DISK;
  cfg.memory_bytes = 4096;
  check_validate(&cfg, ERANGE, "memory 4k");
  cfg.memory_bytes = (4 << 20) - 1;
  check_validate(&cfg, ERANGE, "memory just under 4M");
  cfg.memory_bytes = 4 << 20;
  check_validate(&cfg, 0, "memory 4M");
  cfg.memory_bytes = 0;
  check_validate(&cfg, 0, "memory 0 (no limit)");
  cfg.memory_bytes = CORRAL_DEFAULT_MEMORY;
  cfg.pids = 1;
  check_validate(&cfg, ERANGE, "pids 1");
  cfg.pids = 2;
  check_validate(&cfg, 0, "pids 2");
  cfg.pids = 0;
  check_validate(&cfg, 0, "pids 0 (no limit)");
  cfg.pids = CORRAL_DEFAULT_PIDS;

  /* binds */
  cfg.binds[0].src = tmpdir;
  cfg.binds[0].dst = "/data";
  cfg.n_binds = 1;
  check_validate(&cfg, 0, "bind of an existing directory");
  cfg.binds[0].src = "relative";
  check_validate(&cfg, EINVAL, "bind with a relative source");
  cfg.binds[0].src = path; /* does not exist */
  check_validate(&cfg, ENOENT, "bind of a nonexistent source");
  cfg.binds[0].src = tmpdir;
  cfg.n_binds = CORRAL_MAX_BINDS + 1;
  check_validate(&cfg, E2BIG, "too many binds");
  cfg.n_binds = 0;

  unlink(file);
}

static void test_exit_codes(void)
{
  corral_result_t r;
  memset(&r, 0, sizeof(r));
  r.reason = CORRAL_REASON_EXITED;
  r.exit_code = 0;
  is_int(corral_result_exit_code(&r), 0, "exited 0 -> 0");
  r.exit_code = 3;
  is_int(corral_result_exit_code(&r), 3, "exited 3 -> 3");
  r.exit_code = 255;
  is_int(corral_result_exit_code(&r), 255, "exited 255 -> 255");
  r.exit_code = 0;
  r.reason = CORRAL_REASON_SIGNALED;
  r.signal = 9;
  is_int(corral_result_exit_code(&r), 137, "signaled 9 -> 137");
  r.signal = 15;
  is_int(corral_result_exit_code(&r), 143, "signaled 15 -> 143");
  r.signal = 0;
  r.reason = CORRAL_REASON_TIMEOUT;
  is_int(corral_result_exit_code(&r), 124, "timeout -> 124");
  r.signal = 9; /* the timeout's kill must not turn into 137 */
  is_int(corral_result_exit_code(&r), 124, "timeout (killed with 9) -> 124");
  r.reason = CORRAL_REASON_OOM;
  is_int(corral_result_exit_code(&r), 137, "oom -> 137");
  r.signal = 0;
  r.reason = CORRAL_REASON_ERROR;
  is_int(corral_result_exit_code(&r), 125, "error -> 125");
  r.exit_code = -1;
  is_int(corral_result_exit_code(&r), 125, "error with exit_code -1 -> 125");

  is_str(corral_reason_name(CORRAL_REASON_EXITED), "exited", "reason name exited");
  is_str(corral_reason_name(CORRAL_REASON_SIGNALED), "signaled", "reason name signaled");
  is_str(corral_reason_name(CORRAL_REASON_TIMEOUT), "timeout", "reason name timeout");
  is_str(corral_reason_name(CORRAL_REASON_OOM), "oom", "reason name oom");
  is_str(corral_reason_name(CORRAL_REASON_ERROR), "error", "reason name error");
  is_str(corral_reason_name((corral_reason_t) 99), "error", "out-of-range reason name is error");
  is_str(corral_reason_name((corral_reason_t) -1), "error", "negative reason name is error");
}

/* Serialize r, parse it back, and return the object (NULL on failure). */
static json_t *round_trip(const corral_result_t *r, const char *what)
{
  char *s = corral_result_to_json(r);
  json_error_t je;
  json_t *o = NULL;
  if (!ok(s != NULL, "%s: to_json returns a string", what))
    return NULL;
  ok(strchr(s, '\n') == NULL, "%s: JSON is one line", what);
  o = json_loads(s, 0, &je);
  if (!ok(o != NULL && json_is_object(o), "%s: JSON parses back as an object", what))
    diag("json: %s (%s)", s, je.text);
  free(s);
  return o;
}

static void check_int_key(json_t *o, const char *key, json_int_t want, const char *what)
{
  json_t *v = json_object_get(o, key);
  ok(json_is_integer(v) && json_integer_value(v) == want, "%s: %s == %lld", what, key, (long long) want);
}

static void check_null_key(json_t *o, const char *key, const char *what)
{
  json_t *v = json_object_get(o, key);
  ok(v != NULL && json_is_null(v), "%s: %s is null", what, key);
}

static void check_str_key(json_t *o, const char *key, const char *want, const char *what)
{
  json_t *v = json_object_get(o, key);
  is_str(json_is_string(v) ? json_string_value(v) : "(not a string)", want, "%s: %s", what, key);
}

static void test_json(void)
{
  corral_result_t r;
  json_t *o;

  memset(&r, 0, sizeof(r));
  r.reason = CORRAL_REASON_EXITED;
  r.exit_code = 3;
  r.wall_ms = 1234;
  r.cpu_user_ms = 56;
  r.cpu_sys_ms = 7;
  r.memory_peak_bytes = 5ULL << 30; /* above 32 bits */
  strcpy(r.cgroup_mode, "v1");
  if ((o = round_trip(&r, "exited")))
    {
      static const char *const keys[] = { "exit_code", "signal", "reason", "wall_ms", "cpu_user_ms",
                                          "cpu_sys_ms", "memory_peak_bytes" };
      for (size_t i = 0; i < sizeof(keys) / sizeof(*keys); i++)
        ok(json_object_get(o, keys[i]) != NULL, "exited: key %s present", keys[i]);
      check_int_key(o, "exit_code", 3, "exited");
      check_null_key(o, "signal", "exited");
      check_str_key(o, "reason", "exited", "exited");
      check_int_key(o, "wall_ms", 1234, "exited");
      check_int_key(o, "cpu_user_ms", 56, "exited");
      check_int_key(o, "cpu_sys_ms", 7, "exited");
      check_int_key(o, "memory_peak_bytes", (json_int_t) (5ULL << 30), "exited");
      check_str_key(o, "cgroup", "v1", "exited");
      json_decref(o);
    }

  memset(&r, 0, sizeof(r));
  r.reason = CORRAL_REASON_SIGNALED;
  r.signal = 9;
  r.wall_ms = 10;
  if ((o = round_trip(&r, "signaled")))
    {
      check_null_key(o, "exit_code", "signaled");
      check_int_key(o, "signal", 9, "signaled");
      check_str_key(o, "reason", "signaled", "signaled");
      check_int_key(o, "memory_peak_bytes", 0, "signaled");
      check_str_key(o, "cgroup", "none", "signaled (empty cgroup_mode)");
      json_decref(o);
    }

  memset(&r, 0, sizeof(r));
  r.reason = CORRAL_REASON_TIMEOUT;
  r.signal = 9;
  strcpy(r.cgroup_mode, "v2");
  if ((o = round_trip(&r, "timeout")))
    {
      check_null_key(o, "exit_code", "timeout");
      check_str_key(o, "reason", "timeout", "timeout");
      check_str_key(o, "cgroup", "v2", "timeout");
      json_decref(o);
    }

  memset(&r, 0, sizeof(r));
  r.reason = CORRAL_REASON_OOM;
  r.signal = 9;
  if ((o = round_trip(&r, "oom")))
    {
      check_str_key(o, "reason", "oom", "oom");
      check_int_key(o, "signal", 9, "oom");
      json_decref(o);
    }

  memset(&r, 0, sizeof(r));
  r.reason = CORRAL_REASON_ERROR;
  if ((o = round_trip(&r, "error")))
    {
      check_str_key(o, "reason", "error", "error");
      check_null_key(o, "signal", "error");
      json_decref(o);
    }
}

int main(void)
{
  if (mkdtemp(tmpdir) == NULL)
    {
      perror("mkdtemp");
      return 1;
    }
  test_defaults();
  test_validate();
  test_exit_codes();
  test_json();
  rmdir(tmpdir);
  return done_testing();
}
