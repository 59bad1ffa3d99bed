/* The terminal of `corral run --tty`.
 *
 * The pseudo-terminal is created inside the sandbox, on the devpts instance
 * the sandbox mounted for itself (newinstance): the command's controlling
 * terminal is a device of the sandbox, and no host terminal device is ever
 * reachable from inside.  PID 1 opens it and passes the master to the
 * supervisor over the socket they share (SCM_RIGHTS); the supervisor relays
 * bytes between the master and the caller's stdin/stdout.  The line
 * discipline of the inner terminal turns ^C, ^Z, ^\ into signals for the
 * command's foreground process group; the caller's terminal is the
 * caller's business (corral run puts it in raw mode). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <termios.h>
#include "sandbox.h"
#include "../common/utils.h"

#ifndef TIOCGPTPEER
#define TIOCGPTPEER _IO('T', 0x41)
#endif

void corral__tty_size(const corral_config_t *cfg, struct winsize *ws)
{
  if (ioctl(cfg->tty_in, TIOCGWINSZ, ws) == 0 && ws->ws_row && ws->ws_col)
    return;
  if (ioctl(cfg->tty_out, TIOCGWINSZ, ws) == 0 && ws->ws_row && ws->ws_col)
    return;
  *ws = (struct winsize) { .ws_row = 24, .ws_col = 80 };
}

/* In PID 1, after the sandbox's /dev/pts is mounted: a new terminal pair.
 * TIOCGPTPEER opens the slave from the master itself, with no path lookup
 * that a mount could redirect.  The slave is the command's, as login(1)
 * would make it. */
int corral__tty_open(const struct winsize *ws, uid_t owner, int *master, int *slave, corral_error_t *err)
{
  int unlock = 0;
  cleanup_close int m = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (m < 0)
    return corral_error_set(err, errno, "open the sandbox's /dev/ptmx");
  if (ioctl(m, TIOCSPTLCK, &unlock) < 0 || ioctl(m, TIOCSWINSZ, ws) < 0)
    return corral_error_set(err, errno, "set up the terminal");
  int s = ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (s < 0)
    return corral_error_set(err, errno, "open the terminal's slave");
  if (fchown(s, owner, (gid_t) -1) < 0)
    {
      int e = errno;
      close(s);
      return corral_error_set(err, e, "chown the terminal");
    }
  *slave = s;
  *master = corral__steal_fd(&m);
  return 0;
}

int corral__send_fd_msg(int sock, int type, int fd)
{
  struct msg m = { .type = type };
  char cbuf[CMSG_SPACE(sizeof(int))];
  struct iovec iov = { &m, sizeof(m) };
  struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
  memset(cbuf, 0, sizeof(cbuf));
  struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &fd, sizeof(int));
  ssize_t n;
  while ((n = sendmsg(sock, &mh, MSG_NOSIGNAL)) < 0 && errno == EINTR)
    ;
  return n == (ssize_t) sizeof(m) ? 0 : -1;
}

ssize_t corral__recv_msg(int sock, struct msg *m, int *fd)
{
  char cbuf[CMSG_SPACE(sizeof(int))];
  struct iovec iov = { m, sizeof(*m) };
  struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
  *fd = -1;
  ssize_t n = recvmsg(sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  for (struct cmsghdr *c = n >= 0 ? CMSG_FIRSTHDR(&mh) : NULL; c; c = CMSG_NXTHDR(&mh, c))
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && c->cmsg_len == CMSG_LEN(sizeof(int)))
      {
        if (*fd >= 0)
          close(*fd);
        memcpy(fd, CMSG_DATA(c), sizeof(int));
      }
  return n;
}

/* The sandbox is not trusted to send what it says: whatever fd arrives
 * must be the master of a pseudo-terminal (the ptmx character device of
 * some devpts, which TIOCGPTN accepts) before the supervisor reads it. */
static bool is_pty_master(int fd)
{
  struct stat st;
  unsigned n;
  return fstat(fd, &st) == 0 && S_ISCHR(st.st_mode) && major(st.st_rdev) == 5 && minor(st.st_rdev) == 2
         && ioctl(fd, TIOCGPTN, &n) == 0;
}

int corral__relay_start(struct corral__relay *r, const corral_config_t *cfg, int master)
{
  if (r->master >= 0 || !is_pty_master(master))
    {
      close(master);
      return -1;
    }
  fcntl(master, F_SETFL, O_NONBLOCK);
  r->master = master;
  r->in = cfg->tty_in;
  r->out = cfg->tty_out;
  return 0;
}

/* The caller resized its terminal (SIGWINCH): TIOCSWINSZ on the master
 * makes the kernel send SIGWINCH to the command's foreground group. */
void corral__relay_resize(struct corral__relay *r, const corral_config_t *cfg)
{
  struct winsize ws;
  if (r->master < 0)
    return;
  corral__tty_size(cfg, &ws);
  ioctl(r->master, TIOCSWINSZ, &ws);
}

/* Hanging up the terminal (closing the master) sends SIGHUP to the
 * command's session, as when a terminal window closes. */
static void hang_up(struct corral__relay *r)
{
  if (r->master >= 0)
    close(r->master);
  r->master = -1;
  r->to_master_len = 0;
}

