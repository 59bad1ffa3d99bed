/* Sockets and network: raw and exotic families, host services, routes, devices. */
#include "escape.h"

/* ------------------------------------------------------------------ */
/* Sockets and network                                                  */

void esc_chk_raw_inet(void)
{
  DENIED(socket(AF_INET, SOCK_RAW, IPPROTO_RAW));
  DENIED(socket(AF_INET, SOCK_RAW, IPPROTO_ICMP));
  DENIED(socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_TCP));
}

void esc_chk_raw_inet6(void)
{
  DENIED(socket(AF_INET6, SOCK_RAW, IPPROTO_RAW));
  DENIED(socket(AF_INET6, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMPV6));
}

void esc_chk_raw_highbits(void)
{
  EXPECT_IN(syscall(SYS_socket, AF_INET | (1UL << 32), SOCK_RAW, IPPROTO_RAW), ENOSYS, EPERM);
  DENIED(syscall(SYS_socket, AF_INET, SOCK_RAW | (1UL << 32), IPPROTO_RAW));
}

void esc_chk_af_packet(void) { EXPECT(ENOSYS, socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL))); }

/* The obsolete (PF_INET, SOCK_PACKET) is turned into PF_PACKET by the kernel. */
void esc_chk_inet_sock_packet(void)
{
  EXPECT_IN(socket(AF_INET, SOCK_PACKET, htons(ETH_P_ALL)), EPERM, EAFNOSUPPORT, ESOCKTNOSUPPORT, EINVAL, ENOSYS);
}

void esc_chk_af_vsock(void) { EXPECT(ENOSYS, socket(AF_VSOCK, SOCK_STREAM, 0)); }

void esc_chk_other_families(void)
{
  static const int fam[] = { AF_ALG, AF_KEY, AF_BLUETOOTH, AF_CAN, AF_TIPC, AF_RDS, AF_LLC, AF_PPPOX, AF_XDP,
                             AF_APPLETALK, AF_X25, AF_AX25, AF_NFC, AF_IEEE802154, AF_SMC, AF_QIPCRTR, AF_MCTP,
                             AF_IB, AF_PHONET, AF_CAIF, AF_ISDN, AF_KCM, 255 };
  static const int types[] = { SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET, SOCK_RAW };
  for (size_t i = 0; i < sizeof(fam) / sizeof(*fam); i++)
    for (size_t t = 0; t < sizeof(types) / sizeof(*types); t++)
      {
        errno = 0;
        int fd = socket(fam[i], types[t], 0);
        if (fd >= 0)
          esc_fail("socket(%d, %d) succeeded", fam[i], types[t]);
        if (errno != ENOSYS)
          esc_fail("socket(%d, %d): errno %s, expected ENOSYS", fam[i], types[t], esc_ename(errno));
      }
}

static void connect_to(int family, const char *addr, int port, int type, const int *ok, const char *what)
{
  int fd = socket(family, type | SOCK_CLOEXEC, 0);
  if (fd < 0)
    esc_fail("socket: %s", strerror(errno));
  struct sockaddr_storage ss;
  socklen_t len;
  memset(&ss, 0, sizeof(ss));
  if (family == AF_INET)
    {
      struct sockaddr_in *a = (struct sockaddr_in *) &ss;
      a->sin_family = AF_INET;
      a->sin_port = htons((uint16_t) port);
      inet_pton(AF_INET, addr, &a->sin_addr);
      len = sizeof(*a);
    }
  else
    {
      struct sockaddr_in6 *a = (struct sockaddr_in6 *) &ss;
      a->sin6_family = AF_INET6;
      a->sin6_port = htons((uint16_t) port);
      inet_pton(AF_INET6, addr, &a->sin6_addr);
      len = sizeof(*a);
    }
  errno = 0;
  long r = connect(fd, (struct sockaddr *) &ss, len);
  esc_expect_errno_in(r, errno, ok, what);
  close(fd);
}

void esc_chk_host_tcp_port(void)
{
  static const int ok[] = { ECONNREFUSED, 0 };
  int port = atoi(esc_env_or_skip("ESCAPE_HOST_PORT"));
  connect_to(AF_INET, "127.0.0.1", port, SOCK_STREAM, ok, "connect(127.0.0.1:host port)");
}

void esc_chk_host_tcp_port6(void)
{
  static const int ok[] = { ECONNREFUSED, EADDRNOTAVAIL, ENETUNREACH, 0 };
  int port = atoi(esc_env_or_skip("ESCAPE_HOST_PORT"));
  int fd = socket(AF_INET6, SOCK_STREAM, 0);
  if (fd < 0)
    esc_skip("no IPv6: %s", strerror(errno));
  close(fd);
  connect_to(AF_INET6, "::1", port, SOCK_STREAM, ok, "connect([::1]:host port)");
  connect_to(AF_INET6, "::ffff:127.0.0.1", port, SOCK_STREAM, ok, "connect([::ffff:127.0.0.1]:host port)");
}

