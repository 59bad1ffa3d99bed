/* envd's /files: downloads are corral's (api/files.c); uploads come as
 * multipart/form-data (one part per file, the part's filename is its path)
 * or as a raw body, possibly gzip-encoded, and stream to the agent as they
 * arrive. */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <zlib.h>
#include "e2b.h"
#include "../common/utils.h"

#define MAX_FILES 1000

int e2b_files_get(struct req *r)
{
  if (e2b_user(r) < 0)
    return MHD_YES;
  return route_file_get(r);
}

/* ---- the upload ---- */

struct upload
{
  struct sbx_ref ref;
  struct MHD_PostProcessor *pp;
  struct agent_file cur;
  bool open, gzip, gzip_started;
  z_stream z;
  const char *query_path;
  json_t *written;     /* EntryInfo of each file done */
  json_t *meta;        /* X-Metadata-* headers: every file gets them */
  uint64_t part_bytes; /* of the part being written */
  char *part_name;
  corral_error_t err;  /* the first failure */
  size_t files;
};

static json_t *written_entry(const char *path, json_t *meta)
{
  char abs[4200];
  const char *slash = strrchr(path, '/');
  /* Relative paths are the user's home's, as the agent resolves them. */
  snprintf(abs, sizeof(abs), "%s%s", path[0] == '/' ? "" : "/home/user/", path);
  json_t *e = json_pack("{s:s, s:s, s:s}", "name", slash ? slash + 1 : path, "type", "file", "path", abs);
  if (json_object_size(meta))
    json_object_set(e, "metadata", meta);
  return e;
}

static void finish_file(struct upload *u)
{
  if (!u->open)
    return;
  u->open = false;
  if (!u->err && agent_file_close(&u->cur, NULL, &u->err) == 0)
    json_array_append_new(u->written, written_entry(u->cur.path, u->meta));
  agent_file_release(&u->cur);
}

static void start_file(struct upload *u, const char *path)
{
  finish_file(u);
  if (u->err)
    return;
  if (!path || !*path || strlen(path) >= 4000)
    {
      corral_error_set(&u->err, EINVAL, "each file needs a path (the query's `path` or the part's filename)");
      return;
    }
  if (++u->files > MAX_FILES)
    {
      corral_error_set(&u->err, E2BIG, "at most %d files per upload", MAX_FILES);
      return;
    }
  if (agent_file_open(&u->cur, &u->ref, path, 0644, u->meta, &u->err) < 0)
    {
      agent_file_release(&u->cur);
      return;
    }
  u->open = true;
}

static void file_data(struct upload *u, const char *data, size_t len)
{
  if (!u->err && u->open && len)
    agent_file_write(&u->cur, data, len, &u->err);
}

static enum MHD_Result on_part(void *cls, enum MHD_ValueKind kind, const char *key, const char *filename,
                               const char *content_type, const char *transfer_encoding, const char *data,
                               uint64_t off, size_t size)
{
  (void) kind, (void) key, (void) content_type, (void) transfer_encoding;
  struct upload *u = cls;
  /* One file per part; a single-file upload names it in the query.  A part
   * may first come with no data, then its data, both at offset 0. */
  bool same = u->part_name && filename && strcmp(u->part_name, filename) == 0;
  if (off == 0 && (!u->open || u->part_bytes || !same))
    {
      free(u->part_name);
      u->part_name = filename ? strdup(filename) : NULL;
      u->part_bytes = 0;
      start_file(u, u->query_path && u->files == 0 ? u->query_path : filename);
    }
  u->part_bytes += size;
  file_data(u, data, size);
  return u->err ? MHD_NO : MHD_YES;
}

static void raw_data(struct upload *u, const char *data, size_t len)
{
  unsigned char out[64 << 10];
  if (!u->gzip)
    return file_data(u, data, len);
  u->z.next_in = (unsigned char *) data;
  u->z.avail_in = (uInt) len;
  while (!u->err && u->z.avail_in)
    {
      u->z.next_out = out;
      u->z.avail_out = sizeof(out);
      int zr = inflate(&u->z, Z_NO_FLUSH);
      if (zr != Z_OK && zr != Z_STREAM_END && zr != Z_BUF_ERROR)
        corral_error_set(&u->err, EINVAL, "the body is not valid gzip");
      file_data(u, (const char *) out, sizeof(out) - u->z.avail_out);
      if (zr == Z_STREAM_END || (zr == Z_BUF_ERROR && u->z.avail_out))
        break;
    }
}

