"""End-to-end tests of the Python SDK (sdk/python/corral) against a real corrald
(see daemon.py)."""
import hashlib
import io
import os
import re
import resource
import sys
import threading
import time

import pytest

from daemon import SDK_DIR, corrald, needs_corrald, tenant  # noqa: F401 (fixtures)

sys.path.insert(0, SDK_DIR)
import corral  # noqa: E402
from corral import (AuthenticationError, CommandExitError, CommandTimeoutError,  # noqa: E402
                    CorralConnectionError, InsufficientStorageError, InvalidArgumentError, NotFoundError,
                    PermissionDeniedError, QuotaExceededError, Sandbox, SandboxNotRunningError)

pytestmark = needs_corrald

NO_SUCH_ID = "sb_00000000000000000000"
BIG = 150 * 1024 * 1024


@pytest.fixture(scope="module")
def conn(tenant):
    """Keyword arguments that point the SDK at the test daemon as the tenant."""
    return {"api_key": tenant.key, "url": tenant.daemon.url}


@pytest.fixture(scope="module")
def sbx(conn):
    with Sandbox.create(timeout=900, envs={"SBX_VAR": "from-create"}, **conn) as s:
        yield s


# ---- sandboxes ----

def test_create_info_list_kill(conn):
    s = Sandbox.create(timeout=120, metadata={"suite": "sdk", "n": 1}, memory_mb=256, cpus=0.5, pids=64,
                       disk_mb=64, **conn)
    try:
        assert re.match(r"^sb_[a-z0-9]{20}$", s.id) and s.sandbox_id == s.id
        info = s.info()
        assert info.state == "running" and info.template == "base" and info.is_running
        assert info.metadata == {"suite": "sdk", "n": "1"}
        assert info.limits["memory_mb"] == 256 and info.limits["pids"] == 64 and info.limits["disk_mb"] == 64
        assert info.expires_at > info.created_at
        assert s.is_running()
        assert s.id in [i.sandbox_id for i in Sandbox.list(**conn)]
        assert [i.sandbox_id for i in Sandbox.list(metadata={"suite": "sdk", "n": "1"}, **conn)] == [s.id]
        assert Sandbox.list(metadata={"suite": "other"}, **conn) == []
        assert s.id in [i.sandbox_id for i in Sandbox.list(state="running", **conn)]
        before = info.expires_at
        after = s.set_timeout(3600).expires_at
        assert (after - before).total_seconds() > 3000
        again = Sandbox.connect(s.id, **conn)
        assert again.id == s.id and again.info().expires_at == after
    finally:
        assert s.kill() is True
    info = s.info()
    assert info.state == "ended" and info.end_reason == "killed" and not s.is_running()
    assert s.id in [i.sandbox_id for i in Sandbox.list(state="ended", **conn)]
    assert s.kill() is True                                   # no-op on an ended sandbox


def test_context_manager_kills(conn):
    with Sandbox.create(**conn) as s:
        assert s.is_running()
    assert s.info().end_reason == "killed"


def test_kill_and_set_timeout_by_id(conn):
    s = Sandbox.create(**conn)
    assert Sandbox.set_timeout(s.id, 1000, **conn).expires_at is not None
    assert Sandbox.kill(s.id, **conn) is True
    assert not s.is_running()
    assert Sandbox.kill(NO_SUCH_ID, **conn) is False


def test_env_defaults(tenant, monkeypatch):
    monkeypatch.setenv("CORRAL_URL", tenant.daemon.url)
    monkeypatch.setenv("CORRAL_API_KEY", tenant.key)
    assert isinstance(Sandbox.list(), list)


def test_unix_socket_url(tenant):
    with Sandbox.create(api_key=tenant.key, url=tenant.daemon.unix_url) as s:
        assert s.commands.run("echo unix").stdout == "unix\n"


# ---- commands ----

