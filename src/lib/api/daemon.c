/* corral_daemon_run(): start-up order matters (see daemon.h). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include "api.h"
#include "../e2b/e2b.h"
#include "../common/utils.h"

void corral_daemon_options_init(corral_daemon_options_t *o)
{
  memset(o, 0, sizeof(*o));
  o->listen = "127.0.0.1:7070";
  o->state_dir = "/var/lib/corral";
  o->max_timeout_s = 86400;
  o->retention_s = 3600;
  o->pool_size = 4;
}

/* Sockets of this state dir's sandboxes: a short path (sun_path holds 108
 * bytes) under the run dir, distinct per state dir. */
static char *run_dir_for(const char *state_dir)
{
  const char *base = getenv("CORRAL_RUN_DIR");
  uint32_t h = 2166136261u;
  char *out;
  for (const char *p = state_dir; *p; p++)
    h = (h ^ (uint8_t) *p) * 16777619u;
  if (asprintf(&out, "%s/d-%08x", base && *base ? base : "/run/corral", h) < 0)
    return NULL;
  return out;
}

static int load_admin_key(struct daemon *d, corral_error_t *err)
{
  char path[PATH_MAX], buf[256];
  const char *env = getenv("CORRAL_ADMIN_KEY");
  if (env && *env)
    {
      d->admin_key = strdup(env);
      return 0;
    }
  snprintf(path, sizeof(path), "%s/admin.key", d->state_dir);
  if (corral__read_file_at(AT_FDCWD, path, buf, sizeof(buf)) > 0)
    {
      buf[strcspn(buf, "\r\n")] = '\0';
      d->admin_key = strdup(buf);
      return 0;
    }
  unsigned char rnd[24];
  if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t) sizeof(rnd))
    return corral_error_set(err, errno, "random admin key");
  strcpy(buf, "ck_admin_");
  for (size_t i = 0; i < sizeof(rnd); i++)
    sprintf(buf + strlen(buf), "%02x", rnd[i]);
  strcat(buf, "\n");
  if (corral__create_file(path, buf, strlen(buf), 0600, err) < 0)
    return corral_error_wrap(err, "write the admin key");
  buf[strcspn(buf, "\n")] = '\0';
  d->admin_key = strdup(buf);
  /* Shown once: afterwards it is only in the 0600 file. */
  fprintf(stderr, "corrald: generated admin key (saved in %s): %s\n", path, buf);
  return 0;
}

static int tcp_listen(const char *spec, corral_error_t *err)
{
  char host[256], *end;
  const char *colon = strrchr(spec, ':');
  struct sockaddr_in a = { .sin_family = AF_INET };
  if (!colon || (size_t) (colon - spec) >= sizeof(host))
    return corral_error_set(err, EINVAL, "--listen wants ADDR:PORT, got `%s`", spec);
  memcpy(host, spec, (size_t) (colon - spec));
  host[colon - spec] = '\0';
  long p = strtol(colon + 1, &end, 10);
  if (!colon[1] || *end || p < 0 || p > 65535 || inet_pton(AF_INET, *host ? host : "0.0.0.0", &a.sin_addr) != 1)
    return corral_error_set(err, EINVAL, "--listen wants ADDR:PORT (IPv4), got `%s`", spec);
  a.sin_port = htons((uint16_t) p);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
  if (fd < 0)
    return corral_error_set(err, errno, "socket");
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd, (struct sockaddr *) &a, sizeof(a)) < 0 || listen(fd, 512) < 0)
    {
      int e = errno;
      close(fd);
      return corral_error_set(err, e, "listen on %s", spec);
    }
  return fd;
}

static int unix_listen(const char *path, corral_error_t *err)
{
  struct sockaddr_un a = { .sun_family = AF_UNIX };
  if (strlen(path) >= sizeof(a.sun_path))
    return corral_error_set(err, ENAMETOOLONG, "--socket path `%s` is too long", path);
  strcpy(a.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return corral_error_set(err, errno, "socket");
  unlink(path);
  if (bind(fd, (struct sockaddr *) &a, sizeof(a)) < 0 || chmod(path, 0660) < 0 || listen(fd, 512) < 0)
    {
      int e = errno;
      close(fd);
      return corral_error_set(err, e, "listen on %s", path);
    }
  return fd;
}

static char *default_agent(void)
{
  char self[PATH_MAX], *out;
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n < 0)
    return NULL;
  self[n] = '\0';
  char *slash = strrchr(self, '/');
  if (slash)
    *slash = '\0';
  return asprintf(&out, "%s/corral-agent", self) < 0 ? NULL : out;
}

/* The runners beside the binaries: an installed tree (bin/ + share/corral/
 * runners) or the source tree (build/bin/ + runners/). */
static char *default_runners(void)
{
  char self[PATH_MAX], dir[PATH_MAX + 64], probe[PATH_MAX + 128];
  /* bin/ of an install, build/bin/ and build/asan/bin/ of the source tree */
  static const char *const rel[] = { "../share/corral/runners", "../../runners", "../../../runners", NULL };
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n < 0)
    return NULL;
  self[n] = '\0';
  char *slash = strrchr(self, '/');
  if (slash)
    *slash = '\0';
  for (int i = 0; rel[i]; i++)
    {
      snprintf(dir, sizeof(dir), "%s/%s", self, rel[i]);
      snprintf(probe, sizeof(probe), "%s/python/runner.py", dir);
      if (access(probe, R_OK) == 0)
        return realpath(dir, NULL);
    }
  return NULL;
}

/* The secret behind per-sandbox access tokens: made once, kept in the
 * state dir so that tokens handed out stay valid across restarts. */