static void upload_free(struct req *r)
{
  struct upload *u = r->upload;
  if (u->pp)
    MHD_destroy_post_processor(u->pp);
  if (u->open)
    agent_file_release(&u->cur);
  if (u->gzip_started)
    inflateEnd(&u->z);
  json_decref(u->written);
  json_decref(u->meta);
  free(u->part_name);
  json_decref(u->ref.env);
  corral_error_release(&u->err);
  free(u);
  r->upload = NULL;
}

/* File metadata travels as X-Metadata-<key> headers; keys and values are
 * bounded so that they fit xattrs. */
static enum MHD_Result collect_meta(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
  (void) kind;
  json_t *meta = cls;
  if (strncasecmp(key, "X-Metadata-", 11) == 0 && key[11] && strlen(key + 11) < 200 && value && strlen(value) < 800
      && json_object_size(meta) < 32)
    json_object_set_new(meta, key + 11, json_string(value));
  return MHD_YES;
}

int e2b_files_post_begin(struct req *r)
{
  const char *ct = api_header(r, "Content-Type"), *ce = api_header(r, "Content-Encoding");
  if (e2b_user(r) < 0)
    return MHD_YES;
  struct upload *u = calloc(1, sizeof(*u));
  if (!u)
    return api_fail(r, 500, "internal", "out of memory");
  r->upload = u;
  r->upload_free = upload_free;
  u->written = json_array();
  u->meta = json_object();
  MHD_get_connection_values(r->conn, MHD_HEADER_KIND, collect_meta, u->meta);
  u->query_path = api_query(r, "path");
  if (!sandbox_running_or_fail(r, &u->ref))
    return MHD_YES;
  if (ct && strncasecmp(ct, "multipart/form-data", 19) == 0)
    {
      if (!(u->pp = MHD_create_post_processor(r->conn, 64 << 10, on_part, u)))
        return api_fail(r, 400, "invalid_argument", "cannot read this multipart body (no boundary?)");
      return MHD_YES;
    }
  if (ce && strcasecmp(ce, "gzip") == 0)
    {
      if (inflateInit2(&u->z, 15 + 16) != Z_OK)
        return api_fail(r, 500, "internal", "zlib");
      u->gzip = u->gzip_started = true;
    }
  else if (ce && *ce && strcasecmp(ce, "identity") != 0)
    return api_fail(r, 415, "unsupported_media_type", "Content-Encoding `%s` is not supported (gzip is)", ce);
  start_file(u, u->query_path);
  return MHD_YES;
}

int e2b_files_post_data(struct req *r, const char *data, size_t len)
{
  struct upload *u = r->upload;
  if (!u || r->responded)
    return MHD_YES;
  if (u->pp)
    {
      if (!u->err && MHD_post_process(u->pp, data, len) != MHD_YES && !u->err)
        corral_error_set(&u->err, EINVAL, "the multipart body is malformed");
    }
  else
    raw_data(u, data, len);
  return MHD_YES;
}

int e2b_files_post(struct req *r)
{
  struct upload *u = r->upload;
  if (!u)
    return api_fail(r, 500, "internal", "the upload was not opened");
  finish_file(u);
  if (u->err)
    {
      api_fail_err(r, u->err, NULL);
      return MHD_YES;
    }
  if (json_array_size(u->written) == 0)
    return api_fail(r, 400, "invalid_argument", "no file in the request");
  size_t i;
  json_t *e;
  json_array_foreach(u->written, i, e)
    api_audit(r->d, json_pack("{s:s, s:s, s:s, s:O, s:s}", "action", "file.write", "tenant", r->tenant, "sandbox",
                              u->ref.id, "path", json_object_get(e, "path"), "via", "e2b"));
  return api_json(r, 200, json_incref(u->written));
}
