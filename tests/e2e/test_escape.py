"""The escape suite: tests/escape/ runs inside a sandbox and tries to
break out; this side lays bait on the host and checks afterwards that none of
it was touched.

Bait: a TCP listener on the host's 127.0.0.1, an abstract unix socket, a
secret file, a `sleep` process, a pipe fd leaked without CLOEXEC, and the
host name.  The suite gets their coordinates through ESCAPE_* variables.
"""
import os
import re
import fcntl
import select
import socket
import subprocess
import termios
import threading
import tty
import uuid

import pytest

from conftest import corral, BUILD, CORRAL, ROOT

ESCAPE_DIR = os.path.join(BUILD, "tests", "escape")
ESCAPE = os.path.join(ESCAPE_DIR, "escape")
MIN_CHECKS = 60

TAP_LINE = re.compile(r"^(not ok|ok) (\d+) - (\S+)(?: # (.*))?$")


class Listeners:
    """A TCP socket on 127.0.0.1 and an abstract unix socket, both listening;
    a thread accepts and counts whatever reaches them."""

    def __init__(self):
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen(16)
        self.port = self.tcp.getsockname()[1]
        self.abstract_name = f"corral-escape-{uuid.uuid4().hex}"
        self.unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.unix.bind("\0" + self.abstract_name)
        self.unix.listen(16)
        self.accepted = {"tcp": [], "unix": 0}
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        socks = {self.tcp.fileno(): "tcp", self.unix.fileno(): "unix"}
        while True:
            ready, _, _ = select.select([self.tcp, self.unix, self._stop_r], [], [])
            if self._stop_r in ready:
                return
            for s in ready:
                conn, addr = s.accept()
                kind = socks[s.fileno()]
                if kind == "tcp":
                    self.accepted["tcp"].append(addr)
                else:
                    self.accepted["unix"] += 1
                conn.close()

    def close(self):
        os.write(self._stop_w, b"x")
        self._thread.join(5)
        for fd in (self._stop_r, self._stop_w):
            os.close(fd)
        self.tcp.close()
        self.unix.close()


@pytest.fixture
def bait(tmp_path):
    listeners = Listeners()
    secret = tmp_path / "host-secret.txt"
    secret_text = f"corral host secret {uuid.uuid4().hex}\n"
    secret.write_text(secret_text)
    os.chmod(secret, 0o644)  # readable by anyone on the host: only isolation protects it
    secret_stat = secret.stat()
    sleeper = subprocess.Popen(["sleep", "60"])
    leak_r, leak_w = os.pipe()
    os.set_inheritable(leak_r, True)
    hostname = socket.gethostname()
    b = {
        "listeners": listeners,
        "secret": str(secret),
        "secret_text": secret_text,
        "secret_stat": secret_stat,
        "sleeper": sleeper,
        "leak_r": leak_r,
        "hostname": hostname,
    }
    try:
        yield b
    finally:
        sleeper.kill()
        sleeper.wait()
        os.close(leak_r)
        os.close(leak_w)
        listeners.close()


def parse_tap(out):
    plan = None
    results = []
    for line in out.splitlines():
        m = re.match(r"^1\.\.(\d+)$", line)
        if m:
            plan = int(m.group(1))
            continue
        m = TAP_LINE.match(line)
        if m:
            results.append((m.group(1) == "ok", int(m.group(2)), m.group(3), m.group(4) or ""))
    return plan, results


def escape_args(bait, *extra, args=()):
    """Arguments of `corral` for a run of the suite with the bait's coordinates."""
    b = bait
    env_args = []
    for k, v in {
        "ESCAPE_HOST_SECRET": b["secret"],
        "ESCAPE_HOST_PID": str(b["sleeper"].pid),
        "ESCAPE_HOST_PORT": str(b["listeners"].port),
        "ESCAPE_ABSTRACT": b["listeners"].abstract_name,
        "ESCAPE_LEAKED_FD": str(b["leak_r"]),
    }.items():
        env_args += ["--env", f"{k}={v}"]
    return ["run", "--timeout", "120", "--bind", f"{ESCAPE_DIR}:/opt/escape:ro", *env_args, *extra,
            "--", "/opt/escape/escape", *args]


def run_escape(bait, *extra, args=()):
    return corral(*escape_args(bait, *extra, args=args), pass_fds=(bait["leak_r"],), timeout=180)


def assert_bait_untouched(b):
    l = b["listeners"]
    assert l.accepted["tcp"] == [], f"host TCP listener accepted connections from {l.accepted['tcp']}"
    assert l.accepted["unix"] == 0, f"host abstract socket accepted {l.accepted['unix']} connection(s)"
    assert b["sleeper"].poll() is None, f"host process `sleep` died: {b['sleeper'].returncode}"
    assert socket.gethostname() == b["hostname"], "the host name changed"
    with open(b["secret"]) as f:
        assert f.read() == b["secret_text"], "the host secret file changed"
    st = os.stat(b["secret"])
    assert (st.st_mtime_ns, st.st_mode, st.st_uid) == (
        b["secret_stat"].st_mtime_ns, b["secret_stat"].st_mode, b["secret_stat"].st_uid), "secret file metadata changed"
    # The leaked pipe is still ours alone: nothing wrote into it.
    r, _, _ = select.select([b["leak_r"]], [], [], 0)
    assert not r, "someone wrote to the leaked pipe"


