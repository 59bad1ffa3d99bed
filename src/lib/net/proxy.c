/* The egress proxy object: one epoll loop thread, a small pool of resolver
 * threads (getaddrinfo blocks, the loop must not), and the commands by which
 * other threads add, change and remove sandboxes.  All connection and
 * sandbox state belongs to the loop thread; other threads reach it only
 * through a command queue and wait for the answer, so nothing else needs a
 * lock.  Connections themselves are in conn.c. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include "proxy.h"
#include "../common/utils.h"

#define SWEEP_MS 100
#define MAX_EVENTS 64

enum cmd_op
{
  CMD_ADD,
  CMD_SET_POLICY,
  CMD_REMOVE,
  CMD_SET_SECRETS,
  CMD_PLACEHOLDER,
  CMD_CA_PEM,
  CMD_STOP,
};

struct cmd
{
  struct cmd *next;
  enum cmd_op op;
  const char *id;
  int http_fd, socks_fd;
  corral_net_policy_t *policy;
  struct corral__secrets *secrets; /* CMD_SET_SECRETS: taken when done */
  struct corral__ca *ca;           /* CMD_SET_SECRETS: taken if the sandbox has none */
  const char *name;                /* CMD_PLACEHOLDER */
  char *out;                       /* CMD_PLACEHOLDER */
  char **pem;                      /* CMD_CA_PEM */
  corral_error_t *err;
  int ret;
  bool done;
};

/* ---- counters and audit ---- */

void corral__count(struct sandbox *sb, size_t field_offset, uint64_t n)
{
  uint64_t *a = (uint64_t *) ((char *) &sb->stats + field_offset);
  uint64_t *b = (uint64_t *) ((char *) &sb->proxy->stats + field_offset);
  __atomic_add_fetch(a, n, __ATOMIC_RELAXED);
  __atomic_add_fetch(b, n, __ATOMIC_RELAXED);
}

static void read_counters(const struct counters *c, corral_proxy_stats_t *out)
{
  out->connections_allowed = __atomic_load_n(&c->allowed, __ATOMIC_RELAXED);
  out->connections_denied = __atomic_load_n(&c->denied, __ATOMIC_RELAXED);
  out->connections_failed = __atomic_load_n(&c->failed, __ATOMIC_RELAXED);
  out->connections_active = __atomic_load_n(&c->active, __ATOMIC_RELAXED);
  out->bytes_up = __atomic_load_n(&c->up, __ATOMIC_RELAXED);
  out->bytes_down = __atomic_load_n(&c->down, __ATOMIC_RELAXED);
}

void corral__proxy_audit(struct corral_proxy *p, struct sandbox *sb, const char *json)
{
  if (p->opts.audit)
    p->opts.audit(p->opts.audit_cls, sb->id, json);
}

/* ---- the resolver pool ---- */

static void wake(struct corral_proxy *p)
{
  uint64_t one = 1;
  if (write(p->wakefd, &one, sizeof(one)) < 0)
    {
      /* EAGAIN: the counter is already non-zero, the loop will wake. */
    }
}

int corral__proxy_submit(struct corral_proxy *p, struct job *j)
{
  pthread_mutex_lock(&p->lock);
  j->next = NULL;
  *p->jobs_tail = j;
  p->jobs_tail = &j->next;
  pthread_cond_signal(&p->job_cond);
  pthread_mutex_unlock(&p->lock);
  return 0;
}

static void block_signals(void)
{
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, NULL);
}

static void *resolver_main(void *arg)
{
  struct corral_proxy *p = arg;
  block_signals();
  pthread_mutex_lock(&p->lock);
  for (;;)
    {
      while (!p->pool_stop && p->jobs == NULL)
        pthread_cond_wait(&p->job_cond, &p->lock);
      if (p->pool_stop)
        break;
      struct job *j = p->jobs;
      p->jobs = j->next;
      if (p->jobs == NULL)
        p->jobs_tail = &p->jobs;
      pthread_mutex_unlock(&p->lock);
      j->rc = corral__resolve(p->resolver, j->host, j->port, &j->res, &j->why);
      pthread_mutex_lock(&p->lock);
      j->next = p->done;
      p->done = j;
      wake(p);
    }
  pthread_mutex_unlock(&p->lock);
  return NULL;
}

/* ---- sandboxes (loop thread) ---- */

static struct sandbox *find_sandbox(struct corral_proxy *p, const char *id)
{
  for (struct sandbox *sb = p->sandboxes; sb; sb = sb->next)
    if (strcmp(sb->id, id) == 0)
      return sb;
  return NULL;
}

