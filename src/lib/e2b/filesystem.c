/* envd's filesystem.Filesystem unary calls over the agent's file
 * operations (which resolve every path inside the sandbox). */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include "e2b.h"
#include "../common/utils.h"

/* As Go's FileMode.String() spells it, which envd reports. */
static void permissions(const char *type, uint64_t mode, char out[11])
{
  static const char rwx[] = "rwxrwxrwx";
  out[0] = strcmp(type, "dir") == 0 ? 'd' : strcmp(type, "symlink") == 0 ? 'L' : '-';
  for (int i = 0; i < 9; i++)
    out[i + 1] = (mode & (0400u >> i)) ? rwx[i] : '-';
  out[10] = '\0';
}

json_t *e2b_entry_info(const struct corral__msg *m)
{
  uint64_t size = 0, mode = 0, mtime = 0;
  char mtime_s[40], perms[11];
  cleanup_free char *name = corral__msg_strdup(m, CORRAL__T_NAME);
  cleanup_free char *path = corral__msg_strdup(m, CORRAL__T_PATH);
  cleanup_free char *type = corral__msg_strdup(m, CORRAL__T_TYPE);
  cleanup_free char *target = corral__msg_strdup(m, CORRAL__T_TARGET);
  const char *t = type ? type : "other";
  corral__msg_u64(m, CORRAL__T_SIZE, &size);
  corral__msg_u64(m, CORRAL__T_MODE, &mode);
  corral__msg_u64(m, CORRAL__T_MTIME, &mtime);
  api_time((int64_t) mtime, mtime_s, sizeof(mtime_s));
  permissions(t, mode, perms);
  json_t *e = json_pack("{s:s, s:s, s:s, s:I, s:I, s:s, s:s, s:s, s:s}", "name", name ? name : "", "type",
                        strcmp(t, "file") == 0 ? "FILE_TYPE_FILE" : strcmp(t, "dir") == 0 ? "FILE_TYPE_DIRECTORY"
                        : strcmp(t, "symlink") == 0 ? "FILE_TYPE_SYMLINK" : "FILE_TYPE_UNSPECIFIED",
                        "path", path ? path : "", "size", (json_int_t) size, "mode", (json_int_t) (mode & 0777),
                        "permissions", perms, "owner", "user", "group", "user", "modifiedTime", mtime_s);
  if (target)
    json_object_set_new(e, "symlinkTarget", json_string(target));
  char **meta = corral__msg_strv(m, CORRAL__T_META, NULL);
  if (meta && meta[0])
    {
      json_t *md = json_object();
      for (char **kv = meta; *kv; kv++)
        {
          char *eq = strchr(*kv, '=');
          if (eq)
            {
              *eq = '\0';
              json_object_set_new(md, *kv, json_string(eq + 1));
            }
        }
      json_object_set_new(e, "metadata", md);
    }
  corral__strv_free(meta);
  return e;
}

/* The message's path field, the running sandbox, the user: NULL after
 * responding. */
static json_t *begin(struct req *r, struct sbx_ref *ref, const char *key, const char **path)
{
  json_t *m = connect_request(r);
  if (!m)
    return NULL;
  json_t *p = json_object_get(m, key);
  if (!json_is_string(p) || json_string_length(p) == 0 || json_string_length(p) >= 4000
      || strlen(json_string_value(p)) != json_string_length(p))
    {
      api_fail(r, 400, "invalid_argument", "`%s` must be a non-empty path", key);
      return json_decref(m), NULL;
    }
  if (e2b_user(r) < 0 || !sandbox_running_or_fail(r, ref))
    return json_decref(m), NULL;
  json_decref(ref->env);
  ref->env = NULL;
  *path = json_string_value(p);
  return m;
}

/* Send a file request; the first reply in *m.  The fd, or -1 with err. */
static int request(const struct sbx_ref *ref, struct corral__frame *f, uint8_t **buf, size_t *cap,
                   struct corral__msg *m, corral_error_t *err)
{
  int fd = agent_request(ref, f, err);
  if (fd < 0)
    return -1;
  if (corral__frame_recv(fd, buf, cap, m, 30000) != 1)
    {
      close(fd);
      return corral_error_set(err, EIO, "the sandbox agent did not answer");
    }
  if (m->type == CORRAL__R_ERROR)
    {
      agent_error(m, err);
      close(fd);
      return -1;
    }
  return fd;
}

static int fail(struct req *r, corral_error_t *err)
{
  api_fail_err(r, *err, NULL);
  corral_error_release(err);
  return MHD_YES;
}

