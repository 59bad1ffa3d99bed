/* Private interface of the store layer.  The audit table lives in the
 * store's database, so audit.c borrows the store's connection, lock and
 * statement cache through these functions instead of opening its own
 * connection (one connection keeps SQLITE_BUSY out of our own threads). */
#ifndef CORRAL_STORE_INTERNAL_H
#define CORRAL_STORE_INTERNAL_H

#include <jansson.h>
#include <sqlite3.h>
#include <stdint.h>
#include <time.h>
#include <corral/store.h>

/* Slots of the prepared-statement cache.  A query with optional filters
 * takes one slot per combination of filters, so that each variant has a
 * plain WHERE clause SQLite can match to an index. */
enum corral__stmt_slot
{
  CORRAL__STMT_TENANT_INSERT,
  CORRAL__STMT_TENANT_GET,
  CORRAL__STMT_TENANT_LIST,
  CORRAL__STMT_TENANT_DELETE,
  CORRAL__STMT_KEY_INSERT,
  CORRAL__STMT_KEY_LOOKUP,
  CORRAL__STMT_KEY_LIST,
  CORRAL__STMT_KEY_DELETE,
  CORRAL__STMT_SANDBOX_PUT,
  CORRAL__STMT_SANDBOX_GET,
  CORRAL__STMT_SANDBOX_LIST,            /* + mask: 1 tenant, 2 state */
  CORRAL__STMT_SANDBOX_EXPIRY = CORRAL__STMT_SANDBOX_LIST + 4,
  CORRAL__STMT_SANDBOX_ENDED,
  CORRAL__STMT_SANDBOX_PURGE,
  CORRAL__STMT_EVENT_ADD,
  CORRAL__STMT_AUDIT_INSERT,
  CORRAL__STMT_SANDBOX_NETWORK,
  CORRAL__STMT_AUDIT_QUERY,             /* + mask: 1 tenant, 2 sandbox, 4 since */
  CORRAL__STMT_COUNT = CORRAL__STMT_AUDIT_QUERY + 8
};

/* Take the store's lock; returns s so that it can initialise a guard:
 *   corral_store_t *guard cleanup_store_unlock = corral__store_lock(s); */
corral_store_t *corral__store_lock(corral_store_t *s);
void corral__store_unlockp(corral_store_t **s);
#define cleanup_store_unlock __attribute__((cleanup(corral__store_unlockp), unused))

/* *out gets the cached statement of slot, prepared from sql on first use.
 * Caller holds the lock.  Declare the statement variable *after* the lock
 * guard: cleanups run in reverse order, so the statement is reset while
 * the lock is still held. */
int corral__store_stmt(corral_store_t *s, int slot, const char *sql, sqlite3_stmt **out, corral_error_t *err);

static inline void corral__stmt_resetp(sqlite3_stmt **st)
{
  if (*st)
    {
      sqlite3_reset(*st);
      sqlite3_clear_bindings(*st);
    }
}
#define cleanup_stmt_reset __attribute__((cleanup(corral__stmt_resetp)))

/* Fill err with what SQLite says went wrong (EIO, or ENOMEM when SQLite
 * ran out of memory).  Caller holds the lock, so the message is the
 * connection's last error and not another thread's. */
int corral__store_sql_error(corral_store_t *s, int rc, corral_error_t *err, const char *what);

/* corral_audit_risk() with the reasons as a new jansson array (risk.c).
 * -ENOMEM is the only failure. */
int corral__risk_eval(const char *const *argv, size_t argc, int *score, json_t **reasons);

/* Wall-clock time in unix milliseconds (records outlive the process, so
 * the monotonic clock of utils.h does not fit). */
static inline int64_t corral__wall_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