static int arm(struct corral_proxy *p, struct listener *l)
{
  struct epoll_event e = { .events = EPOLLIN, .data.ptr = &l->ev };
  if (l->fd < 0 || l->armed)
    return 0;
  if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, l->fd, &e) < 0)
    return -errno;
  l->armed = true;
  return 0;
}

static int check_listener(int fd, const char *what, corral_error_t *err)
{
  int v = 0;
  socklen_t len = sizeof(v);
  if (fd < 0)
    return 0;
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) < 0)
    return corral_error_set(err, errno, "the %s listener (fd %d)", what, fd);
  if (!v)
    return corral_error_set(err, EINVAL, "the %s listener (fd %d) is not a listening socket", what, fd);
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
    return corral_error_set(err, errno, "making the %s listener non-blocking", what);
  return 0;
}

static int do_add(struct corral_proxy *p, struct cmd *c)
{
  if (find_sandbox(p, c->id))
    return corral_error_set(c->err, EEXIST, "sandbox %s already has an egress proxy", c->id);
  if (check_listener(c->http_fd, "HTTP", c->err) < 0 || check_listener(c->socks_fd, "SOCKS5", c->err) < 0)
    return -EINVAL;
  struct sandbox *sb = calloc(1, sizeof(*sb));
  if (sb == NULL)
    return corral_error_set(c->err, ENOMEM, "adding sandbox %s to the egress proxy", c->id);
  sb->proxy = p;
  snprintf(sb->id, sizeof(sb->id), "%s", c->id);
  sb->policy = corral_net_policy_ref(c->policy);
  sb->http = (struct listener) { { EV_LISTEN }, c->http_fd, false, false, sb };
  sb->socks = (struct listener) { { EV_LISTEN }, c->socks_fd, true, false, sb };
  int r = arm(p, &sb->http);
  if (r == 0)
    r = arm(p, &sb->socks);
  if (r < 0)
    {
      if (sb->http.armed)
        epoll_ctl(p->epfd, EPOLL_CTL_DEL, sb->http.fd, NULL);
      corral_net_policy_unref(sb->policy);
      free(sb);
      return corral_error_set(c->err, -r, "watching the listeners of sandbox %s", c->id);
    }
  pthread_mutex_lock(&p->lock);
  sb->next = p->sandboxes;
  p->sandboxes = sb;
  pthread_mutex_unlock(&p->lock);
  return 0;
}

static int do_set_policy(struct corral_proxy *p, struct cmd *c)
{
  struct sandbox *sb = find_sandbox(p, c->id);
  if (sb == NULL)
    return corral_error_set(c->err, ENOENT, "sandbox %s has no egress proxy", c->id);
  corral_net_policy_t *old = sb->policy;
  sb->policy = corral_net_policy_ref(c->policy);
  corral_net_policy_unref(old);
  /* Open connections are judged again: a destination removed from the
   * policy must not stay reachable through a connection made earlier. */
  corral__sandbox_recheck(sb);
  return 0;
}

/* The set was validated (and the CA made) on the caller's thread; here it
 * only replaces the old one.  Intercepted connections read the sandbox's
 * set at each request, so the change applies to them at once. */
static int do_set_secrets(struct corral_proxy *p, struct cmd *c)
{
  struct sandbox *sb = find_sandbox(p, c->id);
  if (sb == NULL)
    return corral_error_set(c->err, ENOENT, "sandbox %s has no egress proxy", c->id);
  corral__secrets_inherit(c->secrets, sb->secrets);
  corral__secrets_free(sb->secrets);
  sb->secrets = c->secrets;
  c->secrets = NULL;
  if (sb->ca == NULL && c->ca)
    sb->ca = steal_pointer(&c->ca); /* the CA stays: the sandbox already trusts it */
  return 0;
}

static int do_placeholder(struct corral_proxy *p, struct cmd *c)
{
  struct sandbox *sb = find_sandbox(p, c->id);
  if (sb == NULL)
    return corral_error_set(c->err, ENOENT, "sandbox %s has no egress proxy", c->id);
  const struct corral__secret *s = corral__secrets_find(sb->secrets, c->name);
  if (s == NULL)
    return corral_error_set(c->err, ENOENT, "sandbox %s has no secret %.64s", c->id, c->name);
  memcpy(c->out, s->placeholder, sizeof(s->placeholder));
  return 0;
}

