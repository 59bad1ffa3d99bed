"""E2B's directory watching end to end: envd's WatchDir stream and the
CreateWatcher / GetWatcherEvents / RemoveWatcher calls, spoken over raw HTTP
exactly as the SDK speaks them, against a real corrald and real sandboxes
whose files change through corral's own commands API."""
import http.client
import json
import os
import struct
import time

import pytest

from corrald_harness import Daemon

ENVD_PORT = "49983"
HOME = "/home/user"


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    daemon = Daemon(tmp_path_factory.mktemp("state")).start()
    yield daemon
    for s in daemon.request("GET", "/v1/sandboxes", query={"state": "running"}).json()["sandboxes"]:
        daemon.kill(s["id"])
    daemon.stop()


@pytest.fixture(scope="module")
def sid(d):
    return d.create()


@pytest.fixture(scope="module")
def other(d):
    return d.create()


def envd_headers(d, sid, content_type, extra=None):
    h = {"E2b-Sandbox-Id": sid, "E2b-Sandbox-Port": ENVD_PORT, "Authorization": f"Bearer {d.admin_key}",
         "Content-Type": content_type, "Connect-Protocol-Version": "1"}
    h.update(extra or {})
    return h


def envelope(msg, flags=0):
    data = json.dumps(msg).encode()
    return bytes([flags]) + struct.pack(">I", len(data)) + data


def sh(d, sid, script):
    r = d.run(sid, ["sh", "-c", script])
    assert r["exit_code"] == 0, r
    return r["stdout"]


def fresh_dir(d, sid, name):
    sh(d, sid, f"rm -rf {HOME}/{name} && mkdir -p {HOME}/{name}")
    return f"{HOME}/{name}"


class Stream:
    """One WatchDir call, its enveloped answer read message by message."""

    def __init__(self, d, sid, path, headers=None, **opts):
        self.conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=30)
        self.conn.request("POST", "/filesystem.Filesystem/WatchDir", body=envelope({"path": path, **opts}),
                          headers=envd_headers(d, sid, "application/connect+json", headers))
        self.resp = self.conn.getresponse()
        assert self.resp.status == 200, self.resp.read()
        assert self.resp.getheader("Content-Type", "").startswith("application/connect+json")
        self.ended = None

    def next(self, timeout=15):
        """(flags, message); flags 2 is the end of the stream."""
        self.conn.sock.settimeout(timeout)
        head = self.resp.read(5)
        assert len(head) == 5, head
        (n,) = struct.unpack(">I", head[1:])
        body = self.resp.read(n)
        assert len(body) == n
        return head[0], json.loads(body)

    def events(self, until, timeout=15):
        """Filesystem events until until(events) holds."""
        got, deadline = [], time.time() + timeout
        while not until(got):
            left = deadline - time.time()
            assert left > 0, f"timed out; events so far: {got}"
            flags, msg = self.next(left)
            assert flags == 0, (flags, msg, got)
            if "filesystem" in msg:
                ev = msg["filesystem"]
                got.append(ev)
        return got

    def close(self):
        self.conn.close()


def pairs(events):
    return [(e["name"], e["type"].removeprefix("EVENT_TYPE_").lower()) for e in events]


def saw(*wanted):
    return lambda evs: all(w in pairs(evs) for w in wanted)


def in_order(events, wanted):
    it = iter(pairs(events))
    return all(w in it for w in wanted)


def unary(d, sid, method, body):
    conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=30)
    try:
        conn.request("POST", f"/filesystem.Filesystem/{method}", body=json.dumps(body).encode(),
                     headers=envd_headers(d, sid, "application/json"))
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"{}")
    finally:
        conn.close()


def workers(d, sid):
    """The agent's forked workers in the sandbox (the agent itself is PID 1)."""
    out = sh(d, sid, 'for p in /proc/[0-9]*; do [ "$(cat $p/comm 2>/dev/null)" = corral-agent ] '
                     '&& echo ${p#/proc/}; done; true')
    return [int(p) for p in out.split() if p != "1"]


def wait_no_workers(d, sid, timeout=10):
    deadline = time.time() + timeout
    while (left := workers(d, sid)) and time.time() < deadline:
        time.sleep(0.1)
    return left


# ---- WatchDir ----

def test_watch_dir_reports_changes_by_relative_name(d, sid):
    path = fresh_dir(d, sid, "w1")
    s = Stream(d, sid, "w1")  # relative paths are under the home, as with envd
    try:
        assert s.next() == (0, {"start": {}})
        sh(d, sid, f"cd {path} && echo hello > a.txt && mv a.txt b.txt && chmod 600 b.txt && rm b.txt && "
                   f"chmod 700 {path}")
        evs = s.events(saw((".", "chmod")))
        assert in_order(evs, [("a.txt", "create"), ("a.txt", "write"), ("a.txt", "rename"), ("b.txt", "create"),
                              ("b.txt", "chmod"), ("b.txt", "remove"), (".", "chmod")]), pairs(evs)
        assert all("entry" not in e for e in evs)
    finally:
        s.close()


