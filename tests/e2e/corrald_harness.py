"""A real corrald for end-to-end tests: started on a free port with a temp
state dir, driven over HTTP with the standard library only."""
import http.client
import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, os.environ.get("CORRAL_BUILD", "build"))
CORRALD = os.path.join(BUILD, "bin", "corrald")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<{self.status} {self.body[:300]!r}>"


class Daemon:
    """One corrald process; restartable on the same state dir."""

    def __init__(self, state_dir, extra_args=()):
        self.state_dir = str(state_dir)
        os.makedirs(self.state_dir, exist_ok=True)
        self.port = free_port()
        self.admin_key = "ck_admin_" + secrets.token_hex(16)
        self.extra_args = list(extra_args)
        self.proc = None
        self.log_path = os.path.join(self.state_dir, "..", f"corrald-{self.port}.log")

    # -- process --
    def start(self):
        env = dict(os.environ, CORRAL_ADMIN_KEY=self.admin_key)
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [CORRALD, "--listen", f"127.0.0.1:{self.port}", "--state-dir", self.state_dir, "--foreground",
             *self.extra_args], env=env, stdout=self.log, stderr=self.log)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                if self.request("GET", "/health", key=None).status == 200:
                    return self
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"corrald exited with {self.proc.returncode}: {self.read_log()}")
            time.sleep(0.02)
        raise RuntimeError("corrald did not come up: " + self.read_log())

    def read_log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")[-4000:]
        except OSError:
            return ""

    def pids(self):
        """corrald and its spawner."""
        out = subprocess.run(["pgrep", "-f", f"corrald --listen 127.0.0.1:{self.port}"], capture_output=True,
                             text=True).stdout.split()
        return [int(p) for p in out]

    def kill9(self):
        for p in self.pids():
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "log", None):
            self.log.close()
        # Under `make asan` a sanitizer report in the daemon's log fails the test.
        log = self.read_log()
        assert "Sanitizer" not in log and "runtime error:" not in log, log

    # -- HTTP --
    def request(self, method, path, body=None, key="admin", headers=None, raw=None, query=None, timeout=120):
        if query:
            path += "?" + urllib.parse.urlencode(query)
        h = dict(headers or {})
        if key == "admin":
            key = self.admin_key
        if key:
            h.setdefault("Authorization", f"Bearer {key}")
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=data, headers=h)
            r = conn.getresponse()
            return Response(r.status, dict(r.getheaders()), r.read())
        finally:
            conn.close()

    def stream(self, method, path, body=None, key="admin"):
        """POST/GET with Accept: application/x-ndjson; returns the list of events."""
        r = self.request(method, path, body=body, key=key, headers={"Accept": "application/x-ndjson"})
        assert r.status == 200, r
        assert r.headers.get("Content-Type", "").startswith("application/x-ndjson"), r.headers
        return [json.loads(line) for line in r.body.decode().splitlines() if line.strip()]

    # -- conveniences --
    def create(self, key="admin", **body):
        r = self.request("POST", "/v1/sandboxes", body=body, key=key)
        assert r.status == 201, r
        return r.json()["id"]

    def run(self, sid, cmd, key="admin", **kw):
        r = self.request("POST", f"/v1/sandboxes/{sid}/commands", body={"cmd": cmd, **kw}, key=key)
        assert r.status == 200, r
        return r.json()

    def kill(self, sid, key="admin"):
        return self.request("DELETE", f"/v1/sandboxes/{sid}", key=key)

    def tenant(self, name, **quotas):
        r = self.request("POST", "/v1/tenants", body={"name": name, **quotas})
        assert r.status == 201, r
        r = self.request("POST", f"/v1/tenants/{name}/keys", body={})
        assert r.status == 201, r
        return r.json()["key"]


def running_agents():
    """Live agents (zombies waiting for init to reap them are gone already)."""
    out = subprocess.run(["pgrep", "-x", "corral-agent"], capture_output=True, text=True).stdout.split()
    live = set()
    for p in out:
        try:
            with open(f"/proc/{p}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                    live.add(int(p))
        except OSError:
            pass
    return live


def box_cgroups():
    """Every box-* cgroup directory on this host (v1 controllers and v2)."""
    found = []
    for dirpath, dirnames, _ in os.walk("/sys/fs/cgroup"):
        for d in dirnames:
            if d.startswith("box-sb_"):
                found.append(os.path.join(dirpath, d))
        # do not descend into sandboxes' own trees
        dirnames[:] = [d for d in dirnames if not d.startswith("box-")]
    return found
