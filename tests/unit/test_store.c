/* The store layer (include/corral/store.h): open in WAL mode, tenants, API
 * keys, sandbox rows, events, reopening, and use from many threads.  Each
 * run works in its own mkdtemp directory, removed at the end. */
#define _GNU_SOURCE
#include <errno.h>
#include <ftw.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <corral/store.h>
#include "tap.h"

#define TMP_PREFIX "/tmp/corral-test-store-"
static char tmpdir[] = TMP_PREFIX "XXXXXX";
static char dbpath[64];
static corral_store_t *store;

static int64_t now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
  return (void) st, (void) flag, (void) ftw, remove(path);
}

/* Remove the mkdtemp directory, and only it (never a path we did not make). */
static void remove_tmpdir(void)
{
  if (strncmp(tmpdir, TMP_PREFIX, strlen(TMP_PREFIX)) == 0 && strlen(tmpdir) == strlen(TMP_PREFIX) + 6
      && strchr(tmpdir + strlen(TMP_PREFIX), '/') == NULL)
    nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Nothing more to test without a store: clean up and stop. */
__attribute__((noreturn)) static void bail_out(void)
{
  remove_tmpdir();
  exit(done_testing() ?: 1);
}

/* s is n lowercase hex digits. */
static bool is_hex(const char *s, size_t n)
{
  return strspn(s, "0123456789abcdef") == n && s[n] == '\0';
}

/* Whether corral.db or its -wal file holds needle, byte for byte. */
static bool db_contains(const char *needle)
{
  bool found = false;
  for (int i = 0; i < 2 && !found; i++)
    {
      char path[96], *buf;
      struct stat st;
      FILE *f;
      snprintf(path, sizeof(path), "%s%s", dbpath, i ? "-wal" : "");
      if (stat(path, &st) < 0 || (f = fopen(path, "rb")) == NULL)
        continue;
      buf = malloc(st.st_size + 1);
      size_t len = buf ? fread(buf, 1, st.st_size, f) : 0;
      found = buf && memmem(buf, len, needle, strlen(needle)) != NULL;
      free(buf);
      fclose(f);
    }
  return found;
}

/* The first value of a query on a second connection to the database (the
 * store's own handle is out of reach), or "(none)". */
static const char *sql(const char *query)
{
  static char buf[128];
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  snprintf(buf, sizeof(buf), "(none)");
  if (sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK
      && sqlite3_busy_timeout(db, 5000) == SQLITE_OK && sqlite3_prepare_v2(db, query, -1, &st, NULL) == SQLITE_OK
      && sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
    snprintf(buf, sizeof(buf), "%s", (const char *) sqlite3_column_text(st, 0));
  sqlite3_finalize(st);
  sqlite3_close(db);
  return buf;
}

static int file_mode(const char *suffix)
{
  char path[96];
  struct stat st;
  snprintf(path, sizeof(path), "%s%s", dbpath, suffix);
  return stat(path, &st) == 0 ? (int) (st.st_mode & 07777) : -1;
}

/* Check a call's outcome: 0, or the errno of the error it put in e_ (the
 * corral_error_t these macros declare for the call); releases the error. */
#define is_errno(call, want, ...)                                                                        \
  ({ corral_error_t e_ = NULL; int r_ = (call);                                                          \
     bool p_ = is_int(r_ < 0 ? (corral_error_status(e_) ?: -1) : r_, want, __VA_ARGS__);                 \
     if (!p_) diag("returned %d: %s", r_, corral_error_message(e_));                                     \
     corral_error_release(&e_); p_; })
#define is_zero(call, ...) is_errno(call, 0, __VA_ARGS__)

static void test_open(void)
{
  char missing[96];
  corral_store_t *s = NULL;
  snprintf(missing, sizeof(missing), "%s/no-such-dir", tmpdir);
  is_errno(corral_store_open(NULL, &s, &e_), EINVAL, "open without a directory: EINVAL");
  is_errno(corral_store_open(missing, &s, &e_), ENOENT, "open in a missing directory: ENOENT");
  ok(s == NULL, "a failed open leaves *out alone");

  if (!is_zero(corral_store_open(tmpdir, &store, &e_), "open in a fresh directory"))
    bail_out();
  is_int(file_mode(""), 0600, "corral.db is 0600");
  is_str(sql("PRAGMA journal_mode"), "wal", "a second connection sees journal_mode=wal");
  is_str(sql("PRAGMA user_version"), "2", "schema version 2");
}

static void test_tenants(void)
{
  static const char *const bad[] = { "", "Acme", "a b", "a/b", "../x", "a.b", "caf\xc3\xa9", "x;drop", NULL };
  char name64[65] = { 0 }, name65[66] = { 0 };
  corral_tenant_t t = { 0 }, *v = NULL;
  size_t n = 0;
  int64_t before = now_ms();

  is_zero(corral_store_tenant_create(store, &(corral_tenant_t) { .name = "acme", .max_sandboxes = 10,
                                                                 .max_memory_mb = 2048 }, &e_),
          "create tenant acme");
  is_errno(corral_store_tenant_create(store, &(corral_tenant_t) { .name = "acme" }, &e_), EEXIST,
           "create acme again: EEXIST");
  if (is_zero(corral_store_tenant_get(store, "acme", &t, &e_), "get acme"))
    {
      is_str(t.name, "acme", "name");
      is_u64(t.max_sandboxes, 10, "max_sandboxes");
      is_u64(t.max_memory_mb, 2048, "max_memory_mb");
      ok(t.created_ms >= before && t.created_ms <= now_ms(), "created_ms is now (%lld)", (long long) t.created_ms);
      corral_tenant_release(&t);
    }
  is_zero(corral_store_tenant_create(store, &(corral_tenant_t) { .name = "beta", .max_memory_mb = UINT64_MAX,
                                                                 .created_ms = 12345 }, &e_),
          "create beta with created_ms and a huge quota");
  ok(corral_store_tenant_get(store, "beta", &t, NULL) == 0 && t.max_memory_mb == UINT64_MAX && t.created_ms == 12345,
     "beta: a uint64 quota round-trips, the given created_ms is kept");
  corral_tenant_release(&t);
  is_errno(corral_store_tenant_get(store, "nobody", &t, &e_), ENOENT, "get unknown tenant: ENOENT");

  for (int i = 0; bad[i]; i++)
    is_errno(corral_store_tenant_create(store, &(corral_tenant_t) { .name = (char *) bad[i] }, &e_), EINVAL,
             "tenant name '%s': EINVAL", bad[i]);
  is_errno(corral_store_tenant_create(store, &(corral_tenant_t) { .name = NULL }, &e_), EINVAL,
           "NULL tenant name: EINVAL");
  memset(name64, 'z', 64);
  memset(name65, 'z', 65);
  is_errno(corral_store_tenant_create(store, &(corral_tenant_t) { .name = name65 }, &e_), EINVAL,
           "65-character name: EINVAL");
  is_zero(corral_store_tenant_create(store, &(corral_tenant_t) { .name = name64 }, &e_), "64-character name");
  is_zero(corral_store_tenant_create(store, &(corral_tenant_t) { .name = "a_b-9" }, &e_), "name a_b-9");
  is_zero(corral_store_tenant_create(store, &(corral_tenant_t) { .name = "doomed" }, &e_), "create doomed");

  if (is_zero(corral_store_tenant_list(store, &v, &n, &e_), "list tenants"))
    {
      const char *want[] = { "a_b-9", "acme", "beta", "doomed", name64 };
      bool same = n == 5;
      for (size_t i = 0; same && i < n; i++)
        same = strcmp(v[i].name, want[i]) == 0;
      ok(same, "list holds the 5 tenants ordered by name (got %zu)", n);
      corral_tenants_free(v, n);
    }
  is_zero(corral_store_tenant_delete(store, "doomed", &e_), "delete doomed");
  is_errno(corral_store_tenant_get(store, "doomed", &t, &e_), ENOENT, "deleted tenant is gone");
  is_errno(corral_store_tenant_delete(store, "doomed", &e_), ENOENT, "delete it again: ENOENT");
  is_zero(corral_store_tenant_list(store, &v, &n, &e_), "list again");
  is_int(n, 4, "4 tenants left");
  corral_tenants_free(v, n);
}

static char *kept_key; /* an acme key, for the reopen test */

static void sha256_hex(const char *s, char out[65])
{
  unsigned char md[32];
  unsigned int len = 0;
  EVP_Digest(s, strlen(s), md, &len, EVP_sha256(), NULL);
  for (unsigned i = 0; i < 32; i++)
    sprintf(out + 2 * i, "%02x", md[i]);
}

/* The tenant owning key, "(miss)" or "(error)". */
static const char *owner(const char *key)
{
  static char buf[80];
  char *t = NULL;
  int r = corral_store_key_lookup(store, key, &t, NULL);
  snprintf(buf, sizeof(buf), "%s", r == 1 ? (t ? t : "(null)") : r == 0 ? "(miss)" : "(error)");
  free(t);
  return buf;
}

static void test_keys(void)
{
  char *key = NULL, *e2b = NULL, *third = NULL, *tenant = NULL, hash[65];
  corral_key_t rec = { 0 }, rec2 = { 0 }, *v = NULL;
  size_t n = 0;

  is_zero(corral_store_key_create(store, "acme", false, &key, &rec, &e_), "create a key");
  ok(key && strlen(key) == 51 && strncmp(key, "ck_", 3) == 0 && is_hex(key + 3, 48),
     "key is ck_ + 48 lowercase hex (%s)", key ? key : "NULL");
  ok(rec.id && strncmp(rec.id, "key_", 4) == 0 && strlen(rec.id) == 20 && is_hex(rec.id + 4, 16),
     "key id is key_ + 16 hex (%s)", rec.id ? rec.id : "NULL");
  is_str(rec.tenant, "acme", "record names the tenant");
  ok(rec.prefix && key && strlen(rec.prefix) == 10 && strncmp(rec.prefix, key, 10) == 0,
     "record prefix is the key's first 10 characters");
  ok(rec.created_ms > 0 && rec.created_ms <= now_ms(), "record has created_ms");
  is_zero(corral_store_key_create(store, "acme", true, &e2b, &rec2, &e_), "create an e2b key");
  ok(e2b && strlen(e2b) == 44 && strncmp(e2b, "e2b_", 4) == 0 && is_hex(e2b + 4, 40),
     "e2b key is e2b_ + 40 hex (%s)", e2b ? e2b : "NULL");
  is_zero(corral_store_key_create(store, "acme", false, &third, NULL, &e_), "create a key without a record");
  ok(key && third && strcmp(key, third) != 0, "two keys differ");
  char *none = NULL;
  is_errno(corral_store_key_create(store, "nobody", false, &none, NULL, &e_), ENOENT,
           "key for an unknown tenant: ENOENT");
  ok(none == NULL, "no key handed out on failure");

  is_str(owner(key), "acme", "lookup finds the key's tenant");
  is_str(owner(e2b), "acme", "lookup finds the e2b key's tenant");
  is_int(corral_store_key_lookup(store, third, NULL, NULL), 1, "lookup with tenant_out NULL");
  is_int(corral_store_key_lookup(store, "ck_000000000000000000000000000000000000000000000000", &tenant, NULL), 0,
         "unknown key: miss");
  ok(tenant == NULL, "a miss leaves tenant_out NULL");
  char *altered = strdup(key);
  altered[20] = altered[20] == 'a' ? 'b' : 'a';
  is_str(owner(altered), "(miss)", "key with one digit changed: miss");
  is_str(owner(rec.prefix), "(miss)", "the prefix alone: miss");
  is_str(owner(""), "(miss)", "empty key: miss");
  free(altered);

  if (is_zero(corral_store_key_list(store, "acme", &v, &n, &e_), "list acme's keys"))
    {
      bool prefixes = n == 3, found = false;
      for (size_t i = 0; i < n; i++)
        {
          prefixes &= v[i].prefix && strlen(v[i].prefix) == 10 && strcmp(v[i].tenant, "acme") == 0;
          found |= strcmp(v[i].id, rec.id) == 0 && strcmp(v[i].prefix, rec.prefix) == 0;
        }
      ok(prefixes, "3 keys listed, each showing a 10-character prefix, not the key (got %zu)", n);
      ok(found, "the list holds the first key's id and prefix");
      corral_keys_free(v, n);
    }
  is_zero(corral_store_key_list(store, "beta", &v, &n, &e_), "list beta's keys");
  is_int(n, 0, "beta has none");
  corral_keys_free(v, n);

  /* Only the SHA-256 is on disk: the hash is found, the key is not. */
  sha256_hex(key, hash);
  ok(db_contains(hash), "the key's SHA-256 is in the database files");
  ok(!db_contains(key) && !db_contains(key + 10), "the clear key is not in corral.db / -wal");
  ok(!db_contains(e2b) && !db_contains(e2b + 10) && !db_contains(third + 10), "nor are the other keys");
  is_int(file_mode("-wal"), 0600, "corral.db-wal is 0600");

  is_errno(corral_store_key_delete(store, "beta", rec2.id, &e_), ENOENT, "delete via another tenant: ENOENT");
  is_str(owner(e2b), "acme", "... and the key still works");
  is_zero(corral_store_key_delete(store, "acme", rec2.id, &e_), "delete the e2b key");
  is_str(owner(e2b), "(miss)", "deleted key: miss");
  is_errno(corral_store_key_delete(store, "acme", rec2.id, &e_), ENOENT, "delete it again: ENOENT");

  /* Deleting a tenant revokes its keys. */
  char *gone = NULL;
  is_zero(corral_store_tenant_create(store, &(corral_tenant_t) { .name = "gone" }, &e_), "create tenant gone");
  is_zero(corral_store_key_create(store, "gone", false, &gone, NULL, &e_), "key for gone");
  is_str(owner(gone), "gone", "its key works");
  is_zero(corral_store_tenant_delete(store, "gone", &e_), "delete tenant gone");
  is_str(owner(gone), "(miss)", "its key no longer works");
  is_str(sql("SELECT count(*) FROM api_keys WHERE tenant = 'gone'"), "0", "no key rows left for gone");
  is_zero(corral_store_tenant_create(store, &(corral_tenant_t) { .name = "gone" }, &e_), "recreate gone");
  is_str(owner(gone), "(miss)", "the old key stays revoked");
  corral_store_tenant_delete(store, "gone", NULL);

  kept_key = key;
  free(e2b);
  free(third);
  free(gone);
  corral_key_release(&rec);
  corral_key_release(&rec2);
}

static corral_sandbox_rec_t sb(char *id, char *tenant, int64_t created)
{
  return (corral_sandbox_rec_t) { .id = id, .tenant = tenant, .template_name = "base", .created_ms = created,
                                   .expires_ms = created + 60000, .metadata_json = "{\"k\":\"v\"}",
                                   .limits_json = "{\"memory_mb\":512}", .env_json = "{\"A\":\"1\"}",
                                   .runtime_json = "{\"pid\":42}" };
}

/* The ids of a list call, comma-separated, or "ERR". */
static char *list_ids(const char *tenant, const char *state)
{
  corral_sandbox_rec_t *v = NULL;
  size_t n = 0;
  char *buf = NULL;
  size_t size = 0;
  if (corral_store_sandbox_list(store, tenant, state, &v, &n, NULL) < 0)
    return strdup("ERR");
  FILE *f = open_memstream(&buf, &size);
  for (size_t i = 0; i < n; i++)
    fprintf(f, "%s%s", i ? "," : "", v[i].id);
  fclose(f);
  corral_sandbox_recs_free(v, n);
  return buf;
}

#define is_list(tenant, state, want, ...)                 \
  ({ char *l_ = list_ids(tenant, state);                   \
     is_str(l_, want, __VA_ARGS__); free(l_); })

static void test_sandboxes(void)
{
  corral_sandbox_rec_t r = { 0 }, a = sb("sb1", "acme", 1000), b = sb("sb2", "acme", 3000),
                       c = sb("sb3", "beta", 2000), d = sb("sb4", "acme", 4000);
  d.state = "ended", d.end_reason = "killed", d.ended_ms = 4500;
  c.template_name = c.metadata_json = c.limits_json = c.env_json = c.runtime_json = NULL;
  is_zero(corral_store_sandbox_put(store, &a, &e_), "put sb1");
  is_zero(corral_store_sandbox_put(store, &b, &e_), "put sb2");
  is_zero(corral_store_sandbox_put(store, &c, &e_), "put sb3 (NULL fields)");
  is_zero(corral_store_sandbox_put(store, &d, &e_), "put sb4 (ended)");
  is_errno(corral_store_sandbox_put(store, &(corral_sandbox_rec_t) { .id = "" }, &e_), EINVAL, "empty id: EINVAL");
  is_errno(corral_store_sandbox_put(store, &(corral_sandbox_rec_t) { 0 }, &e_), EINVAL, "no id: EINVAL");

  if (is_zero(corral_store_sandbox_get(store, "sb1", &r, &e_), "get sb1"))
    {
      ok(strcmp(r.id, "sb1") == 0 && strcmp(r.tenant, "acme") == 0 && strcmp(r.template_name, "base") == 0,
         "id, tenant, template");
      is_str(r.state, "running", "a NULL state is stored as running");
      ok(r.end_reason == NULL && r.ended_ms == 0, "no end while running");
      ok(r.created_ms == 1000 && r.expires_ms == 61000, "times");
      ok(strcmp(r.metadata_json, a.metadata_json) == 0 && strcmp(r.limits_json, a.limits_json) == 0
             && strcmp(r.env_json, a.env_json) == 0 && strcmp(r.runtime_json, a.runtime_json) == 0,
         "JSON fields come back as given");
      corral_sandbox_rec_release(&r);
    }
  ok(corral_store_sandbox_get(store, "sb3", &r, NULL) == 0 && r.template_name == NULL && r.metadata_json == NULL
         && r.runtime_json == NULL, "NULL fields stay NULL");
  corral_sandbox_rec_release(&r);
  is_errno(corral_store_sandbox_get(store, "nope", &r, &e_), ENOENT, "get unknown sandbox: ENOENT");

  is_list(NULL, NULL, "sb4,sb2,sb3,sb1", "list all: newest first");
  is_list("acme", NULL, "sb4,sb2,sb1", "list by tenant");
  is_list(NULL, "running", "sb2,sb3,sb1", "list by state");
  is_list("acme", "running", "sb2,sb1", "list by tenant and state");
  is_list(NULL, "ended", "sb4", "list ended");
  is_list("nobody", NULL, "", "list of an unknown tenant is empty");

  is_zero(corral_store_sandbox_set_expiry(store, "sb1", 99000, &e_), "set_expiry sb1");
  ok(corral_store_sandbox_get(store, "sb1", &r, NULL) == 0 && r.expires_ms == 99000, "sb1 expires at 99000");
  corral_sandbox_rec_release(&r);
  is_errno(corral_store_sandbox_set_expiry(store, "nope", 1, &e_), ENOENT, "set_expiry unknown: ENOENT");
  ok(corral_store_sandbox_get(store, "sb1", &r, NULL) == 0 && r.network_json == NULL, "no network policy at first");
  corral_sandbox_rec_release(&r);
  is_zero(corral_store_sandbox_set_network(store, "sb1", "{\"mode\":\"open\"}", &e_), "set_network sb1");
  ok(corral_store_sandbox_get(store, "sb1", &r, NULL) == 0 && r.network_json
         && strcmp(r.network_json, "{\"mode\":\"open\"}") == 0 && r.expires_ms == 99000,
     "sb1's network policy reads back, its expiry untouched");
  corral_sandbox_rec_release(&r);
  is_errno(corral_store_sandbox_set_network(store, "nope", "{}", &e_), ENOENT, "set_network unknown: ENOENT");
  is_zero(corral_store_sandbox_set_ended(store, "sb2", "timeout", 5000, &e_), "set_ended sb2");
  is_errno(corral_store_sandbox_set_ended(store, "nope", "x", 1, &e_), ENOENT, "set_ended unknown: ENOENT");
  ok(corral_store_sandbox_get(store, "sb2", &r, NULL) == 0 && strcmp(r.state, "ended") == 0 && r.end_reason
         && strcmp(r.end_reason, "timeout") == 0 && r.ended_ms == 5000, "sb2 is ended: timeout at 5000");
  ok(r.expires_ms == 63000 && r.runtime_json && strcmp(r.runtime_json, "{\"pid\":42}") == 0,
     "other fields untouched");
  corral_sandbox_rec_release(&r);
  is_list("acme", "running", "sb1", "running acme sandboxes after set_ended");

  is_zero(corral_store_event_add(store, "sb1", "created", "{\"by\":\"test\"}", &e_), "event on sb1");
  is_zero(corral_store_event_add(store, "sb1", "timeout_reset", NULL, &e_), "event without detail");
  is_zero(corral_store_event_add(store, "sb2", "ended", NULL, &e_), "event on sb2");
  is_errno(corral_store_event_add(store, "nope", "created", NULL, &e_), ENOENT, "event on unknown sandbox: ENOENT");
  is_errno(corral_store_event_add(store, "sb1", "", NULL, &e_), EINVAL, "event without type: EINVAL");

  /* Upsert: fields replaced, row and events kept. */
  a.template_name = "python";
  a.metadata_json = "{\"k\":\"w\"}";
  a.expires_ms = 123456;
  is_zero(corral_store_sandbox_put(store, &a, &e_), "put sb1 again");
  if (is_zero(corral_store_sandbox_get(store, "sb1", &r, &e_), "get sb1 after upsert"))
    {
      ok(strcmp(r.template_name, "python") == 0 && strcmp(r.metadata_json, "{\"k\":\"w\"}") == 0
             && r.expires_ms == 123456, "upsert replaces the fields");
      ok(strcmp(r.tenant, "acme") == 0 && r.created_ms == 1000 && strcmp(r.env_json, a.env_json) == 0
             && strcmp(r.state, "running") == 0, "and keeps the rest");
      corral_sandbox_rec_release(&r);
    }
  is_list(NULL, NULL, "sb4,sb2,sb3,sb1", "still one row per sandbox");
  is_str(sql("SELECT count(*) FROM events WHERE sandbox = 'sb1'"), "2", "upsert keeps sb1's events");

  is_int(corral_store_sandbox_purge(store, 4500, NULL), 0, "purge before 4500: none (strictly before)");
  is_int(corral_store_sandbox_purge(store, 4501, NULL), 1, "purge before 4501: sb4");
  is_errno(corral_store_sandbox_get(store, "sb4", &r, &e_), ENOENT, "sb4 is purged");
  is_int(corral_store_sandbox_purge(store, INT64_MAX, NULL), 1, "purge everything ended: sb2");
  is_str(sql("SELECT count(*) FROM events WHERE sandbox = 'sb2'"), "0", "sb2's events went with it");
  is_list(NULL, NULL, "sb3,sb1", "running sandboxes are left");
  is_int(corral_store_sandbox_purge(store, INT64_MAX, NULL), 0, "nothing left to purge");
}

/* A database made by the first schema (before sandboxes had a network
 * column) is migrated on open and keeps its rows. */
static void test_migration(void)
{
  char dir[] = TMP_PREFIX "XXXXXX", path[96];
  sqlite3 *db = NULL;
  corral_store_t *s2 = NULL;
  corral_sandbox_rec_t r = { 0 };
  if (!mkdtemp(dir))
    return (void) ok(false, "mkdtemp");
  snprintf(path, sizeof(path), "%s/corral.db", dir);
  ok(sqlite3_open(path, &db) == SQLITE_OK
         && sqlite3_exec(db,
                         "CREATE TABLE sandboxes (id TEXT PRIMARY KEY, tenant TEXT, template TEXT, state TEXT NOT "
                         "NULL, end_reason TEXT, created_ms INTEGER NOT NULL DEFAULT 0, expires_ms INTEGER NOT NULL "
                         "DEFAULT 0, ended_ms INTEGER NOT NULL DEFAULT 0, metadata TEXT, limits TEXT, env TEXT, "
                         "runtime TEXT);"
                         "INSERT INTO sandboxes (id, tenant, state) VALUES ('old', 'acme', 'running');"
                         "PRAGMA user_version = 1;",
                         NULL, NULL, NULL) == SQLITE_OK,
     "a version 1 database");
  sqlite3_close(db);
  is_zero(corral_store_open(dir, &s2, &e_), "open migrates it");
  ok(s2 && corral_store_sandbox_get(s2, "old", &r, NULL) == 0 && strcmp(r.tenant, "acme") == 0 && !r.network_json,
     "its sandbox row is still there, with no network policy");
  corral_sandbox_rec_release(&r);
  ok(s2 && corral_store_sandbox_set_network(s2, "old", "{}", NULL) == 0, "and takes one");
  if (s2)
    corral_store_close(s2);
  ok(nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) == 0, "remove the migration test dir");
}

static void test_reopen(void)
{
  corral_tenant_t t = { 0 };
  corral_sandbox_rec_t r = { 0 };
  corral_store_close(store);
  store = NULL;
  if (!is_zero(corral_store_open(tmpdir, &store, &e_), "reopen the store in the same directory"))
    bail_out();
  ok(corral_store_tenant_get(store, "acme", &t, NULL) == 0 && t.max_sandboxes == 10, "acme is still there");
  corral_tenant_release(&t);
  is_str(owner(kept_key), "acme", "its key still works");
  ok(corral_store_sandbox_get(store, "sb1", &r, NULL) == 0 && r.template_name
         && strcmp(r.template_name, "python") == 0 && r.expires_ms == 123456, "sb1 as last written");
  corral_sandbox_rec_release(&r);
  is_list(NULL, NULL, "sb3,sb1", "the same sandboxes");
  is_str(sql("SELECT count(*) FROM events WHERE sandbox = 'sb1'"), "2", "and sb1's events");
}

#define THREADS 8
#define ROUNDS 20

struct worker
{
  int index, errors;
  char first_error[200];
};

static void fail(struct worker *w, const char *what, corral_error_t *e)
{
  if (w->errors++ == 0)
    snprintf(w->first_error, sizeof(w->first_error), "%s: %s", what, corral_error_message(*e));
  corral_error_release(e);
}

static void *work(void *arg)
{
  struct worker *w = arg;
  for (int j = 0; j < ROUNDS; j++)
    {
      char name[32], id[32], *key = NULL, *owner = NULL;
      corral_error_t e = NULL;
      corral_sandbox_rec_t r = { 0 }, *v = NULL;
      size_t n = 0;
      snprintf(name, sizeof(name), "t%d-%d", w->index, j);
      snprintf(id, sizeof(id), "c%d-%d", w->index, j);
      corral_sandbox_rec_t rec = sb(id, name, 100000 + w->index * ROUNDS + j);
      if (corral_store_tenant_create(store, &(corral_tenant_t) { .name = name }, &e) < 0)
        fail(w, "tenant_create", &e);
      if (corral_store_key_create(store, name, j % 2, &key, NULL, &e) < 0)
        fail(w, "key_create", &e);
      if (key && (corral_store_key_lookup(store, key, &owner, &e) != 1 || owner == NULL || strcmp(owner, name)))
        fail(w, "key_lookup", &e);
      if (corral_store_sandbox_put(store, &rec, &e) < 0)
        fail(w, "sandbox_put", &e);
      if (corral_store_sandbox_get(store, id, &r, &e) < 0 || strcmp(r.tenant, name) != 0)
        fail(w, "sandbox_get", &e);
      if (corral_store_event_add(store, id, "created", NULL, &e) < 0)
        fail(w, "event_add", &e);
      if (corral_store_sandbox_list(store, name, "running", &v, &n, &e) < 0 || n != 1)
        fail(w, "sandbox_list", &e);
      corral_sandbox_recs_free(v, n);
      corral_sandbox_rec_release(&r);
      free(key);
      free(owner);
    }
  return NULL;
}

static void test_threads(void)
{
  pthread_t tid[THREADS];
  struct worker w[THREADS];
  int errors = 0, started;
  corral_tenant_t *v = NULL;
  size_t n = 0;
  for (started = 0; started < THREADS; started++)
    {
      w[started] = (struct worker) { .index = started };
      if (pthread_create(&tid[started], NULL, work, &w[started]) != 0)
        break;
    }
  for (int i = 0; i < started; i++)
    pthread_join(tid[i], NULL);
  is_int(started, THREADS, "%d threads ran", THREADS);
  for (int i = 0; i < started; i++)
    {
      errors += w[i].errors;
      if (w[i].errors)
        diag("thread %d: %d errors, first: %s", i, w[i].errors, w[i].first_error);
    }
  is_int(errors, 0, "no errors from %d threads x %d rounds", THREADS, ROUNDS);
  corral_store_tenant_list(store, &v, &n, NULL);
  is_int(n, 4 + THREADS * ROUNDS, "every tenant was created");
  corral_tenants_free(v, n);
  is_int(atol(sql("SELECT count(*) FROM sandboxes WHERE id LIKE 'c%'")), THREADS * ROUNDS, "every sandbox row");
  is_int(atol(sql("SELECT count(*) FROM api_keys")), 2 + THREADS * ROUNDS, "every key row");
}

int main(void)
{
  if (mkdtemp(tmpdir) == NULL)
    {
      perror("mkdtemp");
      return 1;
    }
  snprintf(dbpath, sizeof(dbpath), "%s/corral.db", tmpdir);
  test_open();
  test_tenants();
  test_keys();
  test_sandboxes();
  test_migration();
  test_reopen();
  test_threads();
  corral_store_close(store);
  free(kept_key);
  remove_tmpdir();
  struct stat st;
  ok(stat(tmpdir, &st) < 0 && errno == ENOENT, "the temporary directory is removed");
  return done_testing();
}
