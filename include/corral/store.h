/* corral: durable state of the daemon (SQLite, WAL) and the audit log.
 *
 * One corral_store_t per daemon.  Every function is safe to call from many
 * threads at once (the store serialises on its own mutex).  Strings returned
 * inside records are malloc'd and owned by the record; release records with
 * the matching *_release function.
 */
#ifndef CORRAL_STORE_H
#define CORRAL_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <corral/error.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct corral_store_s corral_store_t;

typedef struct corral_tenant_s {
  char *name;
  uint64_t max_sandboxes;   /* 0: no quota */
  uint64_t max_memory_mb;   /* 0: no quota */
  int64_t created_ms;       /* unix ms */
} corral_tenant_t;

typedef struct corral_key_s {
  char *id;                 /* "key_" + 16 hex */
  char *tenant;
  char *prefix;             /* first 10 chars of the key, for display */
  int64_t created_ms;
} corral_key_t;

/* A sandbox row.  JSON-valued fields are stored as text, as given. */
typedef struct corral_sandbox_rec_s {
  char *id;
  char *tenant;
  char *template_name;
  char *state;              /* "running" | "ended" */
  char *end_reason;         /* NULL while running */
  int64_t created_ms, expires_ms, ended_ms; /* ended_ms 0 while running */
  char *metadata_json;      /* JSON object text */
  char *limits_json;        /* JSON object text */
  char *env_json;           /* JSON object text */
  char *runtime_json;       /* how to reach / re-adopt it (pid, start time, cgroup paths, socket): opaque to the store */
  char *network_json;       /* its network policy (JSON object text), NULL: none */
} corral_sandbox_rec_t;

/* Open (creating if needed) <dir>/corral.db in WAL mode and migrate its
 * schema.  dir must exist. */
int corral_store_open(const char *dir, corral_store_t **out, corral_error_t *err);
void corral_store_close(corral_store_t *s);

/* ---- tenants and keys ---- */
/* Errors: EEXIST if the tenant exists. */
int corral_store_tenant_create(corral_store_t *s, const corral_tenant_t *t, corral_error_t *err);
/* ENOENT if unknown. */
int corral_store_tenant_get(corral_store_t *s, const char *name, corral_tenant_t *out, corral_error_t *err);
/* *out is a malloc'd array of *n tenants, ordered by name. */
int corral_store_tenant_list(corral_store_t *s, corral_tenant_t **out, size_t *n, corral_error_t *err);
/* Deletes the tenant and its keys (not its sandbox rows).  ENOENT if unknown. */
int corral_store_tenant_delete(corral_store_t *s, const char *name, corral_error_t *err);
void corral_tenant_release(corral_tenant_t *t);
void corral_tenants_free(corral_tenant_t *v, size_t n);

/* Create a new random key for tenant: *key_out gets the full key
 * ("ck_" + 48 hex digits, or "e2b_" + 40 hex digits when e2b_format), shown
 * to the user once; only its SHA-256 is stored.  rec (may be NULL) gets the
 * record.  ENOENT if the tenant does not exist. */
int corral_store_key_create(corral_store_t *s, const char *tenant, bool e2b_format, char **key_out,
                            corral_key_t *rec, corral_error_t *err);
/* Find the tenant owning key; returns 1 and *tenant_out (malloc'd) when
 * found, 0 when not. */
int corral_store_key_lookup(corral_store_t *s, const char *key, char **tenant_out, corral_error_t *err);
int corral_store_key_list(corral_store_t *s, const char *tenant, corral_key_t **out, size_t *n, corral_error_t *err);
/* ENOENT if the key id is not the tenant's. */
int corral_store_key_delete(corral_store_t *s, const char *tenant, const char *id, corral_error_t *err);
void corral_key_release(corral_key_t *k);
void corral_keys_free(corral_key_t *v, size_t n);

/* ---- sandboxes ---- */
int corral_store_sandbox_put(corral_store_t *s, const corral_sandbox_rec_t *r, corral_error_t *err); /* insert or replace */
/* ENOENT if unknown. */
int corral_store_sandbox_get(corral_store_t *s, const char *id, corral_sandbox_rec_t *out, corral_error_t *err);
/* state NULL: all; tenant NULL: every tenant.  Newest first. */
int corral_store_sandbox_list(corral_store_t *s, const char *tenant, const char *state, corral_sandbox_rec_t **out,
                              size_t *n, corral_error_t *err);
int corral_store_sandbox_set_expiry(corral_store_t *s, const char *id, int64_t expires_ms, corral_error_t *err);
/* Replace a sandbox's network policy (NULL clears it); ENOENT when unknown. */
int corral_store_sandbox_set_network(corral_store_t *s, const char *id, const char *network_json, corral_error_t *err);
int corral_store_sandbox_set_ended(corral_store_t *s, const char *id, const char *reason, int64_t ended_ms,
                                   corral_error_t *err);
/* Delete ended sandboxes with ended_ms < before_ms; returns how many. */
int corral_store_sandbox_purge(corral_store_t *s, int64_t before_ms, corral_error_t *err);
void corral_sandbox_rec_release(corral_sandbox_rec_t *r);
void corral_sandbox_recs_free(corral_sandbox_rec_t *v, size_t n);

/* Lifecycle events (created, timeout reset, ended...), kept with the sandbox. */
int corral_store_event_add(corral_store_t *s, const char *sandbox, const char *type, const char *detail_json,
                           corral_error_t *err);

/* ---- audit ---- */
typedef struct corral_audit_s corral_audit_t;

/* Open (append) <dir>/audit.log; records also go to the store's audit table
 * so that they can be queried. */
int corral_audit_open(const char *dir, corral_store_t *store, corral_audit_t **out, corral_error_t *err);
void corral_audit_close(corral_audit_t *a);

/* Append one record.  record_json is a JSON object text with at least
 * "action"; the function adds "time" (RFC 3339 UTC, ms) and, for actions
 * with an "argv" array, "risk": {"score","reasons"} from
 * corral_audit_risk().  Writes one line to audit.log (fsync not required)
 * and one row to the store. */
int corral_audit_record(corral_audit_t *a, const char *record_json, corral_error_t *err);

/* Query: tenant NULL = all, sandbox NULL = all, since_ms 0 = all; limit
 * 0 = 1000.  *json_out gets a malloc'd JSON array text of the records,
 * oldest first. */
int corral_audit_query(corral_audit_t *a, const char *tenant, const char *sandbox, int64_t since_ms, size_t limit,
                       char **json_out, corral_error_t *err);

/* Risk of a command: score 0..100 and a malloc'd JSON array text of reason
 * strings (never NULL on success).  Rules: download piped to a shell
 * (curl|wget ... | sh/bash/python), writes/redirects to system paths
 * (/etc, /usr, /bin, /boot, /proc/sys, /sys), rm -rf / or ~ or *, long
 * base64/hex payloads or `base64 -d`, network tools (nc, ncat, socat, nmap,
 * ssh, telnet, curl/wget alone score lower), privilege tools (sudo, su,
 * chmod +s/4755, setcap, nsenter, unshare, mount), fork bombs,
 * reverse-shell patterns (/dev/tcp/).  Sum of rule weights, capped at 100. */
int corral_audit_risk(const char *const *argv, size_t argc, int *score, char **reasons_json);

#ifdef __cplusplus
}
#endif
#endif
