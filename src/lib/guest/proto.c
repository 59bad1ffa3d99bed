/* Frames between corrald and the agent: see proto.h. */
#define _GNU_SOURCE
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include "proto.h"
#include "../common/utils.h"

#define HDR 5 /* u32 length + u8 type */

static void reserve(struct corral__frame *f, size_t more)
{
  if (f->failed)
    return;
  if (f->len + more > CORRAL__FRAME_MAX + 4)
    {
      f->failed = true;
      return;
    }
  if (f->len + more <= f->cap)
    return;
  size_t cap = f->cap ? f->cap : 256;
  while (cap < f->len + more)
    cap *= 2;
  uint8_t *b = realloc(f->buf, cap);
  if (!b)
    {
      f->failed = true;
      return;
    }
  f->buf = b;
  f->cap = cap;
}

void corral__frame_init(struct corral__frame *f, uint8_t type)
{
  memset(f, 0, sizeof(*f));
  reserve(f, HDR);
  if (!f->failed)
    {
      f->buf[4] = type;
      f->len = HDR;
    }
}

void corral__frame_add(struct corral__frame *f, uint8_t tag, const void *data, size_t len)
{
  uint32_t l = (uint32_t) len;
  if (len > CORRAL__FRAME_MAX)
    {
      f->failed = true;
      return;
    }
  reserve(f, 5 + len);
  if (f->failed)
    return;
  f->buf[f->len] = tag;
  memcpy(f->buf + f->len + 1, &l, 4);
  if (len)
    memcpy(f->buf + f->len + 5, data, len);
  f->len += 5 + len;
}

void corral__frame_add_str(struct corral__frame *f, uint8_t tag, const char *s)
{
  corral__frame_add(f, tag, s, strlen(s));
}

void corral__frame_add_u64(struct corral__frame *f, uint8_t tag, uint64_t v)
{
  corral__frame_add(f, tag, &v, sizeof(v));
}

const uint8_t *corral__frame_finish(struct corral__frame *f, size_t *len)
{
  if (f->failed)
    return NULL;
  uint32_t body = (uint32_t) (f->len - 4);
  memcpy(f->buf, &body, 4);
  *len = f->len;
  return f->buf;
}

void corral__frame_release(struct corral__frame *f)
{
  free(f->buf);
  memset(f, 0, sizeof(*f));
}

int corral__frame_send(int fd, struct corral__frame *f)
{
  size_t len;
  const uint8_t *b = corral__frame_finish(f, &len);
  int r = b ? corral__write_all(fd, b, len) : (errno = ENOMEM, -1);
  corral__frame_release(f);
  return r;
}

int corral__send_data(int fd, uint8_t type, const void *data, size_t len)
{
  uint8_t hdr[HDR + 5];
  uint32_t body = (uint32_t) (1 + 5 + len), l = (uint32_t) len;
  if (len > CORRAL__FRAME_MAX - 16)
    return errno = EMSGSIZE, -1;
  memcpy(hdr, &body, 4);
  hdr[4] = type;
  hdr[5] = CORRAL__T_DATA;
  memcpy(hdr + 6, &l, 4);
  if (corral__write_all(fd, hdr, sizeof(hdr)) < 0)
    return -1;
  return len ? corral__write_all(fd, data, len) : 0;
}

int corral__msg_parse(const uint8_t *body, size_t len, struct corral__msg *m)
{
  size_t pos = 1;
  if (len < 1)
    return errno = EPROTO, -1;
  m->type = body[0];
  m->fields = body + 1;
  m->len = len - 1;
  while (pos < len)
    {
      uint32_t l;
      if (len - pos < 5)
        return errno = EPROTO, -1;
      memcpy(&l, body + pos + 1, 4);
      if (l > len - pos - 5)
        return errno = EPROTO, -1;
      pos += 5 + (size_t) l;
    }
  return 0;
}

