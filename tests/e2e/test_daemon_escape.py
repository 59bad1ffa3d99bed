"""The escape suite inside a corrald sandbox, and attacks on its agent (PID 1):
the agent runs with the sandbox user's uid, so it must be out of reach of
the commands all the same."""
import os

import pytest

from corrald_harness import Daemon
from test_escape import ESCAPE, MIN_CHECKS, assert_bait_untouched, bait, parse_tap  # noqa: F401 (fixture)


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    daemon = Daemon(tmp_path_factory.mktemp("state")).start()
    yield daemon
    for s in daemon.request("GET", "/v1/sandboxes", query={"state": "running"}).json()["sandboxes"]:
        daemon.kill(s["id"])
    daemon.stop()


def upload_escape(d, sid):
    with open(ESCAPE, "rb") as f:
        r = d.request("PUT", f"/v1/sandboxes/{sid}/files", query={"path": "/tmp/escape", "mode": "0755"}, raw=f.read())
    assert r.status == 201, r


def test_escape_suite_in_a_daemon_sandbox(d, bait):
    sid = d.create()
    upload_escape(d, sid)
    env = {"ESCAPE_HOST_SECRET": bait["secret"], "ESCAPE_HOST_PID": str(bait["sleeper"].pid),
           "ESCAPE_HOST_PORT": str(bait["listeners"].port), "ESCAPE_ABSTRACT": bait["listeners"].abstract_name}
    # The daemon hands a command no host fd: the leaked-fd check has nothing
    # to find.  tmp_private expects an empty /tmp, and the binary had to be
    # uploaded there: the same fact is checked directly below.
    skip = {"leaked_fd", "tmp_private"}
    names = [n for n in os.popen(f"{ESCAPE} --list").read().split() if n not in skip]
    assert d.run(sid, "ls -A /tmp")["stdout"] == "escape\n"
    r = d.run(sid, ["/tmp/escape", *names], env=env, timeout_ms=120000, max_output=8 << 20)
    plan, results = parse_tap(r["stdout"])
    failed = [f"{name}: {detail}" for ok, _, name, detail in results if not ok]
    assert plan is not None and plan >= MIN_CHECKS - 2, r["stdout"][-2000:] + r["stderr"][-2000:]
    assert len(results) == plan and not failed, "\n".join(failed) + r["stderr"][-2000:]
    assert r["exit_code"] == 0, r
    assert_bait_untouched(bait)
    d.kill(sid)


ATTACKS = {
    # PID 1 is not dumpable: no ptrace, no /proc/1/mem, environ, fds or root.
    "ptrace": "python3 -c 'import ctypes; l=ctypes.CDLL(None); print(l.ptrace(16, 1, 0, 0))'",
    "mem": "cat /proc/1/mem",
    "environ": "cat /proc/1/environ",
    "fds": "ls /proc/1/fd",
    "root": "ls /proc/1/root/",
    "exe": "cat /proc/1/exe > /dev/null",
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_agent_is_out_of_reach(d, attack):
    sid = d.create()
    r = d.run(sid, ATTACKS[attack])
    if attack == "ptrace":
        assert r["stdout"].strip() == "-1", r
    else:
        assert r["exit_code"] != 0, r
    d.kill(sid)


def test_signals_do_not_kill_the_agent(d):
    sid = d.create()
    r = d.run(sid, "kill -9 1; kill -TERM 1; kill -STOP 1; kill -INT -1; echo sent")
    assert "sent" in r["stdout"] or r["reason"] == "signaled", r
    # The agent (and so the sandbox) is still there and serves.
    assert d.run(sid, "echo alive")["stdout"] == "alive\n"
    assert d.request("GET", f"/v1/sandboxes/{sid}").json()["state"] == "running"
    d.kill(sid)


def test_the_agent_socket_is_not_reachable_inside(d):
    sid = d.create()
    r = d.run(sid, "ls -la /.corral/; ls /run/corral 2>&1; find / -xdev -type s 2>/dev/null | head")
    assert "corral-agent" in r["stdout"]
    assert ".sock" not in r["stdout"], r
    # The agent binary is read-only inside.
    r = d.run(sid, "echo x > /.corral/corral-agent")
    assert r["exit_code"] != 0
    d.kill(sid)


def test_escape_suite_inside_a_code_context(d, bait):
    """The contexts of the code interpreter are commands of the sandbox:
    the suite, started from a (pre-started, pooled) Python context, fails
    every attempt too."""
    sid = d.create()
    upload_escape(d, sid)
    env = {"ESCAPE_HOST_SECRET": bait["secret"], "ESCAPE_HOST_PID": str(bait["sleeper"].pid),
           "ESCAPE_HOST_PORT": str(bait["listeners"].port), "ESCAPE_ABSTRACT": bait["listeners"].abstract_name}
    # kill_all signals every process of the sandbox user: the interpreter that
    # started the suite too, as user code can.  It runs in the test above.
    skip = {"leaked_fd", "tmp_private", "kill_all"}
    names = [n for n in os.popen(f"{ESCAPE} --list").read().split() if n not in skip]
    code = ("import subprocess\n"
            f"p = subprocess.run(['/tmp/escape', *{names!r}], capture_output=True, text=True, env={{**__import__('os').environ, **{env!r}}})\n"
            "print(p.stdout)\n"
            "p.returncode")
    r = d.request("POST", f"/v1/sandboxes/{sid}/execute", body={"code": code, "timeout_ms": 120000,
                                                               "max_output": 8 << 20})
    assert r.status == 200, r
    res = r.json()
    out = "".join(res["logs"]["stdout"])
    plan, results = parse_tap(out)
    failed = [f"{name}: {detail}" for ok, _, name, detail in results if not ok]
    assert plan is not None and plan >= MIN_CHECKS - 3, (out[-2000:], res)
    assert len(results) == plan and not failed, "\n".join(failed)
    assert res["results"][0]["text"] == "0", res
    assert_bait_untouched(bait)
    d.kill(sid)
