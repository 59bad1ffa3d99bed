"""A real corrald for the end-to-end tests of its clients (the CLI and the SDK).

Import the fixtures into a test module (`from daemon import corrald, tenant`):

- `corrald` (module scope): build/bin/corrald started on a free port with a
  temporary state dir and a random admin key, stopped with SIGTERM afterwards.
- `tenant` (module scope): a fresh tenant and one of its keys.

Tests that use them are skipped only while build/bin/corrald does not exist.
CORRALD=/path/to/corrald overrides the binary (e.g. an ASan build).
"""
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, os.environ.get("CORRAL_BUILD", "build"))
CORRALD = os.environ.get("CORRALD") or os.path.join(BUILD, "bin", "corrald")
CORRAL = os.path.join(BUILD, "bin", "corral")
SDK_DIR = os.path.join(ROOT, "sdk", "python")

needs_corrald = pytest.mark.skipif(not os.access(CORRALD, os.X_OK),
                                   reason=f"{CORRALD} is not built yet")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    """A running corrald: its URLs, admin key and state dir, plus admin helpers."""

    def __init__(self, state_dir):
        self.state_dir = state_dir
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.socket = os.path.join(state_dir, "corrald.sock")
        self.unix_url = f"unix:{self.socket}"
        self.admin_key = "adm_" + secrets.token_hex(16)
        self.log_path = os.path.join(state_dir, "corrald.log")
        self.proc = None

    def start(self, timeout=30):
        env = dict(os.environ, CORRAL_ADMIN_KEY=self.admin_key)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [CORRALD, "--listen", f"127.0.0.1:{self.port}", "--state-dir", self.state_dir,
                 "--foreground"], env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"corrald exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"corrald did not answer /health within {timeout}s:\n{self.log_tail()}")

    def kill_all_sandboxes(self):
        """DELETE every running sandbox: corrald keeps them across a SIGTERM
        (to re-adopt them), and nobody would end them after the tests."""
        status, body = self.api("GET", "/v1/sandboxes?state=running")
        for sb in (body or {}).get("sandboxes", []) if status == 200 else []:
            self.api("DELETE", f"/v1/sandboxes/{sb['id']}")

    def stop(self, timeout=30):
        """Kill the sandboxes left, then SIGTERM and wait; SIGKILL (and fail)
        if corrald does not stop in time."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.kill_all_sandboxes()
        except OSError:
            pass
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"corrald ignored SIGTERM for {timeout}s:\n{self.log_tail()}")

    def log_tail(self, n=4000):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def api(self, method, path, body=None, key=None):
        """(status, decoded JSON or None) of a request with the admin key (or `key`)."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {key or self.admin_key}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                raw, status = r.read(), r.status
        except urllib.error.HTTPError as e:
            raw, status = e.read(), e.code
        return status, (json.loads(raw) if raw.strip() else None)

    def create_tenant(self, name=None, **quotas):
        """A new tenant (random name unless given) and a key of it: (name, key)."""
        name = name or "t-" + secrets.token_hex(4)
        status, body = self.api("POST", "/v1/tenants", dict(name=name, **quotas))
        assert status == 201, (status, body)
        status, body = self.api("POST", f"/v1/tenants/{name}/keys", {})
        assert status == 201, (status, body)
        return name, body["key"]

    def cli_env(self, key, url=None):
        """Environment for a `corral` subprocess talking to this daemon with `key`."""
        return dict(os.environ, CORRAL_URL=url or self.url, CORRAL_API_KEY=key)


class Tenant:
    def __init__(self, daemon, name, key):
        self.daemon, self.name, self.key = daemon, name, key


@pytest.fixture(scope="module")
def corrald():
    if not os.access(CORRALD, os.X_OK):
        pytest.skip(f"{CORRALD} is not built yet")
    state_dir = tempfile.mkdtemp(prefix="corrald-test-")
    d = Daemon(state_dir).start()
    try:
        yield d
    finally:
        try:
            d.stop()
        finally:
            shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def tenant(corrald):
    name, key = corrald.create_tenant()
    return Tenant(corrald, name, key)
