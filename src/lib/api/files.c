/* /v1/sandboxes/{id}/files: bytes in and out, streamed through the agent
 * (which resolves every path inside the sandbox), plus list/stat/mkdir/
 * move/remove. */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include "api.h"
#include "../common/utils.h"

#define BLOCK (256u << 10)

static const char *path_arg(struct req *r)
{
  const char *p = api_query(r, "path");
  if (!p || !*p)
    {
      api_fail(r, 400, "invalid_argument", "the `path` query parameter is required");
      return NULL;
    }
  if (strlen(p) >= 4000)
    {
      api_fail(r, 400, "invalid_argument", "`path` is too long");
      return NULL;
    }
  return p;
}

static int first_reply(int fd, uint8_t **buf, size_t *cap, struct corral__msg *m, corral_error_t *err)
{
  if (corral__frame_recv(fd, buf, cap, m, 30000) != 1)
    return corral_error_set(err, EIO, "the sandbox agent did not answer");
  if (m->type == CORRAL__R_ERROR)
    return agent_error(m, err);
  return 0;
}

/* Open a file request and read its first reply; responds and returns -1
 * on failure. */
static int file_request(struct req *r, struct sbx_ref *ref, struct corral__frame *f, uint8_t **buf, size_t *cap,
                        struct corral__msg *m, const char *what)
{
  corral_error_t err = NULL;
  int fd = agent_request(ref, f, &err);
  if (fd >= 0 && first_reply(fd, buf, cap, m, &err) < 0)
    {
      close(fd);
      fd = -1;
    }
  if (fd < 0)
    {
      /* The agent's messages already name the operation and the path. */
      (void) what;
      api_fail_err(r, err, NULL);
      corral_error_release(&err);
    }
  return fd;
}

static json_t *entry_json(const struct corral__msg *m)
{
  uint64_t size = 0, mode = 0, mtime = 0;
  char mode_s[8], mtime_s[40];
  cleanup_free char *name = corral__msg_strdup(m, CORRAL__T_NAME);
  cleanup_free char *path = corral__msg_strdup(m, CORRAL__T_PATH);
  cleanup_free char *type = corral__msg_strdup(m, CORRAL__T_TYPE);
  cleanup_free char *target = corral__msg_strdup(m, CORRAL__T_TARGET);
  corral__msg_u64(m, CORRAL__T_SIZE, &size);
  corral__msg_u64(m, CORRAL__T_MODE, &mode);
  corral__msg_u64(m, CORRAL__T_MTIME, &mtime);
  snprintf(mode_s, sizeof(mode_s), "%04llo", (unsigned long long) (mode & 07777));
  api_time((int64_t) mtime, mtime_s, sizeof(mtime_s));
  return json_pack("{s:s, s:s, s:s, s:I, s:s, s:s, s:o}", "name", name ? name : "", "path", path ? path : "", "type",
                   type ? type : "other", "size", (json_int_t) size, "mode", mode_s, "mtime", mtime_s,
                   "symlink_target", target ? json_string(target) : json_null());
}

/* ---- download ---- */

struct download
{
  int fd;
  uint8_t *buf;
  size_t cap;
  const uint8_t *data;
  uint32_t len, off;
  bool done;
};

static ssize_t download_reader(void *cls, uint64_t pos, char *out, size_t max)
{
  (void) pos;
  struct download *dl = cls;
  while (dl->off >= dl->len)
    {
      struct corral__msg m;
      if (dl->done)
        return MHD_CONTENT_READER_END_OF_STREAM;
      if (corral__frame_recv(dl->fd, &dl->buf, &dl->cap, &m, -1) != 1 || m.type == CORRAL__R_ERROR)
        return MHD_CONTENT_READER_END_WITH_ERROR;
      if (m.type == CORRAL__M_END)
        {
          dl->done = true;
          continue;
        }
      if (m.type != CORRAL__M_DATA || !corral__msg_get(&m, CORRAL__T_DATA, &dl->data, &dl->len))
        return MHD_CONTENT_READER_END_WITH_ERROR;
      dl->off = 0;
    }
  size_t n = dl->len - dl->off < max ? dl->len - dl->off : max;
  memcpy(out, dl->data + dl->off, n);
  dl->off += (uint32_t) n;
  return (ssize_t) n;
}

