/* libFuzzer target: the agent wire decoder (src/lib/guest/proto.h) on an
 * arbitrary frame body (1 type byte, then fields of 1 tag byte, a 4-byte
 * host-order length and that many bytes).  Both ends of the agent socket
 * decode with it, and the agent runs it on whatever a sandboxed process
 * manages to send, so besides crashes, leaks and UB (ASan/UBSan) it checks
 * the decoder against an independent reference walk of the same bytes:
 *   - corral__msg_parse accepts exactly the bodies whose fields tile it;
 *   - corral__msg_next yields exactly those fields, in order, and never
 *     reads past m->len even on a message that was not validated;
 *   - corral__msg_get / _strdup / _u64 / _strv answer from the first (or
 *     every) field of a tag, refuse what their contract refuses (NUL bytes,
 *     a u64 that is not 8 bytes), copy the right bytes, and leave their
 *     outputs alone when the tag is missing;
 *   - the frame builder re-encodes the fields to the same bytes, and
 *     corral__frame_recv / corral__send_data round-trip through an fd. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "guest/proto.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)

struct field
{
  uint8_t tag;
  size_t off; /* of the data, in the body */
  uint32_t len;
};

/* The reference: fields of body[1..size), as msg_parse should see them.
 * Returns how many were read; *ok when they tile the body exactly. */
static size_t ref_walk(const uint8_t *body, size_t size, struct field *out, size_t max, bool *ok)
{
  size_t pos = 1, n = 0;
  *ok = size >= 1;
  while (*ok && pos < size)
    {
      uint32_t l;
      if (size - pos < 5)
        {
          *ok = false;
          break;
        }
      memcpy(&l, body + pos + 1, 4);
      if ((uint64_t) l > size - pos - 5)
        {
          *ok = false;
          break;
        }
      if (n < max)
        out[n] = (struct field) { body[pos], pos + 5, l };
      n++;
      pos += 5 + (size_t) l;
    }
  return n;
}

static int memfd(void)
{
  static int fd = -1;
  if (fd < 0)
    fd = memfd_create("fuzz_proto", 0);
  CHECK(fd >= 0);
  return fd;
}

/* Make fd hold exactly bytes, read from the start. */
static void refill(int fd, const void *a, size_t alen, const void *b, size_t blen)
{
  CHECK(ftruncate(fd, 0) == 0);
  CHECK(lseek(fd, 0, SEEK_SET) == 0);
  if (alen)
    CHECK(write(fd, a, alen) == (ssize_t) alen);
  if (blen)
    CHECK(write(fd, b, blen) == (ssize_t) blen);
  CHECK(lseek(fd, 0, SEEK_SET) == 0);
}

