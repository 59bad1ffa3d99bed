/* Durable state of the daemon: one SQLite database, <dir>/corral.db, in WAL
 * mode.
 *
 * One connection serialised by a mutex: the daemon writes a few rows per
 * sandbox lifecycle, far below what one connection sustains, and a single
 * connection means our own threads never meet SQLITE_BUSY.  Statements are
 * prepared once, on first use, and kept until the store is closed. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include "../common/utils.h"
#include "store_internal.h"

struct corral_store_s
{
  sqlite3 *db;
  pthread_mutex_t lock;
  sqlite3_stmt *stmts[CORRAL__STMT_COUNT];
};

/* Schema migrations: entry i moves the database from user_version i to
 * i + 1.  Entries are never edited once released; a change is a new entry. */
static const char *const migrations[] = {
  /* 1: first schema. */
  "CREATE TABLE tenants ("
  "  name TEXT PRIMARY KEY,"
  "  max_sandboxes INTEGER NOT NULL DEFAULT 0,"
  "  max_memory_mb INTEGER NOT NULL DEFAULT 0,"
  "  created_ms INTEGER NOT NULL);"
  /* Deleting a tenant revokes its keys. */
  "CREATE TABLE api_keys ("
  "  id TEXT PRIMARY KEY,"
  "  tenant TEXT NOT NULL REFERENCES tenants(name) ON DELETE CASCADE,"
  "  hash TEXT NOT NULL UNIQUE,"
  "  prefix TEXT NOT NULL,"
  "  created_ms INTEGER NOT NULL);"
  "CREATE INDEX api_keys_tenant ON api_keys(tenant, created_ms);"
  /* No foreign key on tenant: sandbox rows outlive their tenant. */
  "CREATE TABLE sandboxes ("
  "  id TEXT PRIMARY KEY,"
  "  tenant TEXT,"
  "  template TEXT,"
  "  state TEXT NOT NULL,"
  "  end_reason TEXT,"
  "  created_ms INTEGER NOT NULL DEFAULT 0,"
  "  expires_ms INTEGER NOT NULL DEFAULT 0,"
  "  ended_ms INTEGER NOT NULL DEFAULT 0,"
  "  metadata TEXT, limits TEXT, env TEXT, runtime TEXT);"
  "CREATE INDEX sandboxes_tenant ON sandboxes(tenant, state, created_ms);"
  "CREATE INDEX sandboxes_state ON sandboxes(state, ended_ms);"
  "CREATE INDEX sandboxes_created ON sandboxes(created_ms);"
  /* Events go with their sandbox when it is purged. */
  "CREATE TABLE events ("
  "  id INTEGER PRIMARY KEY,"
  "  sandbox TEXT NOT NULL REFERENCES sandboxes(id) ON DELETE CASCADE,"
  "  time_ms INTEGER NOT NULL,"
  "  type TEXT NOT NULL,"
  "  detail TEXT);"
  "CREATE INDEX events_sandbox ON events(sandbox, time_ms);"
  "CREATE TABLE audit ("
  "  id INTEGER PRIMARY KEY,"
  "  time_ms INTEGER NOT NULL,"
  "  tenant TEXT,"
  "  sandbox TEXT,"
  "  action TEXT NOT NULL,"
  "  json TEXT NOT NULL);"
  "CREATE INDEX audit_time ON audit(time_ms);"
  "CREATE INDEX audit_tenant ON audit(tenant, time_ms);"
  "CREATE INDEX audit_sandbox ON audit(sandbox, time_ms);",
  /* 2: a sandbox's network policy (JSON), to re-apply on re-adoption. */
  "ALTER TABLE sandboxes ADD COLUMN network TEXT;",
};
#define SCHEMA_VERSION ((int) (sizeof(migrations) / sizeof(migrations[0])))

/* ---- plumbing shared with audit.c ---- */

corral_store_t *corral__store_lock(corral_store_t *s)
{
  pthread_mutex_lock(&s->lock);
  return s;
}

void corral__store_unlockp(corral_store_t **s)
{
  if (*s)
    pthread_mutex_unlock(&(*s)->lock);
}

int corral__store_sql_error(corral_store_t *s, int rc, corral_error_t *err, const char *what)
{
  int status = (rc & 0xff) == SQLITE_NOMEM ? ENOMEM : EIO;
  return corral_error_set(err, status, "%s: %s", what, sqlite3_errmsg(s->db));
}

int corral__store_stmt(corral_store_t *s, int slot, const char *sql, sqlite3_stmt **out, corral_error_t *err)
{
  int rc;
  if (s->stmts[slot] == NULL)
    {
      rc = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s->stmts[slot], NULL);
      if (rc != SQLITE_OK)
        return corral__store_sql_error(s, rc, err, "prepare statement");
    }
  *out = s->stmts[slot];
  return 0;
}

/* ---- small helpers ---- */

