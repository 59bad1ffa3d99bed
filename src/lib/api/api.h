/* Private interface of the API layer (corrald's HTTP front end over the
 * sandbox layer).  http.c owns libmicrohttpd and maps errors to statuses;
 * the other files implement groups of routes. */
#ifndef CORRAL_API_H
#define CORRAL_API_H

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <corral/daemon.h>
#include <corral/net.h>
#include <corral/store.h>
#include "../sandbox/box.h"
#include "../guest/proto.h"

#define API_MAX_BODY (1u << 20)
#define API_MAX_PARAMS 4

/* ---- the in-memory side of running sandboxes (registry.c) ---- */
struct sbx
{
  char id[32];
  char *tenant;
  struct corral__box box;
  uint64_t serial;
  uint64_t memory_mb;
  int64_t expires_ms;
  json_t *env;            /* sandbox env, given to every command */
  bool starting;          /* placeholder holding a quota slot */
  const char *end_reason; /* set by whoever ends it on purpose */
  bool finalizing;        /* claimed by the thread that cleans it up */
  bool pooled;            /* a ready sandbox nobody has claimed yet */
  bool warming;           /* pooled, its default context still starting */
};

struct metrics;
struct create_req;
struct ctx;

struct daemon
{
  corral_daemon_options_t opt;
  char *state_dir, *run_dir, *admin_key, *runners_dir;
  corral_store_t *store;
  corral_audit_t *audit;
  struct corral__spawner spawner;
  pthread_mutex_t lock;     /* guards sbxs */
  pthread_cond_t ended;     /* broadcast when a sandbox is finalised */
  struct sbx **sbxs;
  size_t n_sbxs, cap_sbxs;
  uint64_t next_serial;
  int epoll_fd, wake_fd;
  pthread_t lifecycle, pool_thread;
  bool lifecycle_started, pool_started;
  pthread_cond_t pool_cond; /* the pool needs a refill (signalled on claims) */
  atomic_bool stopping;
  struct metrics *metrics;
  struct ctx *ctxs;         /* code contexts of every sandbox (guarded by lock) */
  unsigned char token_secret[32]; /* signs per-sandbox access tokens (E2B's envd tokens) */
  struct e2b_state *e2b;    /* the E2B front end's own state (src/lib/e2b/) */
  corral_proxy_t *proxy;    /* egress of sandboxes with a network policy (network.c) */
  corral_dns_t *dns;        /* their DNS (network.c) */
  struct public_port *public_ports; /* ports.c (guarded by lock) */
};

/* ---- a request (http.c) ---- */
struct req;
typedef int (*route_fn)(struct req *r);

/* Who the request speaks to: error bodies and statuses follow its wire. */
enum api_dialect
{
  API_CORRAL = 0, /* {"error":{"code","message"}} */
  API_E2B,        /* E2B's REST APIs: {"code":404,"message"} */
  API_CONNECT,    /* Connect RPC (envd): {"code":"not_found","message"} */
};

struct req
{
  struct daemon *d;
  enum api_dialect dialect;
  struct MHD_Connection *conn;
  const char *method, *url;
  char *params[API_MAX_PARAMS]; /* the '*' segments of the route (ROUTE_SANDBOX: [0] is the sandbox) */
  route_fn handler;
  bool streaming_upload;        /* the handler consumes the body itself */
  char *tenant;                 /* authenticated tenant ("admin" for the admin key) */
  bool admin;
  char *body;
  size_t body_len;
  bool too_large, responded;
  void *upload;                 /* state of a streamed upload (files.c) */
  char *raw_uri;                /* the request target as sent (path and query) */
  char *fwd_target;             /* ROUTE_PORT: what to ask the sandbox's server for */
  void *upgrade;                /* ROUTE_PORT: a WebSocket relay's state (ports.c) */
  bool begun;
  int (*upload_data)(struct req *r, const char *data, size_t len);
  void (*upload_free)(struct req *r); /* set by upload_begin when it made r->upload */
  uint64_t t0_us;
};

/* A route: '*' in pattern matches one path segment. */
enum { ROUTE_PUBLIC = 1, ROUTE_ADMIN = 2, ROUTE_UPLOAD = 4, ROUTE_E2B = 8, ROUTE_CONNECT = 16, ROUTE_SANDBOX = 32,
       ROUTE_PORT = 64 };
