/* See curl_dl.h. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
#include "curl_dl.h"

static struct cli_curl_api api;
static int loaded; /* 0 not tried, 1 ok, -1 failed */
static const char *failure;

static void *sym(void *h, const char *name)
{
  void *p = dlsym(h, name);
  if (!p && loaded == 0)
    {
      loaded = -1;
      failure = dlerror();
    }
  return p;
}

const struct cli_curl_api *cli_curl_load(const char **why)
{
  if (loaded == 0)
    {
      void *h = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
      if (!h)
        {
          loaded = -1;
          failure = dlerror();
        }
      else
        {
          api.global_init = (CURLcode (*)(long)) sym(h, "curl_global_init");
          api.easy_init = (CURL * (*) (void)) sym(h, "curl_easy_init");
          api.easy_setopt = (CURLcode (*)(CURL *, CURLoption, ...)) sym(h, "curl_easy_setopt");
          api.easy_perform = (CURLcode (*)(CURL *)) sym(h, "curl_easy_perform");
          api.easy_cleanup = (void (*)(CURL *)) sym(h, "curl_easy_cleanup");
          api.easy_getinfo = (CURLcode (*)(CURL *, CURLINFO, ...)) sym(h, "curl_easy_getinfo");
          api.easy_strerror = (const char *(*) (CURLcode)) sym(h, "curl_easy_strerror");
          api.easy_escape = (char *(*) (CURL *, const char *, int)) sym(h, "curl_easy_escape");
          api.free = (void (*)(void *)) sym(h, "curl_free");
          api.slist_append = (struct curl_slist * (*) (struct curl_slist *, const char *)) sym(h, "curl_slist_append");
          api.slist_free_all = (void (*)(struct curl_slist *)) sym(h, "curl_slist_free_all");
          if (loaded == 0)
            loaded = 1;
        }
    }
  if (loaded < 0 && why)
    *why = failure ? failure : "libcurl.so.4 not found";
  return loaded > 0 ? &api : NULL;
}

const struct cli_curl_api *cli_curl(void)
{
  return &api;
}
