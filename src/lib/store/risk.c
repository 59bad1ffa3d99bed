/* Risk score of a command, for the audit log (corral_audit_risk).
 *
 * A heuristic, not a defence: the sandbox is what contains a command; the
 * score only points whoever reads the audit log at the commands worth a
 * look.  So the rules lean towards scoring: a false alarm costs a glance,
 * a miss hides an attack.
 *
 * The argv is joined with spaces and read roughly as a shell would: quotes,
 * pipelines, separators, redirections and $( ) are recognised, the command
 * of each simple command is found behind wrappers (sudo, env, timeout...),
 * and `sh -c SCRIPT` or `eval` is read recursively.  Joining first matters
 * because agents send both ["sh","-c","curl x | sh"] and
 * ["curl","x","|","sh"].  Reverse shells, fork bombs and encoded payloads
 * are also looked for in the raw text, where parsing would only get in the
 * way.  Nothing here ever runs the command. */
#define _GNU_SOURCE
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include "../common/utils.h"
#include "store_internal.h"

enum rule
{
  RULE_FORK_BOMB,
  RULE_DOWNLOAD_SHELL,
  RULE_REVERSE_SHELL,
  RULE_RM_ROOT,
  RULE_SYSTEM_WRITE,
  RULE_DECODE_SHELL,
  RULE_SETUID,
  RULE_PRIV_TOOL,
  RULE_PAYLOAD,
  RULE_NET_TOOL,
  RULE_DECODE,
  RULE_DOWNLOAD_TOOL,
  RULE_COUNT
};

/* Weights: one strong rule alone reaches 50, the level worth a look. */
static const struct
{
  int weight;
  const char *reason;
} rules[RULE_COUNT] = {
  [RULE_FORK_BOMB] = { 80, "fork bomb" },
  [RULE_DOWNLOAD_SHELL] = { 70, "download piped to a shell" },
  [RULE_REVERSE_SHELL] = { 70, "reverse-shell pattern" },
  [RULE_RM_ROOT] = { 60, "recursive delete of /, ~ or *" },
  [RULE_SYSTEM_WRITE] = { 50, "write to a system path" },
  [RULE_DECODE_SHELL] = { 40, "decoded payload piped to a shell" },
  [RULE_SETUID] = { 40, "setuid/setgid bit set" },
  [RULE_PRIV_TOOL] = { 30, "privilege tool" },
  [RULE_PAYLOAD] = { 25, "long base64/hex payload" },
  [RULE_NET_TOOL] = { 20, "network tool" },
  [RULE_DECODE] = { 20, "base64/hex decoding" },
  [RULE_DOWNLOAD_TOOL] = { 10, "download tool" },
};

/* Nesting of sh -c / eval / $( ) read recursively. */
#define MAX_DEPTH 4

struct risk
{
  bool hit[RULE_COUNT];
  const char *tool[RULE_COUNT]; /* first command that hit the rule (static strings) */
  bool pipe_download;           /* the current pipeline ran a download tool */
  bool pipe_decode;             /* ... a decoder */
  bool fifo;                    /* mkfifo/mknod: with a network tool, a reverse shell */
  bool interactive;             /* sh -i: likewise */
  int depth;
  bool nomem;
};

static void hit(struct risk *r, enum rule rule, const char *tool)
{
  if (!r->hit[rule])
    r->tool[rule] = tool;
  r->hit[rule] = true;
}

static bool in_list(const char *s, const char *const *list)
{
  for (; *list; list++)
    if (strcmp(s, *list) == 0)
      return true;
  return false;
}

/* The static copy of s from list, so that reasons can point at it. */
static const char *list_entry(const char *s, const char *const *list)
{
  for (; *list; list++)
    if (strcmp(s, *list) == 0)
      return *list;
  return NULL;
}

static const char *const shells[] = { "sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "yash", "fish", "csh", "tcsh",
                                      "rbash", NULL };
static const char *const interpreters[] = { "python", "perl", "ruby", "node", "nodejs", "php", "lua", NULL };
static const char *const downloaders[] = { "curl", "wget", "fetch", "aria2c", "axel", NULL };
static const char *const net_tools[] = { "nc", "ncat", "netcat", "socat", "nmap", "masscan", "ssh", "scp", "sftp",
                                         "telnet", "rsh", NULL };
static const char *const priv_tools[] = { "su", "mount", "umount", "setcap", "capsh", "insmod", "modprobe", "rmmod",
                                          "pivot_root", NULL };

/* Something that runs its input or argument as code: what a download or
 * a decoded payload must not be piped into. */