def check_run(p, b):
    plan, results = parse_tap(p.stdout)
    failed = [f"{name}: {detail}" for ok, _, name, detail in results if not ok]
    report = "\n".join(failed) + "\n--- stderr:\n" + p.stderr[-3000:]
    assert plan is not None, f"no TAP plan in output:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    assert plan >= MIN_CHECKS, f"only {plan} checks"
    assert len(results) == plan, f"{len(results)} results for a plan of {plan}:\n{p.stdout[-3000:]}\n{report}"
    assert [n for _, n, _, _ in results] == list(range(1, plan + 1))
    assert not failed, f"{len(failed)} escape check(s) failed:\n{report}"
    assert "not ok" not in p.stdout
    assert p.returncode == 0, f"exit {p.returncode}\n{report}"
    assert_bait_untouched(b)
    return results


@pytest.fixture(scope="module")
def escape_bin():
    assert os.access(ESCAPE, os.X_OK), f"{ESCAPE} is not built: run make {os.path.relpath(ESCAPE, ROOT)}"
    return ESCAPE


def test_escape_as_user(corral_bin, escape_bin, bait):
    check_run(run_escape(bait), bait)


def test_escape_as_root(corral_bin, escape_bin, bait):
    check_run(run_escape(bait, "--root"), bait)


def test_escape_list(escape_bin):
    # --list only prints names: safe to run on the host.
    p = subprocess.run([escape_bin, "--list"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    names = p.stdout.split()
    assert len(names) >= MIN_CHECKS, names
    assert len(set(names)) == len(names), "duplicate check names"
    assert all(re.fullmatch(r"[a-z0-9_]+", n) for n in names), names


def test_escape_single_check(corral_bin, escape_bin, bait):
    p = run_escape(bait, args=("caps_zero", "leaked_fd"))
    plan, results = parse_tap(p.stdout)
    assert plan == 2, p.stdout
    assert [(ok, name) for ok, _, name, _ in results] == [(True, "caps_zero"), (True, "leaked_fd")], p.stdout
    assert p.returncode == 0
    assert_bait_untouched(bait)


def test_escape_unknown_check(corral_bin, escape_bin, bait):
    p = run_escape(bait, args=("no_such_check",))
    assert p.returncode != 0
    assert "no_such_check" in p.stderr


TTY_CHECKS = ["stdin_tty_hijack", "tiocsti_stdin", "tiocsti_highbits", "tioclinux", "dev_tty_no_ctty"]


@pytest.mark.parametrize("mode", [(), ("--root",)], ids=["user", "root"])
def test_escape_host_tty(corral_bin, escape_bin, bait, mode):
    """Interactive use: stdin is the user's terminal, the controlling tty of
    corral's session.  Nothing typed by the sandbox may reach its input."""
    master, slave = os.openpty()
    try:
        tty.setraw(slave)  # no line buffering: an injected byte would be readable at once

        def take_ctty():
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        p = subprocess.run([CORRAL, *escape_args(bait, *mode, args=TTY_CHECKS)], stdin=slave,
                           capture_output=True, text=True, timeout=180, start_new_session=True,
                           preexec_fn=take_ctty, pass_fds=(bait["leak_r"],))
        plan, results = parse_tap(p.stdout)
        assert plan == len(TTY_CHECKS), (p.stdout, p.stderr)
        failed = [f"{name}: {detail}" for ok, _, name, detail in results if not ok]
        assert not failed, "\n".join(failed)
        skipped = [name for _, _, name, detail in results if detail.startswith("SKIP")]
        assert skipped == [], f"checks skipped although stdin is a terminal: {skipped}"
        assert p.returncode == 0, (p.stdout, p.stderr)
        os.set_blocking(slave, False)
        try:
            injected = os.read(slave, 4096)
        except BlockingIOError:
            injected = b""
        assert injected == b"", f"input was injected into the host terminal: {injected!r}"
        assert_bait_untouched(bait)
    finally:
        os.close(master)
        os.close(slave)


@pytest.mark.parametrize("mode", [(), ("--root",)], ids=["user", "root"])
def test_escape_stdio_files(corral_bin, escape_bin, bait, tmp_path, mode):
    """Host files as stdin/stdout: the sandbox gets the access the caller
    opened them with, never more (no reopening through /proc/self/fd)."""
    victim = tmp_path / "world-writable.txt"
    victim.write_text("do not overwrite\n")
    os.chmod(victim, 0o666)  # only Landlock stands in the way of a reopen for writing
    out = tmp_path / "stdout.txt"
    preface = f"host-only preface {uuid.uuid4().hex}\n"
    out.write_text(preface)
    os.chmod(out, 0o666)
    with open(victim, "rb") as stdin, open(out, "ab") as stdout:
        p = subprocess.run([CORRAL, *escape_args(bait, *mode, args=("reopen_stdin_write", "reopen_stdout_read"))],
                           stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=180,
                           pass_fds=(bait["leak_r"],))
    text = out.read_text()
    assert text.startswith(preface), "the sandbox rewrote its stdout file"
    plan, results = parse_tap(text[len(preface):])
    assert plan == 2, (text, p.stderr)
    failed = [f"{name}: {detail}" for ok, _, name, detail in results if not ok or detail.startswith("SKIP")]
    assert not failed, "\n".join(failed)
    assert p.returncode == 0, (text, p.stderr)
    assert victim.read_text() == "do not overwrite\n"
    assert oct(victim.stat().st_mode & 0o7777) == oct(0o666)
    assert_bait_untouched(bait)