static int bind_text(sqlite3_stmt *st, int i, const char *v)
{
  /* SQLITE_STATIC: every bound string outlives the step that reads it. */
  return v ? sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);
}

/* A text column as a malloc'd string; NULL stays NULL.  -1 on ENOMEM. */
static int dup_col(sqlite3_stmt *st, int col, char **out)
{
  const unsigned char *v;
  *out = NULL;
  if (sqlite3_column_type(st, col) == SQLITE_NULL)
    return 0;
  v = sqlite3_column_text(st, col);
  if (v == NULL)
    return -1;
  *out = strdup((const char *) v);
  return *out ? 0 : -1;
}

/* Run a statement that returns no rows. */
static int step_done(corral_store_t *s, sqlite3_stmt *st, corral_error_t *err, const char *what)
{
  int rc = sqlite3_step(st);
  return rc == SQLITE_DONE ? 0 : corral__store_sql_error(s, rc, err, what);
}

static void hex_encode(const unsigned char *b, size_t n, char *out)
{
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++)
    {
      out[2 * i] = digits[b[i] >> 4];
      out[2 * i + 1] = digits[b[i] & 0xf];
    }
  out[2 * n] = '\0';
}

/* prefix + 2*nbytes random lowercase hex digits, malloc'd. */
static int random_token(const char *prefix, size_t nbytes, char **out, corral_error_t *err)
{
  unsigned char buf[32];
  size_t plen = strlen(prefix);
  char *tok;
  if (nbytes > sizeof(buf))
    return corral_error_set(err, EINVAL, "random token of %zu bytes", nbytes);
  if (RAND_bytes(buf, (int) nbytes) != 1)
    return corral_error_set(err, EIO, "RAND_bytes failed");
  tok = malloc(plen + 2 * nbytes + 1);
  if (tok == NULL)
    return corral_error_set(err, ENOMEM, "random token");
  memcpy(tok, prefix, plen);
  hex_encode(buf, nbytes, tok + plen);
  /* The bytes are a secret; leave no copy on the stack. */
  OPENSSL_cleanse(buf, sizeof(buf));
  *out = tok;
  return 0;
}

static int sha256_hex(const char *s, char out[65], corral_error_t *err)
{
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(s, strlen(s), md, &len, EVP_sha256(), NULL) != 1 || len != 32)
    return corral_error_set(err, EIO, "SHA-256 failed");
  hex_encode(md, len, out);
  return 0;
}

/* Tenant names go into URLs, logs and audit records: 1-64 of [a-z0-9_-]
 * (docs/api.md). */
static bool valid_tenant_name(const char *name)
{
  size_t n = name ? strlen(name) : 0;
  if (n == 0 || n > 64)
    return false;
  for (const char *p = name; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '-'))
      return false;
  return true;
}

/* Collect the rows of st into a malloc'd array of elements, each filled by
 * read_row (which returns -1 on ENOMEM); release undoes a filled element. */
typedef int (*row_reader)(sqlite3_stmt *st, void *elem);
typedef void (*elem_release)(void *elem);

struct row_array
{
  char *v;
  size_t n, cap, size;
  elem_release release;
};

static void row_array_free(struct row_array *a)
{
  for (size_t i = 0; i < a->n; i++)
    a->release(a->v + i * a->size);
  free(a->v);
  a->v = NULL;
  a->n = 0;
}

static int row_array_grow(struct row_array *a)
{
  size_t cap = a->cap ? a->cap * 2 : 8;
  char *v;
  if (a->n < a->cap)
    return 0;
  v = reallocarray(a->v, cap, a->size);
  if (v == NULL)
    return -1;
  a->v = v;
  a->cap = cap;
  return 0;
}

static int collect_rows(corral_store_t *s, sqlite3_stmt *st, struct row_array *a, row_reader read_row,
                        corral_error_t *err, const char *what)
{
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW)
    {
      if (row_array_grow(a) < 0)
        goto nomem;
      memset(a->v + a->n * a->size, 0, a->size);
      if (read_row(st, a->v + a->n * a->size) < 0)
        {
          a->release(a->v + a->n * a->size);
          goto nomem;
        }
      a->n++;
    }
  if (rc == SQLITE_DONE)
    return 0;
  row_array_free(a);
  return corral__store_sql_error(s, rc, err, what);
nomem:
  row_array_free(a);
  return corral_error_set(err, ENOMEM, "%s", what);
}

/* ---- open, migrate, close ---- */

static int exec_sql(corral_store_t *s, const char *sql, corral_error_t *err, const char *what)
{
  int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
  return rc == SQLITE_OK ? 0 : corral__store_sql_error(s, rc, err, what);
}

