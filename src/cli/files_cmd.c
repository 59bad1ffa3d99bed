/* `corral files get|put|ls|stat|mkdir|mv|rm`: files inside a sandbox of corrald.
 *
 * get and put stream: a download goes to a temporary file beside LOCAL that
 * is renamed over it only when complete, an upload is read from LOCAL as curl
 * sends it, so neither ever holds the file in memory. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include "cli.h"

static const char files_usage[] =
  "usage: corral files COMMAND [OPTIONS]\n\n"
  "  get SANDBOX PATH [LOCAL|-]        download PATH to LOCAL (default: stdout)\n"
  "  put SANDBOX LOCAL|- PATH [--mode 0644]   upload LOCAL (or stdin) to PATH\n"
  "  ls SANDBOX [PATH] [--depth N] [--json]   list a directory (default /home/user)\n"
  "  stat SANDBOX PATH [--json]        show one entry\n"
  "  mkdir SANDBOX PATH                make a directory and its parents\n"
  "  mv SANDBOX FROM TO                rename\n"
  "  rm SANDBOX PATH [-r]              remove (-r: a directory and its content)\n\n"
  "Paths inside are absolute or relative to /home/user.\n"
  "common options: --url URL (or CORRAL_URL), --api-key KEY (or CORRAL_API_KEY)\n";

enum { OPT_DEPTH = CORRAL_OPT_FIRST_FREE, OPT_MODE, OPT_RECURSIVE };

static const struct option files_options[] = {
  CORRAL_REMOTE_OPTIONS, { "json", no_argument, NULL, CORRAL_OPT_JSON },
  { "depth", required_argument, NULL, OPT_DEPTH }, { "mode", required_argument, NULL, OPT_MODE },
  { "recursive", no_argument, NULL, OPT_RECURSIVE }, { NULL, 0, NULL, 0 }
};

struct files_args {
  const char *usage;         /* usage line of the subcommand */
  bool json;
  bool recursive;
  const char *depth;
  const char *mode;
  char **rest;               /* SANDBOX and the other arguments */
  int n_rest;
  char *sandbox;             /* rest[0], escaped */
};

/* ---- get ---- */

/* A signal during a download into a file stops it, so the temporary file
 * can be removed instead of left behind. */
static volatile sig_atomic_t stop_signal;

static void on_stop(int sig)
{
  stop_signal = sig;
}

static void catch_stop_signals(void)
{
  static const int sigs[] = { SIGINT, SIGTERM, SIGHUP };
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_stop;
  for (size_t i = 0; i < sizeof(sigs) / sizeof(*sigs); i++)
    {
      struct sigaction old;
      /* A signal ignored by whoever started us (nohup) stays ignored. */
      if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler != SIG_IGN)
        sigaction(sigs[i], &sa, NULL);
    }
}

static int stop_requested(void *ctx)
{
  (void) ctx;
  return stop_signal ? -1 : 0;
}

struct download {
  FILE *out;
  const char *name;          /* for messages */
};

static int write_chunk(const char *data, size_t len, void *ctx)
{
  struct download *d = ctx;
  if (fwrite(data, 1, len, d->out) != len)
    {
      fprintf(stderr, "corral: cannot write `%s`: %s\n", d->name, strerror(errno));
      return -1;
    }
  return 0;
}

static int download(const struct files_args *a, const char *path, FILE *out, const char *name)
{
  struct download d = { .out = out, .name = name };
  char *epath = corral_remote_escape(path), *url;
  int rc = -1;
  if (asprintf(&url, "/v1/sandboxes/%s/files?path=%s", a->sandbox, epath) >= 0)
    {
      corral_call_t call = { .method = "GET", .path = url, .upload_size = -1, .sink = write_chunk, .sink_ctx = &d,
                             .tick = stop_requested };
      rc = corral_remote_call(&call, NULL);
      free(url);
    }
  free(epath);
  if (rc >= 0 && fflush(out) != 0)
    {
      fprintf(stderr, "corral: cannot write `%s`: %s\n", name, strerror(errno));
      rc = -1;
    }
  return rc < 0 ? -1 : 0;
}

