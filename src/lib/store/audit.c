/* The audit log: one JSON object per line in <dir>/audit.log, the same
 * records in the store's audit table so that they can be queried.
 *
 * The file is the record an operator tails and ships elsewhere; the table
 * answers GET /v1/audit.  Each line goes out in a single write() on an
 * O_APPEND descriptor, so lines of concurrent writers never interleave. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "../common/utils.h"
#include "store_internal.h"

struct corral_audit_s
{
  corral_store_t *store; /* NULL: file only */
  int fd;
};

/* jansson's own json_decrefp (the one behind json_auto_t). */
#define cleanup_json __attribute__((cleanup(json_decrefp)))

int corral_audit_open(const char *dir, corral_store_t *store, corral_audit_t **out, corral_error_t *err)
{
  cleanup_free char *path = NULL;
  cleanup_close int fd = -1;
  corral_audit_t *a;
  if (dir == NULL || out == NULL)
    return corral_error_set(err, EINVAL, "open audit log: no directory given");
  if (asprintf(&path, "%s/audit.log", dir) < 0)
    return corral_error_set(err, ENOMEM, "open audit log");
  /* 0600: the records name tenants and hold the commands they ran. */
  fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0)
    return corral_error_set(err, errno, "open `%s`", path);
  a = calloc(1, sizeof(*a));
  if (a == NULL)
    return corral_error_set(err, ENOMEM, "open audit log");
  a->store = store;
  a->fd = corral__steal_fd(&fd);
  *out = a;
  return 0;
}

void corral_audit_close(corral_audit_t *a)
{
  if (a == NULL)
    return;
  if (a->fd >= 0)
    close(a->fd);
  free(a);
}

/* RFC 3339, UTC, milliseconds: 2026-11-23T14:05:00.123Z */
static void format_time(int64_t ms, char buf[32])
{
  time_t secs = (time_t) (ms / 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  size_t n = strftime(buf, 32, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf + n, 32 - n, ".%03dZ", (int) (ms % 1000));
}

/* "risk": {"score", "reasons"} computed from the record's argv array.
 * Elements that are not strings count as empty arguments. */
static int add_risk(json_t *rec, json_t *argv, corral_error_t *err)
{
  size_t n = json_array_size(argv);
  cleanup_free const char **v = calloc(n + 1, sizeof(*v));
  json_t *reasons = NULL, *risk;
  int score = 0;
  if (v == NULL)
    return corral_error_set(err, ENOMEM, "audit risk");
  for (size_t i = 0; i < n; i++)
    v[i] = json_string_value(json_array_get(argv, i)) ?: "";
  if (corral__risk_eval(v, n, &score, &reasons) < 0)
    return corral_error_set(err, ENOMEM, "audit risk");
  /* A program that tried what the seccomp policy forbids (ptrace, mount,
   * unshare, bpf...) was probing its jail, whatever its command line said. */
  json_t *denied = json_object_get(rec, "seccomp_denied");
  if (json_array_size(denied) > 0)
    {
      json_t *names = json_array();
      size_t i;
      json_t *x;
      json_array_foreach(denied, i, x)
        if (json_is_string(x))
          json_array_append(names, x);
      char *list = json_dumps(names, JSON_COMPACT);
      json_decref(names);
      json_array_append_new(reasons, json_sprintf("seccomp denied %s", list ? list : "calls"));
      free(list);
      score = score + 40 > 100 ? 100 : score + 40;
    }
  /* "o" steals reasons, even when json_pack fails. */
  risk = json_pack("{s:i, s:o}", "score", score, "reasons", reasons);
  if (risk == NULL || json_object_set_new(rec, "risk", risk) < 0)
    return corral_error_set(err, ENOMEM, "audit risk");
  return 0;
}

/* The line to log: "time" first (it is what readers sort and grep by),
 * then the caller's keys in their order, then "risk". */
static int build_line(json_t *in, int64_t now_ms, char **line, corral_error_t *err)
{
  cleanup_json json_t *rec = json_object();
  json_t *argv = json_object_get(in, "argv");
  char stamp[32];
  format_time(now_ms, stamp);
  /* Set twice: the first fixes the position, the second overrides any
   * "time" the caller sent; the log's clock is the one that counts. */
  if (rec == NULL || json_object_set_new(rec, "time", json_string(stamp)) < 0 || json_object_update(rec, in) < 0
      || json_object_set_new(rec, "time", json_string(stamp)) < 0)
    return corral_error_set(err, ENOMEM, "audit record");
  if (json_is_array(argv))
    {
      int r = add_risk(rec, argv, err);
      if (r < 0)
        return r;
    }
  else
    json_object_del(rec, "risk"); /* a caller cannot vouch for its own risk */
  /* JSON_COMPACT without JSON_INDENT never emits a newline: strings
   * escape theirs, so one record is one line. */
  *line = json_dumps(rec, JSON_COMPACT);
  return *line ? 0 : corral_error_set(err, ENOMEM, "audit record");
}

/* One write() for the whole line: O_APPEND makes it land after every
 * other complete line.  A short write is reported, not completed, since a
 * second write could be interleaved with another writer's line. */
static int write_line(int fd, const char *line, corral_error_t *err)
{
  size_t len = strlen(line);
  cleanup_free char *buf = malloc(len + 1);
  ssize_t n;
  if (buf == NULL)
    return corral_error_set(err, ENOMEM, "audit log");
  memcpy(buf, line, len);
  buf[len] = '\n';
  do
    n = write(fd, buf, len + 1);
  while (n < 0 && errno == EINTR);
  if (n < 0)
    return corral_error_set(err, errno, "write audit log");
  if ((size_t) n != len + 1)
    return corral_error_set(err, EIO, "write audit log: short write (%zd of %zu bytes)", n, len + 1);
  return 0;
}

static int insert_row(corral_store_t *s, int64_t ms, json_t *rec, const char *line, corral_error_t *err)
{
  int r;
  corral_store_t *guard cleanup_store_unlock = corral__store_lock(s);
  sqlite3_stmt *st cleanup_stmt_reset = NULL;
  r = corral__store_stmt(s, CORRAL__STMT_AUDIT_INSERT,
                         "INSERT INTO audit (time_ms, tenant, sandbox, action, json) VALUES (?1, ?2, ?3, ?4, ?5)",
                         &st, err);
  if (r < 0)
    return r;
  sqlite3_bind_int64(st, 1, ms);
  /* json_string_value is NULL for absent or non-string keys: SQL NULL. */
  sqlite3_bind_text(st, 2, json_string_value(json_object_get(rec, "tenant")), -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 3, json_string_value(json_object_get(rec, "sandbox")), -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 4, json_string_value(json_object_get(rec, "action")), -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 5, line, -1, SQLITE_STATIC);
  r = sqlite3_step(st);
  return r == SQLITE_DONE ? 0 : corral__store_sql_error(s, r, err, "insert audit record");
}

int corral_audit_record(corral_audit_t *a, const char *record_json, corral_error_t *err)
{
  cleanup_json json_t *rec = NULL;
  cleanup_free char *line = NULL;
  json_error_t jerr;
  const char *action;
  int64_t now = corral__wall_ms();
  int r;
  if (a == NULL || record_json == NULL)
    return corral_error_set(err, EINVAL, "audit record: missing argument");
  rec = json_loads(record_json, 0, &jerr);
  if (rec == NULL)
    return corral_error_set(err, EINVAL, "audit record is not JSON: %s (offset %d)", jerr.text, jerr.position);
  action = json_string_value(json_object_get(rec, "action"));
  if (!json_is_object(rec) || action == NULL || action[0] == '\0')
    return corral_error_set(err, EINVAL, "audit record must be an object with an \"action\" string");
  r = build_line(rec, now, &line, err);
  if (r < 0)
    return r;
  /* The file first: it is the record of last resort if the database
   * is unwritable. */
  r = write_line(a->fd, line, err);
  if (r < 0 || a->store == NULL)
    return r;
  return insert_row(a->store, now, rec, line, err);
}

/* Append each row's JSON text to an array; the texts were written by
 * corral_audit_record and are valid JSON already. */
static int collect_json(corral_store_t *s, sqlite3_stmt *st, char **json_out, corral_error_t *err)
{
  char *buf = NULL;
  size_t size = 0;
  size_t rows = 0;
  int rc;
  FILE *f = open_memstream(&buf, &size);
  if (f == NULL)
    return corral_error_set(err, ENOMEM, "audit query");
  fputc('[', f);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW)
    {
      if (rows++ > 0)
        fputc(',', f);
      fputs((const char *) sqlite3_column_text(st, 0) ?: "null", f);
    }
  fputc(']', f);
  if (fclose(f) != 0 || buf == NULL)
    {
      free(buf);
      return corral_error_set(err, ENOMEM, "audit query");
    }
  if (rc != SQLITE_DONE)
    {
      free(buf);
      return corral__store_sql_error(s, rc, err, "audit query");
    }
  *json_out = buf;
  return 0;
}