/* Run a one-row PRAGMA and hand its row to use(). */
static int pragma_row(corral_store_t *s, const char *sql, void (*use)(sqlite3_stmt *, void *), void *arg,
                      corral_error_t *err)
{
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
  if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
    {
      use(st, arg);
      sqlite3_finalize(st);
      return 0;
    }
  rc = corral__store_sql_error(s, rc, err, sql);
  sqlite3_finalize(st);
  return rc;
}

static void use_int(sqlite3_stmt *st, void *arg)
{
  *(int *) arg = sqlite3_column_int(st, 0);
}

static void use_is_wal(sqlite3_stmt *st, void *arg)
{
  const unsigned char *mode = sqlite3_column_text(st, 0);
  *(bool *) arg = mode && strcmp((const char *) mode, "wal") == 0;
}

static int apply_migrations(corral_store_t *s, corral_error_t *err)
{
  char sql[64];
  int version = 0;
  int r = pragma_row(s, "PRAGMA user_version", use_int, &version, err);
  if (r < 0)
    return r;
  if (version > SCHEMA_VERSION)
    return corral_error_set(err, ENOTSUP, "database schema version %d is newer than this corral's (%d)",
                            version, SCHEMA_VERSION);
  for (; version < SCHEMA_VERSION; version++)
    if (exec_sql(s, migrations[version], err, "migrate schema") < 0)
      return corral_error_wrap(err, "to version %d", version + 1);
  snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", SCHEMA_VERSION);
  return exec_sql(s, sql, err, "set schema version");
}

/* The whole migration is one IMMEDIATE transaction: two daemons opening a
 * fresh database at once cannot both create the tables, and a failed step
 * leaves the previous version intact. */
static int migrate(corral_store_t *s, corral_error_t *err)
{
  int r = exec_sql(s, "BEGIN IMMEDIATE", err, "begin migration");
  if (r < 0)
    return r;
  r = apply_migrations(s, err);
  if (r < 0)
    {
      sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
      return r;
    }
  return exec_sql(s, "COMMIT", err, "commit migration");
}

static int configure(corral_store_t *s, corral_error_t *err)
{
  bool wal = false;
  /* busy_timeout first, so that switching the journal mode waits for a
   * lock held by another process instead of failing. */
  int r = exec_sql(s, "PRAGMA busy_timeout = 5000", err, "set busy_timeout");
  if (r < 0)
    return r;
  /* journal_mode answers with the mode in force: a file system without
   * shared memory would silently keep the rollback journal. */
  r = pragma_row(s, "PRAGMA journal_mode = WAL", use_is_wal, &wal, err);
  if (r < 0)
    return r;
  if (!wal)
    return corral_error_set(err, ENOTSUP, "the database refused WAL mode");
  /* synchronous=NORMAL is durable across process crashes in WAL mode; only
   * a power loss may drop the last transactions. */
  return exec_sql(s, "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON", err, "set pragmas");
}

/* SQLite creates files 0644; the database holds key hashes and audit
 * records, so create it 0600 first (its -wal and -shm files copy the
 * mode of the database). */
static int precreate(const char *path, corral_error_t *err)
{
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0)
    return corral_error_set(err, errno, "open `%s`", path);
  close(fd);
  return 0;
}

static void store_closep(corral_store_t **s)
{
  corral_store_close(*s);
}

int corral_store_open(const char *dir, corral_store_t **out, corral_error_t *err)
{
  __attribute__((cleanup(store_closep))) corral_store_t *s = NULL;
  cleanup_free char *path = NULL;
  int rc;
  if (dir == NULL || out == NULL)
    return corral_error_set(err, EINVAL, "open store: no directory given");
  if (asprintf(&path, "%s/corral.db", dir) < 0)
    return corral_error_set(err, ENOMEM, "open store");
  if (precreate(path, err) < 0)
    return corral_error_wrap(err, "open store");
  s = calloc(1, sizeof(*s));
  if (s == NULL)
    return corral_error_set(err, ENOMEM, "open store");
  pthread_mutex_init(&s->lock, NULL);
  /* NOMUTEX: our own mutex already serialises every use of the handle.
   * NOFOLLOW: like precreate(), refuse a planted symlink. */
  rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_NOFOLLOW, NULL);
  if (rc != SQLITE_OK)
    {
      if (s->db == NULL)
        return corral_error_set(err, ENOMEM, "open `%s`", path);
      return corral__store_sql_error(s, rc, err, path);
    }
  sqlite3_extended_result_codes(s->db, 1);
  if (configure(s, err) < 0 || migrate(s, err) < 0)
    return corral_error_wrap(err, "open `%s`", path);
  *out = steal_pointer(&s);
  return 0;
}

void corral_store_close(corral_store_t *s)
{
  if (s == NULL)
    return;
  for (int i = 0; i < CORRAL__STMT_COUNT; i++)
    sqlite3_finalize(s->stmts[i]);
  if (s->db)
    {
      /* Recommended on close: refreshes planner statistics when useful. */
      sqlite3_exec(s->db, "PRAGMA optimize", NULL, NULL, NULL);
      sqlite3_close(s->db);
    }
  pthread_mutex_destroy(&s->lock);
  free(s);
}