/* LOCAL, or LOCAL/basename(PATH) when LOCAL is a directory (malloc'd). */
static char *local_target(const char *local, const char *path)
{
  struct stat st;
  char *copy = strdup(path), *t = NULL;
  if (copy && stat(local, &st) == 0 && S_ISDIR(st.st_mode))
    {
      if (asprintf(&t, "%s/%s", local, basename(copy)) < 0)
        t = NULL;
    }
  else
    t = strdup(local);
  free(copy);
  return t;
}

/* A new temporary file beside target, mode 0666 & ~umask like any new file. */
static FILE *create_beside(const char *target, char **tmp_out)
{
  char *dir = strdup(target), *tmp = NULL;
  FILE *out = NULL;
  int fd;
  mode_t mask = umask(0);
  umask(mask);
  if (dir == NULL || asprintf(&tmp, "%s/.corral-get-XXXXXX", dirname(dir)) < 0)
    tmp = NULL;
  free(dir);
  if (tmp == NULL || (fd = mkostemp(tmp, O_CLOEXEC)) < 0)
    {
      fprintf(stderr, "corral: cannot create `%s`: %s\n", target, strerror(errno));
      free(tmp);
      return NULL;
    }
  if (fchmod(fd, 0666 & ~mask) < 0 || (out = fdopen(fd, "w")) == NULL)
    {
      fprintf(stderr, "corral: cannot create `%s`: %s\n", target, strerror(errno));
      close(fd);
      unlink(tmp);
      free(tmp);
      return NULL;
    }
  *tmp_out = tmp;
  return out;
}

static int get_to_file(const struct files_args *a, const char *path, const char *local)
{
  char *target = local_target(local, path), *tmp = NULL;
  FILE *out = target ? create_beside(target, &tmp) : NULL;
  int rc = CORRAL_EXIT_FAIL;
  if (out == NULL)
    {
      free(target);
      return rc;
    }
  catch_stop_signals();
  int got = download(a, path, out, target);
  if (fclose(out) != 0 && got == 0)
    fprintf(stderr, "corral: cannot write `%s`: %s\n", target, strerror(errno));
  else if (got == 0 && rename(tmp, target) < 0)
    fprintf(stderr, "corral: cannot write `%s`: %s\n", target, strerror(errno));
  else if (got == 0)
    rc = 0;
  if (rc != 0)
    unlink(tmp);
  free(tmp);
  free(target);
  return stop_signal ? 128 + stop_signal : rc;
}

static int cmd_get(struct files_args *a)
{
  const char *local = a->n_rest == 3 ? a->rest[2] : "-";
  if (a->n_rest < 2 || a->n_rest > 3)
    return corral_usage_error(a->usage, "files get: expected SANDBOX PATH [LOCAL|-]");
  if (strcmp(local, "-") == 0)
    return download(a, a->rest[1], stdout, "stdout") < 0 ? CORRAL_EXIT_FAIL : 0;
  return get_to_file(a, a->rest[1], local);
}

/* ---- put ---- */

static int upload(struct files_args *a, FILE *in, const char *path)
{
  struct stat st;
  json_t *res = NULL;
  char *url = NULL, *epath = corral_remote_escape(path), *emode = a->mode ? corral_remote_escape(a->mode) : NULL;
  int rc = asprintf(&url, "/v1/sandboxes/%s/files?path=%s%s%s", a->sandbox, epath, emode ? "&mode=" : "",
                    emode ? emode : "");
  /* A regular file has a length; a pipe goes chunked. */
  bool sized = fstat(fileno(in), &st) == 0 && S_ISREG(st.st_mode);
  if (rc >= 0)
    {
      corral_call_t call = { .method = "PUT", .path = url, .upload = in,
                             .upload_size = sized ? (long long) (st.st_size - ftello(in)) : -1 };
      rc = corral_remote_call(&call, &res);
    }
  if (rc >= 0 && a->json)
    corral_print_json(res);
  json_decref(res);
  free(url);
  free(epath);
  free(emode);
  return rc < 0 ? CORRAL_EXIT_FAIL : 0;
}