def test_watch_dir_recursive_follows_new_directories(d, sid):
    path = fresh_dir(d, sid, "w2")
    sh(d, sid, f"mkdir -p {path}/old/deeper")
    deep, flat = Stream(d, sid, path, recursive=True), Stream(d, sid, path)
    try:
        assert deep.next()[1] == {"start": {}} and flat.next()[1] == {"start": {}}
        sh(d, sid, f"cd {path} && echo 1 > old/deeper/x && mkdir new && sleep 0.5 && echo 2 > new/y && "
                   f"mv new moved && sleep 0.5 && echo 3 > moved/z && echo top > top")
        evs = deep.events(saw(("top", "create")))
        got = pairs(evs)
        for want in [("old/deeper/x", "create"), ("old/deeper/x", "write"), ("new", "create"),
                     ("new/y", "create"), ("new", "rename"), ("moved", "create"), ("moved/z", "create")]:
            assert want in got, got
        # A moved directory is reported under its new name only.
        assert not any(n.startswith("new/z") for n, _ in got), got
        evs = flat.events(saw(("top", "create")))
        assert ("new", "create") in pairs(evs) and not any("/" in n for n, _ in pairs(evs)), pairs(evs)
    finally:
        deep.close()
        flat.close()


def test_watch_dir_include_entry(d, sid):
    path = fresh_dir(d, sid, "w3")
    s = Stream(d, sid, path, includeEntry=True)
    try:
        assert s.next()[1] == {"start": {}}
        sh(d, sid, f"printf abc > {path}/f && rm {path}/f")
        evs = s.events(saw(("f", "remove")))
        created = [e for e in evs if e["type"] == "EVENT_TYPE_CREATE"][0]
        if "entry" in created:  # the file may be gone before the agent looks
            assert created["entry"]["name"] == "f" and created["entry"]["path"] == f"{path}/f"
            assert created["entry"]["type"] == "FILE_TYPE_FILE"
        assert "entry" not in [e for e in evs if e["type"] == "EVENT_TYPE_REMOVE"][0]
        sh(d, sid, f"printf abc > {path}/g")
        evs = s.events(saw(("g", "write")))
        written = [e for e in evs if e["type"] == "EVENT_TYPE_WRITE"][0]
        assert written["entry"]["size"] in (0, 3) and written["entry"]["path"] == f"{path}/g", written
    finally:
        s.close()


def test_watch_dir_errors_end_the_stream(d, sid):
    fresh_dir(d, sid, "w4")
    sh(d, sid, f"echo x > {HOME}/w4/file")
    for path, code in [(f"{HOME}/w4/missing", "not_found"), (f"{HOME}/w4/file", "invalid_argument"),
                       ("", "invalid_argument")]:
        s = Stream(d, sid, path)
        try:
            flags, msg = s.next()
            assert flags == 2 and msg["error"]["code"] == code, (path, msg)
            assert msg["error"]["message"]
        finally:
            s.close()


def test_watch_dir_keepalive_and_deadline(d, sid):
    fresh_dir(d, sid, "w5")
    s = Stream(d, sid, "w5", headers={"Keepalive-Ping-Interval": "1", "Connect-Timeout-Ms": "2500"})
    try:
        assert s.next()[1] == {"start": {}}
        t0 = time.time()
        assert s.next(5) == (0, {"keepalive": {}})
        assert 0.7 < time.time() - t0 < 2.5
        while True:
            flags, msg = s.next(5)
            if flags == 2:
                break
            assert msg == {"keepalive": {}}
        assert msg["error"]["code"] == "deadline_exceeded", msg
        assert time.time() - t0 < 4.5
    finally:
        s.close()


def test_watch_dir_worker_ends_with_the_client(d, sid):
    fresh_dir(d, sid, "w6")
    streams = [Stream(d, sid, "w6", recursive=True) for _ in range(3)]
    for s in streams:
        assert s.next()[1] == {"start": {}}
    assert len(workers(d, sid)) >= 3
    for s in streams:
        s.close()
    assert wait_no_workers(d, sid) == []
    # The commands that ran meanwhile were not held up by a worker keeping
    # their pipes open: a fresh stream works as before.
    s = Stream(d, sid, "w6")
    try:
        assert s.next()[1] == {"start": {}}
        sh(d, sid, f"touch {HOME}/w6/again")
        assert ("again", "create") in pairs(s.events(saw(("again", "create"))))
    finally:
        s.close()
    assert wait_no_workers(d, sid) == []


def test_watch_dir_needs_a_visible_sandbox(d, sid):
    conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=30)
    try:
        conn.request("POST", "/filesystem.Filesystem/WatchDir", body=envelope({"path": HOME}),
                     headers=envd_headers(d, "sb_nosuchsandbox00000", "application/connect+json"))
        r = conn.getresponse()
        body = r.read()
        assert r.status != 200 or body[0] == 2, body
    finally:
        conn.close()


# ---- CreateWatcher / GetWatcherEvents / RemoveWatcher ----