/* ---- tenants ---- */

#define TENANT_COLS "name, max_sandboxes, max_memory_mb, created_ms"

static int read_tenant(sqlite3_stmt *st, void *elem)
{
  corral_tenant_t *t = elem;
  /* Quotas are uint64_t stored in a signed column: the cast round-trips. */
  t->max_sandboxes = (uint64_t) sqlite3_column_int64(st, 1);
  t->max_memory_mb = (uint64_t) sqlite3_column_int64(st, 2);
  t->created_ms = sqlite3_column_int64(st, 3);
  return dup_col(st, 0, &t->name);
}

static void release_tenant(void *elem)
{
  corral_tenant_release(elem);
}

int corral_store_tenant_create(corral_store_t *s, const corral_tenant_t *t, corral_error_t *err)
{
  int rc;
  if (s == NULL || t == NULL || !valid_tenant_name(t->name))
    return corral_error_set(err, EINVAL, "invalid tenant name `%s` (1-64 of a-z, 0-9, _ and -)",
                            t && t->name ? t->name : "");
  corral_store_t *guard cleanup_store_unlock = corral__store_lock(s);
  sqlite3_stmt *st cleanup_stmt_reset = NULL;
  int r = corral__store_stmt(
      s, CORRAL__STMT_TENANT_INSERT, "INSERT INTO tenants (" TENANT_COLS ") VALUES (?1, ?2, ?3, ?4)", &st, err);
  if (r < 0)
    return r;
  bind_text(st, 1, t->name);
  sqlite3_bind_int64(st, 2, (sqlite3_int64) t->max_sandboxes);
  sqlite3_bind_int64(st, 3, (sqlite3_int64) t->max_memory_mb);
  sqlite3_bind_int64(st, 4, t->created_ms ? t->created_ms : corral__wall_ms());
  rc = sqlite3_step(st);
  if (rc == SQLITE_CONSTRAINT_PRIMARYKEY)
    return corral_error_set(err, EEXIST, "tenant `%s`", t->name);
  return rc == SQLITE_DONE ? 0 : corral__store_sql_error(s, rc, err, "create tenant");
}

int corral_store_tenant_get(corral_store_t *s, const char *name, corral_tenant_t *out, corral_error_t *err)
{
  int rc;
  if (s == NULL || name == NULL || out == NULL)
    return corral_error_set(err, EINVAL, "get tenant: missing argument");
  corral_store_t *guard cleanup_store_unlock = corral__store_lock(s);
  sqlite3_stmt *st cleanup_stmt_reset = NULL;
  int r = corral__store_stmt(
      s, CORRAL__STMT_TENANT_GET, "SELECT " TENANT_COLS " FROM tenants WHERE name = ?1", &st, err);
  if (r < 0)
    return r;
  bind_text(st, 1, name);
  rc = sqlite3_step(st);
  if (rc == SQLITE_DONE)
    return corral_error_set(err, ENOENT, "tenant `%s`", name);
  if (rc != SQLITE_ROW)
    return corral__store_sql_error(s, rc, err, "get tenant");
  memset(out, 0, sizeof(*out));
  if (read_tenant(st, out) < 0)
    {
      corral_tenant_release(out);
      return corral_error_set(err, ENOMEM, "get tenant");
    }
  return 0;
}

int corral_store_tenant_list(corral_store_t *s, corral_tenant_t **out, size_t *n, corral_error_t *err)
{
  struct row_array a = { .size = sizeof(corral_tenant_t), .release = release_tenant };
  if (s == NULL || out == NULL || n == NULL)
    return corral_error_set(err, EINVAL, "list tenants: missing argument");
  corral_store_t *guard cleanup_store_unlock = corral__store_lock(s);
  sqlite3_stmt *st cleanup_stmt_reset = NULL;
  int r = corral__store_stmt(
      s, CORRAL__STMT_TENANT_LIST, "SELECT " TENANT_COLS " FROM tenants ORDER BY name", &st, err);
  if (r < 0)
    return r;
  r = collect_rows(s, st, &a, read_tenant, err, "list tenants");
  if (r < 0)
    return r;
  *out = (corral_tenant_t *) a.v;
  *n = a.n;
  return 0;
}

int corral_store_tenant_delete(corral_store_t *s, const char *name, corral_error_t *err)
{
  if (s == NULL || name == NULL)
    return corral_error_set(err, EINVAL, "delete tenant: missing argument");
  corral_store_t *guard cleanup_store_unlock = corral__store_lock(s);
  /* The keys go too: api_keys.tenant is ON DELETE CASCADE. */
  sqlite3_stmt *st cleanup_stmt_reset = NULL;
  int r = corral__store_stmt(
      s, CORRAL__STMT_TENANT_DELETE, "DELETE FROM tenants WHERE name = ?1", &st, err);
  if (r < 0)
    return r;
  bind_text(st, 1, name);
  r = step_done(s, st, err, "delete tenant");
  if (r < 0)
    return r;
  if (sqlite3_changes(s->db) == 0)
    return corral_error_set(err, ENOENT, "tenant `%s`", name);
  return 0;
}

