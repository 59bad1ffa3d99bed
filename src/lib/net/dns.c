/* DNS inside a sandbox: a UDP responder on the sandbox's 127.0.0.1:53 (its
 * generated /etc/resolv.conf names no server, so resolvers ask there) that
 * answers only names the sandbox's policy lets it connect to, with the
 * addresses the policy would let it reach, and NXDOMAIN for everything
 * else.  The answers are for programs that resolve before they connect
 * through the proxy; the proxy still resolves and checks on its own, so a
 * stale or forged answer reaches nothing.  The query parser is the only
 * parser here (fuzzed: tests/fuzz/fuzz_net_dns.c). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "net.h"

#define MAX_SANDBOXES 4096
#define TTL 30
enum { T_A = 1, T_AAAA = 28, C_IN = 1, RCODE_OK = 0, RCODE_FORMERR = 1, RCODE_NXDOMAIN = 3 };

static uint16_t get16(const uint8_t *p)
{
  return (uint16_t) ((p[0] << 8) | p[1]);
}

static void put16(uint8_t *p, uint16_t v)
{
  p[0] = (uint8_t) (v >> 8);
  p[1] = (uint8_t) v;
}

int corral__dns_parse_query(const uint8_t *msg, size_t len, struct corral__dns_query *q)
{
  size_t off = 12, n = 0;
  memset(q, 0, sizeof(*q));
  if (len < 12 || len > 512)
    return -1;
  q->id = get16(msg);
  q->rd = (msg[2] & 0x01) != 0;
  /* A query (QR 0), opcode QUERY, exactly one question. */
  if ((msg[2] & 0x80) || ((msg[2] >> 3) & 0x0f) != 0 || get16(msg + 4) != 1)
    return -1;
  for (;;)
    {
      if (off >= len)
        return -1;
      uint8_t l = msg[off++];
      if (l == 0)
        break;
      /* Labels only: compression pointers have no place in a question. */
      if (l > 63 || off + l > len || n + l + 1 >= sizeof(q->name))
        return -1;
      if (n)
        q->name[n++] = '.';
      for (uint8_t i = 0; i < l; i++)
        {
          char c = (char) msg[off + i];
          if (c == '\0' || c == '.')
            return -1;
          q->name[n++] = (char) (c >= 'A' && c <= 'Z' ? c + 32 : c);
        }
      off += l;
    }
  if (n == 0 || off + 4 > len)
    return -1;
  q->name[n] = '\0';
  q->qtype = get16(msg + off);
  q->qclass = get16(msg + off + 2);
  q->question = msg + 12;
  q->question_len = off + 4 - 12;
  return 0;
}

size_t corral__dns_answer(const struct corral__dns_query *q, int rcode, const struct sockaddr_storage *addrs,
                          size_t n, uint8_t *out, size_t cap)
{
  size_t off = 12 + q->question_len, count = 0;
  if (cap < off || cap > 65535)
    return 0;
  memset(out, 0, 12);
  put16(out, q->id);
  out[2] = (uint8_t) (0x80 | (q->rd ? 0x01 : 0)); /* QR, RD echoed */
  out[3] = (uint8_t) (0x80 | (rcode & 0x0f));     /* RA */
  put16(out + 4, 1);
  memcpy(out + 12, q->question, q->question_len);
  for (size_t i = 0; rcode == RCODE_OK && q->qclass == C_IN && i < n; i++)
    {
      const struct sockaddr_storage *a = &addrs[i];
      bool v4 = a->ss_family == AF_INET && q->qtype == T_A, v6 = a->ss_family == AF_INET6 && q->qtype == T_AAAA;
      size_t rdlen = v4 ? 4 : 16;
      if ((!v4 && !v6) || off + 12 + rdlen > cap)
        continue;
      put16(out + off, 0xc00c); /* the name of the question */
      put16(out + off + 2, q->qtype);
      put16(out + off + 4, C_IN);
      out[off + 6] = out[off + 7] = 0;
      put16(out + off + 8, TTL);
      put16(out + off + 10, (uint16_t) rdlen);
      memcpy(out + off + 12,
             v4 ? (const void *) &((const struct sockaddr_in *) a)->sin_addr
                : (const void *) &((const struct sockaddr_in6 *) a)->sin6_addr,
             rdlen);
      off += 12 + rdlen;
      count++;
    }
  put16(out + 6, (uint16_t) count);
  return off;
}