static int cmd_put(struct files_args *a)
{
  FILE *in;
  int rc;
  if (a->n_rest != 3)
    return corral_usage_error(a->usage, "files put: expected SANDBOX LOCAL|- PATH");
  in = strcmp(a->rest[1], "-") == 0 ? stdin : fopen(a->rest[1], "re");
  if (in == NULL)
    {
      fprintf(stderr, "corral: cannot open `%s`: %s\n", a->rest[1], strerror(errno));
      return CORRAL_EXIT_FAIL;
    }
  rc = upload(a, in, a->rest[2]);
  if (in != stdin)
    fclose(in);
  return rc;
}

/* ---- ls and stat ---- */

static void print_entry(const json_t *e, bool full_path)
{
  char type[16], mode[16], size[32], mtime[40], name[4096], target[4096];
  const char *t = corral_json_text(e, "type", type, sizeof(type));
  printf("%-7s  %-5s  %12s  %-24s  %s", t, corral_json_text(e, "mode", mode, sizeof(mode)),
         corral_json_text(e, "size", size, sizeof(size)), corral_json_text(e, "mtime", mtime, sizeof(mtime)),
         corral_json_text(e, full_path ? "path" : "name", name, sizeof(name)));
  if (strcmp(t, "symlink") == 0)
    printf(" -> %s", corral_json_text(e, "symlink_target", target, sizeof(target)));
  putchar('\n');
}

static int cmd_ls(struct files_args *a)
{
  unsigned long long depth = 1;
  json_t *res = NULL, *e;
  size_t i;
  if (a->n_rest < 1 || a->n_rest > 2)
    return corral_usage_error(a->usage, "files ls: expected SANDBOX [PATH]");
  if (a->depth && (corral_parse_uint(a->depth, 16, &depth) < 0 || depth == 0))
    return corral_usage_error(a->usage, "--depth: expected 1 to 16, not `%s`", a->depth);
  char *epath = corral_remote_escape(a->n_rest == 2 ? a->rest[1] : "/home/user");
  int rc = corral_remote_json("GET", NULL, &res, "/v1/sandboxes/%s/files/list?path=%s&depth=%llu", a->sandbox,
                              epath, depth);
  free(epath);
  if (rc < 0)
    return CORRAL_EXIT_FAIL;
  if (a->json)
    corral_print_json(res);
  else
    json_array_foreach(json_object_get(res, "entries"), i, e)
      print_entry(e, depth > 1);
  json_decref(res);
  return 0;
}

static int cmd_stat(struct files_args *a)
{
  json_t *res = NULL;
  if (a->n_rest != 2)
    return corral_usage_error(a->usage, "files stat: expected SANDBOX PATH");
  char *epath = corral_remote_escape(a->rest[1]);
  int rc = corral_remote_json("GET", NULL, &res, "/v1/sandboxes/%s/files/stat?path=%s", a->sandbox, epath);
  free(epath);
  if (rc < 0)
    return CORRAL_EXIT_FAIL;
  if (a->json)
    corral_print_json(res);
  else
    print_entry(res, true);
  json_decref(res);
  return 0;
}

/* ---- mkdir, mv, rm ---- */

static int simple_post(struct files_args *a, const char *action, json_t *body)
{
  json_t *res = NULL;
  int rc = corral_remote_json("POST", body, &res, "/v1/sandboxes/%s/files/%s", a->sandbox, action);
  json_decref(body);
  if (rc >= 0 && a->json && res)
    corral_print_json(res);
  json_decref(res);
  return rc < 0 ? CORRAL_EXIT_FAIL : 0;
}

