/* Loading the seccomp policy (see seccomp_policy.c for what it says). */
#define _GNU_SOURCE
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <string.h>
#include <sys/syscall.h>
#include "isolate.h"
#include "../common/utils.h"

#ifdef CORRAL_SECCOMP_PRECOMPILED
#include "seccomp_bpf.h"

static int copy_prog(struct sock_fprog *out, const struct sock_filter *f, size_t n, corral_error_t *err)
{
  out->filter = malloc(n * sizeof(*f));
  if (out->filter == NULL)
    return corral_error_set(err, ENOMEM, "seccomp filter");
  memcpy(out->filter, f, n * sizeof(*f));
  out->len = (unsigned short) n;
  return 0;
}

int corral__seccomp_build(struct corral__seccomp *s, corral_error_t *err)
{
  memset(s, 0, sizeof(*s));
  if (copy_prog(&s->allow, corral__bpf_allow, sizeof(corral__bpf_allow) / sizeof(*corral__bpf_allow), err) < 0
      || copy_prog(&s->args, corral__bpf_args, sizeof(corral__bpf_args) / sizeof(*corral__bpf_args), err) < 0)
    {
      corral__seccomp_release(s);
      return -1;
    }
  return 0;
}
#else
int corral__seccomp_build(struct corral__seccomp *s, corral_error_t *err)
{
  return corral__seccomp_compile(s, err);
}
#endif

void corral__seccomp_notify_denials(struct corral__seccomp *s)
{
  struct seccomp_notif_sizes sz;
  /* Only with a kernel that speaks exactly our notification structs: a
   * notification nobody can receive would hang the calling process. */
  if (syscall(SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &sz) < 0 || sz.seccomp_notif != sizeof(struct seccomp_notif)
      || sz.seccomp_notif_resp != sizeof(struct seccomp_notif_resp))
    return;
  for (unsigned i = 0; i < s->allow.len; i++)
    {
      struct sock_filter *f = &s->allow.filter[i];
      if (BPF_CLASS(f->code) == BPF_RET && f->k == (SECCOMP_RET_ERRNO | EPERM))
        f->k = SECCOMP_RET_USER_NOTIF;
    }
  s->notify = true;
}

int corral__seccomp_load(const struct corral__seccomp *s, corral_error_t *err)
{
  /* The allowlist goes in first: the argument filter then runs under it. */
  long fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, s->notify ? SECCOMP_FILTER_FLAG_NEW_LISTENER : 0,
                    &s->allow);
  if (fd < 0)
    return corral_error_set(err, errno, "load seccomp allowlist");
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &s->args) < 0)
    return corral_error_set(err, errno, "load seccomp argument filter");
  return s->notify ? (int) fd : 0;
}

void corral__seccomp_release(struct corral__seccomp *s)
{
  free(s->allow.filter);
  free(s->args.filter);
  memset(s, 0, sizeof(*s));
}
