/* The server name (SNI, RFC 6066) of a TLS ClientHello, read from the first
 * bytes a client sends through a CONNECT tunnel.  The ClientHello may span
 * several TLS records; they are reassembled into a bounded buffer.  Every
 * length field is checked against what is left before use (fuzzed:
 * fuzz_net_sni). */
#define _GNU_SOURCE
#include <string.h>
#include "net.h"

#define REC_HANDSHAKE 0x16
#define HS_CLIENT_HELLO 1
#define EXT_SERVER_NAME 0
#define NAME_HOST 0
#define MAX_RECORD 16384 /* TLSPlaintext.length limit (RFC 8446 5.1) */

/* A cursor over a length-checked byte range. */
struct cur
{
  const uint8_t *p;
  size_t left;
};

static bool take(struct cur *c, size_t n, const uint8_t **out)
{
  if (c->left < n)
    return false;
  if (out)
    *out = c->p;
  c->p += n;
  c->left -= n;
  return true;
}

static bool u8(struct cur *c, size_t *v)
{
  const uint8_t *p;
  if (!take(c, 1, &p))
    return false;
  *v = p[0];
  return true;
}

static bool u16(struct cur *c, size_t *v)
{
  const uint8_t *p;
  if (!take(c, 2, &p))
    return false;
  *v = (size_t) p[0] << 8 | p[1];
  return true;
}

/* A length-prefixed vector as a sub-cursor. */
static bool vec(struct cur *c, size_t len_bytes, struct cur *sub)
{
  size_t n;
  if (!(len_bytes == 1 ? u8(c, &n) : u16(c, &n)))
    return false;
  sub->p = c->p;
  sub->left = n;
  return take(c, n, NULL);
}

static enum corral__sni_result parse_server_name(struct cur ext, char out[256], bool *found)
{
  struct cur list;
  if (!vec(&ext, 2, &list) || ext.left != 0 || list.left == 0)
    return CORRAL__SNI_MALFORMED;
  while (list.left > 0)
    {
      size_t type;
      struct cur name;
      if (!u8(&list, &type) || !vec(&list, 2, &name))
        return CORRAL__SNI_MALFORMED;
      if (type != NAME_HOST)
        continue;
      /* Two host names would let the check see one and the server use the
       * other: RFC 6066 forbids it, and so do we. */
      if (*found || name.left == 0 || name.left > 255 || memchr(name.p, '\0', name.left) != NULL)
        return CORRAL__SNI_MALFORMED;
      memcpy(out, name.p, name.left);
      out[name.left] = '\0';
      *found = true;
    }
  return CORRAL__SNI_FOUND;
}

static enum corral__sni_result parse_hello(struct cur c, char out[256])
{
  struct cur skip, exts;
  bool found = false, seen = false;

  if (!take(&c, 2 + 32, NULL))           /* legacy_version, random */
    return CORRAL__SNI_MALFORMED;
  if (!vec(&c, 1, &skip) || skip.left > 32) /* legacy_session_id */
    return CORRAL__SNI_MALFORMED;
  if (!vec(&c, 2, &skip) || skip.left < 2 || skip.left % 2) /* cipher_suites */
    return CORRAL__SNI_MALFORMED;
  if (!vec(&c, 1, &skip) || skip.left < 1) /* legacy_compression_methods */
    return CORRAL__SNI_MALFORMED;
  if (c.left == 0)
    return CORRAL__SNI_NONE;             /* no extensions at all */
  if (!vec(&c, 2, &exts) || c.left != 0)
    return CORRAL__SNI_MALFORMED;
  while (exts.left > 0)
    {
      size_t type;
      struct cur data;
      if (!u16(&exts, &type) || !vec(&exts, 2, &data))
        return CORRAL__SNI_MALFORMED;
      if (type != EXT_SERVER_NAME)
        continue;
      if (seen || parse_server_name(data, out, &found) != CORRAL__SNI_FOUND)
        return CORRAL__SNI_MALFORMED;
      seen = true;
    }
  return found ? CORRAL__SNI_FOUND : CORRAL__SNI_NONE;
}

static enum corral__sni_result parse_records(const uint8_t *buf, size_t len, char out[256])
{
  static __thread uint8_t hs[CORRAL__SNI_MAX_HELLO];
  size_t hs_len = 0, off = 0;

  if (len == 0)
    return CORRAL__SNI_NEED_MORE;
  if (buf[0] != REC_HANDSHAKE)
    return CORRAL__SNI_NOT_TLS;
  for (;;)
    {
      if (len - off < 5)
        return CORRAL__SNI_NEED_MORE;
      const uint8_t *rec = buf + off;
      size_t rlen = (size_t) rec[3] << 8 | rec[4];
      /* Only handshake records until the hello is whole (no alerts or
       * application data interleaved), TLS 1.x framing, sane lengths. */
      if (rec[0] != REC_HANDSHAKE || rec[1] != 3 || rlen == 0 || rlen > MAX_RECORD)
        return CORRAL__SNI_MALFORMED;
      if (len - off - 5 < rlen)
        return hs_len + rlen > sizeof(hs) ? CORRAL__SNI_MALFORMED : CORRAL__SNI_NEED_MORE;
      if (hs_len + rlen > sizeof(hs))
        return CORRAL__SNI_MALFORMED;
      memcpy(hs + hs_len, rec + 5, rlen);
      hs_len += rlen;
      off += 5 + rlen;
      if (hs_len < 4)
        continue;
      if (hs[0] != HS_CLIENT_HELLO)
        return CORRAL__SNI_MALFORMED;
      size_t body = (size_t) hs[1] << 16 | (size_t) hs[2] << 8 | hs[3];
      if (body > sizeof(hs) - 4)
        return CORRAL__SNI_MALFORMED;
      if (hs_len >= 4 + body)
        return parse_hello((struct cur) { hs + 4, body }, out);
    }
}

enum corral__sni_result corral__sni_parse(const uint8_t *buf, size_t len, char out[256])
{
  out[0] = '\0';
  enum corral__sni_result r = parse_records(buf, len, out);
  if (r != CORRAL__SNI_FOUND)
    out[0] = '\0';             /* a name from a hello later refused is no name */
  return r;
}