static int cmd_mkdir(struct files_args *a)
{
  if (a->n_rest != 2)
    return corral_usage_error(a->usage, "files mkdir: expected SANDBOX PATH");
  return simple_post(a, "mkdir", json_pack("{ss}", "path", a->rest[1]));
}

static int cmd_mv(struct files_args *a)
{
  if (a->n_rest != 3)
    return corral_usage_error(a->usage, "files mv: expected SANDBOX FROM TO");
  return simple_post(a, "move", json_pack("{ssss}", "from", a->rest[1], "to", a->rest[2]));
}

static int cmd_rm(struct files_args *a)
{
  if (a->n_rest != 2)
    return corral_usage_error(a->usage, "files rm: expected SANDBOX PATH");
  return simple_post(a, "remove", json_pack("{sssb}", "path", a->rest[1], "recursive", a->recursive));
}

/* ---- dispatch ---- */

static int parse_files(struct files_args *a, int argc, char **argv)
{
  int opt;
  optind = 0;
  opterr = 0;
  while ((opt = getopt_long(argc, argv, "hr", files_options, NULL)) != -1)
    {
      if (opt == 'h' || opt == CORRAL_OPT_HELP)
        {
          fputs(files_usage, stdout);
          return -1;
        }
      if (opt == '?' || opt == ':')
        return corral_bad_option(a->usage, argv);
      if (corral_remote_option(opt, optarg))
        continue;
      if (opt == CORRAL_OPT_JSON)
        a->json = true;
      else if (opt == 'r' || opt == OPT_RECURSIVE)
        a->recursive = true;
      else if (opt == OPT_DEPTH)
        a->depth = optarg;
      else if (opt == OPT_MODE)
        a->mode = optarg;
    }
  a->rest = argv + optind;
  a->n_rest = argc - optind;
  if (a->n_rest < 1)
    return corral_usage_error(a->usage, "files %s: missing SANDBOX", argv[0]);
  return 0;
}

static const struct {
  const char *name;
  const char *usage;
  int (*run)(struct files_args *a);
} files_commands[] = {
  { "get", "usage: corral files get SANDBOX PATH [LOCAL|-]\n", cmd_get },
  { "put", "usage: corral files put SANDBOX LOCAL|- PATH [--mode MODE] [--json]\n", cmd_put },
  { "ls", "usage: corral files ls SANDBOX [PATH] [--depth N] [--json]\n", cmd_ls },
  { "list", "usage: corral files list SANDBOX [PATH] [--depth N] [--json]\n", cmd_ls },
  { "stat", "usage: corral files stat SANDBOX PATH [--json]\n", cmd_stat },
  { "mkdir", "usage: corral files mkdir SANDBOX PATH\n", cmd_mkdir },
  { "mv", "usage: corral files mv SANDBOX FROM TO\n", cmd_mv },
  { "rm", "usage: corral files rm SANDBOX PATH [-r]\n", cmd_rm },
};

int corral_cli_files(int argc, char **argv)
{
  if (argc < 2)
    return corral_usage_error(files_usage, "files: missing command");
  if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
    {
      fputs(files_usage, stdout);
      return 0;
    }
  for (size_t i = 0; i < sizeof(files_commands) / sizeof(*files_commands); i++)
    if (strcmp(argv[1], files_commands[i].name) == 0)
      {
        struct files_args a = { .usage = files_commands[i].usage };
        int rc = parse_files(&a, argc - 1, argv + 1);
        if (rc != 0)
          return rc < 0 ? 0 : rc;
        a.sandbox = corral_remote_escape(a.rest[0]);
        rc = files_commands[i].run(&a);
        free(a.sandbox);
        return rc;
      }
  return corral_usage_error(files_usage, "files: unknown command `%s`", argv[1]);
}