void corral_tenant_release(corral_tenant_t *t)
{
  if (t == NULL)
    return;
  free(t->name);
  memset(t, 0, sizeof(*t));
}

void corral_tenants_free(corral_tenant_t *v, size_t n)
{
  for (size_t i = 0; v && i < n; i++)
    corral_tenant_release(&v[i]);
  free(v);
}

/* ---- keys ---- */

#define KEY_PREFIX_LEN 10

static int read_key(sqlite3_stmt *st, void *elem)
{
  corral_key_t *k = elem;
  k->created_ms = sqlite3_column_int64(st, 3);
  if (dup_col(st, 0, &k->id) < 0 || dup_col(st, 1, &k->tenant) < 0 || dup_col(st, 2, &k->prefix) < 0)
    return -1;
  return 0;
}

static void release_key(void *elem)
{
  corral_key_release(elem);
}

static int insert_key(corral_store_t *s, const corral_key_t *k, const char *hash, corral_error_t *err)
{
  int rc;
  corral_store_t *guard cleanup_store_unlock = corral__store_lock(s);
  sqlite3_stmt *st cleanup_stmt_reset = NULL;
  int r = corral__store_stmt(
      s, CORRAL__STMT_KEY_INSERT,
      "INSERT INTO api_keys (id, tenant, hash, prefix, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)", &st, err);
  if (r < 0)
    return r;
  bind_text(st, 1, k->id);
  bind_text(st, 2, k->tenant);
  bind_text(st, 3, hash);
  bind_text(st, 4, k->prefix);
  sqlite3_bind_int64(st, 5, k->created_ms);
  rc = sqlite3_step(st);
  /* The foreign key is the existence check, atomic with the insert. */
  if (rc == SQLITE_CONSTRAINT_FOREIGNKEY)
    return corral_error_set(err, ENOENT, "tenant `%s`", k->tenant);
  /* A collision of 64 or more random bits: report it rather than overwrite. */
  if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE)
    return corral_error_set(err, EEXIST, "key id or hash collision");
  return rc == SQLITE_DONE ? 0 : corral__store_sql_error(s, rc, err, "create key");
}

int corral_store_key_create(corral_store_t *s, const char *tenant, bool e2b_format, char **key_out,
                            corral_key_t *rec, corral_error_t *err)
{
  cleanup_free char *key = NULL;
  corral_key_t k = { 0 };
  char hash[65];
  int r;
  if (s == NULL || tenant == NULL || key_out == NULL)
    return corral_error_set(err, EINVAL, "create key: missing argument");
  /* e2b keys are "e2b_" + 40 hex, the format E2B clients validate. */
  if (random_token(e2b_format ? "e2b_" : "ck_", e2b_format ? 20 : 24, &key, err) < 0
      || random_token("key_", 8, &k.id, err) < 0 || sha256_hex(key, hash, err) < 0)
    {
      corral_key_release(&k);
      return corral_error_wrap(err, "create key");
    }
  /* Everything the caller gets is built before the insert, so that a
   * failure afterwards cannot leave a stored key nobody has seen. */
  k.tenant = strdup(tenant);
  k.prefix = strndup(key, KEY_PREFIX_LEN);
  k.created_ms = corral__wall_ms();
  if (k.tenant == NULL || k.prefix == NULL)
    r = corral_error_set(err, ENOMEM, "create key");
  else
    r = insert_key(s, &k, hash, err);
  if (r < 0 || rec == NULL)
    corral_key_release(&k);
  else
    *rec = k;
  if (r == 0)
    *key_out = steal_pointer(&key);
  return r;
}

int corral_store_key_lookup(corral_store_t *s, const char *key, char **tenant_out, corral_error_t *err)
{
  char hash[65];
  char *tenant = NULL;
  int r, rc;
  if (s == NULL || key == NULL)
    return corral_error_set(err, EINVAL, "look up key: missing argument");
  /* Looking up by hash keeps the comparison off the secret itself: timing
   * of the index search leaks at most bits of a SHA-256 the caller cannot
   * steer. */
  r = sha256_hex(key, hash, err);
  if (r < 0)
    return r;
  corral_store_t *guard cleanup_store_unlock = corral__store_lock(s);
  sqlite3_stmt *st cleanup_stmt_reset = NULL;
  r = corral__store_stmt(s, CORRAL__STMT_KEY_LOOKUP, "SELECT tenant FROM api_keys WHERE hash = ?1", &st, err);
  if (r < 0)
    return r;
  bind_text(st, 1, hash);
  rc = sqlite3_step(st);
  if (rc == SQLITE_DONE)
    return 0;
  if (rc != SQLITE_ROW)
    return corral__store_sql_error(s, rc, err, "look up key");
  if (tenant_out == NULL)
    return 1;
  if (dup_col(st, 0, &tenant) < 0 || tenant == NULL)
    return corral_error_set(err, ENOMEM, "look up key");
  *tenant_out = tenant;
  return 1;
}