static int do_ca_pem(struct corral_proxy *p, struct cmd *c)
{
  struct sandbox *sb = find_sandbox(p, c->id);
  if (sb == NULL)
    return corral_error_set(c->err, ENOENT, "sandbox %s has no egress proxy", c->id);
  if (sb->ca == NULL)
    return corral_error_set(c->err, ENODATA, "sandbox %s has no CA (no secrets were attached)", c->id);
  if ((*c->pem = strdup(corral__ca_pem(sb->ca))) == NULL)
    return corral_error_set(c->err, ENOMEM, "copying the CA certificate");
  return 0;
}

static void remove_sandbox(struct corral_proxy *p, struct sandbox *sb, const char *why)
{
  corral__sandbox_abort_all(sb, why);
  for (struct listener *l = &sb->http; l; l = l == &sb->http ? &sb->socks : NULL)
    if (l->fd >= 0)
      close(l->fd);             /* also leaves epoll */
  pthread_mutex_lock(&p->lock);
  for (struct sandbox **pp = &p->sandboxes; *pp; pp = &(*pp)->next)
    if (*pp == sb)
      {
        *pp = sb->next;
        break;
      }
  pthread_mutex_unlock(&p->lock);
  corral_net_policy_unref(sb->policy);
  corral__secrets_free(sb->secrets);
  corral__ca_free(sb->ca);
  free(sb);
}

static void run_cmd(struct corral_proxy *p, struct cmd *c)
{
  struct sandbox *sb;
  switch (c->op)
    {
    case CMD_ADD:
      c->ret = do_add(p, c);
      break;
    case CMD_SET_POLICY:
      c->ret = do_set_policy(p, c);
      break;
    case CMD_REMOVE:
      sb = find_sandbox(p, c->id);
      c->ret = sb ? 0 : -ENOENT;
      if (sb)
        remove_sandbox(p, sb, "sandbox removed");
      break;
    case CMD_SET_SECRETS:
      c->ret = do_set_secrets(p, c);
      break;
    case CMD_PLACEHOLDER:
      c->ret = do_placeholder(p, c);
      break;
    case CMD_CA_PEM:
      c->ret = do_ca_pem(p, c);
      break;
    default:
      p->stopping = true;
      c->ret = 0;
      break;
    }
}

/* ---- the loop ---- */

static void handle_wake(struct corral_proxy *p)
{
  uint64_t v;
  if (read(p->wakefd, &v, sizeof(v)) < 0)
    {
      /* EAGAIN: another wake-up already consumed the counter. */
    }
  pthread_mutex_lock(&p->lock);
  struct cmd *cmds = p->cmds;
  struct job *done = p->done;
  p->cmds = NULL;
  p->done = NULL;
  pthread_mutex_unlock(&p->lock);
  while (done)
    {
      struct job *j = done;
      done = j->next;
      corral__conn_resolved(p, j);
    }
  while (cmds)
    {
      struct cmd *c = cmds;
      cmds = c->next;           /* c belongs to its caller once done */
      run_cmd(p, c);
      pthread_mutex_lock(&p->lock);
      c->done = true;
      pthread_cond_broadcast(&p->cmd_cond);
      pthread_mutex_unlock(&p->lock);
    }
}

static void rearm_listeners(struct corral_proxy *p)
{
  p->rearm_listeners = false;
  for (struct sandbox *sb = p->sandboxes; sb; sb = sb->next)
    if (arm(p, &sb->http) < 0 || arm(p, &sb->socks) < 0)
      p->rearm_listeners = true;
}

static void dispatch(struct corral_proxy *p, struct epoll_event *e)
{
  struct ev *ev = e->data.ptr;
  switch (ev->kind)
    {
    case EV_WAKE:
      handle_wake(p);
      break;
    case EV_LISTEN:
      corral__conn_accept(p, (struct listener *) ev);
      break;
    default:
      corral__conn_event(p, ev, e->events);
      break;
    }
}

static void *loop_main(void *arg)
{
  struct corral_proxy *p = arg;
  struct epoll_event evs[MAX_EVENTS];
  uint64_t next_sweep = 0;

  block_signals();
  while (!p->stopping)
    {
      /* Deadlines are checked every SWEEP_MS while any connection is open;
       * an idle proxy sleeps until something happens. */
      bool timed = __atomic_load_n(&p->stats.active, __ATOMIC_RELAXED) > 0 || p->rearm_listeners;
      int n = epoll_wait(p->epfd, evs, MAX_EVENTS, timed ? SWEEP_MS : -1);
      for (int i = 0; i < n && !p->stopping; i++)
        dispatch(p, &evs[i]);
      corral__conn_bury(p);
      uint64_t now = corral__now_ms();
      if (now >= next_sweep)
        {
          corral__conn_sweep(p, now);
          if (p->rearm_listeners)
            rearm_listeners(p);
          corral__conn_bury(p);
          next_sweep = now + SWEEP_MS;
        }
    }
  while (p->sandboxes)
    remove_sandbox(p, p->sandboxes, "proxy stopped");
  corral__conn_bury(p);
  return NULL;
}

