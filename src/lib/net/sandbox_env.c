/* What a sandbox needs to use corral's egress: the variables that name the
 * proxy on its loopback, and the CA bundle that makes it trust the proxy's
 * CA for secrets.  One place for corrald and `corral run`. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <corral/net.h>

const char *const corral_net_proxy_env[] = {
  "HTTP_PROXY=http://127.0.0.1:3128",   "HTTPS_PROXY=http://127.0.0.1:3128",
  "http_proxy=http://127.0.0.1:3128",   "https_proxy=http://127.0.0.1:3128",
  "ALL_PROXY=socks5h://127.0.0.1:1080", "all_proxy=socks5h://127.0.0.1:1080",
  "NO_PROXY=localhost,127.0.0.1,::1",   "no_proxy=localhost,127.0.0.1,::1",
  NULL,
};

const char *const corral_net_ca_env[] = { "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO",
                                          "PIP_CERT", NULL };

char *corral_net_ca_bundle(const char *pem, size_t *len)
{
  char *bundle = NULL, chunk[8192];
  size_t size = 0, n;
  FILE *m = open_memstream(&bundle, &size), *sys = fopen("/etc/ssl/certs/ca-certificates.crt", "re");
  if (!m)
    {
      if (sys)
        fclose(sys);
      return NULL;
    }
  while (sys && (n = fread(chunk, 1, sizeof(chunk), sys)) > 0)
    fwrite(chunk, 1, n, m);
  if (sys)
    fclose(sys);
  fputs(pem, m);
  if (fclose(m) != 0)
    {
      free(bundle);
      return NULL;
    }
  *len = size;
  return bundle;
}