int corral_store_key_list(corral_store_t *s, const char *tenant, corral_key_t **out, size_t *n, corral_error_t *err)
{
  struct row_array a = { .size = sizeof(corral_key_t), .release = release_key };
  if (s == NULL || tenant == NULL || out == NULL || n == NULL)
    return corral_error_set(err, EINVAL, "list keys: missing argument");
  corral_store_t *guard cleanup_store_unlock = corral__store_lock(s);
  sqlite3_stmt *st cleanup_stmt_reset = NULL;
  int r = corral__store_stmt(
      s, CORRAL__STMT_KEY_LIST,
      "SELECT id, tenant, prefix, created_ms FROM api_keys WHERE tenant = ?1 ORDER BY created_ms, id", &st, err);
  if (r < 0)
    return r;
  bind_text(st, 1, tenant);
  r = collect_rows(s, st, &a, read_key, err, "list keys");
  if (r < 0)
    return r;
  *out = (corral_key_t *) a.v;
  *n = a.n;
  return 0;
}

int corral_store_key_delete(corral_store_t *s, const char *tenant, const char *id, corral_error_t *err)
{
  if (s == NULL || tenant == NULL || id == NULL)
    return corral_error_set(err, EINVAL, "delete key: missing argument");
  corral_store_t *guard cleanup_store_unlock = corral__store_lock(s);
  sqlite3_stmt *st cleanup_stmt_reset = NULL;
  int r = corral__store_stmt(
      s, CORRAL__STMT_KEY_DELETE, "DELETE FROM api_keys WHERE tenant = ?1 AND id = ?2", &st, err);
  if (r < 0)
    return r;
  bind_text(st, 1, tenant);
  bind_text(st, 2, id);
  r = step_done(s, st, err, "delete key");
  if (r < 0)
    return r;
  /* Same answer for "no such key" and "someone else's key": a tenant
   * learns nothing about other tenants' key ids. */
  if (sqlite3_changes(s->db) == 0)
    return corral_error_set(err, ENOENT, "key `%s` of tenant `%s`", id, tenant);
  return 0;
}

void corral_key_release(corral_key_t *k)
{
  if (k == NULL)
    return;
  free(k->id);
  free(k->tenant);
  free(k->prefix);
  memset(k, 0, sizeof(*k));
}

void corral_keys_free(corral_key_t *v, size_t n)
{
  for (size_t i = 0; v && i < n; i++)
    corral_key_release(&v[i]);
  free(v);
}

/* ---- sandboxes ---- */

#define SANDBOX_COLS                                                                              \
  "id, tenant, template, state, end_reason, created_ms, expires_ms, ended_ms, metadata, limits, " \
  "env, runtime, network"

static int read_sandbox(sqlite3_stmt *st, void *elem)
{
  corral_sandbox_rec_t *r = elem;
  r->created_ms = sqlite3_column_int64(st, 5);
  r->expires_ms = sqlite3_column_int64(st, 6);
  r->ended_ms = sqlite3_column_int64(st, 7);
  if (dup_col(st, 0, &r->id) < 0 || dup_col(st, 1, &r->tenant) < 0 || dup_col(st, 2, &r->template_name) < 0
      || dup_col(st, 3, &r->state) < 0 || dup_col(st, 4, &r->end_reason) < 0
      || dup_col(st, 8, &r->metadata_json) < 0 || dup_col(st, 9, &r->limits_json) < 0
      || dup_col(st, 10, &r->env_json) < 0 || dup_col(st, 11, &r->runtime_json) < 0
      || dup_col(st, 12, &r->network_json) < 0)
    return -1;
  return 0;
}

static void release_sandbox(void *elem)
{
  corral_sandbox_rec_release(elem);
}