static void download_free(void *cls)
{
  struct download *dl = cls;
  close(dl->fd);
  free(dl->buf);
  free(dl);
}

int route_file_get(struct req *r)
{
  struct sbx_ref ref;
  struct corral__frame f;
  struct corral__msg m;
  uint64_t size = UINT64_MAX;
  const char *path = path_arg(r);
  if (!path || !sandbox_running_or_fail(r, &ref))
    return MHD_YES;
  json_decref(ref.env);
  struct download *dl = calloc(1, sizeof(*dl));
  if (!dl)
    return api_fail(r, 500, "internal", "out of memory");
  corral__frame_init(&f, CORRAL__REQ_FREAD);
  corral__frame_add_str(&f, CORRAL__T_PATH, path);
  dl->fd = file_request(r, &ref, &f, &dl->buf, &dl->cap, &m, "read");
  if (dl->fd < 0)
    {
      free(dl->buf);
      free(dl);
      return MHD_YES;
    }
  corral__msg_u64(&m, CORRAL__T_SIZE, &size);
  struct MHD_Response *resp = MHD_create_response_from_callback(size == UINT64_MAX ? MHD_SIZE_UNKNOWN : size, BLOCK,
                                                                download_reader, dl, download_free);
  if (!resp)
    {
      download_free(dl);
      return api_fail(r, 500, "internal", "cannot stream");
    }
  MHD_add_response_header(resp, "Content-Type", "application/octet-stream");
  metrics_request(r->d, r->method, 200, NULL);
  return api_queue(r, 200, resp);
}

/* ---- upload: the body goes to the agent as it arrives ---- */

/* A file being written through the agent (FWRITE, DATA..., END): shared by
 * this route, E2B's /files and corrald's own files (network.c). */
int agent_file_open(struct agent_file *w, const struct sbx_ref *ref, const char *path, unsigned mode, json_t *meta,
                    corral_error_t *err)
{
  struct corral__frame f;
  struct corral__msg m;
  const char *k;
  json_t *v;
  memset(w, 0, sizeof(*w));
  w->path = strdup(path);
  corral__frame_init(&f, CORRAL__REQ_FWRITE);
  corral__frame_add_str(&f, CORRAL__T_PATH, path);
  corral__frame_add_u64(&f, CORRAL__T_MODE, mode);
  json_object_foreach(meta, k, v)
    {
      char kv[1024];
      snprintf(kv, sizeof(kv), "%s=%s", k, json_string_value(v));
      corral__frame_add_str(&f, CORRAL__T_META, kv);
    }
  w->fd = agent_request(ref, &f, err);
  if (w->fd < 0)
    return -1;
  return first_reply(w->fd, &w->buf, &w->cap, &m, err);
}

int agent_file_write(struct agent_file *w, const void *data, size_t len, corral_error_t *err)
{
  for (size_t off = 0; off < len; off += BLOCK)
    if (corral__send_data(w->fd, CORRAL__M_DATA, (const char *) data + off, len - off < BLOCK ? len - off : BLOCK) < 0)
      return corral_error_set(err, errno, "write `%s`", w->path);
  return 0;
}

/* The agent's verdict says why a write failed (no space, ...), even when
 * our last data could not be sent. */
int agent_file_close(struct agent_file *w, uint64_t *size, corral_error_t *err)
{
  struct corral__frame f;
  struct corral__msg m;
  corral__frame_init(&f, CORRAL__M_END);
  corral__frame_send(w->fd, &f);
  if (first_reply(w->fd, &w->buf, &w->cap, &m, err) < 0)
    return -1;
  if (size)
    corral__msg_u64(&m, CORRAL__T_SIZE, size);
  return 0;
}

