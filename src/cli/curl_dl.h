/* libcurl for the remote commands, loaded on first use with dlopen(), so
 * that `corral run` - which never talks HTTP - does not pay for loading and
 * relocating libcurl and its two dozen dependencies at every start. */
#ifndef CORRAL_CLI_CURL_DL_H
#define CORRAL_CLI_CURL_DL_H

#include <curl/curl.h>

struct cli_curl_api
{
  CURLcode (*global_init)(long flags);
  CURL *(*easy_init)(void);
  CURLcode (*easy_setopt)(CURL *curl, CURLoption option, ...);
  CURLcode (*easy_perform)(CURL *curl);
  void (*easy_cleanup)(CURL *curl);
  CURLcode (*easy_getinfo)(CURL *curl, CURLINFO info, ...);
  const char *(*easy_strerror)(CURLcode code);
  char *(*easy_escape)(CURL *curl, const char *s, int length);
  void (*free)(void *p);
  struct curl_slist *(*slist_append)(struct curl_slist *list, const char *s);
  void (*slist_free_all)(struct curl_slist *list);
};

/* The loaded library, or NULL (with *why set) when libcurl is missing. */
const struct cli_curl_api *cli_curl_load(const char **why);
/* The loaded library; only after a successful cli_curl_load(). */
const struct cli_curl_api *cli_curl(void);

#endif
