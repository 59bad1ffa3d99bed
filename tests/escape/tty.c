/* Terminals: injection, controlling terminals, line disciplines. */
#include "escape.h"

/* ------------------------------------------------------------------ */
/* Terminals                                                            */

void esc_chk_tiocsti_stdin(void)
{
  char c = 'x';
  DENIED(ioctl(0, TIOCSTI, &c));
}

/* A pty that is our controlling terminal: only seccomp stands between
 * TIOCSTI and input injection here. */
static int open_ctty_pty(void)
{
  int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (m < 0)
    esc_fail("posix_openpt: %s", strerror(errno));
  if (grantpt(m) < 0 || unlockpt(m) < 0)
    esc_fail("grantpt/unlockpt: %s", strerror(errno));
  const char *name = ptsname(m);
  if (name == NULL)
    esc_fail("ptsname: %s", strerror(errno));
  setsid();
  int s = open(name, O_RDWR | O_CLOEXEC); /* no O_NOCTTY: becomes our ctty */
  if (s < 0)
    esc_fail("open %s: %s", name, strerror(errno));
  ioctl(s, TIOCSCTTY, 0);
  return s;
}

void esc_chk_tiocsti_pty(void)
{
  int s = open_ctty_pty();
  char c = 'x';
  DENIED(ioctl(s, TIOCSTI, &c));
}

void esc_chk_tiocsti_highbits(void)
{
  int s = open_ctty_pty();
  char c = 'x';
  DENIED(syscall(SYS_ioctl, s, 0x100000000UL | TIOCSTI, &c));
  DENIED(syscall(SYS_ioctl, 0, 0xffffffff00000000UL | TIOCSTI, &c));
}

void esc_chk_tioclinux(void)
{
  int s = open_ctty_pty();
  char sub = 7; /* TIOCL_GETSHIFTSTATE: a read */
  DENIED(ioctl(s, TIOCLINUX, &sub));
  sub = 7;
  DENIED(syscall(SYS_ioctl, s, 0x100000000UL | TIOCLINUX, &sub));
}

void esc_chk_dev_tty_no_ctty(void)
{
  /* The sandbox is a new session: the host's terminal is out of reach. */
  EXPECT(ENXIO, open("/dev/tty", O_RDWR | O_CLOEXEC));
}

void esc_chk_devpts_private(void)
{
  if (startup_pts < 0)
    esc_fail("/dev/pts missing or unreadable");
  if (startup_pts > 0)
    esc_fail("/dev/pts held %d terminals at startup (host's devpts?)", startup_pts);
}

/* The realistic TIOCSTI attack (CVE-2017-5226): the sandbox's stdin is the
 * user's terminal.  The harness runs one pass with a host pty as stdin,
 * the controlling terminal of corral's session. */
void esc_chk_stdin_tty_hijack(void)
{
  if (!isatty(0))
    esc_skip("stdin is not a terminal");
  char c = 'x';
  /* Steal the host session's terminal: refused (another session's ctty;
   * forcing it needs CAP_SYS_ADMIN). */
  EXPECT(EPERM, ioctl(0, TIOCSCTTY, 0));
  EXPECT(EPERM, ioctl(0, TIOCSCTTY, 1));
  /* Make our group the foreground one, to read the user's typing. */
  pid_t pg = getpgrp();
  EXPECT_IN(ioctl(0, TIOCSPGRP, &pg), ENOTTY, EPERM);
  DENIED(ioctl(0, TIOCSTI, &c));
  DENIED(syscall(SYS_ioctl, 0, 0x100000000UL | TIOCSTI, &c));
  char sub = 7;
  DENIED(ioctl(0, TIOCLINUX, &sub));
  /* Redirect the console to it. */
  DENIED(ioctl(0, TIOCCONS, 0));
}

/* Line disciplines are kernel attack surface (n_gsm, n_hdlc CVEs). */
void esc_chk_tty_ldisc(void)
{
  int s = open_ctty_pty();
  int ld = 21; /* N_GSM */
  EXPECT_IN(ioctl(s, TIOCSETD, &ld), EPERM, EINVAL);
  ld = 13; /* N_HDLC */
  EXPECT_IN(ioctl(s, TIOCSETD, &ld), EPERM, EINVAL);
}