int corral_store_sandbox_put(corral_store_t *s, const corral_sandbox_rec_t *rec, corral_error_t *err)
{
  if (s == NULL || rec == NULL || rec->id == NULL || rec->id[0] == '\0')
    return corral_error_set(err, EINVAL, "put sandbox: no id");
  corral_store_t *guard cleanup_store_unlock = corral__store_lock(s);
  /* An upsert, not INSERT OR REPLACE: REPLACE deletes the old row first,
   * which would cascade to the sandbox's events. */
  sqlite3_stmt *st cleanup_stmt_reset = NULL;
  int r = corral__store_stmt(
      s, CORRAL__STMT_SANDBOX_PUT,
      "INSERT INTO sandboxes (" SANDBOX_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) "
      "ON CONFLICT(id) DO UPDATE SET tenant = excluded.tenant, template = excluded.template, "
      "state = excluded.state, end_reason = excluded.end_reason, created_ms = excluded.created_ms, "
      "expires_ms = excluded.expires_ms, ended_ms = excluded.ended_ms, metadata = excluded.metadata, "
      "limits = excluded.limits, env = excluded.env, runtime = excluded.runtime, network = excluded.network",
      &st, err);
  if (r < 0)
    return r;
  bind_text(st, 1, rec->id);
  bind_text(st, 2, rec->tenant);
  bind_text(st, 3, rec->template_name);
  bind_text(st, 4, rec->state ? rec->state : "running");
  bind_text(st, 5, rec->end_reason);
  sqlite3_bind_int64(st, 6, rec->created_ms);
  sqlite3_bind_int64(st, 7, rec->expires_ms);
  sqlite3_bind_int64(st, 8, rec->ended_ms);
  bind_text(st, 9, rec->metadata_json);
  bind_text(st, 10, rec->limits_json);
  bind_text(st, 11, rec->env_json);
  bind_text(st, 12, rec->runtime_json);
  bind_text(st, 13, rec->network_json);
  return step_done(s, st, err, "put sandbox");
}

int corral_store_sandbox_get(corral_store_t *s, const char *id, corral_sandbox_rec_t *out, corral_error_t *err)
{
  int rc;
  if (s == NULL || id == NULL || out == NULL)
    return corral_error_set(err, EINVAL, "get sandbox: missing argument");
  corral_store_t *guard cleanup_store_unlock = corral__store_lock(s);
  sqlite3_stmt *st cleanup_stmt_reset = NULL;
  int r = corral__store_stmt(
      s, CORRAL__STMT_SANDBOX_GET, "SELECT " SANDBOX_COLS " FROM sandboxes WHERE id = ?1", &st, err);
  if (r < 0)
    return r;
  bind_text(st, 1, id);
  rc = sqlite3_step(st);
  if (rc == SQLITE_DONE)
    return corral_error_set(err, ENOENT, "sandbox `%s`", id);
  if (rc != SQLITE_ROW)
    return corral__store_sql_error(s, rc, err, "get sandbox");
  memset(out, 0, sizeof(*out));
  if (read_sandbox(st, out) < 0)
    {
      corral_sandbox_rec_release(out);
      return corral_error_set(err, ENOMEM, "get sandbox");
    }
  return 0;
}

int corral_store_sandbox_list(corral_store_t *s, const char *tenant, const char *state, corral_sandbox_rec_t **out,
                              size_t *n, corral_error_t *err)
{
  static const char *const where[4] = { "", "WHERE tenant = ?1 ", "WHERE state = ?2 ",
                                        "WHERE tenant = ?1 AND state = ?2 " };
  struct row_array a = { .size = sizeof(corral_sandbox_rec_t), .release = release_sandbox };
  int mask = (tenant ? 1 : 0) | (state ? 2 : 0);
  char sql[256];
  if (s == NULL || out == NULL || n == NULL)
    return corral_error_set(err, EINVAL, "list sandboxes: missing argument");
  snprintf(sql, sizeof(sql), "SELECT " SANDBOX_COLS " FROM sandboxes %sORDER BY created_ms DESC, rowid DESC",
           where[mask]);
  corral_store_t *guard cleanup_store_unlock = corral__store_lock(s);
  sqlite3_stmt *st cleanup_stmt_reset = NULL;
  int r = corral__store_stmt(s, CORRAL__STMT_SANDBOX_LIST + mask, sql, &st, err);
  if (r < 0)
    return r;
  if (tenant)
    bind_text(st, 1, tenant);
  if (state)
    bind_text(st, 2, state);
  r = collect_rows(s, st, &a, read_sandbox, err, "list sandboxes");
  if (r < 0)
    return r;
  *out = (corral_sandbox_rec_t *) a.v;
  *n = a.n;
  return 0;
}

/* Run an UPDATE on one sandbox row; ENOENT when no row has that id. */
static int update_sandbox(corral_store_t *s, sqlite3_stmt *st, const char *id, corral_error_t *err,
                          const char *what)
{
  int r = step_done(s, st, err, what);
  if (r < 0)
    return r;
  if (sqlite3_changes(s->db) == 0)
    return corral_error_set(err, ENOENT, "%s: sandbox `%s`", what, id);
  return 0;
}

int corral_store_sandbox_set_expiry(corral_store_t *s, const char *id, int64_t expires_ms, corral_error_t *err)
{
  if (s == NULL || id == NULL)
    return corral_error_set(err, EINVAL, "set expiry: missing argument");
  corral_store_t *guard cleanup_store_unlock = corral__store_lock(s);
  sqlite3_stmt *st cleanup_stmt_reset = NULL;
  int r = corral__store_stmt(
      s, CORRAL__STMT_SANDBOX_EXPIRY, "UPDATE sandboxes SET expires_ms = ?2 WHERE id = ?1", &st, err);
  if (r < 0)
    return r;
  bind_text(st, 1, id);
  sqlite3_bind_int64(st, 2, expires_ms);
  return update_sandbox(s, st, id, err, "set expiry");
}