struct route
{
  const char *method, *pattern;
  route_fn fn;
  unsigned flags; /* ROUTE_SANDBOX: the sandbox comes from E2b-Sandbox-Id (src/lib/e2b/) */
  /* ROUTE_UPLOAD: the body goes to these as it arrives (default: files.c's) */
  route_fn upload_begin;
  int (*upload_data)(struct req *r, const char *data, size_t len);
};

/* Respond (http.c).  Every handler ends in exactly one of these. */
int api_json(struct req *r, unsigned status, json_t *body); /* steals body; NULL body: no content */
int api_fail(struct req *r, unsigned status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Map a library error (its errno) to a status and respond: the one table. */
int api_fail_err(struct req *r, corral_error_t err, const char *context);
unsigned api_status_of(int err_no, const char **code);
const char *connect_code(unsigned status); /* Connect's name for a status */
int api_queue(struct req *r, unsigned status, struct MHD_Response *resp);
/* The body parsed as a JSON object, or NULL after responding 400. */
json_t *api_body_object(struct req *r);
const char *api_query(struct req *r, const char *key);
const char *api_header(struct req *r, const char *key);
bool api_wants_ndjson(struct req *r);
/* RFC 3339 UTC with milliseconds. */
void api_time(int64_t ms, char *buf, size_t size);
int64_t api_now_ms(void);
void api_log(struct daemon *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void api_audit(struct daemon *d, json_t *record); /* steals record */
struct MHD_Daemon *api_http_start(struct daemon *d, int listen_fd, corral_error_t *err);

/* ---- registry.c ---- */
int registry_start(struct daemon *d, corral_error_t *err); /* adopt + lifecycle thread */
void registry_stop(struct daemon *d);
/* What a request needs of a running sandbox, copied out of the registry. */
struct sbx_ref
{
  char id[32];
  char sock_path[256];
  json_t *env;           /* new reference */
};
/* 1 found running and visible to tenant, 0 not. */
int registry_get(struct daemon *d, const char *id, const char *tenant, bool admin, struct sbx_ref *out);
uint64_t registry_oom_kills(struct daemon *d, const char *id);
/* Like registry_get for the daemon itself: any tenant, pooled ones too. */
int registry_ref(struct daemon *d, const char *id, struct sbx_ref *out);
/* Reserve a quota slot; EDQUOT when the tenant is over a quota. */
int registry_reserve(struct daemon *d, const char *id, const char *tenant, uint64_t memory_mb, corral_error_t *err);
void registry_unreserve(struct daemon *d, const char *id);
/* Fill the reserved entry with the started box (ownership moves). */
void registry_activate(struct daemon *d, const char *id, const struct corral__box *box, int64_t expires_ms,
                       json_t *env);
int registry_set_expiry(struct daemon *d, const char *id, int64_t expires_ms);
/* End a sandbox on purpose and wait until it is gone.  0 if it was running. */
int registry_end(struct daemon *d, const char *id, const char *reason);
size_t registry_count(struct daemon *d);
/* Take a ready sandbox from the pool for tenant (quotas checked): 1 with
 * id and its runtime JSON (malloc'd) filled, 0 when the pool is empty,
 * negative (EDQUOT) over a quota. */
int registry_claim(struct daemon *d, const char *tenant, uint64_t memory_mb, int64_t expires_ms, json_t *env,
                   char id[32], char **runtime_json, corral_error_t *err);
size_t registry_pooled(struct daemon *d, bool ready_only);
/* PID 1 of a running sandbox (any tenant), or 0. */
pid_t registry_pid(struct daemon *d, const char *id);
/* The tenant of a sandbox into buf ("" when unknown). */
void registry_tenant(struct daemon *d, const char *id, char *buf, size_t size);
/* Merge vars (an object of strings) into a running sandbox's env. */
void registry_add_env(struct daemon *d, const char *id, json_t *vars);
void registry_warmed(struct daemon *d, const char *id);

/* ---- pool.c: sandboxes made ahead of demand ---- */
#define POOL_TENANT "_pool"
#define POOL_NICE 10 /* pooled sandboxes are built at this priority */
int pool_start(struct daemon *d, corral_error_t *err);
void pool_stop(struct daemon *d);
/* Whether a create request can be served from the pool. */
bool pool_fits(const struct create_req *c);

/* ---- route groups ---- */
int route_sandbox_create(struct req *r);
int route_sandbox_list(struct req *r);
int route_sandbox_get(struct req *r);
int route_sandbox_delete(struct req *r);
int route_sandbox_timeout(struct req *r);
/* Record and start a sandbox for tenant (state "running" or "pool"); the
 * registry entry must be reserved.  Responds nothing; 0 or -1 with err. */
int sandbox_make(struct daemon *d, const char *id, const char *tenant, const char *state, const struct create_req *c,
                 int64_t created_ms, int64_t expires_ms, corral_error_t *err);
void sandbox_new_id(char *buf, size_t size);
/* The steps behind the routes, shared with the E2B front end.  Each
 * returns 0, or -1 after responding with the failure. */
int sandbox_create(struct req *r, const struct create_req *c, corral_sandbox_rec_t *rec);
int sandbox_visible(struct req *r, const char *id, corral_sandbox_rec_t *rec); /* 404 unless visible */
int sandbox_kill(struct req *r, const char *id);
int sandbox_set_timeout(struct req *r, const char *id, uint64_t timeout_s, corral_sandbox_rec_t *rec);
json_t *sandbox_json(const corral_sandbox_rec_t *rec);
/* A JSON column of a record, or dflt (stolen) when absent or not JSON. */
json_t *loads_or(const char *s, json_t *dflt);
/* Does a record's metadata hold every key/value of want? */
bool metadata_matches(const char *metadata_json, json_t *want);
bool template_is_base(const char *name);
/* For routes that need a running sandbox: 1 with ref filled, or 0 after
 * responding 404 / 409. */
int sandbox_running_or_fail(struct req *r, struct sbx_ref *ref);

int route_command_start(struct req *r);
int route_command_list(struct req *r);
int route_command_attach(struct req *r);
int route_command_stdin(struct req *r);
int route_command_signal(struct req *r);

int route_file_get(struct req *r);
int route_file_put_begin(struct req *r);             /* first call: open the upload */
int route_file_put_data(struct req *r, const char *data, size_t len);
int route_file_put(struct req *r);                   /* last call: finish */
void file_upload_free(struct req *r);
/* A file written in a sandbox through its agent: open (the agent has
 * created it), write, close (its verdict and size), release (always). */
struct agent_file
{
  int fd;
  uint8_t *buf;
  size_t cap;
  char *path;
};
int agent_file_open(struct agent_file *w, const struct sbx_ref *ref, const char *path, unsigned mode, json_t *meta,
                    corral_error_t *err);
int agent_file_write(struct agent_file *w, const void *data, size_t len, corral_error_t *err);
int agent_file_close(struct agent_file *w, uint64_t *size, corral_error_t *err);
void agent_file_release(struct agent_file *w);
int route_file_list(struct req *r);
int route_file_stat(struct req *r);
int route_file_mkdir(struct req *r);
int route_file_move(struct req *r);
int route_file_remove(struct req *r);

int route_context_create(struct req *r);
int route_context_list(struct req *r);
int route_context_delete(struct req *r);
int route_context_restart(struct req *r);
int route_execute(struct req *r);
/* A sandbox ended: drop its contexts. */
void contexts_forget(struct daemon *d, const char *sandbox);
void contexts_prestart(struct daemon *d, const char *sandbox);
/* At stop, after every request has ended: the runners go on in their sandboxes. */
void contexts_free_all(struct daemon *d);

int route_health(struct req *r);
int route_metrics(struct req *r);
int route_tenant_create(struct req *r);
int route_tenant_list(struct req *r);
int route_tenant_get(struct req *r);
int route_tenant_delete(struct req *r);
int route_key_create(struct req *r);
int route_key_list(struct req *r);
int route_key_delete(struct req *r);
int route_audit(struct req *r);

/* ---- decode.c: request bodies to values (fuzzed: tests/fuzz/fuzz_decode.c) ---- */
struct create_req
{
  char template_name[64];
  uint64_t timeout_s;
  json_t *metadata, *env; /* objects of strings (new references) */
  corral_net_policy_t *network; /* NULL: none */
  json_t *secrets;              /* [{name, value, hosts, header?, format?}] or NULL */
  uint64_t memory_mb, pids, disk_mb, cpu_millis;
};
int decode_create(json_t *body, uint64_t max_timeout_s, struct create_req *out, char *why, size_t why_size);
void create_req_release(struct create_req *c);

struct exec_req
{
  char **argv;            /* NULL-terminated, malloc'd */
  char **env;             /* "K=V", NULL-terminated, malloc'd */
  char *cwd;
  uint64_t timeout_ms, max_output;
  char *stdin_data;
  size_t stdin_len;
  bool background;
};
int decode_exec(json_t *body, struct exec_req *out, char *why, size_t why_size);
void exec_req_release(struct exec_req *e);
/* "SIGTERM", "TERM", "15", 15 -> 15; 0 when unknown. */
int decode_signal(json_t *v);
const char *signal_name(int sig);
bool valid_env_name(const char *k);

/* ---- network.c: egress policies through the proxy ---- */
int network_start(struct daemon *d, corral_error_t *err);
void network_stop(struct daemon *d);
/* The API's `network` (an object, or a mode name) to a policy; NULL when
 * absent; -1 with why when invalid. */
int network_decode(json_t *v, corral_net_policy_t **out, char *why, size_t why_size);
/* Give a running sandbox this policy (its listeners made the first time
 * one is not `none`); persist: record it for re-adoption. */
int network_apply(struct daemon *d, const char *id, corral_net_policy_t *policy, bool persist, corral_error_t *err);
void network_forget(struct daemon *d, const char *id);
void network_readopt(struct daemon *d, const char *id, const char *network_json);
json_t *network_json(const char *network_json_text);
int route_sandbox_network(struct req *r);
/* `secrets` of a create request, checked for shape (the proxy checks the
 * rest); values are never echoed in errors. */
int secrets_decode(json_t *v, json_t **out, char *why, size_t why_size);
/* Give the sandbox's proxy these secrets, the sandbox their placeholders
 * (env) and its CA (a bundle file and the variables TLS clients read). */
int secrets_apply(struct daemon *d, const char *id, json_t *secrets, corral_error_t *err);

/* ---- ports.c: servers inside sandboxes, reached from outside ---- */
struct public_port;
int route_ports_list(struct req *r);
int route_port_public(struct req *r);  /* POST makes a port public, DELETE private again */
int route_port_forward(struct req *r);
int ports_authenticate(struct req *r);
void ports_upgrade_free(void *state);
bool ports_is_public(struct daemon *d, const char *sandbox, uint16_t port);
void ports_forget(struct daemon *d, const char *sandbox); /* NULL: all */
/* "{port}-{id}.anything" (E2B's getHost form). */
bool ports_host_route(const char *host, char id[32], uint16_t *port);

/* ---- metrics.c ---- */
void metrics_init(struct daemon *d);
void metrics_request(struct daemon *d, const char *method, unsigned status, const char *code);
void metrics_create(struct daemon *d, uint64_t us);
void metrics_command(struct daemon *d, uint64_t us, const char *reason);
void metrics_ended(struct daemon *d, const char *reason);
void metrics_seccomp(struct daemon *d, uint64_t denials);
char *metrics_render(struct daemon *d);

/* ---- the agent client (commands.c) ---- */
/* Connect to a sandbox's agent and send one request frame (released). */
int agent_request(const struct sbx_ref *ref, struct corral__frame *f, corral_error_t *err);
/* An R_ERROR message as a corral error. */
int agent_error(const struct corral__msg *m, corral_error_t *err);
/* One-shot request that the agent answers with R_OK or R_ERROR. */
int agent_call(const struct sbx_ref *ref, struct corral__frame *f, corral_error_t *err);
/* An EXEC request: the connection (the command's output follows on it) and
 * *pid; -1 when the agent could not be reached or did not answer (EIO), -2
 * when it refused to start the command (err says why). */
int agent_start(const struct sbx_ref *ref, struct corral__frame *f, pid_t *pid, corral_error_t *err);
/* K=V env fields of an EXEC frame from a JSON object of strings. */
void agent_frame_env(struct corral__frame *f, json_t *env);
/* A STDIN request for command pid. */
void agent_stdin_frame(struct corral__frame *f, pid_t pid, const char *data, size_t len, bool eof);

#endif
