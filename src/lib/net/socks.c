/* SOCKS5 (RFC 1928) handshake parsing: the method selection and the
 * request.  Pure functions over the bytes received so far; every length is
 * checked against len before it is read (fuzzed: fuzz_net_socks). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include "net.h"

#define SOCKS_VERSION 5
#define CMD_CONNECT 1
#define ATYP_IPV4 1
#define ATYP_DOMAIN 3
#define ATYP_IPV6 4

ssize_t corral__socks_parse_greeting(const uint8_t *buf, size_t len, bool *noauth)
{
  *noauth = false;
  if (len >= 1 && buf[0] != SOCKS_VERSION)
    return -1;
  if (len < 2)
    return 0;
  size_t n = buf[1];
  if (n == 0)
    return -1;
  if (len < 2 + n)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (buf[2 + i] == 0x00)
      *noauth = true;
  return (ssize_t) (2 + n);
}

ssize_t corral__socks_parse_request(const uint8_t *buf, size_t len, struct corral__socks_request *out)
{
  memset(out, 0, sizeof(*out));
  if (len >= 1 && buf[0] != SOCKS_VERSION)
    return -CORRAL__SOCKS_REP_FAILURE;
  if (len < 4)
    return 0;
  if (buf[2] != 0)
    return -CORRAL__SOCKS_REP_FAILURE;
  out->cmd = buf[1];
  out->atyp = buf[3];
  /* Only CONNECT: BIND and UDP ASSOCIATE would open ways in and around the
   * proxy that the policy does not describe. */
  if (out->cmd != CMD_CONNECT)
    return -CORRAL__SOCKS_REP_CMD;
  size_t need;
  switch (out->atyp)
    {
    case ATYP_IPV4:
      need = 4 + 4 + 2;
      if (len < need)
        return 0;
      inet_ntop(AF_INET, buf + 4, out->host, sizeof(out->host));
      break;
    case ATYP_IPV6:
      need = 4 + 16 + 2;
      if (len < need)
        return 0;
      inet_ntop(AF_INET6, buf + 4, out->host, sizeof(out->host));
      break;
    case ATYP_DOMAIN:
      if (len < 5)
        return 0;
      need = 5 + (size_t) buf[4] + 2;
      if (buf[4] == 0)
        return -CORRAL__SOCKS_REP_FAILURE;
      if (len < need)
        return 0;
      /* A NUL inside would let "allowed.com\0evil" be checked as one name
       * and used as another. */
      if (memchr(buf + 5, '\0', buf[4]) != NULL)
        return -CORRAL__SOCKS_REP_FAILURE;
      memcpy(out->host, buf + 5, buf[4]);
      out->host[buf[4]] = '\0';
      break;
    default:
      return -CORRAL__SOCKS_REP_ATYP;
    }
  out->port = (uint16_t) (buf[need - 2] << 8 | buf[need - 1]);
  return (ssize_t) need;
}
