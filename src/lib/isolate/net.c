/* Network of a `none` sandbox: its own network namespace holding only a
 * loopback interface, brought up so that local servers and clients inside
 * the sandbox work.  No route leads anywhere else. */
#define _GNU_SOURCE
#include <net/if.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include "isolate.h"
#include "../common/utils.h"

int corral__loopback_up(corral_error_t *err)
{
  struct ifreq ifr;
  cleanup_close int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return corral_error_set(err, errno, "socket for loopback");
  memset(&ifr, 0, sizeof(ifr));
  strcpy(ifr.ifr_name, "lo");
  if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
    return corral_error_set(err, errno, "get loopback flags");
  ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
  if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
    return corral_error_set(err, errno, "bring loopback up");
  return 0;
}
