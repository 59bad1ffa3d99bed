/* Secrets that never enter the sandbox: validation and copies of a
 * sandbox's secrets, their placeholders, and the header edit that puts a
 * value in place of its placeholder in requests to the hosts the secret
 * lists.
 *
 * Security notes.  A value is only ever copied into memory this file owns
 * (zeroed with OPENSSL_cleanse before it is freed) and into request heads
 * bound for a host the secret lists; no error text, log or audit record
 * built here holds one.  Values and formats may not hold CR, LF or other
 * control characters, which would let a value inject header lines. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include "secrets.h"

#define FORMAT_MAX 256
#define HEADER_MAX 64
#define VALUE_MARK "{value}"

/* ---- validation ---- */

static bool name_ok(const char *s)
{
  size_t n = s ? strlen(s) : 0;
  if (n == 0 || n > CORRAL_SECRET_NAME_MAX || (s[0] >= '0' && s[0] <= '9'))
    return false;
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
      return false;
  return true;
}

/* Printable ASCII, tab and bytes >= 0x80: what a header value may hold. */
static bool text_ok(const char *s, size_t n)
{
  for (size_t i = 0; i < n; i++)
    {
      unsigned char c = (unsigned char) s[i];
      if ((c < 0x20 && c != '\t') || c == 0x7f)
        return false;
    }
  return true;
}

static bool token_ok(const char *s)
{
  static const char extra[] = "!#$%&'*+-.^_`|~";
  size_t n = s ? strlen(s) : 0;
  if (n == 0 || n > HEADER_MAX)
    return false;
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9')
          || strchr(extra, s[i])))
      return false;
  return true;
}

static void secret_clear(struct corral__secret *s)
{
  if (s->value)
    OPENSSL_cleanse(s->value, s->vlen);
  free(s->value);
  free(s->header);
  free(s->fmt_pre);
  free(s->fmt_post);
  free(s->hosts);
  OPENSSL_cleanse(s, sizeof(*s));
}

void corral__secrets_free(struct corral__secrets *s)
{
  if (s == NULL)
    return;
  for (size_t i = 0; i < s->n; i++)
    secret_clear(&s->v[i]);
  free(s->v);
  free(s);
}

static int set_format(struct corral__secret *d, size_t i, const char *fmt, corral_error_t *err)
{
  if (fmt == NULL)
    fmt = VALUE_MARK;
  const char *mark = strstr(fmt, VALUE_MARK);
  size_t n = strlen(fmt);
  if (mark == NULL || strstr(mark + 1, VALUE_MARK) || n > FORMAT_MAX || !text_ok(fmt, n))
    return corral_error_set(err, EINVAL, "secrets[%zu] (%s): the format must hold \"{value}\" once, in at most %d "
                            "printable characters", i, d->name, FORMAT_MAX);
  d->fmt_pre = strndup(fmt, (size_t) (mark - fmt));
  d->fmt_post = strdup(mark + strlen(VALUE_MARK));
  if (d->fmt_pre == NULL || d->fmt_post == NULL)
    return corral_error_set(err, ENOMEM, "secrets[%zu] (%s)", i, d->name);
  return 0;
}

static int set_hosts(struct corral__secret *d, size_t i, const corral_secret_t *in, corral_error_t *err)
{
  if (in->nhosts == 0 || in->hosts == NULL)
    return corral_error_set(err, EINVAL, "secrets[%zu] (%s): at least one host is required", i, d->name);
  if (in->nhosts > CORRAL_SECRET_MAX_HOSTS)
    return corral_error_set(err, E2BIG, "secrets[%zu] (%s): more than %d hosts", i, d->name, CORRAL_SECRET_MAX_HOSTS);
  if ((d->hosts = calloc(in->nhosts, sizeof(*d->hosts))) == NULL)
    return corral_error_set(err, ENOMEM, "secrets[%zu] (%s)", i, d->name);
  for (size_t k = 0; k < in->nhosts; k++)
    {
      const char *h = in->hosts[k];
      /* Names only: a value meant for a service must follow its name, not
       * whatever sits at an address today. */
      if (h == NULL || !corral__name_normalize(h, strlen(h), true, d->hosts[k]))
        return corral_error_set(err, EINVAL, "secrets[%zu] (%s): hosts[%zu] \"%.100s\" is not a host name or "
                                "\"*.\" wildcard", i, d->name, k, h ? h : "(null)");
    }
  d->nhosts = in->nhosts;
  return 0;
}