void agent_file_release(struct agent_file *w)
{
  if (w->fd >= 0)
    close(w->fd);
  w->fd = -1;
  free(w->buf);
  free(w->path);
  w->buf = NULL;
  w->path = NULL;
}

struct upload
{
  struct agent_file w;
  bool failed;
  char sandbox[32];
};

void file_upload_free(struct req *r)
{
  struct upload *u = r->upload;
  agent_file_release(&u->w);
  free(u);
  r->upload = NULL;
}

int route_file_put_begin(struct req *r)
{
  struct sbx_ref ref;
  corral_error_t err = NULL;
  const char *path = path_arg(r), *mode_s = api_query(r, "mode");
  unsigned long mode = 0644;
  if (!path)
    return MHD_YES;
  if (mode_s)
    {
      char *end;
      mode = strtoul(mode_s, &end, 8);
      if (!*mode_s || *end || mode > 07777)
        return api_fail(r, 400, "invalid_argument", "`mode` must be octal, e.g. 0644");
    }
  if (!sandbox_running_or_fail(r, &ref))
    return MHD_YES;
  json_decref(ref.env);
  struct upload *u = calloc(1, sizeof(*u));
  if (!u)
    return api_fail(r, 500, "internal", "out of memory");
  snprintf(u->sandbox, sizeof(u->sandbox), "%s", ref.id);
  r->upload = u;
  if (agent_file_open(&u->w, &ref, path, (unsigned) mode, NULL, &err) < 0)
    {
      /* The agent's messages already name the operation and the path. */
      api_fail_err(r, err, NULL);
      corral_error_release(&err);
      agent_file_release(&u->w);
    }
  return MHD_YES;
}

int route_file_put_data(struct req *r, const char *data, size_t len)
{
  struct upload *u = r->upload;
  if (!u || u->w.fd < 0 || u->failed)
    return MHD_YES;
  u->failed = agent_file_write(&u->w, data, len, NULL) < 0;
  return MHD_YES;
}

int route_file_put(struct req *r)
{
  struct upload *u = r->upload;
  corral_error_t err = NULL;
  uint64_t size = 0;
  if (!u || u->w.fd < 0)
    return api_fail(r, 500, "internal", "the upload was not opened");
  if (agent_file_close(&u->w, &size, &err) < 0)
    {
      api_fail_err(r, err, "write");
      corral_error_release(&err);
      return MHD_YES;
    }
  api_audit(r->d, json_pack("{s:s, s:s, s:s, s:s, s:I}", "action", "file.write", "tenant", r->tenant, "sandbox",
                            u->sandbox, "path", u->w.path, "size", (json_int_t) size));
  return api_json(r, 201, json_pack("{s:s, s:I}", "path", u->w.path, "size", (json_int_t) size));
}

/* ---- metadata operations ---- */

int route_file_list(struct req *r)
{
  struct sbx_ref ref;
  struct corral__frame f;
  struct corral__msg m;
  uint8_t *buf = NULL;
  size_t cap = 0;
  const char *path = api_query(r, "path"), *depth_s = api_query(r, "depth");
  long depth = 1;
  if (depth_s)
    {
      char *end;
      depth = strtol(depth_s, &end, 10);
      if (!*depth_s || *end || depth < 1 || depth > 16)
        return api_fail(r, 400, "invalid_argument", "`depth` must be between 1 and 16");
    }
  if (!sandbox_running_or_fail(r, &ref))
    return MHD_YES;
  json_decref(ref.env);
  corral__frame_init(&f, CORRAL__REQ_FLIST);
  corral__frame_add_str(&f, CORRAL__T_PATH, path && *path ? path : "/home/user");
  corral__frame_add_u64(&f, CORRAL__T_DEPTH, (uint64_t) depth);
  int fd = file_request(r, &ref, &f, &buf, &cap, &m, "list");
  if (fd < 0)
    {
      free(buf);
      return MHD_YES;
    }
  json_t *arr = json_array();
  while (m.type == CORRAL__R_ENTRY)
    {
      json_array_append_new(arr, entry_json(&m));
      if (corral__frame_recv(fd, &buf, &cap, &m, 30000) != 1)
        break;
    }
  free(buf);
  close(fd);
  return api_json(r, 200, json_pack("{s:o}", "entries", arr));
}