static void check_tag(const struct corral__msg *m, const uint8_t *body, const struct field *f, size_t n,
                      uint8_t tag)
{
  const struct field *first = NULL;
  size_t count = 0;
  bool any_nul = false;
  for (size_t i = 0; i < n; i++)
    if (f[i].tag == tag)
      {
        if (!first)
          first = &f[i];
        count++;
        any_nul |= memchr(body + f[i].off, 0, f[i].len) != NULL;
      }

  static const uint8_t sentinel;
  const uint8_t *d = &sentinel;
  uint32_t l = 0xa5a5a5a5u;
  bool got = corral__msg_get(m, tag, &d, &l);
  CHECK(got == (first != NULL));
  if (got)
    CHECK(d == body + first->off && l == first->len);
  else
    CHECK(d == &sentinel && l == 0xa5a5a5a5u); /* a miss leaves the outputs alone */

  char *s = corral__msg_strdup(m, tag);
  if (first && !memchr(body + first->off, 0, first->len))
    {
      CHECK(s != NULL);
      CHECK(strlen(s) == first->len && memcmp(s, body + first->off, first->len) == 0);
    }
  else
    CHECK(s == NULL);
  free(s);

  uint64_t v = 0x5a5a5a5a5a5a5a5aull, want;
  bool is_u64 = corral__msg_u64(m, tag, &v);
  CHECK(is_u64 == (first != NULL && first->len == 8));
  if (is_u64)
    {
      memcpy(&want, body + first->off, 8);
      CHECK(v == want);
    }
  else
    CHECK(v == 0x5a5a5a5a5a5a5a5aull); /* untouched */

  size_t got_n = (size_t) -1;
  char **sv = corral__msg_strv(m, tag, &got_n);
  if (any_nul)
    CHECK(sv == NULL);
  else
    {
      CHECK(sv != NULL);
      CHECK(got_n == count);
      size_t i = 0;
      for (size_t k = 0; k < n; k++)
        if (f[k].tag == tag)
          {
            CHECK(sv[i] != NULL);
            CHECK(strlen(sv[i]) == f[k].len && memcmp(sv[i], body + f[k].off, f[k].len) == 0);
            i++;
          }
      CHECK(i == count && sv[count] == NULL);
    }
  corral__strv_free(sv);
  /* n may be NULL */
  corral__strv_free(corral__msg_strv(m, tag, NULL));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  enum { MAX_FIELDS = 4096 };
  static struct field fields[MAX_FIELDS];
  /* An exact-size copy: ASan sees any read past the body. */
  uint8_t *body = malloc(size ? size : 1);
  struct corral__msg m;
  bool ok;
  size_t n;

  if (!body)
    return 0;
  if (size)
    memcpy(body, data, size);
  n = ref_walk(body, size, fields, MAX_FIELDS, &ok);

  /* Iterating a message that was never validated stays in bounds and
   * yields a prefix of the reference fields. */
  if (size >= 1)
    {
      struct corral__msg raw = { body[0], body + 1, size - 1 };
      size_t pos = 0, i = 0;
      uint8_t t;
      const uint8_t *d;
      uint32_t l;
      while (corral__msg_next(&raw, &pos, &t, &d, &l))
        {
          CHECK(pos <= raw.len);
          if (i < MAX_FIELDS)
            CHECK(t == fields[i].tag && d == body + fields[i].off && l == fields[i].len);
          i++;
        }
      CHECK(i <= n);
    }

  memset(&m, 0, sizeof(m));
  errno = 0;
  int r = corral__msg_parse(body, size, &m);
  if (!ok)
    {
      CHECK(r == -1 && errno == EPROTO);
      goto recv;
    }
  CHECK(r == 0);
  CHECK(m.type == body[0] && m.fields == body + 1 && m.len == size - 1);

  /* msg_next: exactly the reference fields, then the end. */
  {
    size_t pos = 0, i = 0;
    uint8_t t;
    const uint8_t *d;
    uint32_t l;
    while (corral__msg_next(&m, &pos, &t, &d, &l))
      {
        CHECK(i < n);
        if (i < MAX_FIELDS)
          CHECK(t == fields[i].tag && d == body + fields[i].off && l == fields[i].len);
        i++;
      }
    CHECK(i == n && pos == m.len);
    CHECK(corral__msg_next(&m, &pos, &t, &d, &l) == 0); /* stays at the end */
  }

  if (n <= MAX_FIELDS)
    {
      /* Every tag present, and a few that usually are not. */
      bool seen[256] = { false };
      for (size_t i = 0; i < n; i++)
        if (!seen[fields[i].tag])
          {
            seen[fields[i].tag] = true;
            check_tag(&m, body, fields, n, fields[i].tag);
          }
      static const uint8_t extra[] = { 0, CORRAL__T_ARGV, CORRAL__T_PID, CORRAL__T_DATA, CORRAL__T_TEXT, 255 };
      for (size_t i = 0; i < sizeof(extra); i++)
        if (!seen[extra[i]])
          check_tag(&m, body, fields, n, extra[i]);

      /* The builder writes the same bytes back. */
      if (size <= CORRAL__FRAME_MAX)
        {
          struct corral__frame f;
          size_t flen = 0;
          corral__frame_init(&f, m.type);
          for (size_t i = 0; i < n; i++)
            corral__frame_add(&f, fields[i].tag, body + fields[i].off, fields[i].len);
          const uint8_t *out = corral__frame_finish(&f, &flen);
          CHECK(out != NULL && flen == size + 4);
          uint32_t hdr;
          memcpy(&hdr, out, 4);
          CHECK(hdr == size && memcmp(out + 4, body, size) == 0);
          corral__frame_release(&f);
        }
    }

recv:
  {
    int fd = memfd();
    uint8_t *buf = NULL;
    size_t cap = 0;
    struct corral__msg rm;
    uint32_t hdr = (uint32_t) size;

    /* The body behind a correct length: read back whole, or refused. */
    if (size <= CORRAL__FRAME_MAX)
      {
        refill(fd, &hdr, 4, body, size);
        int got = corral__frame_recv(fd, &buf, &cap, &rm, 0);
        if (size == 0 || !ok)
          CHECK(got == -1);
        else
          {
            CHECK(got == 1);
            CHECK(rm.type == body[0] && rm.len == size - 1 && memcmp(rm.fields, body + 1, size - 1) == 0);
            CHECK(corral__frame_recv(fd, &buf, &cap, &rm, -1) == 0); /* then a clean EOF */
          }
      }

    /* The raw bytes as a stream of frames (lengths included): whatever
     * they say, reading stops cleanly. */
    refill(fd, body, size, NULL, 0);
    for (int i = 0; i < 64; i++)
      {
        int got = corral__frame_recv(fd, &buf, &cap, &rm, -1);
        CHECK(got >= -1 && got <= 1);
        if (got != 1)
          break;
        CHECK(rm.fields >= buf && rm.fields + rm.len <= buf + cap);
      }

    /* A DATA frame of the whole input, sent and received back. */
    if (size <= CORRAL__FRAME_MAX - 16)
      {
        refill(fd, NULL, 0, NULL, 0);
        CHECK(corral__send_data(fd, CORRAL__M_DATA, body, size) == 0);
        CHECK(lseek(fd, 0, SEEK_SET) == 0);
        CHECK(corral__frame_recv(fd, &buf, &cap, &rm, -1) == 1);
        const uint8_t *d;
        uint32_t l;
        CHECK(rm.type == CORRAL__M_DATA);
        CHECK(corral__msg_get(&rm, CORRAL__T_DATA, &d, &l) && l == size && memcmp(d, body, size) == 0);
      }
    free(buf);
  }
  free(body);
  return 0;
}
