/* The Connect protocol with its JSON codec, as envd speaks it: unary calls
 * are a JSON body and a JSON answer; server streams are enveloped messages
 * (1 flag byte, 4-byte big-endian length, JSON) ending with an end-of-stream
 * envelope (flag 0x02) that carries the error, if any. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "e2b.h"

#define END_STREAM 0x02

bool connect_streaming(struct req *r)
{
  const char *ct = api_header(r, "Content-Type");
  return ct && strncmp(ct, "application/connect+json", 24) == 0;
}

json_t *connect_request(struct req *r)
{
  json_error_t je;
  const char *data = r->body;
  size_t len = r->body_len;
  if (connect_streaming(r))
    {
      uint32_t n;
      if (len < 5)
        return api_fail(r, 400, "invalid_argument", "a streaming call needs an enveloped message"), NULL;
      memcpy(&n, data + 1, 4);
      n = ntohl(n);
      if ((data[0] & 0x01) || n > len - 5)
        return api_fail(r, 400, "invalid_argument", "bad envelope (compressed or truncated)"), NULL;
      data += 5;
      len = n;
    }
  if (len == 0)
    return json_object();
  json_t *o = json_loadb(data, len, 0, &je);
  if (!json_is_object(o))
    {
      json_decref(o);
      return api_fail(r, 400, "invalid_argument", "the message is not a JSON object: %s", je.text), NULL;
    }
  return o;
}

json_t *connect_error(unsigned status, const char *fmt, ...)
{
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  return json_pack("{s:s, s:s}", "code", connect_code(status), "message", msg);
}

json_t *connect_error_from(corral_error_t err)
{
  const char *code;
  unsigned status = api_status_of(corral_error_status(err), &code);
  return connect_error(status, "%s", corral_error_message(err));
}

/* ---- server streams ---- */

struct out
{
  struct connect_stream s;
  char *buf;
  size_t len, off;
  bool done;
};

static int envelope(struct out *o, uint8_t flags, json_t *msg)
{
  char *s = json_dumps(msg, JSON_COMPACT);
  json_decref(msg);
  if (!s)
    return -1;
  uint32_t n = (uint32_t) strlen(s), be = htonl(n);
  free(o->buf);
  o->buf = malloc(n + 5);
  if (!o->buf)
    return free(s), -1;
  o->buf[0] = (char) flags;
  memcpy(o->buf + 1, &be, 4);
  memcpy(o->buf + 5, s, n);
  free(s);
  o->len = n + 5;
  o->off = 0;
  return 0;
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
  (void) pos;
  struct out *o = cls;
  while (o->off >= o->len)
    {
      json_t *error = NULL, *msg;
      if (o->done)
        return MHD_CONTENT_READER_END_OF_STREAM;
      msg = o->s.next(o->s.ctx, &error);
      if (msg)
        {
          if (envelope(o, 0, msg) < 0)
            return MHD_CONTENT_READER_END_WITH_ERROR;
          continue;
        }
      o->done = true;
      if (envelope(o, END_STREAM, error ? json_pack("{s:o}", "error", error) : json_object()) < 0)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
  size_t n = o->len - o->off < max ? o->len - o->off : max;
  memcpy(buf, o->buf + o->off, n);
  o->off += n;
  return (ssize_t) n;
}

static void stream_free(void *cls)
{
  struct out *o = cls;
  if (o->s.release)
    o->s.release(o->s.ctx);
  free(o->buf);
  free(o);
}

int connect_respond_stream(struct req *r, struct connect_stream s)
{
  struct out *o = calloc(1, sizeof(*o));
  if (!o)
    {
      if (s.release)
        s.release(s.ctx);
      return api_fail(r, 500, "internal", "out of memory");
    }
  o->s = s;
  struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 << 10, stream_reader, o,
                                                                stream_free);
  if (!resp)
    {
      stream_free(o);
      return api_fail(r, 500, "internal", "cannot start the stream");
    }
  MHD_add_response_header(resp, "Content-Type", "application/connect+json");
  metrics_request(r->d, r->method, 200, NULL);
  return api_queue(r, 200, resp);
}

/* ---- bytes fields ---- */

json_t *e2b_base64(const void *data, size_t len)
{
  char *out = malloc(4 * ((len + 2) / 3) + 1);
  if (!out)
    return NULL;
  int n = EVP_EncodeBlock((unsigned char *) out, data, (int) len);
  json_t *s = json_stringn_nocheck(out, (size_t) n);
  free(out);
  return s;
}

unsigned char *e2b_unbase64(const char *s, size_t *len)
{
  size_t n = strlen(s), pad = 0;
  char *norm = malloc(n + 4);
  if (!norm)
    return NULL;
  /* protobuf's JSON accepts the URL-safe alphabet and missing padding. */
  for (size_t i = 0; i < n; i++)
    norm[i] = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
  while (n % 4)
    norm[n++] = '=';
  norm[n] = '\0';
  unsigned char *out = malloc(n / 4 * 3 + 1);
  int got = out ? EVP_DecodeBlock(out, (unsigned char *) norm, (int) n) : -1;
  for (size_t i = n; i > 0 && norm[i - 1] == '='; i--)
    pad++;
  free(norm);
  if (got < 0 || (size_t) got < pad)
    {
      free(out);
      return NULL;
    }
  *len = (size_t) got - pad;
  return out;
}

struct MHD_Response *connect_end_response(json_t *error)
{
  struct out o = { 0 };
  if (envelope(&o, END_STREAM, json_pack("{s:o}", "error", error)) < 0)
    return NULL;
  struct MHD_Response *resp = MHD_create_response_from_buffer(o.len, o.buf, MHD_RESPMEM_MUST_FREE);
  if (!resp)
    {
      free(o.buf);
      return NULL;
    }
  MHD_add_response_header(resp, "Content-Type", "application/connect+json");
  return resp;
}