def test_run_output_and_exit(sbx):
    r = sbx.commands.run("echo out; echo err >&2")
    assert (r.exit_code, r.stdout, r.stderr, r.reason) == (0, "out\n", "err\n", "exited")
    assert r.duration_ms is not None and r.pid is not None and r.error is None
    r = sbx.commands.run(["echo", "a  b", "$HOME"])
    assert r.stdout == "a  b $HOME\n"


def test_nonzero_exit_raises(sbx):
    with pytest.raises(CommandExitError) as ei:
        sbx.commands.run("echo partial; echo oops >&2; exit 3")
    assert ei.value.exit_code == 3 and ei.value.stdout == "partial\n" and ei.value.stderr == "oops\n"
    assert ei.value.result.reason == "exited" and "oops" in str(ei.value)
    r = sbx.commands.run("exit 4", check=False)
    assert r.exit_code == 4
    assert sbx.commands.run(["no-such-command-xyz"], check=False).exit_code == 127
    r = sbx.commands.run("kill -KILL $$", check=False)
    assert r.exit_code == 137 and r.reason == "signaled"


def test_timeout_raises_command_timeout(sbx):
    t0 = time.monotonic()
    with pytest.raises(CommandTimeoutError) as ei:
        sbx.commands.run("sleep 30", timeout=0.5)
    assert time.monotonic() - t0 < 15
    assert ei.value.exit_code == 124 and ei.value.reason == "timeout"
    assert isinstance(ei.value, CommandExitError)


def test_stdin_envs_cwd(sbx):
    assert sbx.commands.run("tr a-z A-Z", stdin="hello\n").stdout == "HELLO\n"
    assert sbx.commands.run("cat", stdin=b"bytes\n").stdout == "bytes\n"
    r = sbx.commands.run('echo "$FOO|$SBX_VAR|$(pwd)|$(id -un)"', envs={"FOO": "x y"}, cwd="/tmp")
    assert r.stdout == "x y|from-create|/tmp|user\n"
    with pytest.raises(InvalidArgumentError):
        sbx.commands.run("true", cwd="/no/such/dir")


def test_callbacks_stream(sbx):
    seen = []
    t0 = time.monotonic()
    r = sbx.commands.run("echo first; sleep 3; echo second; echo e >&2",
                         on_stdout=lambda d: seen.append(("out", d, time.monotonic() - t0)),
                         on_stderr=lambda d: seen.append(("err", d, time.monotonic() - t0)))
    assert r.stdout == "first\nsecond\n" and r.stderr == "e\n" and r.exit_code == 0
    assert "".join(d for k, d, _ in seen if k == "out") == "first\nsecond\n"
    first_at = next(t for k, d, t in seen if "first" in d)
    second_at = next(t for k, d, t in seen if "second" in d)
    assert second_at - first_at > 2, seen                    # delivered as it happened


def test_background_wait_stdin_kill(sbx):
    h = sbx.commands.run("read line; echo got:$line; exit 5", background=True)
    assert isinstance(h.pid, int)
    assert h.pid in [p.pid for p in sbx.commands.list()]
    h.send_stdin("hello\n")
    with pytest.raises(CommandExitError) as ei:
        h.wait()
    assert ei.value.exit_code == 5 and ei.value.stdout == "got:hello\n"

    chunks = []
    h = sbx.commands.run("for i in 1 2 3; do echo $i; sleep 0.3; done", background=True)
    r = sbx.commands.connect(h.pid).wait(on_stdout=chunks.append)
    assert r.exit_code == 0 and "".join(chunks) == "1\n2\n3\n" and r.stdout == "1\n2\n3\n"

    h = sbx.commands.run("sleep 60", background=True)
    assert h.kill() is True
    r = h.wait(check=False)
    assert r.reason == "signaled" and r.exit_code == 137
    assert sbx.commands.kill(999999) is False
    with pytest.raises(NotFoundError):
        sbx.commands.connect(999999)