static void new_placeholder(struct corral__secret *d)
{
  unsigned char r[16];
  char hex[33];
  if (RAND_bytes(r, sizeof(r)) != 1)
    abort();                    /* no randomness: a guessable placeholder is worse than no proxy */
  for (size_t k = 0; k < sizeof(r); k++)
    snprintf(hex + 2 * k, 3, "%02x", r[k]);
  snprintf(d->placeholder, sizeof(d->placeholder), CORRAL__PLACEHOLDER_PREFIX "%s-%s", d->name, hex);
  d->plen = strlen(d->placeholder);
}

static int secret_copy(struct corral__secret *d, size_t i, const corral_secret_t *in, corral_error_t *err)
{
  if (!name_ok(in->name))
    return corral_error_set(err, EINVAL, "secrets[%zu]: the name must be 1 to %d of [A-Za-z0-9_], not starting with "
                            "a digit", i, CORRAL_SECRET_NAME_MAX);
  snprintf(d->name, sizeof(d->name), "%s", in->name);
  size_t vn = in->value ? strlen(in->value) : 0;
  if (vn == 0 || vn > CORRAL_SECRET_VALUE_MAX || !text_ok(in->value, vn))
    return corral_error_set(err, EINVAL, "secrets[%zu] (%s): the value must be 1 to %d bytes without control "
                            "characters", i, d->name, CORRAL_SECRET_VALUE_MAX);
  if (in->header && !token_ok(in->header))
    return corral_error_set(err, EINVAL, "secrets[%zu] (%s): invalid header name", i, d->name);
  if ((d->value = malloc(vn + 1)) == NULL || (in->header && (d->header = strdup(in->header)) == NULL))
    return corral_error_set(err, ENOMEM, "secrets[%zu] (%s)", i, d->name);
  memcpy(d->value, in->value, vn + 1);
  d->vlen = vn;
  if (set_format(d, i, in->format, err) < 0 || set_hosts(d, i, in, err) < 0)
    return -1;
  new_placeholder(d);
  return 0;
}

int corral__secrets_new(const corral_secret_t *in, size_t n, struct corral__secrets **out, corral_error_t *err)
{
  if (n > CORRAL_PROXY_MAX_SECRETS)
    return corral_error_set(err, E2BIG, "more than %d secrets", CORRAL_PROXY_MAX_SECRETS);
  if (n > 0 && in == NULL)
    return corral_error_set(err, EINVAL, "no secrets given");
  struct corral__secrets *s = calloc(1, sizeof(*s));
  if (s == NULL || (n > 0 && (s->v = calloc(n, sizeof(*s->v))) == NULL))
    {
      free(s);
      return corral_error_set(err, ENOMEM, "copying the secrets");
    }
  for (size_t i = 0; i < n; i++, s->n++)
    {
      int r = secret_copy(&s->v[i], i, &in[i], err);
      for (size_t k = 0; r == 0 && k < i; k++)
        if (strcmp(s->v[k].name, s->v[i].name) == 0)
          r = corral_error_set(err, EINVAL, "secrets[%zu]: the name %s is used twice", i, s->v[i].name);
      if (r < 0)
        {
          s->n++;               /* free the partial copy too */
          corral__secrets_free(s);
          return r;
        }
    }
  *out = s;
  return 0;
}

void corral__secrets_inherit(struct corral__secrets *s, const struct corral__secrets *old)
{
  for (size_t i = 0; old && i < s->n; i++)
    {
      const struct corral__secret *o = corral__secrets_find(old, s->v[i].name);
      if (o)
        {
          memcpy(s->v[i].placeholder, o->placeholder, sizeof(o->placeholder));
          s->v[i].plen = o->plen;
        }
    }
}

const struct corral__secret *corral__secrets_find(const struct corral__secrets *s, const char *name)
{
  for (size_t i = 0; s && name && i < s->n; i++)
    if (strcmp(s->v[i].name, name) == 0)
      return &s->v[i];
  return NULL;
}

/* ---- matching ---- */

/* Same semantics as the policy's name rules: "*.example.com" matches any
 * subdomain at any depth, never example.com itself. */
static bool lists(const struct corral__secret *s, const char *host)
{
  size_t hn = strlen(host);
  for (size_t k = 0; k < s->nhosts; k++)
    {
      const char *h = s->hosts[k];
      if (h[0] == '*')
        {
          size_t sn = strlen(h + 1);  /* ".example.com" */
          if (hn > sn && strcmp(host + hn - sn, h + 1) == 0)
            return true;
        }
      else if (strcmp(h, host) == 0)
        return true;
    }
  return false;
}