void esc_chk_abstract_unix(void)
{
  const char *name = esc_env_or_skip("ESCAPE_ABSTRACT");
  struct sockaddr_un a = { .sun_family = AF_UNIX };
  size_t n = strlen(name);
  if (n + 1 > sizeof(a.sun_path))
    esc_fail("abstract name too long");
  memcpy(a.sun_path + 1, name, n);
  static const int types[] = { SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET };
  for (size_t i = 0; i < 3; i++)
    {
      int fd = socket(AF_UNIX, types[i] | SOCK_CLOEXEC, 0);
      if (fd < 0)
        esc_fail("socket(AF_UNIX): %s", strerror(errno));
      EXPECT_IN(connect(fd, (struct sockaddr *) &a, (socklen_t) (offsetof(struct sockaddr_un, sun_path) + 1 + n)),
                ECONNREFUSED, EPERM, EPROTOTYPE);
      close(fd);
    }
}

void esc_chk_host_unix_sockets(void)
{
  static const char *const paths[] = { "/run/docker.sock", "/var/run/docker.sock", "/run/containerd/containerd.sock",
                                       "/run/systemd/private", "/run/dbus/system_bus_socket",
                                       "/run/systemd/journal/socket", "/dev/log", "/run/podman/podman.sock", NULL };
  for (int i = 0; paths[i]; i++)
    {
      struct sockaddr_un a = { .sun_family = AF_UNIX };
      snprintf(a.sun_path, sizeof(a.sun_path), "%s", paths[i]);
      int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd < 0)
        esc_fail("socket(AF_UNIX): %s", strerror(errno));
      errno = 0;
      long r = connect(fd, (struct sockaddr *) &a, sizeof(a));
      char what[128];
      snprintf(what, sizeof(what), "connect(%s)", paths[i]);
      esc_expect_errno(r, errno, ENOENT, what);
      close(fd);
    }
}

void esc_chk_net_only_loopback(void)
{
  char buf[8192];
  if (esc_read_small("/proc/net/dev", buf, sizeof(buf)) < 0)
    esc_fail("read /proc/net/dev: %s", strerror(errno));
  int n = 0;
  char *save = NULL;
  for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
    {
      char *colon = strchr(line, ':');
      if (colon == NULL || strchr(line, '|'))
        continue;
      *colon = '\0';
      while (*line == ' ')
        line++;
      if (strcmp(line, "lo") != 0)
        esc_fail("interface `%s` is visible", line);
      n++;
    }
  if (n != 1)
    esc_fail("expected exactly `lo`, found %d interfaces", n);
  if (if_nametoindex("eth0") != 0)
    esc_fail("eth0 exists");
}

void esc_chk_no_route_public(void)
{
  static const int ok[] = { ENETUNREACH, 0 };
  connect_to(AF_INET, "8.8.8.8", 53, SOCK_STREAM, ok, "connect(8.8.8.8:53)");
  connect_to(AF_INET, "8.8.8.8", 53, SOCK_DGRAM, ok, "connect(udp 8.8.8.8:53)");
}

void esc_chk_no_route_private(void)
{
  static const int ok[] = { ENETUNREACH, 0 };
  connect_to(AF_INET, "10.0.0.1", 80, SOCK_STREAM, ok, "connect(10.0.0.1:80)");
  connect_to(AF_INET, "192.168.1.1", 80, SOCK_STREAM, ok, "connect(192.168.1.1:80)");
  connect_to(AF_INET, "169.254.169.254", 80, SOCK_STREAM, ok, "connect(169.254.169.254:80 metadata)");
}

void esc_chk_no_route_ipv6(void)
{
  static const int ok[] = { ENETUNREACH, EADDRNOTAVAIL, EAFNOSUPPORT, 0 };
  int fd = socket(AF_INET6, SOCK_STREAM, 0);
  if (fd < 0)
    esc_skip("no IPv6: %s", strerror(errno));
  close(fd);
  connect_to(AF_INET6, "2001:4860:4860::8888", 53, SOCK_STREAM, ok, "connect([2001:4860:4860::8888]:53)");
}

void esc_chk_udp_sendto_public(void)
{
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(53) };
  inet_pton(AF_INET, "8.8.8.8", &a.sin_addr);
  EXPECT(ENETUNREACH, sendto(fd, "x", 1, 0, (struct sockaddr *) &a, sizeof(a)));
}

void esc_chk_netdev_config(void)
{
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  struct ifreq ifr;
  memset(&ifr, 0, sizeof(ifr));
  strcpy(ifr.ifr_name, "lo");
  if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
    esc_fail("SIOCGIFFLAGS lo: %s", strerror(errno));
  ifr.ifr_flags &= ~IFF_UP;
  DENIED(ioctl(fd, SIOCSIFFLAGS, &ifr));
  struct sockaddr_in *sin = (struct sockaddr_in *) &ifr.ifr_addr;
  memset(&ifr.ifr_ifru, 0, sizeof(ifr.ifr_ifru));
  sin->sin_family = AF_INET;
  inet_pton(AF_INET, "10.99.0.1", &sin->sin_addr);
  DENIED(ioctl(fd, SIOCSIFADDR, &ifr));
}