/* A request answered by one entry: responds {key: EntryInfo} or {}. */
static int entry_call(struct req *r, const struct sbx_ref *ref, struct corral__frame *f, const char *key)
{
  corral_error_t err = NULL;
  struct corral__msg m;
  uint8_t *buf = NULL;
  size_t cap = 0;
  int fd = request(ref, f, &buf, &cap, &m, &err);
  if (fd < 0)
    {
      free(buf);
      return fail(r, &err);
    }
  json_t *o = json_object();
  if (key && m.type == CORRAL__R_ENTRY)
    json_object_set_new(o, key, e2b_entry_info(&m));
  close(fd);
  free(buf);
  return api_json(r, 200, o);
}

static void path_frame(struct corral__frame *f, uint8_t type, const char *path)
{
  corral__frame_init(f, type);
  corral__frame_add_str(f, CORRAL__T_PATH, path);
}

int e2b_fs_stat(struct req *r)
{
  struct sbx_ref ref;
  struct corral__frame f;
  const char *path;
  json_t *m = begin(r, &ref, "path", &path);
  if (m)
    {
      path_frame(&f, CORRAL__REQ_FSTAT, path);
      entry_call(r, &ref, &f, "entry");
    }
  json_decref(m);
  return MHD_YES;
}

int e2b_fs_make_dir(struct req *r)
{
  struct sbx_ref ref;
  struct corral__frame f;
  const char *path;
  corral_error_t err = NULL;
  json_t *m = begin(r, &ref, "path", &path);
  if (!m)
    return MHD_YES;
  /* envd answers AlreadyExists for an existing path (the SDK's `false`). */
  path_frame(&f, CORRAL__REQ_FSTAT, path);
  if (agent_call(&ref, &f, &err) == 0)
    api_fail(r, 409, "already_exists", "`%s` already exists", path);
  else
    {
      corral_error_release(&err);
      path_frame(&f, CORRAL__REQ_MKDIR, path);
      entry_call(r, &ref, &f, "entry");
    }
  json_decref(m);
  return MHD_YES;
}

int e2b_fs_move(struct req *r)
{
  struct sbx_ref ref;
  struct corral__frame f;
  const char *from;
  json_t *m = begin(r, &ref, "source", &from), *to;
  if (!m)
    return MHD_YES;
  to = json_object_get(m, "destination");
  if (!json_is_string(to) || json_string_length(to) == 0 || strlen(json_string_value(to)) != json_string_length(to))
    api_fail(r, 400, "invalid_argument", "`destination` must be a non-empty path");
  else
    {
      path_frame(&f, CORRAL__REQ_MOVE, from);
      corral__frame_add_str(&f, CORRAL__T_TO, json_string_value(to));
      api_audit(r->d, json_pack("{s:s, s:s, s:s, s:s, s:s}", "action", "file.move", "tenant", r->tenant, "sandbox",
                                ref.id, "path", from, "via", "e2b"));
      entry_call(r, &ref, &f, "entry");
    }
  json_decref(m);
  return MHD_YES;
}

int e2b_fs_remove(struct req *r)
{
  struct sbx_ref ref;
  struct corral__frame f;
  const char *path;
  json_t *m = begin(r, &ref, "path", &path);
  if (!m)
    return MHD_YES;
  path_frame(&f, CORRAL__REQ_REMOVE, path);
  corral__frame_add_u64(&f, CORRAL__T_RECURSIVE, 1); /* envd removes trees */
  api_audit(r->d, json_pack("{s:s, s:s, s:s, s:s, s:s}", "action", "file.remove", "tenant", r->tenant, "sandbox",
                            ref.id, "path", path, "via", "e2b"));
  entry_call(r, &ref, &f, NULL);
  json_decref(m);
  return MHD_YES;
}

int e2b_fs_list_dir(struct req *r)
{
  struct sbx_ref ref;
  struct corral__frame f;
  struct corral__msg msg;
  corral_error_t err = NULL;
  uint8_t *buf = NULL;
  size_t cap = 0;
  const char *path;
  json_t *m = begin(r, &ref, "path", &path), *depth;
  if (!m)
    return MHD_YES;
  depth = json_object_get(m, "depth");
  json_int_t dep = json_is_integer(depth) ? json_integer_value(depth) : 1;
  if (dep == 0)
    dep = 1;
  if (dep < 0 || dep > 64)
    {
      json_decref(m);
      return api_fail(r, 400, "invalid_argument", "`depth` must be between 1 and 64");
    }
  path_frame(&f, CORRAL__REQ_FLIST, path);
  corral__frame_add_u64(&f, CORRAL__T_DEPTH, (uint64_t) dep);
  json_decref(m);
  int fd = request(&ref, &f, &buf, &cap, &msg, &err);
  if (fd < 0)
    {
      free(buf);
      return fail(r, &err);
    }
  json_t *arr = json_array();
  while (msg.type == CORRAL__R_ENTRY)
    {
      json_array_append_new(arr, e2b_entry_info(&msg));
      if (corral__frame_recv(fd, &buf, &cap, &msg, 30000) != 1)
        break;
    }
  close(fd);
  free(buf);
  return api_json(r, 200, json_pack("{s:o}", "entries", arr));
}
