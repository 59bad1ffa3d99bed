/* The E2B front end of corrald: E2B's control plane (sandboxes) and its
 * in-sandbox APIs (envd's Connect RPCs and /files, the code interpreter's
 * /execute and /contexts) mapped onto corral's sandboxes, commands, files
 * and contexts.  Nothing here runs code or touches a sandbox except
 * through the API layer's helpers and the agent protocol.
 * Wire reference: docs/e2b.md. */
#ifndef CORRAL_E2B_H
#define CORRAL_E2B_H

#include "../api/api.h"

#define E2B_ENVD_VERSION "0.6.4" /* the envd features this front end has */
#define E2B_ENVD_PORT 49983
#define E2B_CODE_PORT 49999

/* What the front end remembers that corral's agent does not: E2B's process
 * tags, cwd and envs (for List), and directory watchers. */
struct e2b_proc
{
  struct e2b_proc *next;
  char sandbox[32];
  pid_t pid;
  char *tag, *cwd;
  json_t *envs;
  bool pty;     /* started on a terminal: its output is PTY data */
};
struct e2b_watcher;
struct e2b_state
{
  pthread_mutex_t lock;
  struct e2b_proc *procs;
  size_t n_procs;
  struct e2b_watcher *watchers; /* watch.c */
};
void e2b_watchers_free(struct daemon *d);

int e2b_init(struct daemon *d, corral_error_t *err);
void e2b_free(struct daemon *d); /* after every request has ended */

/* Route tables for http.c. */
const struct route *e2b_control_routes(size_t *n);
const struct route *e2b_sandbox_routes(size_t *n);
/* A sandbox route: the sandbox id from E2b-Sandbox-Id becomes params[0]
 * (the route's own segments follow).  -1 after responding. */
int e2b_sandbox_param(struct req *r);
/* For ROUTE_SANDBOX routes: 1 when the request carries the sandbox's access
 * token (r->tenant becomes its owner), -1 after responding with a refusal,
 * 0 when it carries none (the caller then asks for an API key). */
int e2b_authenticate(struct req *r);
/* The access token of a sandbox: hex HMAC-SHA256 of its id under the
 * daemon's token secret, so that it needs no storage and survives restarts. */
void e2b_access_token(struct daemon *d, const char *sandbox, char out[65]);
/* The token the request presents (X-Access-Token, else
 * E2B-Traffic-Access-Token) against sandbox's: 1 it matches, 0 none given,
 * -1 a wrong one. */
int e2b_token_check(struct req *r, const char *sandbox);

/* ---- connect.c: the Connect protocol (JSON codec) ---- */
/* The request message: the body of a unary call, or the first enveloped
 * message of a streaming one; NULL after responding 400. */
json_t *connect_request(struct req *r);
bool connect_streaming(struct req *r);
/* Server streams: next() gives the next message (new reference), or NULL
 * at the end with *error set (new reference) when the stream failed. */
struct connect_stream
{
  json_t *(*next)(void *ctx, json_t **error);
  void (*release)(void *ctx);
  void *ctx;
};
int connect_respond_stream(struct req *r, struct connect_stream s);
/* A whole streaming response that is only the end of the stream with this
 * error (stolen): how a stream fails before its first message (a non-200
 * status would lose the error code). */
struct MHD_Response *connect_end_response(json_t *error);
/* A Connect end-of-stream error object {"code","message"}. */
json_t *connect_error(unsigned status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
json_t *connect_error_from(corral_error_t err);
/* Base64 (standard, padded) of bytes; decode returns malloc'd bytes or NULL. */
json_t *e2b_base64(const void *data, size_t len);
unsigned char *e2b_unbase64(const char *s, size_t *len);
/* "user" or "root" from Authorization: Basic (both run as the sandbox
 * user); -1 after responding for any other user. */
int e2b_user(struct req *r);

/* ---- route handlers ---- */
int e2b_sandbox_create(struct req *r);
int e2b_sandbox_list(struct req *r);
int e2b_sandbox_list_v1(struct req *r);
int e2b_sandbox_get(struct req *r);
int e2b_sandbox_kill(struct req *r);
int e2b_sandbox_timeout(struct req *r);
int e2b_sandbox_refresh(struct req *r);
int e2b_sandbox_connect(struct req *r);
int e2b_unsupported(struct req *r);

int e2b_process_start(struct req *r);
int e2b_process_connect(struct req *r);
int e2b_process_list(struct req *r);
int e2b_process_send_input(struct req *r);
int e2b_process_stream_input(struct req *r);
int e2b_process_send_signal(struct req *r);
int e2b_process_close_stdin(struct req *r);
int e2b_process_update(struct req *r);

int e2b_fs_stat(struct req *r);
int e2b_fs_make_dir(struct req *r);
int e2b_fs_move(struct req *r);
int e2b_fs_list_dir(struct req *r);
int e2b_fs_remove(struct req *r);
int e2b_fs_watch_dir(struct req *r);
int e2b_fs_create_watcher(struct req *r);
int e2b_fs_get_watcher_events(struct req *r);
int e2b_fs_remove_watcher(struct req *r);
/* Entry of a file reply (R_ENTRY) as E2B's EntryInfo. */
json_t *e2b_entry_info(const struct corral__msg *m);

int e2b_files_get(struct req *r);
int e2b_files_post_begin(struct req *r);
int e2b_files_post_data(struct req *r, const char *data, size_t len);
int e2b_files_post(struct req *r);
int e2b_health(struct req *r);
int e2b_envs(struct req *r);

int e2b_code_execute(struct req *r);
int e2b_code_context_create(struct req *r);
int e2b_code_context_list(struct req *r);
int e2b_code_context_delete(struct req *r);
int e2b_code_context_restart(struct req *r);
/* An execute event of corral's /execute as the code interpreter's. */
json_t *e2b_code_event(json_t *ev);

#endif