/* Run a command on the loop thread and wait for its result. */
static int call(struct corral_proxy *p, struct cmd *c)
{
  if (pthread_equal(pthread_self(), p->thread))
    {
      run_cmd(p, c);            /* from the audit callback: already there */
      return c->ret;
    }
  c->next = NULL;
  c->done = false;
  pthread_mutex_lock(&p->lock);
  struct cmd **pp = &p->cmds;
  while (*pp)
    pp = &(*pp)->next;
  *pp = c;
  wake(p);
  while (!c->done)
    pthread_cond_wait(&p->cmd_cond, &p->lock);
  pthread_mutex_unlock(&p->lock);
  return c->ret;
}

/* ---- public API ---- */

static void proxy_free(struct corral_proxy *p)
{
  pthread_mutex_lock(&p->lock);
  p->pool_stop = true;
  pthread_cond_broadcast(&p->job_cond);
  pthread_mutex_unlock(&p->lock);
  for (unsigned i = 0; i < p->npool; i++)
    pthread_join(p->pool[i], NULL);
  /* Jobs left over name connections that are closed by now. */
  struct job *lists[2] = { p->jobs, p->done };
  for (int k = 0; k < 2; k++)
    while (lists[k])
      {
        struct job *j = lists[k];
        lists[k] = j->next;
        corral__conn_release_dead(j->conn);
        free(j);
      }
  if (p->epfd >= 0)
    close(p->epfd);
  if (p->wakefd >= 0)
    close(p->wakefd);
  corral__resolver_free(p->resolver);
  SSL_CTX_free(p->tls_client);
  pthread_mutex_destroy(&p->lock);
  pthread_cond_destroy(&p->cmd_cond);
  pthread_cond_destroy(&p->job_cond);
  free(p->pool);
  free(p);
}

static void set_defaults(corral_proxy_options_t *o)
{
  if (o->max_connections == 0)
    o->max_connections = 256;
  if (o->handshake_timeout_ms == 0)
    o->handshake_timeout_ms = 10000;
  if (o->connect_timeout_ms == 0)
    o->connect_timeout_ms = 10000;
  if (o->resolver_threads == 0)
    o->resolver_threads = 4;
  if (o->resolver_threads > 64)
    o->resolver_threads = 64;
  o->resolver_file = NULL;      /* read once, below; not kept */
  o->upstream_ca_file = NULL;
}

static int start_threads(struct corral_proxy *p, corral_error_t *err)
{
  int r;
  p->pool = calloc(p->opts.resolver_threads, sizeof(*p->pool));
  if (p->pool == NULL)
    return corral_error_set(err, ENOMEM, "allocating the resolver threads");
  for (; p->npool < p->opts.resolver_threads; p->npool++)
    if ((r = pthread_create(&p->pool[p->npool], NULL, resolver_main, p)) != 0)
      return corral_error_set(err, r, "starting a resolver thread");
  if ((r = pthread_create(&p->thread, NULL, loop_main, p)) != 0)
    return corral_error_set(err, r, "starting the proxy thread");
  p->thread_started = true;
  return 0;
}

