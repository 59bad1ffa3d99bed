/* The pool: sandboxes of the default shape (template base, default limits)
 * made ahead of demand, so that a create is a claim (about a millisecond)
 * instead of a build (several).  A pooled sandbox is fresh and has never run
 * anything; claiming it gives it its tenant, TTL and environment, and wakes
 * the filler to make the next one.  Pooled sandboxes belong to the hidden
 * tenant "_pool": no route shows them.  At stop they are killed; after a
 * crash, the next start discards what the previous run pooled. */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "api.h"
#include "../common/utils.h"

#define RETRY_MS 1000

bool pool_fits(const struct create_req *c)
{
  struct create_req dflt;
  char why[8];
  json_t *empty = json_object();
  decode_create(empty, 86400, &dflt, why, sizeof(why));
  json_decref(empty);
  bool fits = template_is_base(c->template_name) && c->memory_mb == dflt.memory_mb
              && c->pids == dflt.pids && c->disk_mb == dflt.disk_mb && c->cpu_millis == dflt.cpu_millis;
  create_req_release(&dflt);
  return fits;
}

static void wait_ms(struct daemon *d, int ms)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += ms / 1000;
  ts.tv_nsec += (long) (ms % 1000) * 1000000;
  if (ts.tv_nsec >= 1000000000)
    ts.tv_sec++, ts.tv_nsec -= 1000000000;
  pthread_mutex_lock(&d->lock);
  if (!atomic_load(&d->stopping))
    pthread_cond_timedwait(&d->pool_cond, &d->lock, &ts);
  pthread_mutex_unlock(&d->lock);
}

static int fill_one(struct daemon *d)
{
  char id[32], why[8];
  struct create_req c;
  corral_error_t err = NULL;
  json_t *empty = json_object();
  int r = decode_create(empty, 86400, &c, why, sizeof(why));
  json_decref(empty);
  if (r < 0)
    return -1;
  sandbox_new_id(id, sizeof(id));
  int64_t now = api_now_ms();
  if (registry_reserve(d, id, POOL_TENANT, c.memory_mb, &err) < 0
      || sandbox_make(d, id, POOL_TENANT, "pool", &c, now, INT64_MAX / 2, &err) < 0)
    {
      registry_unreserve(d, id);
      api_log(d, "pool: %s", corral_error_message(err));
      corral_error_release(&err);
      r = -1;
    }
  else if (d->runners_dir)
    {
      contexts_prestart(d, id);
      registry_warmed(d, id);
    }
  create_req_release(&c);
  return r;
}

static void *pool_main(void *arg)
{
  struct daemon *d = arg;
  while (!atomic_load(&d->stopping))
    {
      if (registry_pooled(d, false) >= d->opt.pool_size)
        wait_ms(d, RETRY_MS);
      else if (fill_one(d) < 0)
        wait_ms(d, RETRY_MS);
    }
  return NULL;
}

int pool_start(struct daemon *d, corral_error_t *err)
{
  if (d->opt.pool_size == 0)
    return 0;
  if (pthread_create(&d->pool_thread, NULL, pool_main, d) != 0)
    return corral_error_set(err, EAGAIN, "start the pool thread");
  d->pool_started = true;
  return 0;
}

void pool_stop(struct daemon *d)
{
  if (!d->pool_started)
    return;
  atomic_store(&d->stopping, true);
  pthread_mutex_lock(&d->lock);
  pthread_cond_broadcast(&d->pool_cond);
  pthread_mutex_unlock(&d->lock);
  pthread_join(d->pool_thread, NULL);
  d->pool_started = false;
}
