/* Name resolution for the proxy: the system resolver, or a resolver file
 * for tests ("name addr1 [addr2 ...]", one answer per lookup, cycling), so
 * that tests can script DNS rebinding without any real DNS. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include "net.h"
#include "../common/utils.h"

#define MAX_FILE (1 << 20)
#define MAX_ENTRIES 4096
#define MAX_LINE_ADDRS 16

struct entry
{
  char name[CORRAL__NAME_MAX];
  size_t n;
  struct sockaddr_storage addrs[MAX_LINE_ADDRS];
  unsigned next;                /* atomic: the answer of the next lookup */
};

struct corral__resolver
{
  bool from_file;
  size_t n, cap;
  struct entry *entries;
};

static bool parse_addr(const char *s, struct sockaddr_storage *ss)
{
  memset(ss, 0, sizeof(*ss));
  struct sockaddr_in *in = (struct sockaddr_in *) ss;
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) ss;
  if (inet_pton(AF_INET, s, &in->sin_addr) == 1)
    {
      in->sin_family = AF_INET;
      return true;
    }
  if (inet_pton(AF_INET6, s, &in6->sin6_addr) == 1)
    {
      in6->sin6_family = AF_INET6;
      return true;
    }
  return false;
}

static int parse_line(struct corral__resolver *r, char *line, unsigned lineno, corral_error_t *err)
{
  char *save = NULL, *tok = strtok_r(line, " \t\r", &save);
  if (tok == NULL)
    return 0;
  if (r->n >= MAX_ENTRIES)
    return corral_error_set(err, E2BIG, "line %u: more than %d names", lineno, MAX_ENTRIES);
  if (r->n == r->cap)
    {
      size_t cap = r->cap ? r->cap * 2 : 16;
      struct entry *v = realloc(r->entries, cap * sizeof(*v));
      if (v == NULL)
        return corral_error_set(err, ENOMEM, "allocating the resolver");
      r->entries = v;
      r->cap = cap;
    }
  struct entry *e = &r->entries[r->n];
  memset(e, 0, sizeof(*e));
  if (!corral__name_normalize(tok, strlen(tok), false, e->name))
    return corral_error_set(err, EINVAL, "line %u: invalid name \"%.64s\"", lineno, tok);
  for (size_t i = 0; i < r->n; i++)
    if (strcmp(r->entries[i].name, e->name) == 0)
      return corral_error_set(err, EINVAL, "line %u: %s is listed twice", lineno, e->name);
  while ((tok = strtok_r(NULL, " \t\r", &save)) != NULL)
    {
      if (e->n >= MAX_LINE_ADDRS)
        return corral_error_set(err, E2BIG, "line %u: more than %d addresses", lineno, MAX_LINE_ADDRS);
      if (!parse_addr(tok, &e->addrs[e->n++]))
        return corral_error_set(err, EINVAL, "line %u: invalid address \"%.64s\"", lineno, tok);
    }
  if (e->n == 0)
    return corral_error_set(err, EINVAL, "line %u: %s has no address", lineno, e->name);
  r->n++;
  return 0;
}

int corral__resolver_parse(const char *text, size_t len, struct corral__resolver **out, corral_error_t *err)
{
  cleanup_free char *copy = strndup(text, len);
  struct corral__resolver *r = calloc(1, sizeof(*r));
  unsigned lineno = 0;
  if (copy == NULL || r == NULL)
    {
      free(r);
      return corral_error_set(err, ENOMEM, "allocating the resolver");
    }
  r->from_file = true;
  for (char *line = copy, *next; line != NULL; line = next)
    {
      next = strchr(line, '\n');
      if (next)
        *next++ = '\0';
      lineno++;
      char *hash = strchr(line, '#');
      if (hash)
        *hash = '\0';
      if (parse_line(r, line, lineno, err) < 0)
        {
          corral__resolver_free(r);
          return -EINVAL;
        }
    }
  *out = r;
  return 0;
}

int corral__resolver_new(const char *file, struct corral__resolver **out, corral_error_t *err)
{
  if (file == NULL)
    {
      *out = calloc(1, sizeof(**out));
      return *out ? 0 : corral_error_set(err, ENOMEM, "allocating the resolver");
    }
  cleanup_close int fd = open(file, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return corral_error_set(err, errno, "open resolver file %s", file);
  cleanup_free char *buf = malloc(MAX_FILE);
  if (buf == NULL)
    return corral_error_set(err, ENOMEM, "reading resolver file %s", file);
  ssize_t n = corral__read_all(fd, buf, MAX_FILE);
  if (n < 0)
    return corral_error_set(err, errno, "read resolver file %s", file);
  if (n == MAX_FILE)
    return corral_error_set(err, EFBIG, "resolver file %s is larger than %d bytes", file, MAX_FILE);
  if (corral__resolver_parse(buf, (size_t) n, out, err) < 0)
    return corral_error_wrap(err, "resolver file %s", file);
  return 0;
}

void corral__resolver_free(struct corral__resolver *r)
{
  if (r == NULL)
    return;
  free(r->entries);
  free(r);
}

static void set_port(struct sockaddr_storage *ss, uint16_t port)
{
  if (ss->ss_family == AF_INET)
    ((struct sockaddr_in *) ss)->sin_port = htons(port);
  else
    ((struct sockaddr_in6 *) ss)->sin6_port = htons(port);
}

static int resolve_file(struct corral__resolver *r, const char *name, uint16_t port, struct corral__addrlist *out,
                        const char **why)
{
  char norm[CORRAL__NAME_MAX];
  if (!corral__name_normalize(name, strlen(name), false, norm))
    return (*why = "invalid name"), -1;
  for (size_t i = 0; i < r->n; i++)
    {
      struct entry *e = &r->entries[i];
      if (strcmp(e->name, norm) != 0)
        continue;
      unsigned k = __atomic_fetch_add(&e->next, 1, __ATOMIC_RELAXED);
      out->a[0] = e->addrs[k % e->n];
      set_port(&out->a[0], port);
      out->n = 1;
      return 0;
    }
  /* Never fall back to real DNS: a test must not leave the machine. */
  return (*why = "name not found"), -1;
}

static int resolve_system(const char *name, uint16_t port, struct corral__addrlist *out, const char **why)
{
  struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG };
  struct addrinfo *res = NULL;
  int r = getaddrinfo(name, NULL, &hints, &res);
  if (r != 0)
    {
      *why = gai_strerror(r);
      return -1;
    }
  out->n = 0;
  for (struct addrinfo *ai = res; ai && out->n < CORRAL__MAX_ADDRS; ai = ai->ai_next)
    {
      if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) || ai->ai_addrlen > sizeof(out->a[0]))
        continue;
      memset(&out->a[out->n], 0, sizeof(out->a[0]));
      memcpy(&out->a[out->n], ai->ai_addr, ai->ai_addrlen);
      set_port(&out->a[out->n], port);
      out->n++;
    }
  freeaddrinfo(res);
  if (out->n == 0)
    return (*why = "no IPv4 or IPv6 address"), -1;
  return 0;
}

int corral__resolve(struct corral__resolver *r, const char *name, uint16_t port, struct corral__addrlist *out,
                    const char **why)
{
  out->n = 0;
  if (r->from_file)
    return resolve_file(r, name, port, out, why);
  return resolve_system(name, port, out, why);
}
