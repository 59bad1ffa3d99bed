/* The E2B code interpreter's /execute and /contexts (port 49999) over
 * corral's code contexts (api/contexts.c): the same runners, with the
 * request fields and the event names the code-interpreter SDK uses. */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include "e2b.h"

/* The SDK's language names for corral's. */
static const char *language(json_t *v)
{
  const char *l = json_string_value(v);
  if (!l)
    return NULL;
  if (strcmp(l, "js") == 0 || strcmp(l, "javascript") == 0 || strcmp(l, "node") == 0 || strcmp(l, "nodejs") == 0)
    return "javascript";
  if (strcmp(l, "sh") == 0 || strcmp(l, "shell") == 0)
    return "bash";
  return l;
}

/* Replace the request's body with body (stolen), for corral's handler. */
static int rebody(struct req *r, json_t *body)
{
  char *s = json_dumps(body, JSON_COMPACT);
  json_decref(body);
  if (!s)
    return api_fail(r, 500, "internal", "out of memory"), -1;
  free(r->body);
  r->body = s;
  r->body_len = strlen(s);
  return 0;
}

int e2b_code_execute(struct req *r)
{
  json_t *in = api_body_object(r), *out, *v;
  if (!in)
    return MHD_YES;
  out = json_object();
  json_object_set(out, "code", json_object_get(in, "code"));
  if ((v = json_object_get(in, "context_id")) && !json_is_null(v))
    json_object_set(out, "context_id", v);
  if ((v = json_object_get(in, "language")) && !json_is_null(v))
    json_object_set_new(out, "language", json_is_string(v) ? json_string(language(v)) : json_incref(v));
  if ((v = json_object_get(in, "env_vars")) && !json_is_null(v))
    json_object_set(out, "env", v);
  json_decref(in);
  if (rebody(r, out) < 0)
    return MHD_YES;
  return route_execute(r);
}

int e2b_code_context_create(struct req *r)
{
  json_t *in = api_body_object(r), *out, *v;
  if (!in)
    return MHD_YES;
  out = json_object();
  if ((v = json_object_get(in, "language")) && !json_is_null(v))
    json_object_set_new(out, "language", json_is_string(v) ? json_string(language(v)) : json_incref(v));
  if ((v = json_object_get(in, "cwd")) && !json_is_null(v))
    json_object_set(out, "cwd", v);
  json_decref(in);
  if (rebody(r, out) < 0)
    return MHD_YES;
  return route_context_create(r);
}

int e2b_code_context_list(struct req *r)
{
  return route_context_list(r);
}

int e2b_code_context_delete(struct req *r)
{
  return route_context_delete(r);
}

int e2b_code_context_restart(struct req *r)
{
  return route_context_restart(r);
}

json_t *e2b_code_event(json_t *ev)
{
  const char *type = json_string_value(json_object_get(ev, "type"));
  json_t *out = ev;
  if (!type)
    return ev;
  if (strcmp(type, "execution_count") == 0)
    out = json_pack("{s:s, s:O}", "type", "number_of_executions", "execution_count", json_object_get(ev, "count"));
  else if (strcmp(type, "end") == 0)
    out = json_pack("{s:s}", "type", "end_of_execution");
  else
    return ev;
  json_decref(ev);
  return out;
}
