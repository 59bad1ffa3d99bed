/* HTTP proxy request heads, parsed by http_parser (we do not write our own
 * HTTP parser): find the destination, check that the Host header agrees
 * with the absolute URI, rebuild the head in origin form, and then follow
 * the body so that exactly one request is forwarded per connection. */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include "net.h"

/* Extend a span by a piece that http_parser reports; pieces of one element
 * arrive contiguous (split only by the end of a feed).  A piece that is not
 * contiguous means an obsolete line folding, which we refuse. */
static bool span_add(struct corral__http_head *h, struct corral__http_span *s, const char *at, size_t n)
{
  size_t off = (size_t) (at - h->buf);
  if (s->len == 0)
    s->off = (uint32_t) off;
  else if (off != (size_t) s->off + s->len)
    return false;
  s->len += (uint32_t) n;
  return true;
}

static int fail(struct corral__http_head *h, const char *why)
{
  h->bad = true;
  h->why = why;
  return 1;                     /* any non-zero return stops http_parser */
}

static int on_url(http_parser *p, const char *at, size_t n)
{
  struct corral__http_head *h = p->data;
  if (h->headers_done)
    return 0;
  return span_add(h, &h->url, at, n) ? 0 : fail(h, "bad request target");
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{
  struct corral__http_head *h = p->data;
  if (h->headers_done)
    return 0;                   /* trailers of a chunked body: forwarded raw, not read */
  struct corral__http_span *last = h->nhdr ? &h->name[h->nhdr - 1] : NULL;
  if (!h->in_value && last && (size_t) (at - h->buf) == (size_t) last->off + last->len)
    {
      last->len += (uint32_t) n;
      return 0;
    }
  if (h->nhdr >= CORRAL__HTTP_MAX_HEADERS)
    return fail(h, "too many header fields");
  h->name[h->nhdr] = (struct corral__http_span) { (uint32_t) (at - h->buf), (uint32_t) n };
  h->value[h->nhdr] = (struct corral__http_span) { 0, 0 };
  h->nhdr++;
  h->in_value = false;
  return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
  struct corral__http_head *h = p->data;
  if (h->headers_done)
    return 0;
  if (h->nhdr == 0)
    return fail(h, "header value without a name");
  if (!span_add(h, &h->value[h->nhdr - 1], at, n))
    return fail(h, "folded header lines");
  h->in_value = true;
  return 0;
}

static int on_headers_complete(http_parser *p)
{
  struct corral__http_head *h = p->data;
  h->headers_done = true;
  http_parser_pause(p, 1);
  return 0;
}

static int on_message_complete(http_parser *p)
{
  struct corral__http_head *h = p->data;
  h->message_done = true;
  http_parser_pause(p, 1);
  return 0;
}

static const http_parser_settings settings = {
  .on_url = on_url,
  .on_header_field = on_header_field,
  .on_header_value = on_header_value,
  .on_headers_complete = on_headers_complete,
  .on_message_complete = on_message_complete,
};

void corral__http_head_init(struct corral__http_head *h)
{
  memset(h, 0, sizeof(*h));
  http_parser_init(&h->parser, HTTP_REQUEST);
  h->parser.data = h;
}

int corral__http_head_feed(struct corral__http_head *h, const char *buf, size_t len)
{
  if (h->bad)
    return -1;
  if (h->headers_done)
    return 1;
  if (len <= h->parsed)
    return 0;
  h->buf = buf;
  size_t n = http_parser_execute(&h->parser, &settings, buf + h->parsed, len - h->parsed);
  h->parsed += n;
  if (h->bad)
    return -1;
  enum http_errno e = HTTP_PARSER_ERRNO(&h->parser);
  if (h->headers_done && e == HPE_PAUSED)
    {
      /* Paused in on_headers_complete, http_parser stops on the head's
       * final LF without consuming it: the head ends one byte later, and
       * the LF is fed again when the body is followed. */
      if (h->parsed >= len || buf[h->parsed] != '\n')
        {
          h->bad = true;
          h->why = "unexpected end of head";
          return -1;
        }
      h->head_end = h->parsed + 1;
      h->pending_lf = true;
      return 1;
    }
  if (e != HPE_OK)
    {
      h->bad = true;
      h->why = http_errno_description(e);
      return -1;
    }
  return 0;
}

/* ---- the destination ---- */

static bool port_of(const char *s, size_t n, uint16_t *port)
{
  unsigned v = 0;
  if (n == 0 || n > 5)
    return false;
  for (size_t i = 0; i < n; i++)
    {
      if (s[i] < '0' || s[i] > '9')
        return false;
      v = v * 10 + (unsigned) (s[i] - '0');
    }
  if (v == 0 || v > 65535)
    return false;
  *port = (uint16_t) v;
  return true;
}

bool corral__same_host(const char *a, size_t an, const char *b, size_t bn)
{
  char na[CORRAL__NAME_MAX], nb[CORRAL__NAME_MAX], sa[256], sb[256];
  struct corral__addr ia, ib;
  if (an >= sizeof(sa) || bn >= sizeof(sb))
    return false;
  memcpy(sa, a, an);
  sa[an] = '\0';
  memcpy(sb, b, bn);
  sb[bn] = '\0';
  if (corral__addr_parse(sa, &ia))
    return corral__addr_parse(sb, &ib) && ia.family == ib.family && memcmp(ia.b, ib.b, 16) == 0;
  return corral__name_normalize(a, an, false, na) && corral__name_normalize(b, bn, false, nb) && strcmp(na, nb) == 0;
}

static bool name_is(const struct corral__http_head *h, const char *buf, unsigned i, const char *name)
{
  return h->name[i].len == strlen(name) && strncasecmp(buf + h->name[i].off, name, h->name[i].len) == 0;
}

/* The Host header must name the URI's host and port: otherwise a client
 * could have the request checked for one host and served as another by a
 * server that routes on Host. */
static bool host_header_is(const struct corral__http_head *h, const char *buf, const char *thost, uint16_t tport,
                           uint16_t dflt, bool required)
{
  int found = -1;
  for (unsigned i = 0; i < h->nhdr; i++)
    if (name_is(h, buf, i, "host"))
      {
        if (found >= 0)
          return false;         /* two Host headers: which one would count? */
        found = (int) i;
      }
  if (found < 0)
    return !required;           /* none: the proxy adds the URI's */
  const char *v = buf + h->value[found].off;
  size_t n = h->value[found].len;
  while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
    n--;
  const char *host = v, *port = NULL;
  size_t hn = n, pn = 0;
  if (n > 0 && v[0] == '[')
    {
      const char *close = memchr(v, ']', n);
      if (close == NULL)
        return false;
      host = v + 1;
      hn = (size_t) (close - v - 1);
      if (close + 1 < v + n)
        {
          if (close[1] != ':')
            return false;
          port = close + 2;
          pn = (size_t) (v + n - port);
        }
    }
  else
    {
      const char *colon = memrchr(v, ':', n);
      if (colon)
        {
          hn = (size_t) (colon - v);
          port = colon + 1;
          pn = n - hn - 1;
        }
    }
  uint16_t p = dflt;
  if (port && !port_of(port, pn, &p))
    return false;
  return p == tport && corral__same_host(host, hn, thost, strlen(thost));
}

bool corral__http_head_host_is(const struct corral__http_head *h, const char *buf, const char *host, uint16_t port)
{
  return host_header_is(h, buf, host, port, 443, true);
}

/* RFC 9110 tchar.  http_parser in its lenient build lets spaces into
 * field names; a name the destination reads differently from us (such as
 * "Transfer-Encoding" followed by a space) is how requests get smuggled, so we forward only
 * what is unambiguous. */
static bool is_token(const char *s, size_t n)
{
  static const char extra[] = "!#$%&'*+-.^_`|~";
  if (n == 0)
    return false;
  for (size_t i = 0; i < n; i++)
    {
      char c = s[i];
      if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || (c && strchr(extra, c))))
        return false;
    }
  return true;
}

