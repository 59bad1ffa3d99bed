/* Network of a sandbox: its own network namespace holding only a loopback
 * interface, brought up so that local servers and clients inside the
 * sandbox work.  No route leads anywhere else; the egress proxy (src/lib/net)
 * is reached through listening sockets that corral creates on that loopback
 * from outside (corral__netns_listen). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include "isolate.h"
#include "../common/utils.h"

int corral__loopback_up(corral_error_t *err)
{
  struct ifreq ifr;
  cleanup_close int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return corral_error_set(err, errno, "socket for loopback");
  memset(&ifr, 0, sizeof(ifr));
  strcpy(ifr.ifr_name, "lo");
  if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
    return corral_error_set(err, errno, "get loopback flags");
  ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
  if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
    return corral_error_set(err, errno, "bring loopback up");
  return 0;
}

/* ---- listeners inside a sandbox's network namespace ---- */

struct ns_listen
{
  int nsfd;
  bool udp;
  const uint16_t *ports;
  int *fds;
  size_t n;
  int err_no;
  const char *what;
};

static int listen_loopback(uint16_t port, bool udp)
{
  struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
  int one = 1, fd = socket(AF_INET, (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd, (struct sockaddr *) &a, sizeof(a)) < 0 || (!udp && listen(fd, 128) < 0))
    {
      int e = errno;
      close(fd);
      errno = e;
      return -1;
    }
  return fd;
}

/* A thread of its own enters the namespace: a network namespace is per
 * thread, so no other thread of the caller ever runs inside the sandbox's,
 * and the thread's end leaves it. */
static void *listen_in_ns(void *arg)
{
  struct ns_listen *l = arg;
  if (setns(l->nsfd, CLONE_NEWNET) < 0)
    {
      l->err_no = errno, l->what = "enter the sandbox's network namespace";
      return NULL;
    }
  for (size_t i = 0; i < l->n; i++)
    if ((l->fds[i] = listen_loopback(l->ports[i], l->udp)) < 0)
      {
        l->err_no = errno, l->what = "listen on the sandbox's loopback";
        while (i-- > 0)
          close(l->fds[i]), l->fds[i] = -1;
        return NULL;
      }
  return NULL;
}

static int ns_sockets(pid_t pid, bool udp, const uint16_t *ports, int *fds, size_t n, corral_error_t *err);

int corral__netns_listen(pid_t pid, const uint16_t *ports, int *fds, size_t n, corral_error_t *err)
{
  return ns_sockets(pid, false, ports, fds, n, err);
}

int corral__netns_udp(pid_t pid, uint16_t port, corral_error_t *err)
{
  int fd = -1;
  return ns_sockets(pid, true, &port, &fd, 1, err) < 0 ? -1 : fd;
}

static int ns_sockets(pid_t pid, bool udp, const uint16_t *ports, int *fds, size_t n, corral_error_t *err)
{
  char path[64];
  pthread_t t;
  snprintf(path, sizeof(path), "/proc/%d/ns/net", (int) pid);
  cleanup_close int nsfd = open(path, O_RDONLY | O_CLOEXEC);
  if (nsfd < 0)
    return corral_error_set(err, errno, "open %s", path);
  for (size_t i = 0; i < n; i++)
    fds[i] = -1;
  struct ns_listen l = { .nsfd = nsfd, .udp = udp, .ports = ports, .fds = fds, .n = n };
  int e = pthread_create(&t, NULL, listen_in_ns, &l);
  if (e)
    return corral_error_set(err, e, "start a thread for the sandbox's network namespace");
  pthread_join(t, NULL);
  if (l.err_no)
    return corral_error_set(err, l.err_no, "%s", l.what);
  return 0;
}

struct ns_connect
{
  int nsfd;
  uint16_t port;
  int timeout_ms;
  int fd, err_no;
};

static void *connect_in_ns(void *arg)
{
  struct ns_connect *c = arg;
  struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(c->port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
  if (setns(c->nsfd, CLONE_NEWNET) < 0)
    return c->err_no = errno, NULL;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    return c->err_no = errno, NULL;
  if (connect(fd, (struct sockaddr *) &a, sizeof(a)) < 0 && errno != EINPROGRESS)
    {
      c->err_no = errno;
      close(fd);
      return NULL;
    }
  struct pollfd p = { fd, POLLOUT, 0 };
  int so_err = 0;
  socklen_t len = sizeof(so_err);
  if (poll(&p, 1, c->timeout_ms) != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_err, &len) < 0 || so_err)
    {
      c->err_no = so_err ? so_err : ETIMEDOUT;
      close(fd);
      return NULL;
    }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  c->fd = fd;
  return NULL;
}

int corral__netns_connect(pid_t pid, uint16_t port, int timeout_ms, corral_error_t *err)
{
  char path[64];
  pthread_t t;
  snprintf(path, sizeof(path), "/proc/%d/ns/net", (int) pid);
  cleanup_close int nsfd = open(path, O_RDONLY | O_CLOEXEC);
  if (nsfd < 0)
    return corral_error_set(err, errno, "open %s", path);
  struct ns_connect c = { .nsfd = nsfd, .port = port, .timeout_ms = timeout_ms, .fd = -1 };
  int e = pthread_create(&t, NULL, connect_in_ns, &c);
  if (e)
    return corral_error_set(err, e, "start a thread for the sandbox's network namespace");
  pthread_join(t, NULL);
  if (c.fd < 0)
    return corral_error_set(err, c.err_no, "connect to port %u in the sandbox", (unsigned) port);
  return c.fd;
}