int corral__msg_next(const struct corral__msg *m, size_t *pos, uint8_t *tag, const uint8_t **data, uint32_t *len)
{
  if (*pos + 5 > m->len)
    return 0;
  *tag = m->fields[*pos];
  memcpy(len, m->fields + *pos + 1, 4);
  if (*len > m->len - *pos - 5)
    return 0;
  *data = m->fields + *pos + 5;
  *pos += 5 + (size_t) *len;
  return 1;
}

bool corral__msg_get(const struct corral__msg *m, uint8_t tag, const uint8_t **data, uint32_t *len)
{
  size_t pos = 0;
  uint8_t t;
  const uint8_t *d;
  uint32_t l;
  /* The outputs change only on a match. */
  while (corral__msg_next(m, &pos, &t, &d, &l))
    if (t == tag)
      {
        *data = d;
        *len = l;
        return true;
      }
  return false;
}

char *corral__msg_strdup(const struct corral__msg *m, uint8_t tag)
{
  const uint8_t *d;
  uint32_t l;
  if (!corral__msg_get(m, tag, &d, &l) || memchr(d, 0, l))
    return NULL;
  return strndup((const char *) d, l);
}

bool corral__msg_u64(const struct corral__msg *m, uint8_t tag, uint64_t *v)
{
  const uint8_t *d;
  uint32_t l;
  if (!corral__msg_get(m, tag, &d, &l) || l != sizeof(*v))
    return false;
  memcpy(v, d, sizeof(*v));
  return true;
}

char **corral__msg_strv(const struct corral__msg *m, uint8_t tag, size_t *n)
{
  size_t pos = 0, count = 0, i = 0;
  uint8_t t;
  const uint8_t *d;
  uint32_t l;
  while (corral__msg_next(m, &pos, &t, &d, &l))
    count += t == tag;
  char **v = calloc(count + 1, sizeof(*v));
  if (!v)
    return NULL;
  pos = 0;
  while (corral__msg_next(m, &pos, &t, &d, &l))
    {
      if (t != tag)
        continue;
      if (memchr(d, 0, l) || !(v[i] = strndup((const char *) d, l)))
        {
          corral__strv_free(v);
          return NULL;
        }
      i++;
    }
  if (n)
    *n = count;
  return v;
}

void corral__strv_free(char **v)
{
  if (!v)
    return;
  for (char **p = v; *p; p++)
    free(*p);
  free(v);
}

static int wait_readable(int fd, int timeout_ms)
{
  struct pollfd p = { .fd = fd, .events = POLLIN };
  int r;
  if (timeout_ms < 0)
    return 0;
  while ((r = poll(&p, 1, timeout_ms)) < 0 && errno == EINTR)
    ;
  if (r == 0)
    return errno = ETIMEDOUT, -1;
  return r < 0 ? -1 : 0;
}

/* read() exactly len bytes with the deadline applied per wait. */
static ssize_t read_full(int fd, uint8_t *b, size_t len, int timeout_ms)
{
  size_t got = 0;
  while (got < len)
    {
      if (wait_readable(fd, timeout_ms) < 0)
        return -1;
      ssize_t n = read(fd, b + got, len - got);
      if (n < 0 && (errno == EINTR || errno == EAGAIN))
        continue;
      if (n < 0)
        return -1;
      if (n == 0)
        break;
      got += (size_t) n;
    }
  return (ssize_t) got;
}

int corral__frame_recv(int fd, uint8_t **buf, size_t *cap, struct corral__msg *m, int timeout_ms)
{
  uint32_t len;
  ssize_t n = read_full(fd, (uint8_t *) &len, 4, timeout_ms);
  if (n == 0)
    return 0;
  if (n != 4 || len == 0 || len > CORRAL__FRAME_MAX)
    return errno = n < 0 ? errno : EPROTO, -1;
  if (*cap < len)
    {
      uint8_t *b = realloc(*buf, len);
      if (!b)
        return -1;
      *buf = b;
      *cap = len;
    }
  if (read_full(fd, *buf, len, timeout_ms) != (ssize_t) len)
    return errno = errno ? errno : EPROTO, -1;
  return corral__msg_parse(*buf, len, m) < 0 ? -1 : 1;
}