def test_background_close_stdin(sbx):
    h = sbx.commands.run("cat", background=True)
    h.send_stdin(b"abc")
    h.close_stdin()
    assert h.wait().stdout == "abc"


# ---- files ----

def test_files_roundtrip(sbx):
    info = sbx.files.write("/home/user/notes/a.txt", "héllo\n")
    assert info.path == "/home/user/notes/a.txt" and info.size == len("héllo\n".encode())
    assert sbx.files.read("notes/a.txt") == "héllo\n"
    sbx.files.write("/tmp/b.bin", b"\x00\xff\x01")
    assert sbx.files.read("/tmp/b.bin", format="bytes") == b"\x00\xff\x01"
    sbx.files.write("/tmp/c.txt", io.BytesIO(b"from a file object"))
    assert sbx.files.read("/tmp/c.txt") == "from a file object"
    sbx.files.write("/tmp/d.txt", io.StringIO("text file ü"))
    assert sbx.files.read("/tmp/d.txt") == "text file ü"
    assert sbx.commands.run("cat /home/user/notes/a.txt").stdout == "héllo\n"


def test_files_metadata_ops(sbx):
    sbx.files.write("/home/user/tree/x/y.txt", "y")
    assert sbx.files.exists("/home/user/tree/x/y.txt")
    assert not sbx.files.exists("/home/user/tree/nope")
    e = sbx.files.get_info("/home/user/tree/x/y.txt")
    assert (e.name, e.type, e.size) == ("y.txt", "file", 1) and e.mode & 0o600 == 0o600
    assert [e.name for e in sbx.files.list("/home/user/tree")] == ["x"]
    deep = {e.path: e.type for e in sbx.files.list("/home/user/tree", depth=2)}
    assert deep == {"/home/user/tree/x": "dir", "/home/user/tree/x/y.txt": "file"}
    assert sbx.files.make_dir("/home/user/tree/new/deeper") is True
    assert sbx.files.make_dir("/home/user/tree/new/deeper") is False
    assert sbx.files.get_info("/home/user/tree/new/deeper").is_dir
    moved = sbx.files.rename("/home/user/tree/x/y.txt", "/home/user/tree/new/z.txt")
    assert moved.path == "/home/user/tree/new/z.txt"
    assert not sbx.files.exists("/home/user/tree/x/y.txt")
    sbx.files.remove("/home/user/tree/new/z.txt")
    assert not sbx.files.exists("/home/user/tree/new/z.txt")
    sbx.files.remove("/home/user/tree")
    assert not sbx.files.exists("/home/user/tree")


def test_files_errors(sbx):
    with pytest.raises(NotFoundError) as ei:
        sbx.files.read("/home/user/missing")
    assert ei.value.status == 404 and ei.value.code == "not_found" and ei.value.message
    with pytest.raises(PermissionDeniedError) as ei:
        sbx.files.write("/usr/forbidden", "x")
    assert ei.value.status == 403 and isinstance(ei.value, AuthenticationError)
    with pytest.raises(InvalidArgumentError):
        sbx.files.read("/home/user", format="bytes")          # a directory


def test_disk_full(conn):
    with Sandbox.create(disk_mb=1, **conn) as s:
        with pytest.raises(InsufficientStorageError) as ei:
            s.files.write("/home/user/too-big", b"x" * (3 << 20))
        assert ei.value.status == 507