int corral_proxy_new(const corral_proxy_options_t *opts, corral_proxy_t **out, corral_error_t *err)
{
  struct corral_proxy *p = calloc(1, sizeof(*p));
  if (p == NULL)
    return corral_error_set(err, ENOMEM, "allocating the egress proxy");
  if (opts)
    p->opts = *opts;
  set_defaults(&p->opts);
  p->epfd = p->wakefd = -1;
  p->jobs_tail = &p->jobs;
  pthread_mutex_init(&p->lock, NULL);
  pthread_cond_init(&p->cmd_cond, NULL);
  pthread_cond_init(&p->job_cond, NULL);
  p->wake_ev.kind = EV_WAKE;
  struct epoll_event e = { .events = EPOLLIN, .data.ptr = &p->wake_ev };
  int r = corral__resolver_new(opts ? opts->resolver_file : NULL, &p->resolver, err);
  if (r == 0)
    r = corral__tls_client_ctx(opts ? opts->upstream_ca_file : NULL, &p->tls_client, err);
  if (r == 0 && ((p->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0
                 || (p->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0
                 || epoll_ctl(p->epfd, EPOLL_CTL_ADD, p->wakefd, &e) < 0))
    r = corral_error_set(err, errno, "creating the egress proxy's event loop");
  if (r == 0)
    r = start_threads(p, err);
  if (r < 0)
    {
      proxy_free(p);
      return corral_error_wrap(err, "egress proxy");
    }
  *out = p;
  return 0;
}

int corral_proxy_add(corral_proxy_t *p, const char *sandbox_id, int http_fd, int socks_fd,
                     corral_net_policy_t *policy, corral_error_t *err)
{
  if (sandbox_id == NULL || sandbox_id[0] == '\0' || strlen(sandbox_id) >= PROXY_ID_MAX)
    return corral_error_set(err, EINVAL, "invalid sandbox id for the egress proxy");
  if (policy == NULL || (http_fd < 0 && socks_fd < 0))
    return corral_error_set(err, EINVAL, "the egress proxy needs a policy and at least one listener");
  struct cmd c = { .op = CMD_ADD, .id = sandbox_id, .http_fd = http_fd, .socks_fd = socks_fd,
                   .policy = policy, .err = err };
  return call(p, &c);
}

int corral_proxy_set_policy(corral_proxy_t *p, const char *sandbox_id, corral_net_policy_t *policy,
                            corral_error_t *err)
{
  if (sandbox_id == NULL || policy == NULL)
    return corral_error_set(err, EINVAL, "corral_proxy_set_policy needs a sandbox id and a policy");
  struct cmd c = { .op = CMD_SET_POLICY, .id = sandbox_id, .policy = policy, .err = err };
  return call(p, &c);
}

int corral_proxy_remove(corral_proxy_t *p, const char *sandbox_id)
{
  if (sandbox_id == NULL)
    return -ENOENT;
  struct cmd c = { .op = CMD_REMOVE, .id = sandbox_id };
  return call(p, &c);
}

int corral_proxy_set_secrets(corral_proxy_t *p, const char *sandbox_id, const corral_secret_t *secrets, size_t n,
                             corral_error_t *err)
{
  if (sandbox_id == NULL)
    return corral_error_set(err, EINVAL, "corral_proxy_set_secrets needs a sandbox id");
  struct cmd c = { .op = CMD_SET_SECRETS, .id = sandbox_id, .err = err };
  /* Validation and key generation happen here, off the loop thread. */
  if (corral__secrets_new(secrets, n, &c.secrets, err) < 0)
    return corral_error_wrap(err, "sandbox %s", sandbox_id);
  if (n > 0 && corral__ca_new(sandbox_id, &c.ca, err) < 0)
    {
      corral__secrets_free(c.secrets);
      return -1;
    }
  int r = call(p, &c);
  corral__secrets_free(c.secrets); /* NULL unless it failed */
  corral__ca_free(c.ca);           /* NULL unless the sandbox had a CA */
  return r;
}

int corral_proxy_secret_placeholder(corral_proxy_t *p, const char *sandbox_id, const char *name,
                                    char out[CORRAL_SECRET_PLACEHOLDER_MAX], corral_error_t *err)
{
  if (sandbox_id == NULL || name == NULL)
    return corral_error_set(err, EINVAL, "corral_proxy_secret_placeholder needs a sandbox id and a name");
  struct cmd c = { .op = CMD_PLACEHOLDER, .id = sandbox_id, .name = name, .out = out, .err = err };
  return call(p, &c);
}

int corral_proxy_ca_pem(corral_proxy_t *p, const char *sandbox_id, char **pem, corral_error_t *err)
{
  if (sandbox_id == NULL || pem == NULL)
    return corral_error_set(err, EINVAL, "corral_proxy_ca_pem needs a sandbox id");
  *pem = NULL;
  struct cmd c = { .op = CMD_CA_PEM, .id = sandbox_id, .pem = pem, .err = err };
  return call(p, &c);
}

int corral_proxy_stats(corral_proxy_t *p, const char *sandbox_id, corral_proxy_stats_t *out)
{
  memset(out, 0, sizeof(*out));
  if (sandbox_id == NULL)
    {
      read_counters(&p->stats, out);
      return 0;
    }
  pthread_mutex_lock(&p->lock);
  struct sandbox *sb = find_sandbox(p, sandbox_id);
  if (sb)
    read_counters(&sb->stats, out);
  pthread_mutex_unlock(&p->lock);
  return sb ? 0 : -ENOENT;
}

void corral_proxy_stop(corral_proxy_t *p)
{
  if (p == NULL)
    return;
  if (p->thread_started)
    {
      struct cmd c = { .op = CMD_STOP };
      if (pthread_equal(pthread_self(), p->thread))
        abort();                /* documented: not from the audit callback */
      call(p, &c);
      pthread_join(p->thread, NULL);
    }
  proxy_free(p);
}