static int load_token_secret(struct daemon *d, corral_error_t *err)
{
  char path[PATH_MAX], hex[80];
  unsigned x;
  snprintf(path, sizeof(path), "%s/token.secret", d->state_dir);
  if (corral__read_file_at(AT_FDCWD, path, hex, sizeof(hex)) >= 64)
    {
      for (size_t i = 0; i < sizeof(d->token_secret) && sscanf(hex + 2 * i, "%2x", &x) == 1; i++)
        d->token_secret[i] = (unsigned char) x;
      return 0;
    }
  if (getrandom(d->token_secret, sizeof(d->token_secret), 0) != (ssize_t) sizeof(d->token_secret))
    return corral_error_set(err, errno, "random token secret");
  for (size_t i = 0; i < sizeof(d->token_secret); i++)
    sprintf(hex + 2 * i, "%02x", d->token_secret[i]);
  strcpy(hex + 64, "\n");
  if (corral__create_file(path, hex, 65, 0600, err) < 0)
    return corral_error_wrap(err, "write the token secret");
  return 0;
}

static int open_state(struct daemon *d, corral_error_t *err)
{
  if (load_admin_key(d, err) < 0 || load_token_secret(d, err) < 0 || e2b_init(d, err) < 0)
    return -1;
  if (corral_store_open(d->state_dir, &d->store, err) < 0)
    return corral_error_wrap(err, "open the state database");
  if (corral_audit_open(d->state_dir, d->store, &d->audit, err) < 0)
    return corral_error_wrap(err, "open the audit log");
  return 0;
}

static void release(struct daemon *d)
{
  contexts_free_all(d);
  e2b_free(d);
  ports_forget(d, NULL);
  corral__spawner_stop(&d->spawner);
  /* The run dir goes when no sandbox socket is left in it. */
  if (d->run_dir)
    {
      char sb[4200];
      snprintf(sb, sizeof(sb), "%s/sb", d->run_dir);
      if (rmdir(sb) == 0 || errno == ENOENT)
        rmdir(d->run_dir);
    }
  if (d->audit)
    corral_audit_close(d->audit);
  if (d->store)
    corral_store_close(d->store);
  free(d->metrics);
  free(d->admin_key);
  free(d->state_dir);
  free(d->run_dir);
  free(d->runners_dir);
}

static int start_listener(struct daemon *d, int fd, struct MHD_Daemon **out, corral_error_t *err)
{
  if (fd < 0)
    return -1;
  *out = api_http_start(d, fd, err);
  if (!*out)
    {
      close(fd);
      return -1;
    }
  return 0;
}

/* Serve until SIGTERM/SIGINT, which every thread has blocked. */
static int serve(struct daemon *d, corral_error_t *err)
{
  struct MHD_Daemon *tcp = NULL, *unx = NULL;
  char sock_default[PATH_MAX];
  const char *sock = d->opt.socket_path;
  sigset_t set;
  int sig;
  if (!sock)
    {
      snprintf(sock_default, sizeof(sock_default), "%s/corrald.sock", d->state_dir);
      sock = sock_default;
    }
  if (d->opt.listen && *d->opt.listen && start_listener(d, tcp_listen(d->opt.listen, err), &tcp, err) < 0)
    return -1;
  if (*sock && start_listener(d, unix_listen(sock, err), &unx, err) < 0)
    {
      if (tcp)
        MHD_stop_daemon(tcp);
      return -1;
    }
  api_log(d, "serving on %s%s%s (state in %s)", d->opt.listen ? d->opt.listen : "", *sock ? " and unix:" : "", sock,
          d->state_dir);
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigwait(&set, &sig);
  api_log(d, "stopping (signal %d); sandboxes keep running", sig);
  atomic_store(&d->stopping, true);
  if (tcp)
    MHD_stop_daemon(tcp);
  if (unx)
    {
      MHD_stop_daemon(unx);
      unlink(sock);
    }
  return 0;
}

int corral_daemon_run(const corral_daemon_options_t *o, corral_error_t *err)
{
  struct daemon d;
  sigset_t set;
  cleanup_free char *agent = NULL;
  memset(&d, 0, sizeof(d));
  d.opt = *o;
  d.epoll_fd = d.wake_fd = -1;
  if (geteuid() != 0)
    return corral_error_set(err, EPERM, "corrald must run as root (it creates namespaces and cgroups)");
  if (corral__mkdir_p(o->state_dir, 0700, err) < 0)
    return corral_error_wrap(err, "state directory");
  d.state_dir = realpath(o->state_dir, NULL);
  if (!d.state_dir)
    return corral_error_set(err, errno, "state directory `%s`", o->state_dir);
  d.run_dir = run_dir_for(d.state_dir);
  agent = o->agent_path ? strdup(o->agent_path) : default_agent();
  /* The spawner is forked before any thread exists (see box.h). */
  d.runners_dir = o->runners_dir ? realpath(o->runners_dir, NULL) : default_runners();
  if (corral__spawner_start(&d.spawner, agent, d.runners_dir, d.run_dir, err) < 0)
    goto fail;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  metrics_init(&d);
  pthread_cond_init(&d.pool_cond, NULL);
  if (open_state(&d, err) < 0 || network_start(&d, err) < 0 || registry_start(&d, err) < 0
      || pool_start(&d, err) < 0)
    goto fail;
  int r = serve(&d, err);
  pool_stop(&d);
  registry_stop(&d);
  network_stop(&d);
  release(&d);
  return r;
fail:
  pool_stop(&d);
  if (d.lifecycle_started)
    registry_stop(&d);
  network_stop(&d);
  release(&d);
  return -1;
}