int corral_audit_query(corral_audit_t *a, const char *tenant, const char *sandbox, int64_t since_ms, size_t limit,
                       char **json_out, corral_error_t *err)
{
  int mask = (tenant ? 1 : 0) | (sandbox ? 2 : 0) | (since_ms > 0 ? 4 : 0);
  char sql[256];
  int r;
  if (a == NULL || json_out == NULL)
    return corral_error_set(err, EINVAL, "audit query: missing argument");
  if (a->store == NULL)
    return corral_error_set(err, EINVAL, "audit query: the audit log was opened without a store");
  /* One statement per combination of filters: each then has a plain WHERE
   * clause that SQLite matches to an index.  Oldest first, so a reader
   * pages forward with since_ms. */
  snprintf(sql, sizeof(sql), "SELECT json FROM audit WHERE 1%s%s%s ORDER BY time_ms, id LIMIT ?4",
           tenant ? " AND tenant = ?1" : "", sandbox ? " AND sandbox = ?2" : "",
           since_ms > 0 ? " AND time_ms >= ?3" : "");
  corral_store_t *guard cleanup_store_unlock = corral__store_lock(a->store);
  sqlite3_stmt *st cleanup_stmt_reset = NULL;
  r = corral__store_stmt(a->store, CORRAL__STMT_AUDIT_QUERY + mask, sql, &st, err);
  if (r < 0)
    return r;
  if (tenant)
    sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC);
  if (sandbox)
    sqlite3_bind_text(st, 2, sandbox, -1, SQLITE_STATIC);
  if (since_ms > 0)
    sqlite3_bind_int64(st, 3, since_ms);
  sqlite3_bind_int64(st, 4, limit == 0 ? 1000 : limit > (size_t) INT64_MAX ? INT64_MAX : (sqlite3_int64) limit);
  return collect_json(a->store, st, json_out, err);
}