int corral__relay_timeout(const struct corral__relay *r)
{
  return r->master >= 0 && r->idle ? 200 : -1;
}

void corral__relay_poll(const struct corral__relay *r, struct pollfd p[3])
{
  bool active = r->master >= 0 && !r->idle;
  p[0] = (struct pollfd) { active && r->in >= 0 && r->to_master_len == 0 ? r->in : -1, POLLIN, 0 };
  short ev = (short) ((r->to_out_len == 0 ? POLLIN : 0) | (r->to_master_len ? POLLOUT : 0));
  /* A hung-up master reports POLLHUP whatever we ask: leave it out while
   * its output waits for the caller to take the last batch. */
  p[1] = (struct pollfd) { active && ev ? r->master : -1, ev, 0 };
  p[2] = (struct pollfd) { r->out >= 0 && r->to_out_len ? r->out : -1, POLLOUT, 0 };
}

/* The caller's input ended (a pipe with --tty): end of file for a
 * line-mode reader - one EOF character, two when the last line was not
 * finished (the first only hands the partial line over) - then nothing. */
static void input_ended(struct corral__relay *r)
{
  struct termios t;
  r->in = -1;
  if (tcgetattr(r->master, &t) == 0 && (t.c_lflag & ICANON))
    {
      r->to_master[0] = r->to_master[1] = (char) t.c_cc[VEOF];
      r->to_master_len = r->last_in && r->last_in != '\n' ? 2 : 1;
      r->to_master_off = 0;
    }
}

static void read_input(struct corral__relay *r)
{
  ssize_t n = read(r->in, r->to_master, sizeof(r->to_master));
  if (n > 0)
    {
      r->to_master_len = (size_t) n, r->to_master_off = 0;
      r->last_in = r->to_master[n - 1];
    }
  else if (n == 0 || (errno != EINTR && errno != EAGAIN))
    input_ended(r);
}

static void write_master(struct corral__relay *r)
{
  ssize_t n = write(r->master, r->to_master + r->to_master_off, r->to_master_len - r->to_master_off);
  if (n > 0 && (r->to_master_off += (size_t) n) == r->to_master_len)
    r->to_master_len = 0;
  else if (n < 0 && errno != EINTR && errno != EAGAIN)
    r->idle = true;
}

/* EIO on the master: no slave is open.  The command may still be on its
 * way out - closing the master now would hang up its terminal and SIGHUP
 * it - or something may reopen its terminal later; the master stays open,
 * out of poll (which reports POLLHUP without end), and is tried again on a
 * timer until the sandbox ends. */
static void read_master(struct corral__relay *r)
{
  ssize_t n = read(r->master, r->to_out, sizeof(r->to_out));
  r->idle = n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN);
  if (n > 0 && r->out >= 0)
    r->to_out_len = (size_t) n, r->to_out_off = 0;
}

/* The caller's output is blocking (it is the caller's file description):
 * poll said it can take something, and a short stall is all it costs. */
static void write_output(struct corral__relay *r)
{
  ssize_t n = write(r->out, r->to_out + r->to_out_off, r->to_out_len - r->to_out_off);
  if (n > 0 && (r->to_out_off += (size_t) n) == r->to_out_len)
    r->to_out_len = 0;
  else if (n < 0 && errno != EINTR && errno != EAGAIN)
    {
      /* Nobody reads the output any more: hang up, as a closed terminal. */
      r->out = -1;
      r->to_out_len = 0;
      hang_up(r);
    }
}

void corral__relay_step(struct corral__relay *r, const struct pollfd p[3])
{
  if (r->master >= 0 && r->idle && r->to_out_len == 0)
    read_master(r);
  /* POLLNVAL: the caller gave a closed fd; read or write then fails. */
  if (p[0].fd >= 0 && (p[0].revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL)))
    read_input(r);
  if (p[2].fd >= 0 && (p[2].revents & (POLLOUT | POLLHUP | POLLERR | POLLNVAL)))
    write_output(r);
  if (p[1].fd >= 0 && r->master >= 0 && (p[1].revents & POLLOUT) && r->to_master_len)
    write_master(r);
  if (p[1].fd >= 0 && r->master >= 0 && (p[1].revents & (POLLIN | POLLHUP | POLLERR)) && r->to_out_len == 0)
    read_master(r);
}

/* Wait for the caller's output to take the rest; a caller that stopped
 * reading for seconds gets no more. */
static void flush_output(struct corral__relay *r)
{
  while (r->out >= 0 && r->to_out_len)
    {
      struct pollfd p = { r->out, POLLOUT, 0 };
      int n = poll(&p, 1, 5000);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        {
          r->out = -1;
          r->to_out_len = 0;
          break;
        }
      write_output(r);
    }
}

/* The sandbox is gone: what the command wrote last is still in the
 * terminal's buffer, readable until EIO. */
void corral__relay_finish(struct corral__relay *r)
{
  flush_output(r);
  while (r->master >= 0 && r->out >= 0)
    {
      read_master(r);
      if (r->to_out_len == 0)
        break;
      flush_output(r);
    }
  hang_up(r);
}