/* ---- the responder ---- */

struct dns_sandbox
{
  struct dns_sandbox *next;
  char id[64];
  int fd;
  corral_net_policy_t *policy;
  bool dead; /* removed: the loop closes it, being the only user of its fd */
};

static void sandbox_free(struct dns_sandbox *s)
{
  close(s->fd);
  corral_net_policy_unref(s->policy);
  free(s);
}

struct corral_dns
{
  pthread_mutex_t lock;
  pthread_t thread;
  int wake[2];
  bool stopping;
  struct dns_sandbox *sandboxes;
  struct corral__resolver *resolver;
};

static void wake(corral_dns_t *d)
{
  char c = 1;
  if (write(d->wake[1], &c, 1) < 0)
    {
    }
}

/* Answer one query: NXDOMAIN unless the policy allows the name, and then
 * only the resolved addresses it would let the sandbox reach. */
static void answer_with(corral_dns_t *d, int fd, corral_net_policy_t *policy)
{
  uint8_t in[512], out[512];
  struct sockaddr_storage from;
  socklen_t fl = sizeof(from);
  struct corral__dns_query q;
  struct corral__addrlist list = { 0 }, ok = { 0 };
  const char *why;
  ssize_t n = recvfrom(fd, in, sizeof(in), MSG_DONTWAIT, (struct sockaddr *) &from, &fl);
  if (n < 12)
    return;
  int rcode = RCODE_NXDOMAIN;
  if (corral__dns_parse_query(in, (size_t) n, &q) < 0)
    {
      /* Echo what can be echoed of a malformed query: its id. */
      memset(out, 0, 12);
      memcpy(out, in, 2);
      out[2] = 0x80, out[3] = RCODE_FORMERR;
      sendto(fd, out, 12, MSG_DONTWAIT, (struct sockaddr *) &from, fl);
      return;
    }
  if (corral__policy_dns_allows(policy, q.name, NULL) && corral__resolve(d->resolver, q.name, 443, &list, &why) == 0)
    {
      for (size_t i = 0; i < list.n; i++)
        if (corral__policy_dns_allows(policy, q.name, (const struct sockaddr *) &list.a[i]))
          ok.a[ok.n++] = list.a[i];
      if (ok.n)
        rcode = RCODE_OK;
    }
  size_t len = corral__dns_answer(&q, rcode, ok.a, ok.n, out, sizeof(out));
  if (len)
    sendto(fd, out, len, MSG_DONTWAIT, (struct sockaddr *) &from, fl);
}


static void answer(corral_dns_t *d, int fd)
{
  corral_net_policy_t *policy = NULL;
  /* The policy in force now (it may have changed while we polled); none
   * for a sandbox removed meanwhile, which gets no answer. */
  pthread_mutex_lock(&d->lock);
  for (struct dns_sandbox *s = d->sandboxes; s && !policy; s = s->next)
    if (s->fd == fd && !s->dead)
      policy = corral_net_policy_ref(s->policy);
  pthread_mutex_unlock(&d->lock);
  if (!policy)
    return;
  answer_with(d, fd, policy);
  corral_net_policy_unref(policy);
}

static void *loop(void *arg)
{
  corral_dns_t *d = arg;
  for (;;)
    {
      struct pollfd pf[MAX_SANDBOXES + 1];
      size_t n = 1;
      pthread_mutex_lock(&d->lock);
      if (d->stopping)
        {
          pthread_mutex_unlock(&d->lock);
          return NULL;
        }
      for (struct dns_sandbox **pp = &d->sandboxes; *pp;)
        if ((*pp)->dead)
          {
            struct dns_sandbox *s = *pp;
            *pp = s->next;
            sandbox_free(s);
          }
        else
          pp = &(*pp)->next;
      pf[0] = (struct pollfd){ d->wake[0], POLLIN, 0 };
      for (struct dns_sandbox *s = d->sandboxes; s && n <= MAX_SANDBOXES; s = s->next, n++)
        pf[n] = (struct pollfd){ s->fd, POLLIN, 0 };
      pthread_mutex_unlock(&d->lock);
      int r = poll(pf, n, -1);
      if (r > 0 && pf[0].revents)
        {
          char buf[64];
          while (read(d->wake[0], buf, sizeof(buf)) > 0)
            ;
        }
      for (size_t i = 1; r > 0 && i < n; i++)
        if (pf[i].revents & POLLIN)
          answer(d, pf[i].fd);
    }
}

