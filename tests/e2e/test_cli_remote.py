"""End-to-end tests of the CLI's corrald subcommands (sandbox, exec, files,
tenant, key) against a real corrald (see daemon.py)."""
import hashlib
import json
import os
import re
import subprocess
import tempfile
import time

import pytest

from daemon import CORRAL, corrald, needs_corrald, tenant  # noqa: F401 (fixtures)

pytestmark = needs_corrald

ID_RE = re.compile(r"^sb_[a-z0-9]{20}$")
NO_SUCH_ID = "sb_00000000000000000000"
BIG = 150 * 1024 * 1024


def cli(env, *args, input=None, timeout=120, check=None, text=True):
    """Run `corral ARGS...` with env (stdin from `input`, else /dev/null)."""
    p = subprocess.run([CORRAL, *args], input=input, capture_output=True, timeout=timeout, env=env,
                       text=text, stdin=None if input is not None else subprocess.DEVNULL)
    if check is not None:
        assert p.returncode == check, (p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    return p


def one_line_error(p, status):
    """The single `corral: MESSAGE (HTTP status)` line on stderr."""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert re.match(rf"^corral: .+ \(HTTP {status}\)$", lines[0]), p.stderr
    return lines[0]


@pytest.fixture(scope="module")
def env(tenant):
    return tenant.daemon.cli_env(tenant.key)


@pytest.fixture(scope="module")
def admin_env(corrald):
    return corrald.cli_env(corrald.admin_key)


@pytest.fixture(scope="module")
def sandbox(env):
    """One running sandbox shared by the exec and files tests."""
    sid = cli(env, "sandbox", "create", "--timeout", "900", "--env", "SBX_VAR=from-create",
              check=0).stdout.strip()
    yield sid
    cli(env, "sandbox", "kill", sid)


# ---- sandboxes ----

def test_create_prints_id_and_list_shows_it(env):
    sid = cli(env, "sandbox", "create", "--metadata", "purpose=cli-test", "--metadata", "run=1",
              check=0).stdout.strip()
    try:
        assert ID_RE.match(sid), sid
        table = cli(env, "sandbox", "list", check=0).stdout.splitlines()
        assert table[0].split() == ["ID", "STATE", "TEMPLATE", "CREATED", "EXPIRES", "END_REASON"]
        row = next(r for r in table[1:] if r.startswith(sid))
        assert row.split()[1:3] == ["running", "base"]
        listed = json.loads(cli(env, "sandbox", "list", "--json", check=0).stdout)
        assert sid in [s["id"] for s in listed["sandboxes"]]
        only = json.loads(cli(env, "sandbox", "list", "--metadata", "purpose=cli-test", "--metadata", "run=1",
                              "--json", check=0).stdout)
        assert [s["id"] for s in only["sandboxes"]] == [sid]
        assert only["sandboxes"][0]["metadata"] == {"purpose": "cli-test", "run": "1"}
        none = json.loads(cli(env, "sandbox", "list", "--metadata", "purpose=nothing", "--json",
                              check=0).stdout)
        assert none["sandboxes"] == []
    finally:
        cli(env, "sandbox", "kill", sid, check=0)


def test_create_json_with_limits(env):
    p = cli(env, "sandbox", "create", "--memory", "256M", "--cpus", "0.5", "--pids", "64", "--disk", "64M",
            "--timeout", "60", "--json", check=0)
    sb = json.loads(p.stdout)
    try:
        assert ID_RE.match(sb["id"]) and sb["state"] == "running" and sb["template"] == "base"
        assert sb["limits"]["memory_mb"] == 256 and sb["limits"]["pids"] == 64
        assert sb["limits"]["disk_mb"] == 64 and abs(sb["limits"]["cpus"] - 0.5) < 1e-9
    finally:
        cli(env, "sandbox", "kill", sb["id"], check=0)


def test_info_timeout_kill(env):
    sid = cli(env, "sandbox", "create", "--timeout", "60", check=0).stdout.strip()
    info = json.loads(cli(env, "sandbox", "info", sid, "--json", check=0).stdout)
    assert info["id"] == sid and info["state"] == "running" and info["end_reason"] is None
    human = cli(env, "sandbox", "info", sid, check=0).stdout
    assert re.search(rf"^id:\s+{sid}$", human, re.M) and re.search(r"^state:\s+running$", human, re.M)

    new_expiry = cli(env, "sandbox", "timeout", sid, "3600", check=0).stdout.strip()
    after = json.loads(cli(env, "sandbox", "info", sid, "--json", check=0).stdout)
    assert after["expires_at"] == new_expiry and after["expires_at"] > info["expires_at"]

    assert cli(env, "sandbox", "kill", sid, check=0).stdout == ""
    ended = json.loads(cli(env, "sandbox", "info", sid, "--json", check=0).stdout)
    assert ended["state"] == "ended" and ended["end_reason"] == "killed"
    listed = json.loads(cli(env, "sandbox", "list", "--state", "ended", "--json", check=0).stdout)
    assert sid in [s["id"] for s in listed["sandboxes"]]
    running = json.loads(cli(env, "sandbox", "list", "--state", "running", "--json", check=0).stdout)
    assert sid not in [s["id"] for s in running["sandboxes"]]
    cli(env, "sandbox", "kill", sid, check=0)     # killing an ended sandbox is a no-op


def test_sandbox_ttl_ends_it(env):
    sid = cli(env, "sandbox", "create", "--timeout", "1", check=0).stdout.strip()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        info = json.loads(cli(env, "sandbox", "info", sid, "--json", check=0).stdout)
        if info["state"] == "ended":
            break
        time.sleep(0.5)
    assert info["state"] == "ended" and info["end_reason"] == "timeout", info


# ---- exec ----

def test_exec_stdout_stderr_and_exit_code(env, sandbox):
    p = cli(env, "exec", sandbox, "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (p.returncode, p.stdout, p.stderr) == (3, "out\n", "err\n")
    assert cli(env, "exec", sandbox, "--", "true").returncode == 0


def test_exec_argv_is_not_a_shell_line(env, sandbox):
    p = cli(env, "exec", sandbox, "--", "echo", "a  b", "$HOME", ";", "|")
    assert (p.returncode, p.stdout) == (0, "a  b $HOME ; |\n")


def test_exec_stdin(env, sandbox):
    p = cli(env, "exec", sandbox, "--", "sh", "-c", "tr a-z A-Z; echo done", input="hello\nworld\n")
    assert (p.returncode, p.stdout) == (0, "HELLO\nWORLD\ndone\n")
    p = cli(env, "exec", "--no-stdin", sandbox, "--", "cat", input="ignored")
    assert (p.returncode, p.stdout) == (0, "")


def test_exec_env_and_cwd(env, sandbox):
    p = cli(env, "exec", "--env", "FOO=bar baz", "--cwd", "/tmp", sandbox, "--",
            "sh", "-c", 'echo "$FOO|$SBX_VAR|$(pwd)|$(id -u)"', check=0)
    assert p.stdout == "bar baz|from-create|/tmp|1000\n"


def test_exec_codes(env, sandbox):
    assert cli(env, "exec", sandbox, "--", "no-such-command-xyz").returncode == 127
    assert cli(env, "exec", sandbox, "--", "sh", "-c", "kill -TERM $$").returncode == 128 + 15
    t0 = time.monotonic()
    assert cli(env, "exec", "--timeout", "500ms", sandbox, "--", "sleep", "30").returncode == 124
    assert time.monotonic() - t0 < 15


def test_exec_streams_output_as_it_comes(env, sandbox):
    p = subprocess.Popen([CORRAL, "exec", sandbox, "--", "sh", "-c", "echo first; sleep 4; echo second"],
                         env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    t0 = time.monotonic()
    first = p.stdout.readline()
    took = time.monotonic() - t0
    rest, _ = p.communicate(timeout=60)
    assert first == "first\n" and took < 3.5, took
    assert rest == "second\n" and p.returncode == 0


def _interrupt(env, sandbox, script):
    """Start `corral exec SANDBOX -- sh -c SCRIPT`, Ctrl-C it after its first line; its exit code."""
    p = subprocess.Popen([CORRAL, "exec", sandbox, "--", "sh", "-c", script], env=env, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline() == "ready\n"
    t0 = time.monotonic()
    p.send_signal(2)
    _, err = p.communicate(timeout=30)
    assert time.monotonic() - t0 < 3, err
    return p.returncode


def _running_foreground(tenant, sandbox):
    _, cmds = tenant.daemon.api("GET", f"/v1/sandboxes/{sandbox}/commands", key=tenant.key)
    return [c for c in cmds["commands"] if c["running"] and not c["background"]]


def test_exec_ctrl_c_hangs_up_and_the_command_dies(env, sandbox, tenant):
    assert _interrupt(env, sandbox, "echo ready; while :; do echo tick; sleep 0.2; done") == 130
    time.sleep(1.5)
    assert _running_foreground(tenant, sandbox) == []


def test_exec_ctrl_c_kills_a_silent_command(env, sandbox, tenant):
    marker = f"/tmp/not-killed-{os.getpid()}"
    assert _interrupt(env, sandbox, f"echo ready; sleep 4; touch {marker}") == 130
    time.sleep(1.5)
    try:
        assert _running_foreground(tenant, sandbox) == []
    finally:
        time.sleep(3)
        cli(env, "exec", sandbox, "--", "rm", "-f", marker)


def test_exec_when_the_sandbox_dies(env):
    sid = cli(env, "sandbox", "create", check=0).stdout.strip()
    p = subprocess.Popen([CORRAL, "exec", sid, "--", "sh", "-c", "echo ready; sleep 30"], env=env,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline() == "ready\n"
    cli(env, "sandbox", "kill", sid, check=0)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 125 and err.startswith("corral: ") and len(err.splitlines()) == 1, (p.returncode, err)


def test_exec_big_output(env, sandbox):
    p = cli(env, "exec", sandbox, "--", "seq", "1", "500000", check=0)     # 3.4 MB: past the API's 1 MiB default
    assert p.stdout == "".join(f"{i}\n" for i in range(1, 500001)) and p.stderr == ""
    p = cli(env, "exec", "--max-output", "1K", sandbox, "--", "seq", "1", "500000", check=0)
    assert len(p.stdout) == 1024 and "dropped" in p.stderr


def test_exec_background_prints_pid(env, sandbox):
    p = cli(env, "exec", "--background", sandbox, "--", "sleep", "30", check=0)
    assert re.match(r"^\d+\n$", p.stdout), p.stdout


def test_exec_errors(env, sandbox):
    p = cli(env, "exec", NO_SUCH_ID, "--", "true")
    assert p.returncode == 125
    one_line_error(p, 404)
    p = cli(env, "exec", "--cwd", "/no/such/dir", sandbox, "--", "true")
    assert p.returncode == 125
    one_line_error(p, 400)
    assert cli(env, "exec", sandbox).returncode == 2
    assert cli(env, "exec").returncode == 2


# ---- files ----

def test_files_put_get_ls(env, sandbox, tmp_path):
    src = tmp_path / "hello.txt"
    src.write_bytes(b"hello \xff\x00 world\n")
    cli(env, "files", "put", sandbox, str(src), "/home/user/dir/hello.txt", check=0)
    got = cli(env, "files", "get", sandbox, "/home/user/dir/hello.txt", "-", check=0, text=False)
    assert got.stdout == b"hello \xff\x00 world\n"
    out = tmp_path / "copy.txt"
    cli(env, "files", "get", sandbox, "dir/hello.txt", str(out), check=0)
    assert out.read_bytes() == src.read_bytes()
    into = tmp_path / "into"
    into.mkdir()
    cli(env, "files", "get", sandbox, "dir/hello.txt", str(into), check=0)   # into a directory
    assert (into / "hello.txt").read_bytes() == src.read_bytes()

    cli(env, "files", "put", sandbox, "-", "/tmp/from-stdin", input="piped\n", check=0)
    assert cli(env, "exec", sandbox, "--", "cat", "/tmp/from-stdin", check=0).stdout == "piped\n"

    entries = json.loads(cli(env, "files", "ls", sandbox, "/home/user", "--json", check=0).stdout)["entries"]
    d = next(e for e in entries if e["name"] == "dir")
    assert d["type"] == "dir"
    deep = json.loads(cli(env, "files", "ls", sandbox, "/home/user", "--depth", "2", "--json",
                          check=0).stdout)["entries"]
    f = next(e for e in deep if e["path"] == "/home/user/dir/hello.txt")
    assert f["type"] == "file" and f["size"] == len(src.read_bytes())
    table = cli(env, "files", "ls", sandbox, "dir", check=0).stdout.splitlines()
    assert any(line.split()[0] == "file" and line.endswith("hello.txt") for line in table), table


def test_files_errors(env, sandbox, tmp_path):
    target = tmp_path / "never"
    p = cli(env, "files", "get", sandbox, "/home/user/missing", str(target))
    assert p.returncode == 1
    one_line_error(p, 404)
    assert os.listdir(tmp_path) == []                      # no file, no temporary left
    p = cli(env, "files", "put", sandbox, "/etc/hostname", "/usr/forbidden")
    assert p.returncode == 1 and "(HTTP 4" in p.stderr, p.stderr
    p = cli(env, "files", "put", sandbox, str(tmp_path / "no-such-local"), "/tmp/x")
    assert p.returncode == 1 and "no-such-local" in p.stderr
    assert cli(env, "files", "get", sandbox).returncode == 2


def _write_random(path, size):
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(left, 1 << 22))
            h.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    return h.hexdigest()


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _vm_hwm_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _run_measured(env, *args):
    """(returncode, peak RSS in KiB, stderr) of `corral ARGS...`.  The peak is
    polled from /proc (VmHWM): wait4's ru_maxrss would count the forking
    pytest process too."""
    with tempfile.TemporaryFile() as err:
        p = subprocess.Popen([CORRAL, *args], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=err)
        peak = 0
        while p.poll() is None:
            peak = max(peak, _vm_hwm_kib(p.pid))
            time.sleep(0.02)
        err.seek(0)
        return p.returncode, peak, err.read().decode()


def test_files_150mb_streamed(env, tmp_path):
    sid = cli(env, "sandbox", "create", "--disk", "1G", "--memory", "2G", "--timeout", "600",
              check=0).stdout.strip()
    try:
        src, back = tmp_path / "big.bin", tmp_path / "back.bin"
        digest = _write_random(src, BIG)
        rc, rss, err = _run_measured(env, "files", "put", sid, str(src), "/home/user/big.bin")
        assert rc == 0, err
        assert rss < 64 * 1024, f"put used {rss} KiB: the upload was not streamed"
        info = json.loads(cli(env, "files", "stat", sid, "/home/user/big.bin", "--json", check=0).stdout)
        assert info["size"] == BIG
        rc, rss, err = _run_measured(env, "files", "get", sid, "/home/user/big.bin", str(back))
        assert rc == 0, err
        assert rss < 64 * 1024, f"get used {rss} KiB: the download was not streamed"
        assert _sha256(back) == digest
        inside = cli(env, "exec", sid, "--", "sha256sum", "/home/user/big.bin", check=0).stdout.split()[0]
        assert inside == digest
    finally:
        cli(env, "sandbox", "kill", sid)


def test_files_put_from_pipe_is_chunked(env, sandbox):
    data = os.urandom(3 * 1024 * 1024 + 17)
    p = subprocess.Popen([CORRAL, "files", "put", sandbox, "-", "/tmp/piped.bin"], env=env,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, err = p.communicate(data, timeout=120)
    assert p.returncode == 0, err
    got = cli(env, "files", "get", sandbox, "/tmp/piped.bin", check=0, text=False).stdout
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()


# ---- errors ----

def test_bad_key_is_401(corrald):
    p = cli(corrald.cli_env("ck_" + "0" * 48), "sandbox", "list")
    assert p.returncode == 1
    one_line_error(p, 401)
    assert p.stdout == ""


def test_unknown_sandbox_is_404(env):
    for args in (("sandbox", "info", NO_SUCH_ID), ("sandbox", "kill", NO_SUCH_ID),
                 ("sandbox", "timeout", NO_SUCH_ID, "10"), ("files", "ls", NO_SUCH_ID)):
        p = cli(env, *args)
        assert p.returncode == 1, args
        one_line_error(p, 404)


def test_other_tenants_sandbox_is_404(corrald, sandbox):
    _, other_key = corrald.create_tenant()
    p = cli(corrald.cli_env(other_key), "sandbox", "info", sandbox)
    assert p.returncode == 1
    one_line_error(p, 404)


def test_ended_sandbox_is_409(env):
    sid = cli(env, "sandbox", "create", check=0).stdout.strip()
    cli(env, "sandbox", "kill", sid, check=0)
    p = cli(env, "exec", sid, "--", "true")
    assert p.returncode == 125
    one_line_error(p, 409)
    p = cli(env, "files", "ls", sid)
    assert p.returncode == 1
    one_line_error(p, 409)


def test_unreachable_daemon(corrald):
    env = corrald.cli_env("x", url="http://127.0.0.1:1")
    p = cli(env, "sandbox", "list")
    assert p.returncode == 1
    assert p.stderr.startswith("corral: cannot reach corrald at http://127.0.0.1:1: "), p.stderr
    p = cli(env, "exec", NO_SUCH_ID, "--", "true")
    assert p.returncode == 125 and "cannot reach corrald" in p.stderr


def test_usage_errors(env):
    for args in (("sandbox",), ("sandbox", "frobnicate"), ("sandbox", "create", "--memory", "lots"),
                 ("sandbox", "create", "--bogus"), ("sandbox", "info"), ("sandbox", "timeout", "x", "soon"),
                 ("sandbox", "kill", "--json", "x"), ("files", "ls"), ("files", "ls", "x", "--depth", "0"),
                 ("tenant", "create"), ("key", "create")):
        p = cli(env, *args)
        assert p.returncode == 2, (args, p.stderr)
        assert "usage: corral" in p.stderr, (args, p.stderr)


def test_url_and_key_options_and_unix_socket(corrald, tenant):
    bare = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    p = cli(bare, "--url", corrald.url, "--api-key", tenant.key, "sandbox", "list", "--json", check=0)
    assert "sandboxes" in json.loads(p.stdout)
    p = cli(bare, "sandbox", "list", "--url", corrald.unix_url, "--api-key", tenant.key, "--json", check=0)
    assert "sandboxes" in json.loads(p.stdout)
    cli(corrald.cli_env("wrong"), "sandbox", "list", "--api-key", tenant.key, check=0)  # option wins


# ---- tenants and keys ----

def test_tenant_and_key_commands(admin_env, corrald):
    name = "cli-" + os.urandom(3).hex()
    assert cli(admin_env, "tenant", "create", name, "--max-sandboxes", "1", "--max-memory", "4G",
               check=0).stdout.strip() == name
    tenants = json.loads(cli(admin_env, "tenant", "list", "--json", check=0).stdout)["tenants"]
    t = next(t for t in tenants if t["name"] == name)
    assert t["max_sandboxes"] == 1 and t["max_memory_mb"] == 4096
    assert any(line.split()[0] == name for line in cli(admin_env, "tenant", "list", check=0).stdout.splitlines())

    key = cli(admin_env, "key", "create", name, check=0).stdout.strip()
    assert re.match(r"^ck_[0-9a-f]{48}$", key), key
    tenv = corrald.cli_env(key)
    sid = cli(tenv, "sandbox", "create", check=0).stdout.strip()
    try:
        p = cli(tenv, "sandbox", "create")                      # max_sandboxes 1
        assert p.returncode == 1
        one_line_error(p, 429)
        p = cli(tenv, "tenant", "list")                         # not an admin
        assert p.returncode == 1
        one_line_error(p, 403)
    finally:
        cli(tenv, "sandbox", "kill", sid)
    p = cli(admin_env, "tenant", "create", name)
    assert p.returncode == 1
    one_line_error(p, 409)
    keys = json.loads(cli(admin_env, "key", "list", name, "--json", check=0).stdout)["keys"]
    assert len(keys) == 1
    cli(admin_env, "key", "delete", name, keys[0]["id"], check=0)
    p = cli(tenv, "sandbox", "list")
    assert p.returncode == 1
    one_line_error(p, 401)


def test_e2b_key(admin_env, corrald, tenant):
    key = cli(admin_env, "key", "create", tenant.name, "--e2b", check=0).stdout.strip()
    assert re.match(r"^e2b_[0-9a-f]{40}$", key), key
    cli(corrald.cli_env(key), "sandbox", "list", check=0)