static bool fields_valid(const struct corral__http_head *h, const char *buf)
{
  for (unsigned i = 0; i < h->nhdr; i++)
    {
      if (!is_token(buf + h->name[i].off, h->name[i].len))
        return false;
      for (size_t k = 0; k < h->value[i].len; k++)
        {
          unsigned char c = (unsigned char) buf[h->value[i].off + k];
          if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
        }
    }
  return true;
}

int corral__http_head_target(struct corral__http_head *h, const char *buf, struct corral__http_target *t)
{
  struct http_parser_url *u = &h->u;
  memset(t, 0, sizeof(*t));
  t->is_connect = h->parser.method == HTTP_CONNECT;
  http_parser_url_init(u);
  if (h->parser.http_major != 1 || h->parser.http_minor > 1)
    return (h->why = "only HTTP/1.0 and HTTP/1.1 are proxied"), -400;
  if (!fields_valid(h, buf))
    return (h->why = "invalid header field"), -400;
  if (h->url.len == 0 || http_parser_parse_url(buf + h->url.off, h->url.len, t->is_connect, u) != 0)
    return (h->why = "invalid request target"), -400;
  const char *url = buf + h->url.off;
  if (!t->is_connect)
    {
      if (!(u->field_set & (1 << UF_SCHEMA)) || !(u->field_set & (1 << UF_HOST)))
        return (h->why = "an absolute http:// URI is required"), -400;
      if (u->field_data[UF_SCHEMA].len != 4 || strncasecmp(url + u->field_data[UF_SCHEMA].off, "http", 4) != 0)
        return (h->why = "only http:// URIs are proxied (use CONNECT for https)"), -400;
    }
  size_t hn = u->field_data[UF_HOST].len;
  if (!(u->field_set & (1 << UF_HOST)) || hn == 0 || hn >= sizeof(t->host))
    return (h->why = "invalid host in the request target"), -400;
  memcpy(t->host, url + u->field_data[UF_HOST].off, hn);
  t->host[hn] = '\0';
  if (u->field_set & (1 << UF_PORT))
    t->port = u->port;
  else
    t->port = t->is_connect ? 0 : 80;
  if (t->port == 0)
    return (h->why = "invalid port in the request target"), -400;
  if (!t->is_connect && !host_header_is(h, buf, t->host, t->port, 80, false))
    return (h->why = "host mismatch"), -403;
  return 0;
}