int corral_dns_new(const char *resolver_file, corral_dns_t **out, corral_error_t *err)
{
  corral_dns_t *d = calloc(1, sizeof(*d));
  if (!d)
    return corral_error_set(err, ENOMEM, "DNS responder");
  pthread_mutex_init(&d->lock, NULL);
  if (pipe2(d->wake, O_CLOEXEC | O_NONBLOCK) < 0)
    {
      free(d);
      return corral_error_set(err, errno, "DNS responder");
    }
  if (corral__resolver_new(resolver_file, &d->resolver, err) < 0)
    goto fail;
  int e = pthread_create(&d->thread, NULL, loop, d);
  if (e)
    {
      corral_error_set(err, e, "DNS responder thread");
      corral__resolver_free(d->resolver);
      goto fail;
    }
  *out = d;
  return 0;
fail:
  close(d->wake[0]);
  close(d->wake[1]);
  free(d);
  return -1;
}

int corral_dns_add(corral_dns_t *d, const char *sandbox_id, int udp_fd, corral_net_policy_t *policy,
                   corral_error_t *err)
{
  size_t n = 0;
  struct dns_sandbox *s = calloc(1, sizeof(*s));
  if (!s)
    return corral_error_set(err, ENOMEM, "DNS responder");
  snprintf(s->id, sizeof(s->id), "%s", sandbox_id);
  s->fd = udp_fd;
  s->policy = corral_net_policy_ref(policy);
  pthread_mutex_lock(&d->lock);
  for (struct dns_sandbox *x = d->sandboxes; x; x = x->next)
    n++;
  if (n < MAX_SANDBOXES)
    {
      s->next = d->sandboxes;
      d->sandboxes = s;
    }
  pthread_mutex_unlock(&d->lock);
  if (n >= MAX_SANDBOXES)
    {
      corral_net_policy_unref(s->policy);
      free(s);
      return corral_error_set(err, E2BIG, "too many sandboxes for the DNS responder");
    }
  wake(d);
  return 0;
}

int corral_dns_set_policy(corral_dns_t *d, const char *sandbox_id, corral_net_policy_t *policy, corral_error_t *err)
{
  int found = 0;
  pthread_mutex_lock(&d->lock);
  for (struct dns_sandbox *s = d->sandboxes; s; s = s->next)
    if (strcmp(s->id, sandbox_id) == 0 && !s->dead)
      {
        corral_net_policy_unref(s->policy);
        s->policy = corral_net_policy_ref(policy);
        found = 1;
      }
  pthread_mutex_unlock(&d->lock);
  wake(d);
  return found ? 0 : corral_error_set(err, ENOENT, "sandbox `%s` has no DNS responder", sandbox_id);
}

void corral_dns_remove(corral_dns_t *d, const char *sandbox_id)
{
  if (!d)
    return;
  pthread_mutex_lock(&d->lock);
  for (struct dns_sandbox *s = d->sandboxes; s; s = s->next)
    if (strcmp(s->id, sandbox_id) == 0)
      s->dead = true;
  pthread_mutex_unlock(&d->lock);
  wake(d);
}

void corral_dns_stop(corral_dns_t *d)
{
  if (!d)
    return;
  pthread_mutex_lock(&d->lock);
  d->stopping = true;
  pthread_mutex_unlock(&d->lock);
  wake(d);
  pthread_join(d->thread, NULL);
  for (struct dns_sandbox *s = d->sandboxes, *n; s; s = n)
    {
      n = s->next;
      sandbox_free(s);
    }
  corral__resolver_free(d->resolver);
  close(d->wake[0]);
  close(d->wake[1]);
  pthread_mutex_destroy(&d->lock);
  free(d);
}
