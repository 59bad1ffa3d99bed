"""Network policies end to end: `corral run --network ...` and corrald's
`network` (create, PUT, re-adoption, audit, metrics).  The "internet" is
servers this test starts on 127.0.0.2 and 127.0.0.3, reached only through
corral's egress proxy, with names from a resolver file given to the proxy:
no traffic leaves the machine."""
import http.server
import json
import os
import socket
import threading
import time

import pytest

from conftest import corral
from corrald_harness import Daemon
from test_escape import assert_bait_untouched, bait, check_run, run_escape  # noqa: F401 (fixture)

PY = "/usr/bin/python3"


class Upstream:
    """An HTTP server on one loopback address that answers its own name."""

    def __init__(self, addr, name):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = f"hello from {name} {self.path} host={self.headers.get('Host')}".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer((addr, 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Echo:
    """A TCP server on 127.0.0.2 that echoes each line back, for tunnels."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.2", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    @staticmethod
    def serve(c):
        with c:
            while True:
                data = c.recv(4096)
                if not data:
                    return
                c.sendall(data)


class TlsEcho:
    """An HTTPS server on 127.0.0.2 (api.test, tls-other.test) with a test CA,
    answering the request's headers as JSON."""

    def __init__(self, d):
        import ssl
        import subprocess
        ca_key, ca, key, csr, crt, ext = (d / n for n in ("ca.key", "ca.pem", "srv.key", "srv.csr", "srv.pem", "ext"))
        ext.write_text("subjectAltName=DNS:api.test,DNS:tls-other.test\n")
        for cmd in (["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                     "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=corral test upstream CA"],
                    ["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                     "-keyout", key, "-out", csr, "-subj", "/CN=api.test"],
                    ["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
                     "-out", crt, "-days", "2", "-extfile", ext]):
            subprocess.run([str(c) for c in cmd], check=True, capture_output=True)
        self.ca = str(ca)

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.2", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(crt), str(key))
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    allowed, other = Upstream("127.0.0.2", "allowed"), Upstream("127.0.0.3", "other")
    echo = Echo()
    d = tmp_path_factory.mktemp("net")
    tls = TlsEcho(d)
    resolver = d / "hosts"
    resolver.write_text("allowed.test 127.0.0.2\napi.allowed.test 127.0.0.2\nother.test 127.0.0.3\n"
                        "private.test 10.255.0.1\nrebind.test 127.0.0.2 10.255.0.2\n"
                        "api.test 127.0.0.2\ntls-other.test 127.0.0.2\n")
    yield {"allowed": allowed, "other": other, "echo": echo, "tls": tls, "resolver": str(resolver)}
    allowed.close()
    other.close()
    echo.sock.close()
    tls.server.shutdown()


# A client run inside the sandbox: fetch URLs through the proxies the
# environment names, print one JSON line per URL: {"url", "ok", "body"|"error"}.
FETCH = r"""
import json, sys, urllib.request
for url in sys.argv[1:]:
    try:
        body = urllib.request.urlopen(url, timeout=10).read().decode()
        print(json.dumps({"url": url, "ok": True, "body": body}))
    except Exception as e:
        print(json.dumps({"url": url, "ok": False, "error": str(e)}))
"""

# Direct connections that must not get out whatever the policy: TCP to the
# upstream's address (inside, 127.0.0.2 is the sandbox's own loopback), TCP
# and UDP to a public address (no route).
BYPASS = r"""
import json, socket, sys
port = int(sys.argv[1])
out = {}
for name, addr in (("tcp_upstream", ("127.0.0.2", port)), ("tcp_public", ("203.0.113.9", 80))):
    s = socket.socket(); s.settimeout(3)
    try:
        s.connect(addr); out[name] = "connected"
    except OSError as e:
        out[name] = e.__class__.__name__
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    u.sendto(b"x", ("203.0.113.9", 53)); out["udp_public"] = "sent"
except OSError as e:
    out["udp_public"] = e.__class__.__name__
print(json.dumps(out))
"""

# A raw CONNECT through the HTTP proxy: prints the proxy's status line, and
# for a tunnel, what a line sent through it gets back.
CONNECT = r"""
import socket, sys
s = socket.create_connection(("127.0.0.1", 3128), timeout=10)
s.sendall(f"CONNECT {sys.argv[1]} HTTP/1.1\r\nHost: {sys.argv[1]}\r\n\r\n".encode())
head = b""
while b"\r\n\r\n" not in head:
    chunk = s.recv(1)
    if not chunk:
        break
    head += chunk
print(head.split(b"\r\n")[0].decode())
if b" 200 " in head.split(b"\r\n")[0]:
    s.sendall(b"ping\n"); print(s.recv(100).decode().strip())
"""


def run_in(net, *args, code, argv=(), net_log=None):
    env = dict(os.environ, CORRAL_RESOLVER_FILE=net["resolver"])
    extra = ["--net-log", net_log] if net_log else []
    return corral("run", *extra, *args, "--", PY, "-c", code, *argv, env=env, timeout=60)


def lines(p):
    return [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]


# ---- corral run ----

def test_run_none_has_no_proxy(net):
    p = run_in(net, code="import os, socket\nprint(os.environ.get('HTTP_PROXY'))\n"
                         "s = socket.socket()\ntry:\n  s.connect(('127.0.0.1', 3128)); print('open')\n"
                         "except OSError as e: print(e.__class__.__name__)")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["None", "ConnectionRefusedError"]


def test_run_allowlist_allows_listed_names_only(net, tmp_path):
    log = tmp_path / "net.log"
    a, o = net["allowed"].port, net["other"].port
    urls = [f"http://allowed.test:{a}/x", f"http://api.allowed.test:{a}/y", f"http://other.test:{o}/z",
            f"http://private.test:{a}/", f"http://127.0.0.3:{o}/literal"]
    p = run_in(net, "--network", "allowlist", "--allow", "allowed.test", "--allow", "*.allowed.test",
               "--allow", "private.test", "--allow", "127.0.0.2/32", code=FETCH, argv=urls, net_log=str(log))
    assert p.returncode == 0, p.stderr
    got = {r["url"]: r for r in lines(p)}
    assert got[urls[0]]["ok"] and got[urls[0]]["body"] == f"hello from allowed /x host=allowed.test:{a}"
    assert got[urls[1]]["ok"], got[urls[1]]  # wildcard
    for u in urls[2:]:
        assert not got[u]["ok"] and "403" in got[u]["error"], got[u]
    records = [json.loads(line) for line in log.read_text().splitlines()]
    by_dest = {r["destination"]: r for r in records}
    ok = by_dest["allowed.test"]
    assert ok["allowed"] is True and ok["resolved"] == "127.0.0.2" and ok["port"] == a and ok["bytes_down"] > 0
    assert by_dest["other.test"]["allowed"] is False and "not listed" in by_dest["other.test"]["rule"]
    assert by_dest["private.test"]["allowed"] is False and "private" in by_dest["private.test"]["rule"]
    assert by_dest["127.0.0.3"]["allowed"] is False


def test_run_open_still_denies_private_ranges(net):
    o = net["other"].port
    p = run_in(net, "--network", "open", code=FETCH,
               argv=[f"http://other.test:{o}/", f"http://private.test:{o}/", "http://10.1.2.3/"])
    assert p.returncode == 0, p.stderr
    assert all(not r["ok"] and "403" in r["error"] for r in lines(p)), p.stdout


def test_run_dns_rebinding_connects_to_the_checked_address(net):
    # rebind.test answers 127.0.0.2 (listed) then 10.255.0.2 (private): the
    # first fetch goes through, the second is refused, never sent to 10/8.
    a = net["allowed"].port
    url = f"http://rebind.test:{a}/"
    p = run_in(net, "--network", "allowlist", "--allow", "rebind.test", "--allow", "127.0.0.2/32",
               code=FETCH, argv=[url, url])
    first, second = lines(p)
    assert first["ok"] and "hello from allowed" in first["body"], first
    assert not second["ok"] and "403" in second["error"], second


def test_run_connect_checks_host_and_port(net):
    e = net["echo"].port
    p = run_in(net, "--network", "allowlist", "--allow", "allowed.test:443", "--allow", "127.0.0.2/32",
               code=CONNECT, argv=[f"allowed.test:{e}"])
    assert " 403 " in p.stdout.splitlines()[0], p.stdout  # listed name, unlisted port
    p = run_in(net, "--network", "allowlist", "--allow", f"allowed.test:{e}", "--allow", "127.0.0.2/32",
               code=CONNECT, argv=[f"allowed.test:{e}"])
    assert p.stdout.splitlines() == ["HTTP/1.1 200 Connection Established", "ping"], p.stdout


# Mismatches the proxy refuses: a Host header that is not the URI's host, and
# a TLS ClientHello whose SNI is not the CONNECT target.
MISMATCH = r"""
import socket, ssl, sys
port, tls_port = sys.argv[1], sys.argv[2]
s = socket.create_connection(("127.0.0.1", 3128), timeout=10)
s.sendall(f"GET http://allowed.test:{port}/ HTTP/1.1\r\nHost: other.test:{port}\r\n\r\n".encode())
print(s.recv(200).split(b"\r\n")[0].decode())
s = socket.create_connection(("127.0.0.1", 3128), timeout=10)
s.sendall(f"CONNECT api.test:{tls_port} HTTP/1.1\r\nHost: api.test:{tls_port}\r\n\r\n".encode())
print(s.recv(200).split(b"\r\n")[0].decode())
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
try:
    t = ctx.wrap_socket(s, server_hostname="evil.test")
    t.sendall(b"GET / HTTP/1.1\r\nHost: evil.test\r\n\r\n"); print("sni:", t.recv(100)[:12])
except (ssl.SSLError, OSError) as e:
    print("sni: refused")
"""


def test_run_host_and_sni_mismatches_are_refused(net, tmp_path):
    log = tmp_path / "net.log"
    p = run_in(net, "--network", "allowlist", "--allow", "allowed.test", "--allow", "other.test",
               "--allow", "api.test", "--allow", "127.0.0.0/8", code=MISMATCH,
               argv=[str(net["allowed"].port), str(net["tls"].port)], net_log=str(log))
    assert p.stdout.splitlines() == ["HTTP/1.1 403 Forbidden", "HTTP/1.1 200 Connection Established",
                                     "sni: refused"], p.stdout + p.stderr
    rules = [json.loads(line)["rule"] for line in log.read_text().splitlines()]
    assert any("host mismatch" in r for r in rules) and any("sni mismatch" in r for r in rules), rules


def test_escape_suite_with_network_open(net, bait):
    check_run(run_escape(bait, "--network", "open"), bait)


def test_run_bypassing_the_proxy_gets_nowhere(net):
    for mode in ("allowlist", "open"):
        p = run_in(net, "--network", mode, "--allow", "127.0.0.0/8", code=BYPASS, argv=[str(net["echo"].port)])
        r = lines(p)[0]
        assert r["tcp_upstream"] == "ConnectionRefusedError", r  # the sandbox's own loopback
        assert r["tcp_public"] in ("OSError", "TimeoutError") and r["udp_public"] == "OSError", r


def test_run_host_loopback_is_not_reachable_through_the_proxy(net, bait):
    port = bait["listeners"].port
    p = run_in(net, "--network", "open", code=CONNECT, argv=[f"127.0.0.1:{port}"])
    assert " 403 " in p.stdout.splitlines()[0], p.stdout
    p = run_in(net, "--network", "open", code=FETCH, argv=[f"http://localhost:{port}/"])
    assert not lines(p)[0]["ok"]
    assert_bait_untouched(bait)


def test_run_bad_rules_are_refused_before_anything_starts(net):
    for args in (["--network", "sometimes"], ["--network", "allowlist", "--allow", "*.*"],
                 ["--allow", "example.com"], ["--network", "allowlist", "--allow", "10.0.0.1/8"]):
        p = corral("run", *args, "--", "true")
        assert p.returncode == 125 and p.stderr.startswith("corral: "), (args, p.stderr)


def test_run_secret_reaches_only_its_host(net, tmp_path):
    import secrets as pysecrets
    value = "sk-run-" + pysecrets.token_hex(16)
    port = net["tls"].port
    log = tmp_path / "net.log"
    env = dict(os.environ, CORRAL_RESOLVER_FILE=net["resolver"], CORRAL_UPSTREAM_CA_FILE=net["tls"].ca,
               RUN_TOKEN=value)
    script = (f'echo "ph=$RUN_TOKEN"; '
              f'curl -sS --max-time 10 -H "Authorization: $RUN_TOKEN" https://api.test:{port}/; echo; '
              f'curl -sS --insecure --max-time 10 -H "Authorization: $RUN_TOKEN" https://tls-other.test:{port}/; echo; '
              f'cat /proc/[0-9]*/environ 2>/dev/null | tr "\\0" "\\n" | grep -c "{value[:16]}"')
    p = corral("run", "--network", "allowlist", "--allow", "api.test", "--allow", "tls-other.test",
               "--allow", "127.0.0.2", "--secret", "RUN_TOKEN:api.test:Authorization:Bearer {value}",
               "--net-log", str(log), "--", "sh", "-c", script, env=env, timeout=60)
    assert p.returncode == 1, p.stderr  # grep -c found nothing: exit 1
    lines_ = p.stdout.splitlines()
    ph = lines_[0].split("=", 1)[1]
    assert ph.startswith("corral-secret-RUN_TOKEN-") and value not in p.stdout.split("\n", 1)[0]
    assert json.loads(lines_[1])["authorization"] == f"Bearer {value}"
    assert json.loads(lines_[2])["authorization"] == ph
    assert lines_[3] == "0"
    assert value not in log.read_text() and "RUN_TOKEN" in log.read_text()
    # A secret needs a network, and its value comes from corral's environment.
    p = corral("run", "--secret", "RUN_TOKEN:api.test", "--", "true", env=env)
    assert p.returncode == 125 and "--network" in p.stderr
    p = corral("run", "--network", "open", "--secret", "NOT_SET_ANYWHERE:api.test", "--", "true")
    assert p.returncode == 125 and "not set" in p.stderr


RESOLVE = r"""
import json, socket, sys
out = {}
for n in sys.argv[1:]:
    try:
        out[n] = sorted({a[4][0] for a in socket.getaddrinfo(n, 80, proto=socket.IPPROTO_TCP)})
    except socket.gaierror:
        out[n] = None
print(json.dumps(out))
"""


def test_run_dns_answers_only_allowed_names(net):
    p = run_in(net, "--network", "allowlist", "--allow", "allowed.test", "--allow", "private.test",
               "--allow", "127.0.0.2", code=RESOLVE, argv=["allowed.test", "ALLOWED.test.", "other.test",
                                                          "private.test", "nowhere.test"])
    assert lines(p)[0] == {"allowed.test": ["127.0.0.2"], "ALLOWED.test.": ["127.0.0.2"], "other.test": None,
                           "private.test": None, "nowhere.test": None}, p.stdout + p.stderr
    p = run_in(net, code=RESOLVE, argv=["allowed.test"])  # none: no DNS at all
    assert lines(p)[0] == {"allowed.test": None}


def test_daemon_dns_follows_the_policy(d, net):
    sid = d.request("POST", "/v1/sandboxes", body={"network": {"mode": "allowlist", "allow": [
        "allowed.test", "127.0.0.2"]}}).json()["id"]

    def resolve(*names):
        r = d.run(sid, [PY, "-c", RESOLVE, *names])
        return json.loads(r["stdout"])

    assert resolve("allowed.test", "other.test") == {"allowed.test": ["127.0.0.2"], "other.test": None}
    d.request("PUT", f"/v1/sandboxes/{sid}/network", body={"mode": "allowlist", "allow": ["other.test",
                                                                                           "127.0.0.3"]})
    assert resolve("allowed.test", "other.test") == {"allowed.test": None, "other.test": ["127.0.0.3"]}
    d.kill(sid)


def test_escape_suite_with_network_allowlist(net, bait):
    check_run(run_escape(bait, "--network", "allowlist", "--allow", "allowed.test"), bait)


# ---- corrald ----

@pytest.fixture(scope="module")
def d(net, tmp_path_factory):
    daemon = Daemon(tmp_path_factory.mktemp("state"), extra_args=[
        "--resolver-file", net["resolver"], "--upstream-ca-file", net["tls"].ca]).start()
    yield daemon
    for s in daemon.request("GET", "/v1/sandboxes", query={"state": "running"}).json()["sandboxes"]:
        daemon.kill(s["id"])
    daemon.stop()


def fetch(d, sid, *urls):
    r = d.run(sid, [PY, "-c", FETCH, *urls], timeout_ms=60000)
    return [json.loads(line) for line in r["stdout"].splitlines() if line.startswith("{")]


def test_daemon_sandbox_with_allowlist(d, net):
    a, o = net["allowed"].port, net["other"].port
    policy = {"mode": "allowlist", "allow": ["allowed.test", "127.0.0.2/32"]}
    r = d.request("POST", "/v1/sandboxes", body={"network": policy})
    assert r.status == 201, r
    sid = r.json()["id"]
    canonical = {"mode": "allowlist", "allow": ["allowed.test", "127.0.0.2"]}  # a /32 is its address
    assert r.json()["network"] == canonical
    assert d.request("GET", f"/v1/sandboxes/{sid}").json()["network"] == canonical
    env = d.run(sid, "env | grep -i _proxy= | sort")["stdout"]
    assert "HTTP_PROXY=http://127.0.0.1:3128" in env and "ALL_PROXY=socks5h://127.0.0.1:1080" in env
    ok, denied = fetch(d, sid, f"http://allowed.test:{a}/in", f"http://other.test:{o}/out")
    assert ok["ok"] and ok["body"].startswith("hello from allowed /in"), ok
    assert not denied["ok"] and "403" in denied["error"], denied
    # curl through the SOCKS5 proxy too.
    c = d.run(sid, ["curl", "-sS", "--max-time", "10", "--proxy", "socks5h://127.0.0.1:1080",
                    f"http://allowed.test:{a}/socks"])
    assert c["exit_code"] == 0 and c["stdout"].startswith("hello from allowed /socks"), c
    audit = d.request("GET", "/v1/audit", query={"sandbox": sid, "limit": 100}).json()["events"]
    conns = [x for x in audit if x["action"] == "net.connect"]
    assert {(x["destination"], x["allowed"]) for x in conns} >= {("allowed.test", True), ("other.test", False)}
    assert all(x["tenant"] == "admin" or x.get("tenant") for x in conns)
    metrics = d.request("GET", "/metrics").body.decode()
    assert 'corral_egress_connections_total{result="allowed"}' in metrics
    assert 'corral_egress_connections_total{result="denied"}' in metrics
    d.kill(sid)


def test_daemon_default_is_none_and_put_changes_the_policy(d, net):
    a = net["allowed"].port
    sid = d.create()
    assert d.request("GET", f"/v1/sandboxes/{sid}").json()["network"]["mode"] == "none"
    assert "HTTP_PROXY" not in d.run(sid, "env")["stdout"]
    r = d.request("PUT", f"/v1/sandboxes/{sid}/network", body={"mode": "allowlist",
                                                                 "allow": ["allowed.test", "127.0.0.2/32"]})
    assert r.status == 200 and r.json()["mode"] == "allowlist", r
    assert fetch(d, sid, f"http://allowed.test:{a}/later")[0]["ok"]
    r = d.request("PUT", f"/v1/sandboxes/{sid}/network", body={"mode": "none"})
    assert r.status == 200, r
    assert not fetch(d, sid, f"http://allowed.test:{a}/after")[0]["ok"]
    d.kill(sid)


def test_daemon_policy_change_closes_open_connections(d, net):
    e = net["echo"].port
    sid = d.request("POST", "/v1/sandboxes", body={"network": {"mode": "allowlist", "allow": [
        f"allowed.test:{e}", "127.0.0.2/32"]}}).json()["id"]
    # A tunnel that pings once, waits for /tmp/go, then pings again.
    script = CONNECT.replace('print(s.recv(100).decode().strip())',
                             'print(s.recv(100).decode().strip(), flush=True)\n'
                             'import os, time\n'
                             'while not os.path.exists("/tmp/go"): time.sleep(0.05)\n'
                             'try:\n'
                             '    s.sendall(b"again\\n"); print(repr(s.recv(100)))\n'
                             'except OSError as x: print(x.__class__.__name__)')
    r = d.request("POST", f"/v1/sandboxes/{sid}/commands", body={"cmd": [PY, "-c", script, f"allowed.test:{e}"],
                                                                  "background": True})
    pid = r.json()["pid"]
    time.sleep(1.0)
    assert d.request("PUT", f"/v1/sandboxes/{sid}/network", body={"mode": "allowlist",
                                                                   "allow": ["other.test"]}).status == 200
    d.run(sid, "touch /tmp/go")
    out = d.request("GET", f"/v1/sandboxes/{sid}/commands/{pid}").json()
    lines_ = out["stdout"].splitlines()
    assert lines_[:2] == ["HTTP/1.1 200 Connection Established", "ping"], out
    assert lines_[2] in ("b''", "ConnectionResetError", "BrokenPipeError"), out  # closed by the proxy
    d.kill(sid)


def test_daemon_policy_survives_a_restart(d, net):
    a = net["allowed"].port
    sid = d.request("POST", "/v1/sandboxes", body={"network": {"mode": "allowlist", "allow": [
        "allowed.test", "127.0.0.2/32"]}}).json()["id"]
    d.stop()
    d.start()
    assert fetch(d, sid, f"http://allowed.test:{a}/again")[0]["ok"]
    d.kill(sid)


def test_daemon_bad_network_input(d):
    for body in ({"network": {"mode": "sometimes"}}, {"network": {"mode": "allowlist", "allow": ["*.*"]}},
                 {"network": {"mode": "allowlist", "allow": "example.com"}}, {"network": 42},
                 {"network": {"mode": "none", "allow": ["example.com"]}}):
        r = d.request("POST", "/v1/sandboxes", body=body)
        assert r.status == 400 and r.json()["error"]["code"] == "invalid_argument", (body, r)
    sid = d.create()
    assert d.request("PUT", f"/v1/sandboxes/{sid}/network", body={"mode": "bogus"}).status == 400
    d.kill(sid)
    r = d.request("PUT", f"/v1/sandboxes/{sid}/network", body={"mode": "open"})
    assert r.status == 409, r
    assert d.request("PUT", "/v1/sandboxes/sb_nope/network", body={"mode": "open"}).status == 404


def test_daemon_secrets_never_enter_the_sandbox(d, net):
    import secrets as pysecrets
    port = net["tls"].port
    value = "sk-live-" + pysecrets.token_hex(16)
    body = {"network": {"mode": "allowlist", "allow": ["api.test", "tls-other.test", "127.0.0.2"]},
            "secrets": [{"name": "OPENAI_API_KEY", "value": value, "hosts": ["api.test"],
                         "header": "Authorization", "format": "Bearer {value}"}]}
    r = d.request("POST", "/v1/sandboxes", body=body)
    assert r.status == 201, r
    assert value.encode() not in r.body
    sid = r.json()["id"]
    env = d.run(sid, "env")["stdout"]
    assert value not in env
    ph = [line.split("=", 1)[1] for line in env.splitlines() if line.startswith("OPENAI_API_KEY=")][0]
    assert ph.startswith("corral-secret-OPENAI_API_KEY-"), ph

    def curl(host, header, extra=""):
        out = d.run(sid, ["sh", "-c", f'curl -sS {extra} --max-time 10 -H "{header}" https://{host}:{port}/'])
        assert out["exit_code"] == 0, out
        return json.loads(out["stdout"])

    # The listed host gets the value, in the placeholder's place and in the format.
    assert curl("api.test", "Authorization: Bearer $OPENAI_API_KEY")["authorization"] == f"Bearer {value}"
    assert curl("api.test", "Authorization: $OPENAI_API_KEY")["authorization"] == f"Bearer {value}"
    assert curl("api.test", "X-Key: k=$OPENAI_API_KEY")["x-key"] == f"k={value}"
    # Another host (allowed by the policy) only ever sees the placeholder.
    # (not intercepted: its certificate is the test upstream's, which only the proxy trusts)
    got = curl("tls-other.test", "Authorization: Bearer $OPENAI_API_KEY", extra="--insecure")
    assert got["authorization"] == f"Bearer {ph}"
    # Nowhere inside: env of every process, files, the CA bundle.
    # (searched by its first 20 characters, so that the search itself does
    # not put the whole value into the sandbox or the audit log)
    probe = value[:20]
    scan = d.run(sid, ["sh", "-c", f"cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n' | grep -c '{probe}';"
                                   f" grep -rl '{probe}' /home/user /tmp 2>/dev/null | wc -l"])
    assert scan["stdout"].split() == ["0", "0"], scan
    assert "PRIVATE KEY" not in d.run(sid, "cat /home/user/.corral/ca.pem")["stdout"]
    # Nowhere outside: audit, the API, the state directory, the log.
    audit = d.request("GET", "/v1/audit", query={"sandbox": sid}).body
    assert value.encode() not in audit
    conns = [x for x in json.loads(audit)["events"] if x["action"] == "net.connect" and x["destination"] == "api.test"]
    assert conns and all(x.get("intercepted") and x.get("secrets_used") == ["OPENAI_API_KEY"] for x in conns), conns
    assert value.encode() not in d.request("GET", f"/v1/sandboxes/{sid}").body
    for root, _, files in os.walk(d.state_dir):
        for f in files:
            if f.endswith(".sock"):
                continue
            with open(os.path.join(root, f), "rb") as fh:
                assert value.encode() not in fh.read(), f
    assert value not in d.read_log()
    d.kill(sid)


def test_daemon_secrets_need_a_network_and_a_valid_shape(d):
    base = {"name": "K", "value": "v", "hosts": ["api.test"]}
    for body in ({"secrets": [base]}, {"network": "open", "secrets": [{**base, "hosts": []}]},
                 {"network": "open", "secrets": [{**base, "name": "1bad"}]},
                 {"network": "open", "secrets": [{**base, "extra": 1}]}, {"network": "open", "secrets": {}}):
        r = d.request("POST", "/v1/sandboxes", body=body)
        assert r.status == 400, (body, r)
        assert b'"v"' not in r.body


# ---- the CLI and the SDK against corrald ----

def test_cli_and_sdk_set_policies(d, net):
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "sdk", "python"))
    from corral import Sandbox
    a = net["allowed"].port
    env = dict(os.environ, CORRAL_URL=f"http://127.0.0.1:{d.port}", CORRAL_API_KEY=d.admin_key)
    p = corral("sandbox", "create", "--network", "allowlist", "--allow", "allowed.test", "--allow", "127.0.0.2",
               env=env, check=0)
    sid = p.stdout.strip()
    info = corral("sandbox", "info", sid, env=env, check=0).stdout
    assert "network:    allowlist allow allowed.test 127.0.0.2" in info, info
    assert fetch(d, sid, f"http://allowed.test:{a}/cli")[0]["ok"]
    p = corral("sandbox", "network", sid, "none", env=env, check=0)
    assert p.stdout.strip() == "network:    none", p.stdout
    assert not fetch(d, sid, f"http://allowed.test:{a}/cli")[0]["ok"]
    p = corral("sandbox", "network", sid, "sometimes", env=env)
    assert p.returncode != 0 and "mode" in p.stderr, p.stderr
    corral("sandbox", "kill", sid, env=env, check=0)

    sbx = Sandbox.create(network="allowlist", allow=["allowed.test", "127.0.0.2"],
                         api_key=d.admin_key, url=f"http://127.0.0.1:{d.port}")
    try:
        assert sbx.get_info().network == {"mode": "allowlist", "allow": ["allowed.test", "127.0.0.2"]}
        out = sbx.commands.run(f"curl -sS --max-time 10 http://allowed.test:{a}/sdk").stdout
        assert out.startswith("hello from allowed /sdk"), out
        assert sbx.set_network("open") == {"mode": "open", "allow": []}
        assert sbx.get_host(8000) == f"8000-{sbx.sandbox_id}.localhost:{d.port}"
    finally:
        sbx.kill()
    # Secrets through the SDK.
    port = net["tls"].port
    sbx = Sandbox.create(network="allowlist", allow=["api.test", "127.0.0.2"],
                         secrets=[{"name": "SDK_KEY", "value": "sdk-secret-value-1", "hosts": ["api.test"]}],
                         api_key=d.admin_key, url=f"http://127.0.0.1:{d.port}")
    try:
        out = sbx.commands.run(f'curl -sS --max-time 10 -H "X-Key: $SDK_KEY" https://api.test:{port}/').stdout
        assert json.loads(out)["x-key"] == "sdk-secret-value-1"
        assert "sdk-secret-value-1" not in sbx.commands.run("env").stdout
    finally:
        sbx.kill()
