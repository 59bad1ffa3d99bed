/* Internals of corral_proxy_t shared by proxy.c (the object, its thread,
 * commands, sandboxes, resolver pool, audit) and conn.c (one connection's
 * state machine and relay).  Everything below is owned by the proxy's loop
 * thread unless a comment says otherwise. */
#ifndef CORRAL_NET_PROXY_H
#define CORRAL_NET_PROXY_H

#include <pthread.h>
#include "secrets.h"

#define PROXY_ID_MAX 128
#define RELAY_BUF 32768

enum ev_kind
{
  EV_WAKE,
  EV_LISTEN,
  EV_CLIENT,
  EV_UPSTREAM,
};

/* The epoll data of every fd points at one of these. */
struct ev
{
  enum ev_kind kind;
};

/* Counters are updated on the loop thread and read from any thread. */
struct counters
{
  uint64_t allowed, denied, failed, active, up, down;
};

struct sandbox;

struct listener
{
  struct ev ev;
  int fd;
  bool socks;
  bool armed;                   /* registered with epoll */
  struct sandbox *sb;
};

struct conn;

struct sandbox
{
  struct sandbox *next;
  struct corral_proxy *proxy;
  char id[PROXY_ID_MAX];
  corral_net_policy_t *policy;
  struct listener http, socks;
  struct conn *conns;
  unsigned nconns;
  struct counters stats;
  struct corral__secrets *secrets; /* NULL: none */
  struct corral__ca *ca;           /* created with the first secrets, kept */
};

/* A name to resolve, handed to the resolver threads and back. */
struct job
{
  struct job *next;
  struct conn *conn;
  char host[256];
  uint16_t port;
  int rc;
  const char *why;
  struct corral__addrlist res;
};

struct corral_proxy
{
  corral_proxy_options_t opts;
  struct corral__resolver *resolver;
  int epfd, wakefd;
  struct ev wake_ev;
  pthread_t thread;
  bool thread_started;
  bool stopping;
  /* lock guards: cmds, jobs, done, pool_stop, and the sandbox list for
   * readers on other threads (the loop thread mutates it holding lock). */
  pthread_mutex_t lock;
  pthread_cond_t cmd_cond, job_cond;
  struct cmd *cmds;
  struct job *jobs, **jobs_tail, *done;
  bool pool_stop;
  pthread_t *pool;
  unsigned npool;
  struct sandbox *sandboxes;
  struct conn *graveyard;       /* closed during this batch of events */
  bool rearm_listeners;
  struct counters stats;
  SSL_CTX *tls_client;          /* intercepted tunnels' upstream side */
};

/* conn.c */
void corral__conn_accept(struct corral_proxy *p, struct listener *l);
void corral__conn_event(struct corral_proxy *p, struct ev *ev, uint32_t events);
void corral__conn_resolved(struct corral_proxy *p, struct job *j);
/* Timeouts; returns true when some connection still has a deadline. */
bool corral__conn_sweep(struct corral_proxy *p, uint64_t now);
/* Re-check every open connection of sb against its (new) policy; those
 * it denies are closed. */
void corral__sandbox_recheck(struct sandbox *sb);
/* Close (and audit) every connection of sb. */
void corral__sandbox_abort_all(struct sandbox *sb, const char *why);
void corral__conn_bury(struct corral_proxy *p); /* free the graveyard */
/* A conn whose resolution job was dropped at stop. */
void corral__conn_release_dead(struct conn *c);

/* proxy.c */
void corral__proxy_audit(struct corral_proxy *p, struct sandbox *sb, const char *json);
int corral__proxy_submit(struct corral_proxy *p, struct job *j);
void corral__count(struct sandbox *sb, size_t field_offset, uint64_t n);
#define COUNT(sb, field, n) corral__count((sb), offsetof(struct counters, field), (n))

#endif