static bool runs_code(const char *name)
{
  if (in_list(name, shells) || strcmp(name, "eval") == 0 || strcmp(name, "source") == 0 || strcmp(name, ".") == 0)
    return true;
  /* Versioned names too: python3.11, perl5.36, lua5.4. */
  for (const char *const *p = interpreters; *p; p++)
    if (strncmp(name, *p, strlen(*p)) == 0)
      return true;
  return false;
}

/* A short option cluster (-rf) holding one of chars. */
static bool short_opt_has(const char *a, const char *chars)
{
  return a[0] == '-' && a[1] != '-' && a[1] != '\0' && strpbrk(a + 1, chars) != NULL;
}

static bool is_option(const char *a)
{
  return a[0] == '-' && a[1] != '\0';
}

/* Whether a code runner fed by a pipe runs what it reads: `sh`, `sh -s`,
 * `python3 -` do; `python3 -m json.tool`, `sh script.sh`, `perl -e ...`
 * take their code elsewhere and only read data. */
static bool reads_code_from_stdin(const char *name, const char **a, size_t n)
{
  bool shell = in_list(name, shells);
  for (size_t i = 0; i < n; i++)
    {
      if (strcmp(a[i], "-") == 0 || strcmp(a[i], "/dev/stdin") == 0)
        return true;
      if (strcmp(a[i], "--") == 0)
        continue;
      if (a[i][0] != '-' && !(shell && a[i][0] == '+'))
        return false; /* a script file */
      if (shell && short_opt_has(a[i], "s"))
        return true;
      if (short_opt_has(a[i], shell ? "c" : "cmeE") || strcmp(a[i], "--eval") == 0
          || strcmp(a[i], "--command") == 0)
        return false;
    }
  return true;
}

/* ---- lexer ---- */

enum tok_kind
{
  TOK_WORD,
  TOK_PIPE,  /* | |& */
  TOK_SEP,   /* ; && || & newline: ends a pipeline */
  TOK_GROUP, /* ( ): ends a command, not the pipeline */
  TOK_SUBST, /* $( ` <( >( */
  TOK_OUT,   /* > >> >| >& &> &>> */
  TOK_IN     /* < << <<< <& */
};

struct tok
{
  enum tok_kind kind;
  const char *text; /* TOK_WORD: the word without its quotes */
  bool subst;       /* the word holds $( or ` outside single quotes */
};

struct toks
{
  struct tok *v;
  size_t n, cap;
  char *buf; /* the words' text */
  size_t used;
};

/* Longest first. */
static const struct
{
  const char *op;
  enum tok_kind kind;
} ops[] = {
  { "&>>", TOK_OUT },  { "&&", TOK_SEP },  { "&>", TOK_OUT },    { "&", TOK_SEP },   { "||", TOK_SEP },
  { "|&", TOK_PIPE },  { "|", TOK_PIPE },  { ";", TOK_SEP },     { "\n", TOK_SEP },  { ">>", TOK_OUT },
  { ">|", TOK_OUT },   { ">&", TOK_OUT },  { ">(", TOK_SUBST },  { ">", TOK_OUT },   { "<<<", TOK_IN },
  { "<<", TOK_IN },    { "<&", TOK_IN },   { "<(", TOK_SUBST },  { "<", TOK_IN },    { "$(", TOK_SUBST },
  { "`", TOK_SUBST },  { "(", TOK_GROUP }, { ")", TOK_GROUP },
};

static int match_op(const char *p, enum tok_kind *kind)
{
  /* Called for every character of a word: rule most out at once. */
  if (*p == '\0' || strchr("&|;\n><$`()", *p) == NULL)
    return 0;
  for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
    {
      size_t len = strlen(ops[i].op);
      if (strncmp(p, ops[i].op, len) == 0)
        {
          if (kind)
            *kind = ops[i].kind;
          return (int) len;
        }
    }
  return 0;
}