def _maxrss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_files_150mb_streamed(conn, tmp_path):
    src = tmp_path / "big.bin"
    h = hashlib.sha256()
    with open(src, "wb") as f:
        left = BIG
        while left:
            chunk = os.urandom(min(left, 1 << 22))
            h.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    digest = h.hexdigest()
    rss0 = _maxrss_mb()
    with Sandbox.create(disk_mb=1024, memory_mb=2048, timeout=600, **conn) as s:
        with open(src, "rb") as f:                            # Content-Length upload
            assert s.files.write("/home/user/big.bin", f).size == BIG
        back = hashlib.sha256()
        n = 0
        with s.files.read("/home/user/big.bin", format="stream") as stream:
            for chunk in stream:
                back.update(chunk)
                n += len(chunk)
        assert n == BIG and back.hexdigest() == digest

        class Pipe(io.RawIOBase):                             # no fileno, no length: chunked upload
            def __init__(self):
                self._f = open(src, "rb")

            def readable(self):
                return True

            def read(self, n=-1):
                return self._f.read(n)

            def close(self):
                self._f.close()

        with Pipe() as p:
            assert s.files.write("/tmp/big2.bin", p).size == BIG
        out = s.commands.run("sha256sum /tmp/big2.bin /home/user/big.bin").stdout.split()
        assert out[0] == digest and out[2] == digest
    assert _maxrss_mb() - rss0 < 100, "the transfer was held in memory"


# ---- errors ----

def test_bad_key(corrald):
    with pytest.raises(AuthenticationError) as ei:
        Sandbox.list(api_key="ck_" + "0" * 48, url=corrald.url)
    assert ei.value.status == 401 and ei.value.code == "unauthorized"
    assert "HTTP 401" in str(ei.value)
    with pytest.raises(AuthenticationError) as ei:
        Sandbox.create(api_key="", url=corrald.url)
    assert ei.value.status == 401


def test_tenant_key_on_admin_route(conn):
    from corral._http import Transport
    with pytest.raises(AuthenticationError) as ei:
        Transport(conn["api_key"], conn["url"]).call("GET", "/v1/tenants")
    assert ei.value.status == 403


def test_unknown_and_foreign_sandbox(conn, corrald, sbx):
    with pytest.raises(NotFoundError):
        Sandbox.connect(NO_SUCH_ID, **conn)
    _, other = corrald.create_tenant()
    with pytest.raises(NotFoundError):
        Sandbox.connect(sbx.id, api_key=other, url=corrald.url)


def test_ended_sandbox(conn):
    s = Sandbox.create(**conn)
    s.kill()
    with pytest.raises(SandboxNotRunningError) as ei:
        s.commands.run("true")
    assert ei.value.status == 409 and ei.value.code == "sandbox_not_running"
    with pytest.raises(SandboxNotRunningError):
        s.files.write("/tmp/x", "x")
    with pytest.raises(SandboxNotRunningError):
        s.files.read("/tmp/x")


@pytest.mark.parametrize("streamed", [False, True])
def test_killed_while_running(conn, streamed):
    s = Sandbox.create(**conn)
    outcome = []
    callbacks = {"on_stdout": lambda d: None} if streamed else {}

    def run():
        try:
            outcome.append(s.commands.run("echo started; sleep 60", check=False, **callbacks))
        except corral.CorralError as e:
            outcome.append(e)

    t = threading.Thread(target=run)
    t.start()
    time.sleep(1)
    s.kill()
    t.join(30)
    assert not t.is_alive()
    assert outcome and isinstance(outcome[0], SandboxNotRunningError), outcome


def test_quota(corrald):
    _, key = corrald.create_tenant(max_sandboxes=1)
    with Sandbox.create(api_key=key, url=corrald.url):
        with pytest.raises(QuotaExceededError) as ei:
            Sandbox.create(api_key=key, url=corrald.url)
        assert ei.value.status == 429


def test_invalid_arguments(conn):
    with pytest.raises(InvalidArgumentError) as ei:
        Sandbox.create(memory_mb=1, **conn)
    assert ei.value.status == 400
    with pytest.raises(NotFoundError) as ei:
        Sandbox.create(template="no-such-template", **conn)
    assert ei.value.code == "template_not_found"


def test_unreachable():
    with pytest.raises(CorralConnectionError) as ei:
        Sandbox.list(api_key="x", url="http://127.0.0.1:1")
    assert "cannot reach corrald" in str(ei.value)
    with pytest.raises(CorralConnectionError):
        Sandbox.list(api_key="x", url="unix:/nonexistent/corrald.sock")