def poll_events(d, sid, wid, until, timeout=15):
    got, deadline = [], time.time() + timeout
    while not until(got):
        assert time.time() < deadline, f"timed out; events so far: {got}"
        status, body = unary(d, sid, "GetWatcherEvents", {"watcherId": wid})
        assert status == 200, body
        got += body.get("events", [])
        time.sleep(0.1)
    return got


def test_watcher_collects_until_removed(d, sid, other):
    path = fresh_dir(d, sid, "w7")
    status, body = unary(d, sid, "CreateWatcher", {"path": path, "recursive": True})
    assert status == 200, body
    wid = body["watcherId"]
    assert isinstance(wid, str) and wid
    sh(d, sid, f"cd {path} && mkdir sub && sleep 0.3 && echo x > sub/f && rm sub/f")
    time.sleep(0.3)  # the events are kept while nobody asks
    evs = poll_events(d, sid, wid, saw(("sub/f", "remove")))
    assert in_order(evs, [("sub", "create"), ("sub/f", "create"), ("sub/f", "write"), ("sub/f", "remove")]), \
        pairs(evs)
    # Drained: nothing new, nothing twice.
    status, body = unary(d, sid, "GetWatcherEvents", {"watcherId": wid})
    assert status == 200 and body.get("events", []) == [], body
    # Another sandbox cannot see it.
    for method in ("GetWatcherEvents", "RemoveWatcher"):
        status, body = unary(d, other, method, {"watcherId": wid})
        assert status == 404 and body["code"] == "not_found", body
    assert len(workers(d, sid)) >= 1
    status, body = unary(d, sid, "RemoveWatcher", {"watcherId": wid})
    assert status == 200 and body == {}, body
    assert wait_no_workers(d, sid) == []
    for method in ("GetWatcherEvents", "RemoveWatcher"):
        status, body = unary(d, sid, method, {"watcherId": wid})
        assert status == 404 and body["code"] == "not_found", body


def test_watcher_errors(d, sid):
    status, body = unary(d, sid, "CreateWatcher", {"path": f"{HOME}/no/such/dir"})
    assert status == 404 and body["code"] == "not_found", body
    sh(d, sid, f"echo x > {HOME}/plainfile")
    status, body = unary(d, sid, "CreateWatcher", {"path": f"{HOME}/plainfile"})
    assert status == 400 and body["code"] == "invalid_argument", body
    for method in ("GetWatcherEvents", "RemoveWatcher"):
        status, body = unary(d, sid, method, {"watcherId": "wnope"})
        assert status == 404 and body["code"] == "not_found", body
        status, body = unary(d, sid, method, {})
        assert status == 400 and body["code"] == "invalid_argument", body


def test_watchers_of_an_ended_sandbox_are_freed(d, sid):
    victim = d.create()
    ids = []
    for i in range(3):
        sh(d, victim, f"mkdir -p {HOME}/v{i}")
        status, body = unary(d, victim, "CreateWatcher", {"path": f"{HOME}/v{i}"})
        assert status == 200, body
        ids.append(body["watcherId"])
    pid = d.proc.pid
    threads = len(os.listdir(f"/proc/{pid}/task"))
    assert d.kill(victim).status in (200, 204)
    # Its collectors notice the agent's going on their own...
    deadline = time.time() + 10
    while len(os.listdir(f"/proc/{pid}/task")) > threads - 3 and time.time() < deadline:
        time.sleep(0.1)
    assert len(os.listdir(f"/proc/{pid}/task")) <= threads - 3
    # ...and the next watcher call (of any sandbox) frees what is left of them.
    status, body = unary(d, victim, "GetWatcherEvents", {"watcherId": ids[0]})
    assert status != 200, body
    status, body = unary(d, sid, "GetWatcherEvents", {"watcherId": ids[0]})
    assert status == 404 and body["code"] == "not_found", body


def test_watches_per_sandbox_are_bounded(d, sid):
    """Each watch holds an inotify instance, whose host-wide bound all
    sandboxes share: one sandbox gets at most 32 at once."""
    crowded = d.create()
    streams = []
    try:
        sh(d, crowded, f"mkdir -p {HOME}/c")
        for _ in range(31):
            streams.append(Stream(d, crowded, "c"))
            assert streams[-1].next()[1] == {"start": {}}
        status, body = unary(d, crowded, "CreateWatcher", {"path": "c"})
        assert status == 200, body
        status, over = unary(d, crowded, "CreateWatcher", {"path": "c"})
        assert status == 429 and over["code"] == "resource_exhausted", over
        s = Stream(d, crowded, "c")
        flags, msg = s.next()
        s.close()
        assert flags == 2 and msg["error"]["code"] == "resource_exhausted", msg
        # Other sandboxes are not held back, and an ended watch frees its place.
        status, other_w = unary(d, sid, "CreateWatcher", {"path": HOME})
        assert status == 200, other_w
        assert unary(d, sid, "RemoveWatcher", other_w)[0] == 200
        streams.pop().close()
        deadline = time.time() + 10
        while (status := unary(d, crowded, "CreateWatcher", {"path": "c"})[0]) == 429 and time.time() < deadline:
            time.sleep(0.1)
        assert status == 200
    finally:
        for s in streams:
            s.close()
        assert d.kill(crowded).status in (200, 204)
