"""End-to-end tests of `corral run` with a terminal: the command gets a
pseudo-terminal of the sandbox's own devpts (its controlling terminal), the
caller's terminal goes raw for the run and comes back as it was, window sizes
follow, ^C reaches the command through the inner line discipline."""
import errno
import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import termios
import time

from conftest import CORRAL

PY = "/usr/bin/python3"


class PtyRun:
    """`corral run ARGS` with a pty of the test's own as stdin/stdout/stderr."""

    def __init__(self, *args, rows=33, cols=101):
        self.master, self.slave = os.openpty()
        self.resize(rows, cols)
        self.modes_before = termios.tcgetattr(self.slave)
        self.out = b""
        self.proc = subprocess.Popen([CORRAL, "run", *args], stdin=self.slave, stdout=self.slave,
                                     stderr=self.slave)

    def resize(self, rows, cols):
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def send(self, data):
        os.write(self.master, data)

    def _read(self, timeout):
        r, _, _ = select.select([self.master], [], [], timeout)
        if r:
            try:
                self.out += os.read(self.master, 65536)
            except OSError:
                pass

    def expect(self, pattern, timeout=10):
        """Wait until the output (all of it so far) matches pattern."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, self.out)
            if m:
                return m
            self._read(0.1)
        raise AssertionError(f"{pattern!r} not seen in {self.out[-2000:]!r}")

    def wait(self, timeout=20):
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self._read(0.1)
        if self.proc.poll() is None:
            self.proc.kill()
            raise AssertionError(f"corral still running: {self.out[-2000:]!r}")
        self._read(0.2)
        return self.proc.returncode

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)
        os.close(self.slave)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def modes_restored(self):
        return termios.tcgetattr(self.slave) == self.modes_before


def shell(*extra):
    """An interactive bash with a recognisable prompt and no rc files."""
    return [*extra, "--env", "PS1=PROMPT> ", "--", "bash", "--norc", "--noprofile", "-i"]


def test_command_gets_a_terminal_of_the_sandbox():
    with PtyRun("--", "sh", "-c", "tty; test -t 0 && test -t 1 && test -t 2 && echo all-ttys") as t:
        assert t.wait() == 0
        assert re.search(rb"^/dev/pts/\d+\r\nall-ttys\r\n", t.out), t.out
        assert t.modes_restored()


def test_controlling_terminal_and_job_control():
    code = ("import os; fd = os.open('/dev/tty', os.O_RDWR); "
            "print('ctty', os.tcgetpgrp(fd) == os.getpgrp(), os.getsid(0) == os.getpid())")
    with PtyRun("--", PY, "-c", code) as t:
        assert t.wait() == 0
        assert b"ctty True True" in t.out, t.out


def test_tiocsti_stays_blocked():
    code = ("import fcntl, termios\n"
            "try:\n fcntl.ioctl(0, termios.TIOCSTI, b'x'); print('injected')\n"
            "except OSError as e: print('errno', e.errno)\n")
    with PtyRun("--", PY, "-c", code) as t:
        assert t.wait() == 0
        assert f"errno {errno.EPERM}".encode() in t.out, t.out


def test_window_size_and_resize():
    with PtyRun(*shell(), rows=33, cols=101) as t:
        t.expect(rb"PROMPT> ")
        t.send(b"stty size\n")
        t.expect(rb"33 101\r\n")
        t.resize(40, 120)
        t.proc.send_signal(signal.SIGWINCH)
        for _ in range(20):
            t.send(b"stty size\n")
            try:
                t.expect(rb"40 120\r\n", timeout=0.5)
                break
            except AssertionError:
                pass
        t.expect(rb"40 120\r\n", timeout=0.1)
        t.send(b"exit 0\n")
        assert t.wait() == 0
        assert t.modes_restored()


def test_ctrl_c_interrupts_the_job_and_the_shell_goes_on():
    with PtyRun(*shell()) as t:
        t.expect(rb"PROMPT> ")
        t0 = time.monotonic()
        t.send(b"sleep 30; echo after\n")
        t.expect(rb"sleep 30; echo after\r\n")
        time.sleep(0.5)  # the job is running
        t.send(b"\x03")
        t.send(b"echo alive-$((6*7))\n")
        t.expect(rb"alive-42\r\n")
        assert time.monotonic() - t0 < 10
        t.send(b"exit 3\n")
        assert t.wait() == 3
        assert b"after\r\n" not in t.out.replace(b"echo after\r\n", b"")
        assert t.modes_restored()


def test_interactive_python_answers():
    with PtyRun("--", PY, "-i", "-q") as t:
        t.expect(rb">>> ")
        t.send(b"print(6 * 7)\n")
        t.expect(rb"\r\n42\r\n")
        t.send(b"import sys; sys.exit(5)\n")
        assert t.wait() == 5
        assert t.modes_restored()


def test_exit_code_passes_through_and_output_is_complete():
    with PtyRun("--", "sh", "-c", "seq 1 20000; exit 7") as t:
        assert t.wait() == 7
        assert t.out.endswith(b"19999\r\n20000\r\n"), t.out[-100:]
        assert t.modes_restored()


def test_signals_to_corral_are_forwarded_and_modes_restored():
    with PtyRun("--", "sh", "-c", "echo ready; sleep 30") as t:
        t.expect(rb"ready")
        # Raw while the command runs: no echo, no signals from the keyboard.
        assert not termios.tcgetattr(t.slave)[3] & (termios.ECHO | termios.ISIG)
        t.proc.send_signal(signal.SIGTERM)
        assert t.wait() == 128 + signal.SIGTERM
        assert t.modes_restored()


def test_errors_restore_modes():
    with PtyRun("--", "no-such-command-here") as t:
        assert t.wait() == 127
        assert b"command not found" in t.out
        assert t.modes_restored()


def test_timeout_restores_modes():
    with PtyRun("--timeout", "500ms", "--", "sh", "-c", "echo started; sleep 30") as t:
        assert t.wait() == 124
        assert b"started" in t.out
        assert t.modes_restored()


def test_no_tty_shares_the_callers_terminal_as_before():
    code = ("import os, sys, termios\n"
            "print('isatty', os.isatty(0), flush=True)\n"
            "try: os.open('/dev/tty', os.O_RDWR); print('ctty')\n"
            "except OSError as e: print('no ctty', e.errno)\n")
    with PtyRun("--no-tty", "--", PY, "-c", code) as t:
        assert t.wait() == 0
        assert b"isatty True" in t.out and f"no ctty {errno.ENXIO}".encode() in t.out, t.out
        assert t.modes_restored()


def test_pipes_unchanged_without_a_terminal():
    p = subprocess.run([CORRAL, "run", "--", "sh", "-c", "tty; cat"], input=b"abc\n",
                       capture_output=True, timeout=60)
    assert p.returncode == 0 and p.stdout == b"not a tty\nabc\n", p


def test_forced_tty_with_pipes():
    p = subprocess.run([CORRAL, "run", "--tty", "--", "sh", "-c", "tty; cat; echo done"],
                       input=b"abc\ndef", capture_output=True, timeout=60)
    assert p.returncode == 0, p
    # The terminal echoes the input, and the unfinished last line reaches
    # cat before its end of file.
    assert re.search(rb"/dev/pts/\d+\r\n", p.stdout), p.stdout
    assert p.stdout.endswith(b"abc\r\ndefdone\r\n"), p.stdout