bool corral__secrets_listed(const struct corral__secrets *s, const char *host)
{
  char norm[CORRAL__NAME_MAX];
  if (s == NULL || s->n == 0 || !corral__name_normalize(host, strlen(host), false, norm))
    return false;
  for (size_t i = 0; i < s->n; i++)
    if (lists(&s->v[i], norm))
      return true;
  return false;
}

bool corral__secret_edit_init(struct corral__secret_edit *e, const struct corral__secrets *s, const char *host,
                              json_t **used)
{
  e->s = s;
  e->used = used;
  return s && s->n > 0 && corral__name_normalize(host, strlen(host), false, e->host);
}

/* ---- the edit ---- */

static void mark_used(struct corral__secret_edit *e, const struct corral__secret *s)
{
  if (*e->used == NULL && (*e->used = json_array()) == NULL)
    return;
  size_t i;
  json_t *v;
  json_array_foreach(*e->used, i, v)
    if (strcmp(json_string_value(v), s->name) == 0)
      return;
  json_array_append_new(*e->used, json_string(s->name));
}

static bool emit(char *out, size_t cap, size_t *o, const char *s, size_t n)
{
  if (cap - *o < n)
    return false;
  memcpy(out + *o, s, n);
  *o += n;
  return true;
}

/* The header the secret names holds exactly its placeholder (OWS aside):
 * the value in its format, e.g. "Bearer <value>". */
static ssize_t formatted(struct corral__secret_edit *e, const char *name, size_t nn, const char *v, size_t vn,
                         char *out, size_t cap)
{
  while (vn > 0 && (v[0] == ' ' || v[0] == '\t'))
    v++, vn--;
  while (vn > 0 && (v[vn - 1] == ' ' || v[vn - 1] == '\t'))
    vn--;
  for (size_t i = 0; i < e->s->n; i++)
    {
      const struct corral__secret *s = &e->s->v[i];
      if (!s->header || strlen(s->header) != nn || strncasecmp(s->header, name, nn) != 0 || vn != s->plen
          || memcmp(v, s->placeholder, vn) != 0 || !lists(s, e->host))
        continue;
      size_t o = 0;
      if (!emit(out, cap, &o, s->fmt_pre, strlen(s->fmt_pre)) || !emit(out, cap, &o, s->value, s->vlen)
          || !emit(out, cap, &o, s->fmt_post, strlen(s->fmt_post)))
        return -2;
      mark_used(e, s);
      return (ssize_t) o;
    }
  return -1;
}

/* The secret (listing the destination) whose placeholder starts at v. */
static const struct corral__secret *placeholder_at(struct corral__secret_edit *e, const char *v, size_t vn)
{
  static const size_t pn = sizeof(CORRAL__PLACEHOLDER_PREFIX) - 1;
  if (vn < pn || memcmp(v, CORRAL__PLACEHOLDER_PREFIX, pn) != 0)
    return NULL;
  for (size_t i = 0; i < e->s->n; i++)
    {
      const struct corral__secret *s = &e->s->v[i];
      if (vn >= s->plen && memcmp(v, s->placeholder, s->plen) == 0 && lists(s, e->host))
        return s;
    }
  return NULL;
}

ssize_t corral__secrets_edit(void *cls, const char *name, size_t nn, const char *v, size_t vn, char *out, size_t cap)
{
  struct corral__secret_edit *e = cls;
  ssize_t r = formatted(e, name, nn, v, vn, out, cap);
  if (r != -1)
    return r;
  if (memmem(v, vn, CORRAL__PLACEHOLDER_PREFIX, sizeof(CORRAL__PLACEHOLDER_PREFIX) - 1) == NULL)
    return -1;
  /* One pass from left to right: a value is never searched again, so a
   * value that happened to hold another placeholder stays as it is. */
  size_t o = 0;
  bool changed = false;
  for (size_t i = 0; i < vn;)
    {
      const struct corral__secret *s = placeholder_at(e, v + i, vn - i);
      if (s)
        {
          if (!emit(out, cap, &o, s->value, s->vlen))
            return -2;
          mark_used(e, s);
          changed = true;
          i += s->plen;
        }
      else if (!emit(out, cap, &o, v + i++, 1))
        return -2;
    }
  return changed ? (ssize_t) o : -1;
}