/* ---- origin form ---- */

struct out
{
  char *p;
  size_t len, cap;
  bool full;
};

static void put(struct out *o, const char *s, size_t n)
{
  if (o->full || o->cap - o->len < n)
    {
      o->full = true;
      return;
    }
  memcpy(o->p + o->len, s, n);
  o->len += n;
}

static void puts_(struct out *o, const char *s)
{
  put(o, s, strlen(s));
}

/* Hop-by-hop headers (RFC 9110 7.6.1) and the proxy's own: the upstream
 * connection is ours, and credentials meant for a proxy must not travel on
 * to the destination. */
static bool dropped(const struct corral__http_head *h, const char *buf, unsigned i)
{
  static const char *const names[] = { "connection", "keep-alive", "proxy-connection", "proxy-authorization",
                                       "proxy-authenticate", "te", "upgrade" };
  for (size_t k = 0; k < sizeof(names) / sizeof(*names); k++)
    if (name_is(h, buf, i, names[k]))
      return true;
  return false;
}

/* One field, its value through edit (if any). */
static bool put_field(struct out *o, const struct corral__http_head *h, const char *buf, unsigned i,
                      corral__http_edit_fn edit, void *cls)
{
  const char *v = buf + h->value[i].off;
  size_t vn = h->value[i].len;
  if (memchr(v, '\r', vn) || memchr(v, '\n', vn) || memchr(v, '\0', vn))
    return false;
  put(o, buf + h->name[i].off, h->name[i].len);
  puts_(o, ": ");
  ssize_t n = -1;
  if (edit && !o->full)
    n = edit(cls, buf + h->name[i].off, h->name[i].len, v, vn, o->p + o->len, o->cap - o->len);
  if (n == -2)
    o->full = true;
  else if (n >= 0)
    o->len += (size_t) n;
  else
    put(o, v, vn);
  puts_(o, "\r\n");
  return true;
}

ssize_t corral__http_head_copy(const struct corral__http_head *h, const char *buf, char *outbuf, size_t cap,
                               corral__http_edit_fn edit, void *cls)
{
  struct out o = { outbuf, 0, cap, false };
  char line[64];
  puts_(&o, http_method_str((enum http_method) h->parser.method));
  puts_(&o, " ");
  put(&o, buf + h->url.off, h->url.len);
  snprintf(line, sizeof(line), " HTTP/%u.%u\r\n", h->parser.http_major, h->parser.http_minor);
  puts_(&o, line);
  for (unsigned i = 0; i < h->nhdr; i++)
    if (!put_field(&o, h, buf, i, edit, cls))
      return -1;
  puts_(&o, "\r\n");
  return o.full ? -1 : (ssize_t) o.len;
}