int corral_store_sandbox_set_network(corral_store_t *s, const char *id, const char *network_json, corral_error_t *err)
{
  if (s == NULL || id == NULL)
    return corral_error_set(err, EINVAL, "set network: missing argument");
  corral_store_t *guard cleanup_store_unlock = corral__store_lock(s);
  sqlite3_stmt *st cleanup_stmt_reset = NULL;
  int r = corral__store_stmt(s, CORRAL__STMT_SANDBOX_NETWORK, "UPDATE sandboxes SET network = ?2 WHERE id = ?1", &st,
                             err);
  if (r < 0)
    return r;
  bind_text(st, 1, id);
  bind_text(st, 2, network_json);
  return update_sandbox(s, st, id, err, "set network");
}

int corral_store_sandbox_set_ended(corral_store_t *s, const char *id, const char *reason, int64_t ended_ms,
                                   corral_error_t *err)
{
  if (s == NULL || id == NULL)
    return corral_error_set(err, EINVAL, "set ended: missing argument");
  corral_store_t *guard cleanup_store_unlock = corral__store_lock(s);
  sqlite3_stmt *st cleanup_stmt_reset = NULL;
  int r = corral__store_stmt(
      s, CORRAL__STMT_SANDBOX_ENDED,
      "UPDATE sandboxes SET state = 'ended', end_reason = ?2, ended_ms = ?3 WHERE id = ?1", &st, err);
  if (r < 0)
    return r;
  bind_text(st, 1, id);
  bind_text(st, 2, reason);
  sqlite3_bind_int64(st, 3, ended_ms);
  return update_sandbox(s, st, id, err, "set ended");
}

int corral_store_sandbox_purge(corral_store_t *s, int64_t before_ms, corral_error_t *err)
{
  if (s == NULL)
    return corral_error_set(err, EINVAL, "purge sandboxes: no store");
  corral_store_t *guard cleanup_store_unlock = corral__store_lock(s);
  /* Their events go too (ON DELETE CASCADE). */
  sqlite3_stmt *st cleanup_stmt_reset = NULL;
  int r = corral__store_stmt(
      s, CORRAL__STMT_SANDBOX_PURGE, "DELETE FROM sandboxes WHERE state = 'ended' AND ended_ms < ?1", &st, err);
  if (r < 0)
    return r;
  sqlite3_bind_int64(st, 1, before_ms);
  r = step_done(s, st, err, "purge sandboxes");
  if (r < 0)
    return r;
  return sqlite3_changes(s->db);
}

void corral_sandbox_rec_release(corral_sandbox_rec_t *r)
{
  if (r == NULL)
    return;
  free(r->id);
  free(r->tenant);
  free(r->template_name);
  free(r->state);
  free(r->end_reason);
  free(r->metadata_json);
  free(r->limits_json);
  free(r->env_json);
  free(r->runtime_json);
  free(r->network_json);
  memset(r, 0, sizeof(*r));
}

void corral_sandbox_recs_free(corral_sandbox_rec_t *v, size_t n)
{
  for (size_t i = 0; v && i < n; i++)
    corral_sandbox_rec_release(&v[i]);
  free(v);
}

/* ---- events ---- */

int corral_store_event_add(corral_store_t *s, const char *sandbox, const char *type, const char *detail_json,
                           corral_error_t *err)
{
  int rc;
  if (s == NULL || sandbox == NULL || type == NULL || type[0] == '\0')
    return corral_error_set(err, EINVAL, "add event: missing sandbox or type");
  corral_store_t *guard cleanup_store_unlock = corral__store_lock(s);
  sqlite3_stmt *st cleanup_stmt_reset = NULL;
  int r = corral__store_stmt(
      s, CORRAL__STMT_EVENT_ADD, "INSERT INTO events (sandbox, time_ms, type, detail) VALUES (?1, ?2, ?3, ?4)", &st,
      err);
  if (r < 0)
    return r;
  bind_text(st, 1, sandbox);
  sqlite3_bind_int64(st, 2, corral__wall_ms());
  bind_text(st, 3, type);
  bind_text(st, 4, detail_json);
  rc = sqlite3_step(st);
  /* Events belong to a sandbox row (and are purged with it). */
  if (rc == SQLITE_CONSTRAINT_FOREIGNKEY)
    return corral_error_set(err, ENOENT, "add event `%s`: sandbox `%s`", type, sandbox);
  return rc == SQLITE_DONE ? 0 : corral__store_sql_error(s, rc, err, "add event");
}