static bool is_blank(char c)
{
  return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

static bool push_tok(struct toks *t, enum tok_kind kind, const char *text, bool subst)
{
  if (t->n == t->cap)
    {
      size_t cap = t->cap ? t->cap * 2 : 32;
      struct tok *v = reallocarray(t->v, cap, sizeof(*v));
      if (v == NULL)
        return false;
      t->v = v;
      t->cap = cap;
    }
  t->v[t->n++] = (struct tok) { kind, text, subst };
  return true;
}

/* Copy one word, unquoted, to o; *end gets the byte after its NUL.
 * Returns where the word ends in the source. */
static const char *lex_word(const char *p, char *o, char **end, bool *subst)
{
  while (*p && !is_blank(*p) && !match_op(p, NULL))
    {
      if (*p == '\'')
        {
          for (p++; *p && *p != '\'';)
            *o++ = *p++;
          p += *p != '\0';
        }
      else if (*p == '"')
        {
          for (p++; *p && *p != '"';)
            {
              if (*p == '\\' && p[1] && strchr("\"\\$`", p[1]))
                p++;
              else if (*p == '`' || (*p == '$' && p[1] == '('))
                *subst = true;
              *o++ = *p++;
            }
          p += *p != '\0';
        }
      else if (*p == '\\' && p[1])
        {
          if (p[1] != '\n') /* a line continuation vanishes */
            *o++ = p[1];
          p += 2;
        }
      else
        *o++ = *p++;
    }
  *o++ = '\0';
  *end = o;
  return p;
}

static bool all_digits(const char *s)
{
  if (*s == '\0')
    return false;
  for (; *s; s++)
    if (!isdigit((unsigned char) *s))
      return false;
  return true;
}

static bool lex(const char *p, struct toks *t)
{
  /* Unquoted words are never longer than their source, plus a NUL each. */
  t->buf = malloc(2 * strlen(p) + 2);
  if (t->buf == NULL)
    return false;
  while (*p)
    {
      enum tok_kind kind;
      int len;
      char *word, *end;
      bool subst = false;
      if (is_blank(*p))
        {
          p++;
          continue;
        }
      if (*p == '#')
        {
          p += strcspn(p, "\n");
          continue;
        }
      if ((len = match_op(p, &kind)) > 0)
        {
          if (!push_tok(t, kind, NULL, false))
            return false;
          p += len;
          continue;
        }
      word = t->buf + t->used;
      p = lex_word(p, word, &end, &subst);
      /* "2" in 2>&1 names a descriptor, it is not a word. */
      if (all_digits(word) && (*p == '>' || *p == '<'))
        continue;
      t->used = (size_t) (end - t->buf);
      if (!push_tok(t, TOK_WORD, word, subst))
        return false;
    }
  return true;
}

/* ---- paths ---- */

/* Collapse // and /./ and drop a trailing / or /. (keeping "/"); the
 * result is truncated to size, which keeps every prefix test valid. */
static void norm_path(const char *in, char *out, size_t size)
{
  size_t n = 0;
  for (const char *p = in; *p && n + 1 < size; p++)
    {
      if (*p == '/' && n > 0 && out[n - 1] == '/')
        continue;
      if (*p == '.' && n > 0 && out[n - 1] == '/' && (p[1] == '/' || p[1] == '\0'))
        continue;
      out[n++] = *p;
    }
  while (n > 1 && out[n - 1] == '/')
    n--;
  out[n] = '\0';
}

static bool under(const char *path, const char *dir)
{
  size_t len = strlen(dir);
  return strncmp(path, dir, len) == 0 && (path[len] == '\0' || path[len] == '/');
}

static bool system_path(const char *path)
{
  static const char *const dirs[] = { "/etc", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
                                      "/boot", "/proc/sys", "/sys", NULL };
  /* Raw disks and memory: plain prefixes (/dev/sda1, /dev/nvme0n1). */
  static const char *const devices[] = { "/dev/sd", "/dev/hd", "/dev/vd", "/dev/xvd", "/dev/nvme", "/dev/mmcblk",
                                         "/dev/mem", "/dev/kmem", "/dev/port", "/proc/sysrq-trigger", NULL };
  char p[256];
  norm_path(path, p, sizeof(p));
  for (const char *const *d = dirs; *d; d++)
    if (under(p, *d))
      return true;
  for (const char *const *d = devices; *d; d++)
    if (strncmp(p, *d, strlen(*d)) == 0)
      return true;
  return false;
}

static void check_write(struct risk *r, const char *path)
{
  if (system_path(path))
    hit(r, RULE_SYSTEM_WRITE, NULL);
}

/* ---- per-command rules ---- */

static bool any_arg(const char **a, size_t n, const char *want)
{
  for (size_t i = 0; i < n; i++)
    if (strcmp(a[i], want) == 0)
      return true;
  return false;
}

static bool root_like(const char *arg)
{
  static const char *const targets[] = { "/", "/*", "~", "~/*", "*", "$HOME", "${HOME}", "$HOME/*", "${HOME}/*",
                                         ".", "./*", NULL };
  char p[64];
  norm_path(arg, p, sizeof(p));
  return in_list(p, targets);
}

static void check_rm(struct risk *r, const char **a, size_t n)
{
  bool recursive = false, root = false, options = true;
  for (size_t i = 0; i < n; i++)
    {
      if (options && strcmp(a[i], "--") == 0)
        options = false;
      else if (options && is_option(a[i]))
        {
          recursive |= strcmp(a[i], "--recursive") == 0 || short_opt_has(a[i], "rR");
          /* Asking to skip rm's own guard says what the target is. */
          root |= strcmp(a[i], "--no-preserve-root") == 0;
        }
      else
        root |= root_like(a[i]);
    }
  if (recursive && root)
    hit(r, RULE_RM_ROOT, NULL);
}

/* chmod's mode sets the setuid or setgid bit: 4755, 2755, u+s, g=rxs. */
static bool setuid_mode(const char *m)
{
  size_t len = strlen(m);
  if (len >= 4 && strspn(m, "01234567") == len)
    return ((m[len - 4] - '0') & 6) != 0;
  for (const char *op = strpbrk(m, "+="); op; op = strpbrk(op + 1, "+="))
    {
      size_t clause = strcspn(op, ",");
      if (memchr(op, 's', clause))
        return true;
    }
  return false;
}

static void check_chmod(struct risk *r, const char **a, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (!is_option(a[i]))
      {
        /* The first operand is the mode. */
        if (setuid_mode(a[i]))
          hit(r, RULE_SETUID, NULL);
        return;
      }
}

enum write_kind
{
  W_ANY,  /* every operand is written */
  W_LAST, /* the destination: the last operand */
  W_DD,   /* of=PATH */
  W_SED,  /* every operand, with -i */
  W_DL    /* curl -o PATH, wget -O PATH */
};

static const struct
{
  const char *name;
  enum write_kind kind;
} writers[] = {
  { "tee", W_ANY },     { "chmod", W_ANY },    { "chown", W_ANY },    { "chgrp", W_ANY },  { "chattr", W_ANY },
  { "setfacl", W_ANY }, { "touch", W_ANY },    { "truncate", W_ANY }, { "mkdir", W_ANY },  { "rm", W_ANY },
  { "rmdir", W_ANY },   { "unlink", W_ANY },   { "shred", W_ANY },    { "sponge", W_ANY }, { "cp", W_LAST },
  { "mv", W_LAST },     { "install", W_LAST }, { "ln", W_LAST },      { "rsync", W_LAST }, { "dd", W_DD },
  { "sed", W_SED },     { "curl", W_DL },      { "wget", W_DL },
};

/* The file a download tool writes to: -o F, -oF, -O F, --output F,
 * --output-document=F. */
static void check_download_output(struct risk *r, const char **a, size_t n)
{
  for (size_t i = 0; i < n; i++)
    {
      if ((strcmp(a[i], "-o") == 0 || strcmp(a[i], "-O") == 0 || strcmp(a[i], "--output") == 0
           || strcmp(a[i], "--output-document") == 0)
          && i + 1 < n)
        check_write(r, a[++i]);
      else if (strncmp(a[i], "-o", 2) == 0 || strncmp(a[i], "-O", 2) == 0)
        check_write(r, a[i] + 2);
      else if (strncmp(a[i], "--output-document=", 18) == 0)
        check_write(r, a[i] + 18);
    }
}

static void check_writer(struct risk *r, enum write_kind kind, const char **a, size_t n)
{
  bool in_place = false;
  const char *last = NULL;
  if (kind == W_DL)
    {
      check_download_output(r, a, n);
      return;
    }
  for (size_t i = 0; i < n; i++)
    {
      in_place |= strncmp(a[i], "-i", 2) == 0 || strncmp(a[i], "--in-place", 10) == 0;
      if (kind == W_DD && strncmp(a[i], "of=", 3) == 0)
        check_write(r, a[i] + 3);
      if (!is_option(a[i]))
        last = a[i];
    }
  for (size_t i = 0; i < n && (kind == W_ANY || (kind == W_SED && in_place)); i++)
    if (!is_option(a[i]))
      check_write(r, a[i]);
  if (kind == W_LAST && last)
    check_write(r, last);
}

static bool is_decoder(const char *name, const char **a, size_t n)
{
  if (strcmp(name, "base64") == 0 || strcmp(name, "base32") == 0 || strcmp(name, "basenc") == 0)
    {
      for (size_t i = 0; i < n; i++)
        if (strcmp(a[i], "--decode") == 0 || short_opt_has(a[i], "dD"))
          return true;
      return false;
    }
  if (strcmp(name, "xxd") == 0)
    {
      for (size_t i = 0; i < n; i++)
        if (short_opt_has(a[i], "r"))
          return true;
      return false;
    }
  if (strcmp(name, "openssl") == 0)
    return any_arg(a, n, "-d") && (any_arg(a, n, "base64") || any_arg(a, n, "enc"));
  return strcmp(name, "uudecode") == 0;
}

static void check_net_tool(struct risk *r, const char *tool, const char **a, size_t n)
{
  hit(r, RULE_NET_TOOL, tool);
  /* nc -e /bin/sh, ncat --sh-exec, socat exec:/bin/sh: a shell on a socket. */
  if (strcmp(tool, "nc") == 0 || strcmp(tool, "ncat") == 0 || strcmp(tool, "netcat") == 0)
    for (size_t i = 0; i < n; i++)
      if (short_opt_has(a[i], "ec") || strcmp(a[i], "--exec") == 0 || strcmp(a[i], "--sh-exec") == 0
          || strcmp(a[i], "--lua-exec") == 0)
        hit(r, RULE_REVERSE_SHELL, NULL);
  if (strcmp(tool, "socat") == 0)
    for (size_t i = 0; i < n; i++)
      if (strcasestr(a[i], "exec:") || strcasestr(a[i], "system:"))
        hit(r, RULE_REVERSE_SHELL, NULL);
}

struct ctx
{
  bool code;       /* the text is a script (argv, sh -c, eval), not a quoted argument */
  bool after_pipe; /* this command reads the previous one's output */
  bool exec_subst; /* this command's output is run as code: bash <(...), $(...) as a command */
};

/* The rules for one resolved command.  Returns whether it runs code
 * (so that what a substitution right after it prints is code). */
static bool check_program(struct risk *r, const char *name, const char **a, size_t n, const struct ctx *c)
{
  const char *tool;
  if (c->after_pipe && runs_code(name) && reads_code_from_stdin(name, a, n))
    {
      if (r->pipe_download)
        hit(r, RULE_DOWNLOAD_SHELL, NULL);
      if (r->pipe_decode)
        hit(r, RULE_DECODE_SHELL, NULL);
    }
  if ((tool = list_entry(name, downloaders)))
    {
      hit(r, RULE_DOWNLOAD_TOOL, tool);
      r->pipe_download = true;
      if (c->exec_subst)
        hit(r, RULE_DOWNLOAD_SHELL, NULL);
    }
  if (is_decoder(name, a, n))
    {
      hit(r, RULE_DECODE, NULL);
      r->pipe_decode = true;
      if (c->exec_subst)
        hit(r, RULE_DECODE_SHELL, NULL);
    }
  if ((tool = list_entry(name, net_tools)))
    check_net_tool(r, tool, a, n);
  if ((tool = list_entry(name, priv_tools)))
    hit(r, RULE_PRIV_TOOL, tool);
  if (strcmp(name, "rm") == 0)
    check_rm(r, a, n);
  if (strcmp(name, "chmod") == 0)
    check_chmod(r, a, n);
  if (strcmp(name, "mkfifo") == 0 || strcmp(name, "mknod") == 0)
    r->fifo = true;
  if (in_list(name, shells))
    for (size_t i = 0; i < n && is_option(a[i]); i++)
      r->interactive |= short_opt_has(a[i], "i");
  for (size_t i = 0; i < sizeof(writers) / sizeof(writers[0]); i++)
    if (strcmp(name, writers[i].name) == 0)
      check_writer(r, writers[i].kind, a, n);
  return runs_code(name);
}

/* ---- finding the command ---- */

/* Commands that run another command: sudo -u bob CMD, timeout 5 CMD.
 * opts: the short options that take a separate argument; positional:
 * operands before the command (timeout's duration, chroot's directory). */
static const struct wrapper
{
  const char *name;
  const char *opts;
  int positional;
  bool priv;
} wrappers[] = {
  { "sudo", "CDghpRrTtUu", 0, true },     { "doas", "Cu", 0, true },         { "pkexec", "", 0, true },
  { "runuser", "gGu", 0, true },          { "chroot", "", 1, true },         { "nsenter", "tSGw", 0, true },
  { "unshare", "", 0, true },             { "setpriv", "", 0, true },        { "env", "uCS", 0, false },
  { "nohup", "", 0, false },              { "exec", "a", 0, false },         { "command", "", 0, false },
  { "builtin", "", 0, false },            { "time", "fo", 0, false },        { "nice", "n", 0, false },
  { "ionice", "cnp", 0, false },          { "timeout", "sk", 1, false },     { "stdbuf", "ioe", 0, false },
  { "setsid", "", 0, false },             { "xargs", "aEeIiLlnPsd", 0, false }, { "busybox", "", 0, false },
  { "watch", "n", 0, false },             { "flock", "wEs", 1, false },      { "chrt", "", 1, false },
  { "taskset", "", 1, false },
};

static const struct wrapper *find_wrapper(const char *name)
{
  for (size_t i = 0; i < sizeof(wrappers) / sizeof(wrappers[0]); i++)
    if (strcmp(name, wrappers[i].name) == 0)
      return &wrappers[i];
  return NULL;
}

/* Index of the word after the wrapper's own options and operands. */
static size_t skip_wrapper(const struct wrapper *wr, const char **w, size_t n, size_t i)
{
  static const char *const long_with_arg[] = { "--user", "--group", "--signal", "--kill-after", "--target",
                                                "--chdir", NULL };
  int positional = wr->positional;
  for (; i < n; i++)
    {
      if (strcmp(w[i], "--") == 0)
        return i + 1;
      if (!is_option(w[i]))
        {
          if (positional-- > 0)
            continue;
          return i;
        }
      if ((w[i][2] == '\0' && strchr(wr->opts, w[i][1])) || in_list(w[i], long_with_arg))
        i++;
    }
  return n;
}

static bool is_assignment(const char *w)
{
  if (!(isalpha((unsigned char) *w) || *w == '_'))
    return false;
  while (isalnum((unsigned char) *w) || *w == '_')
    w++;
  return *w == '=' || (w[0] == '+' && w[1] == '=');
}

static bool is_keyword(const char *w)
{
  static const char *const keywords[] = { "if", "then", "else", "elif", "do", "while", "until", "!", "{", "}", NULL };
  return in_list(w, keywords);
}

static const char *base_name(const char *w)
{
  const char *slash = strrchr(w, '/');
  return slash && slash[1] ? slash + 1 : w;
}

/* The script of `sh [opts] -c SCRIPT` or `su ... -c SCRIPT`: its index. */
static bool shell_script(const char **w, size_t n, size_t i, bool su, size_t *script)
{
  bool has_c = false;
  for (size_t j = i + 1; j < n; j++)
    {
      const char *a = w[j];
      if (su)
        {
          if ((strcmp(a, "-c") == 0 || strcmp(a, "--command") == 0) && j + 1 < n)
            {
              *script = j + 1;
              return true;
            }
          continue;
        }
      if (strcmp(a, "--") == 0)
        continue;
      if ((a[0] == '-' || a[0] == '+') && a[1] != '\0')
        {
          if (strcmp(a + 1, "o") == 0 || strcmp(a + 1, "O") == 0)
            j++; /* -o pipefail */
          else if (a[0] == '-' && a[1] != '-' && strchr(a + 1, 'c'))
            has_c = true;
          continue;
        }
      if (has_c)
        *script = j;
      return has_c;
    }
  return false;
}

static void analyze_line(struct risk *r, const char *text, bool code);

/* A word to read as shell code rather than as one command name. */
static bool looks_like_code(const char *w)
{
  return strpbrk(w, " \t\n|;&<>()$`'\"") != NULL;
}

/* eval's operands, joined as the shell does, read as code. */
static void analyze_eval(struct risk *r, const char **w, size_t n)
{
  size_t len = 1;
  char *text, *p;
  for (size_t i = 0; i < n; i++)
    len += strlen(w[i]) + 1;
  p = text = malloc(len);
  if (text == NULL)
    {
      r->nomem = true;
      return;
    }
  *p = '\0';
  for (size_t i = 0; i < n; i++)
    p += sprintf(p, "%s%s", i ? " " : "", w[i]);
  analyze_line(r, text, true);
  free(text);
}

/* Resolve the command of one simple command (w: its words, redirections
 * removed) through assignments, keywords and wrappers, and check it. */
static bool analyze_command(struct risk *r, const char **w, size_t n, const struct ctx *c)
{
  size_t i = 0, script;
  const char *name = NULL;
  /* A fixed cap keeps the loop obviously finite. */
  for (int hops = 0; hops < 32; hops++)
    {
      const struct wrapper *wr;
      while (i < n && (is_assignment(w[i]) || is_keyword(w[i])))
        i++;
      if (i >= n)
        return false;
      name = base_name(w[i]);
      if ((wr = find_wrapper(name)))
        {
          if (wr->priv)
            hit(r, RULE_PRIV_TOOL, wr->name);
          i = skip_wrapper(wr, w, n, i + 1);
          continue;
        }
      if (strcmp(name, "eval") == 0)
        {
          analyze_eval(r, w + i + 1, n - i - 1);
          return false;
        }
      if ((in_list(name, shells) || strcmp(name, "su") == 0)
          && shell_script(w, n, i, strcmp(name, "su") == 0, &script))
        {
          if (strcmp(name, "su") == 0)
            hit(r, RULE_PRIV_TOOL, "su");
          if (looks_like_code(w[script]))
            {
              analyze_line(r, w[script], true);
              return false;
            }
          /* ["sh","-c","curl x | sh"] joined: the script's first word
           * arrives alone, the rest of it follows as words. */
          i = script;
          continue;
        }
      break;
    }
  if (i >= n)
    return false;
  return check_program(r, name, w + i + 1, n - i - 1, c);
}

/* One simple command: tokens between separators.  Collects its words
 * (w is scratch space for them), checks its redirections. */
static bool analyze_segment(struct risk *r, const struct tok *t, size_t n, const char **w, const struct ctx *c)
{
  size_t nw = 0;
  for (size_t i = 0; i < n; i++)
    {
      if (t[i].kind == TOK_OUT || t[i].kind == TOK_IN)
        {
          if (i + 1 < n && t[i + 1].kind == TOK_WORD)
            {
              if (t[i].kind == TOK_OUT)
                check_write(r, t[i + 1].text);
              i++;
            }
          continue;
        }
      if (t[i].kind != TOK_WORD)
        continue;
      /* "$(...)" inside double quotes runs too. */
      if (t[i].subst)
        analyze_line(r, t[i].text, false);
      w[nw++] = t[i].text;
    }
  /* Nothing before a $( ) in a script: its output is the command. */
  if (nw == 0)
    return c->code;
  return analyze_command(r, w, nw, c);
}

static void analyze_tokens(struct risk *r, const struct toks *t, const char **w, bool code)
{
  struct ctx c = { .code = code };
  size_t start = 0;
  for (size_t i = 0; i <= t->n; i++)
    {
      enum tok_kind k = i < t->n ? t->v[i].kind : TOK_SEP;
      bool runs;
      if (k != TOK_PIPE && k != TOK_SEP && k != TOK_GROUP && k != TOK_SUBST)
        continue;
      runs = analyze_segment(r, t->v + start, i - start, w, &c);
      /* `curl x | (sh)`: an empty command before ( keeps the pipe. */
      if (!(k == TOK_GROUP && i == start))
        c.after_pipe = k == TOK_PIPE;
      c.exec_subst = k == TOK_SUBST && runs;
      if (k == TOK_SEP)
        r->pipe_download = r->pipe_decode = false;
      start = i + 1;
    }
}

static void analyze_line(struct risk *r, const char *text, bool code)
{
  struct toks t = { 0 };
  const char **w = NULL;
  bool saved_download = r->pipe_download, saved_decode = r->pipe_decode;
  if (r->depth >= MAX_DEPTH)
    return;
  r->depth++;
  r->pipe_download = r->pipe_decode = false;
  if (!lex(text, &t) || (t.n && (w = calloc(t.n, sizeof(*w))) == NULL))
    r->nomem = true;
  else
    analyze_tokens(r, &t, w, code);
  free(w);
  free(t.v);
  free(t.buf);
  r->pipe_download = saved_download;
  r->pipe_decode = saved_decode;
  r->depth--;
}

/* ---- raw-text rules ---- */

static bool is_b64(char c)
{
  return isalnum((unsigned char) c) || c == '+' || c == '/' || c == '=';
}

/* A run of >= 100 base64 characters with digits and both cases (so not a
 * word or a path), or >= 128 hex digits, or >= 32 \xHH escapes. */
static bool long_payload(const char *s)
{
  size_t escapes = 0;
  for (const char *p = s; *p;)
    {
      const char *start = p;
      bool digit = false, upper = false, lower = false, hex = true;
      size_t slashes = 0, len;
      if (p[0] == '\\' && p[1] == 'x' && isxdigit((unsigned char) p[2]) && isxdigit((unsigned char) p[3]))
        escapes++;
      if (!is_b64(*p))
        {
          p++;
          continue;
        }
      for (; is_b64(*p); p++)
        {
          digit |= isdigit((unsigned char) *p) != 0;
          upper |= isupper((unsigned char) *p) != 0;
          lower |= islower((unsigned char) *p) != 0;
          hex &= isxdigit((unsigned char) *p) != 0;
          slashes += *p == '/';
        }
      len = (size_t) (p - start);
      if ((hex && len >= 128) || (len >= 100 && digit && upper && lower && slashes * 16 <= len))
        return true;
    }
  return escapes >= 32;
}

/* name(){ name|name& } in any spacing, and the usual one-liners of other
 * languages.  compact: the text without blanks. */
static bool fork_bomb(const char *compact)
{
  static const char *const others[] = { "forkwhilefork", "while(1){fork", "while1:os.fork()",
                                         "whileTrue:os.fork()", "for(;;)fork()", NULL };
  for (const char *p = strstr(compact, "(){"); p; p = strstr(p + 1, "(){"))
    {
      const char *start = p;
      /* The function's name; the text has no blanks left, so it may be
       * glued to what preceded it ("sh-c:(){"): try each suffix.  The
       * bounded scan back keeps this linear. */
      while (start > compact && p - start < 64
             && (isalnum((unsigned char) start[-1]) || strchr("_:.-", start[-1])))
        start--;
      for (const char *name = start; name < p; name++)
        {
          char body[160];
          snprintf(body, sizeof(body), "%.*s|%.*s&", (int) (p - name), name, (int) (p - name), name);
          if (strncmp(p + 3, body, strlen(body)) == 0)
            return true;
        }
    }
  for (const char *const *o = others; *o; o++)
    if (strstr(compact, *o))
      return true;
  return false;
}

static void check_raw(struct risk *r, const char *text)
{
  char *compact = malloc(strlen(text) + 1), *q = compact;
  if (strstr(text, "/dev/tcp/") || strstr(text, "/dev/udp/"))
    hit(r, RULE_REVERSE_SHELL, NULL);
  /* python -c 'import socket,os,pty;...os.dup2(...);pty.spawn("sh")' */
  if (strcasestr(text, "socket") && (strstr(text, "dup2") || strstr(text, "pty.spawn")))
    hit(r, RULE_REVERSE_SHELL, NULL);
  if (long_payload(text))
    hit(r, RULE_PAYLOAD, NULL);
  if (compact == NULL)
    {
      r->nomem = true;
      return;
    }
  for (const char *p = text; *p; p++)
    if (!isspace((unsigned char) *p))
      *q++ = *p;
  *q = '\0';
  if (fork_bomb(compact))
    hit(r, RULE_FORK_BOMB, NULL);
  free(compact);
}

/* ---- score ---- */

static char *join_argv(const char *const *argv, size_t argc)
{
  size_t len = 1;
  char *s, *p;
  for (size_t i = 0; i < argc; i++)
    len += strlen(argv[i] ? argv[i] : "") + 1;
  p = s = malloc(len);
  if (s == NULL)
    return NULL;
  *p = '\0';
  for (size_t i = 0; i < argc; i++)
    p += sprintf(p, "%s%s", i ? " " : "", argv[i] ? argv[i] : "");
  return s;
}

static int score_of(struct risk *r, json_t *reasons)
{
  int score = 0;
  /* Combinations that are one attack, seen from two tools. */
  if ((r->fifo || r->interactive) && r->hit[RULE_NET_TOOL])
    hit(r, RULE_REVERSE_SHELL, NULL);
  /* The pipe-to-shell rule already counts the download. */
  if (r->hit[RULE_DOWNLOAD_SHELL])
    r->hit[RULE_DOWNLOAD_TOOL] = false;
  for (int i = 0; i < RULE_COUNT; i++)
    {
      char reason[96];
      if (!r->hit[i])
        continue;
      score += rules[i].weight;
      if (r->tool[i])
        snprintf(reason, sizeof(reason), "%s (%s)", rules[i].reason, r->tool[i]);
      else
        snprintf(reason, sizeof(reason), "%s", rules[i].reason);
      if (json_array_append_new(reasons, json_string(reason)) < 0)
        return -1;
    }
  return score > 100 ? 100 : score;
}

int corral__risk_eval(const char *const *argv, size_t argc, int *score, json_t **reasons_out)
{
  struct risk r = { 0 };
  json_t *reasons = json_array();
  cleanup_free char *line = argv ? join_argv(argv, argc) : strdup("");
  int s;
  if (line == NULL || reasons == NULL)
    goto nomem;
  analyze_line(&r, line, true);
  check_raw(&r, line);
  if (r.nomem || (s = score_of(&r, reasons)) < 0)
    goto nomem;
  *score = s;
  *reasons_out = reasons;
  return 0;
nomem:
  json_decref(reasons);
  return -ENOMEM;
}

int corral_audit_risk(const char *const *argv, size_t argc, int *score, char **reasons_json)
{
  json_t *reasons = NULL;
  int s = 0;
  if (score == NULL || reasons_json == NULL)
    return -EINVAL;
  if (corral__risk_eval(argv, argc, &s, &reasons) < 0)
    return -ENOMEM;
  *reasons_json = json_dumps(reasons, JSON_COMPACT);
  json_decref(reasons);
  if (*reasons_json == NULL)
    return -ENOMEM;
  *score = s;
  return 0;
}