int corral__http_head_check_origin(struct corral__http_head *h, const char *buf)
{
  if (h->parser.http_major != 1 || h->parser.http_minor > 1)
    return (h->why = "only HTTP/1.0 and HTTP/1.1 are relayed"), -1;
  if (h->parser.method == HTTP_CONNECT)
    return (h->why = "CONNECT inside a tunnel"), -1;
  if (!fields_valid(h, buf))
    return (h->why = "invalid header field"), -1;
  /* Origin form ("/path") or "*": an absolute URI inside the tunnel would
   * name a host of its own. */
  if (h->url.len == 0 || (buf[h->url.off] != '/' && !(h->url.len == 1 && buf[h->url.off] == '*')))
    return (h->why = "only origin-form requests are relayed in an intercepted tunnel"), -1;
  return 0;
}

ssize_t corral__http_head_rewrite(const struct corral__http_head *h, const char *buf, char *outbuf, size_t cap)
{
  return corral__http_head_rewrite_edit(h, buf, outbuf, cap, NULL, NULL);
}

ssize_t corral__http_head_rewrite_edit(const struct corral__http_head *h, const char *buf, char *outbuf, size_t cap,
                                       corral__http_edit_fn edit, void *cls)
{
  const struct http_parser_url *u = &h->u;
  const char *url = buf + h->url.off;
  struct out o = { outbuf, 0, cap, false };
  char line[64];
  bool has_host = false;

  puts_(&o, http_method_str((enum http_method) h->parser.method));
  puts_(&o, " ");
  if (u->field_set & (1 << UF_PATH))
    put(&o, url + u->field_data[UF_PATH].off, u->field_data[UF_PATH].len);
  else
    puts_(&o, "/");
  if (u->field_set & (1 << UF_QUERY))
    {
      puts_(&o, "?");
      put(&o, url + u->field_data[UF_QUERY].off, u->field_data[UF_QUERY].len);
    }
  snprintf(line, sizeof(line), " HTTP/%u.%u\r\n", h->parser.http_major, h->parser.http_minor);
  puts_(&o, line);
  for (unsigned i = 0; i < h->nhdr; i++)
    {
      if (dropped(h, buf, i))
        continue;
      has_host |= name_is(h, buf, i, "host");
      if (!put_field(&o, h, buf, i, edit, cls))
        return -1;
    }
  if (!has_host)
    {
      const char *host = url + u->field_data[UF_HOST].off;
      size_t hn = u->field_data[UF_HOST].len;
      bool v6 = memchr(host, ':', hn) != NULL;
      puts_(&o, v6 ? "Host: [" : "Host: ");
      put(&o, host, hn);
      puts_(&o, v6 ? "]" : "");
      if (u->field_set & (1 << UF_PORT))
        {
          snprintf(line, sizeof(line), ":%u", u->port);
          puts_(&o, line);
        }
      puts_(&o, "\r\n");
    }
  puts_(&o, "Connection: close\r\n\r\n");
  return o.full ? -1 : (ssize_t) o.len;
}

/* ---- the body ---- */

ssize_t corral__http_body_feed(struct corral__http_head *h, const char *data, size_t len, bool *done)
{
  *done = false;
  if (h->message_done)
    {
      *done = true;
      return 0;
    }
  http_parser_pause(&h->parser, 0);
  if (h->pending_lf)
    {
      h->pending_lf = false;
      http_parser_execute(&h->parser, &settings, "\n", 1);
      enum http_errno e = HTTP_PARSER_ERRNO(&h->parser);
      if (e != HPE_OK && e != HPE_PAUSED)
        return -1;
      if (h->message_done)
        {
          *done = true;
          return 0;
        }
    }
  if (len == 0)
    return 0;                   /* a zero-length feed would mean EOF to http_parser */
  size_t n = http_parser_execute(&h->parser, &settings, data, len);
  if (h->message_done)
    {
      *done = true;
      return (ssize_t) n;
    }
  if (HTTP_PARSER_ERRNO(&h->parser) != HPE_OK)
    return -1;
  return (ssize_t) n;
}