static int entry_request(struct req *r, struct corral__frame *f, const char *what, unsigned status)
{
  struct sbx_ref ref;
  struct corral__msg m;
  uint8_t *buf = NULL;
  size_t cap = 0;
  if (!sandbox_running_or_fail(r, &ref))
    {
      corral__frame_release(f);
      return -1;
    }
  json_decref(ref.env);
  int fd = file_request(r, &ref, f, &buf, &cap, &m, what);
  if (fd >= 0)
    {
      if (m.type == CORRAL__R_ENTRY)
        api_json(r, status, entry_json(&m));
      else
        api_json(r, 204, NULL);
      close(fd);
    }
  free(buf);
  return fd >= 0 ? 0 : -1;
}

int route_file_stat(struct req *r)
{
  struct corral__frame f;
  const char *path = path_arg(r);
  if (!path)
    return MHD_YES;
  corral__frame_init(&f, CORRAL__REQ_FSTAT);
  corral__frame_add_str(&f, CORRAL__T_PATH, path);
  entry_request(r, &f, "stat", 200);
  return MHD_YES;
}

/* A path field of a JSON body, or respond 400. */
static const char *body_path(struct req *r, json_t *body, const char *key)
{
  json_t *v = json_object_get(body, key);
  if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) >= 4000
      || strlen(json_string_value(v)) != json_string_length(v))
    {
      api_fail(r, 400, "invalid_argument", "`%s` must be a non-empty path", key);
      return NULL;
    }
  return json_string_value(v);
}

static void audit_file(struct req *r, const char *action, const char *path)
{
  api_audit(r->d, json_pack("{s:s, s:s, s:s, s:s}", "action", action, "tenant", r->tenant, "sandbox", r->params[0],
                            "path", path));
}

int route_file_mkdir(struct req *r)
{
  struct corral__frame f;
  json_t *body = api_body_object(r);
  const char *p = body ? body_path(r, body, "path") : NULL;
  if (p)
    {
      corral__frame_init(&f, CORRAL__REQ_MKDIR);
      corral__frame_add_str(&f, CORRAL__T_PATH, p);
      entry_request(r, &f, "mkdir", 201);
    }
  json_decref(body);
  return MHD_YES;
}

int route_file_move(struct req *r)
{
  struct corral__frame f;
  json_t *body = api_body_object(r);
  const char *from = body ? body_path(r, body, "from") : NULL;
  const char *to = from ? body_path(r, body, "to") : NULL;
  if (to)
    {
      corral__frame_init(&f, CORRAL__REQ_MOVE);
      corral__frame_add_str(&f, CORRAL__T_PATH, from);
      corral__frame_add_str(&f, CORRAL__T_TO, to);
      if (entry_request(r, &f, "move", 200) == 0)
        audit_file(r, "file.move", from);
    }
  json_decref(body);
  return MHD_YES;
}

int route_file_remove(struct req *r)
{
  struct corral__frame f;
  json_t *body = api_body_object(r), *rec;
  const char *p = body ? body_path(r, body, "path") : NULL;
  if (p)
    {
      rec = json_object_get(body, "recursive");
      if (rec && !json_is_boolean(rec))
        api_fail(r, 400, "invalid_argument", "`recursive` must be a boolean");
      else
        {
          corral__frame_init(&f, CORRAL__REQ_REMOVE);
          corral__frame_add_str(&f, CORRAL__T_PATH, p);
          corral__frame_add_u64(&f, CORRAL__T_RECURSIVE, json_is_true(rec));
          if (entry_request(r, &f, "remove", 204) == 0)
            audit_file(r, "file.remove", p);
        }
    }
  json_decref(body);
  return MHD_YES;
}
