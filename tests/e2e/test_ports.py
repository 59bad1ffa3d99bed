"""Servers inside sandboxes, reached from the host through corrald: listing
listening ports, forwarding by path and by Host ({port}-{id}.localhost), auth
(tenant key, the sandbox's access token, public ports), and errors."""
import json
import time

import pytest

from corrald_harness import Daemon

PY = "/usr/bin/python3"

# A server inside the sandbox that answers what it received.
ECHO_SERVER = r"""
import http.server, json, sys
class H(http.server.BaseHTTPRequestHandler):
    def answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = json.dumps({"method": self.command, "path": self.path, "body": self.rfile.read(n).decode(),
                           "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
        self.send_response(201 if self.command == "POST" else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Served-By", "sandbox")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_GET = do_POST = do_PUT = do_DELETE = answer
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), H).serve_forever()
"""


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    daemon = Daemon(tmp_path_factory.mktemp("state")).start()
    yield daemon
    for s in daemon.request("GET", "/v1/sandboxes", query={"state": "running"}).json()["sandboxes"]:
        daemon.kill(s["id"])
    daemon.stop()


def start_server(d, sid, addr, port, key="admin"):
    r = d.request("POST", f"/v1/sandboxes/{sid}/commands", key=key,
                  body={"cmd": [PY, "-c", ECHO_SERVER, addr, str(port)], "background": True})
    assert r.status == 201, r
    for _ in range(100):
        ports = d.request("GET", f"/v1/sandboxes/{sid}/ports", key=key).json()["ports"]
        if any(p["port"] == port for p in ports):
            return
        time.sleep(0.05)
    raise AssertionError(f"port {port} never listened")


@pytest.fixture(scope="module")
def sid(d):
    s = d.create()
    start_server(d, s, "0.0.0.0", 8000)
    start_server(d, s, "127.0.0.1", 8001)
    return s


def test_ports_lists_what_listens_inside(d, sid):
    ports = {p["port"]: p for p in d.request("GET", f"/v1/sandboxes/{sid}/ports").json()["ports"]}
    assert set(ports) == {8000, 8001}, ports
    assert ports[8000]["address"] == "any" and ports[8001]["address"] == "loopback"
    assert ports[8000]["public"] is False
    assert ports[8000]["url"] == f"http://8000-{sid}.localhost:{d.port}/"


def test_proxy_listeners_are_not_the_sandboxs_ports(d):
    s = d.request("POST", "/v1/sandboxes", body={"network": {"mode": "open"}}).json()["id"]
    assert d.request("GET", f"/v1/sandboxes/{s}/ports").json()["ports"] == []
    d.kill(s)


def test_forward_by_path_keeps_method_path_query_and_body(d, sid):
    r = d.request("POST", f"/v1/sandboxes/{sid}/ports/8000/api/items?x=1&y=%20z", raw=b"hello body",
                  headers={"Content-Type": "text/plain", "X-Custom": "kept"})
    assert r.status == 201, r
    assert r.headers.get("X-Served-By") == "sandbox"
    got = r.json()
    assert got["method"] == "POST" and got["path"] == "/api/items?x=1&y=%20z" and got["body"] == "hello body"
    assert got["headers"]["x-custom"] == "kept"
    # corral's credentials never reach the sandbox's server.
    assert "authorization" not in got["headers"] and "x-api-key" not in got["headers"]
    r = d.request("GET", f"/v1/sandboxes/{sid}/ports/8001")
    assert r.status == 200 and r.json()["path"] == "/", r  # a loopback-only server too


def test_forward_by_host(d, sid):
    host = f"8000-{sid}.localhost:{d.port}"
    r = d.request("GET", "/some/page?q=1", headers={"Host": host})
    assert r.status == 200 and r.json()["path"] == "/some/page?q=1", r
    assert r.json()["headers"]["host"] == host
    # corral's own paths belong to the sandbox's server on a port host.
    r = d.request("GET", "/v1/sandboxes", headers={"Host": host})
    assert r.status == 200 and r.json()["path"] == "/v1/sandboxes", r


def test_auth_key_token_and_public_ports(d, sid):
    host = {"Host": f"8000-{sid}.localhost:{d.port}"}
    assert d.request("GET", "/", headers=host, key=None).status == 401
    assert d.request("GET", f"/v1/sandboxes/{sid}/ports/8000/", key=None).status == 401
    token = d.request("GET", f"/v1/sandboxes/{sid}").json()  # the native API has no token field
    e2b = d.request("GET", f"/sandboxes/{sid}", headers={"X-API-KEY": d.admin_key}, key=None).json()
    r = d.request("GET", "/", headers={**host, "X-Access-Token": e2b["envdAccessToken"]}, key=None)
    assert r.status == 200 and "x-access-token" not in r.json()["headers"], r
    assert d.request("GET", "/", headers={**host, "X-Access-Token": "0" * 64}, key=None).status == 401
    assert token["id"] == sid
    r = d.request("POST", f"/v1/sandboxes/{sid}/ports/8000/public")
    assert r.status == 200 and r.json()["public"] is True, r
    assert d.request("GET", "/", headers=host, key=None).status == 200
    assert {p["port"]: p["public"] for p in d.request("GET", f"/v1/sandboxes/{sid}/ports").json()["ports"]}[8000]
    # Public is per port: 8001 still needs a key.
    assert d.request("GET", "/", headers={"Host": f"8001-{sid}.localhost"}, key=None).status == 401
    assert d.request("DELETE", f"/v1/sandboxes/{sid}/ports/8000/public").json()["public"] is False
    assert d.request("GET", "/", headers=host, key=None).status == 401


def test_another_tenant_cannot_reach_the_port(d, sid):
    key = d.tenant("ports-other")
    assert d.request("GET", f"/v1/sandboxes/{sid}/ports/8000/", key=key).status == 404
    assert d.request("GET", "/", headers={"Host": f"8000-{sid}.localhost"}, key=key).status == 404
    assert d.request("GET", f"/v1/sandboxes/{sid}/ports", key=key).status == 404
    assert d.request("POST", f"/v1/sandboxes/{sid}/ports/8000/public", key=key).status == 404


# A WebSocket-style server inside: answers the upgrade with 101 and the
# RFC 6455 accept key, then echoes bytes back upper-cased.
WS_SERVER = r"""
import base64, hashlib, socket, sys, threading
def serve(c):
    head = b""
    while b"\r\n\r\n" not in head:
        head += c.recv(1)
    key = [l.split(b":", 1)[1].strip() for l in head.split(b"\r\n") if l.lower().startswith(b"sec-websocket-key")][0]
    accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
    c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
    while True:
        data = c.recv(4096)
        if not data:
            return
        c.sendall(data.upper())
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(8)
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


def test_websocket_upgrade_is_relayed(d, sid):
    import base64
    import hashlib
    import os
    import socket
    r = d.request("POST", f"/v1/sandboxes/{sid}/commands", body={"cmd": [PY, "-c", WS_SERVER, "8010"],
                                                                 "background": True})
    assert r.status == 201
    for _ in range(100):
        if any(p["port"] == 8010 for p in d.request("GET", f"/v1/sandboxes/{sid}/ports").json()["ports"]):
            break
        time.sleep(0.05)
    key = base64.b64encode(os.urandom(16))
    s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
    s.sendall(b"GET /chat HTTP/1.1\r\nHost: 8010-" + sid.encode() + b".localhost\r\nUpgrade: websocket\r\n"
              b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key +
              b"\r\nAuthorization: Bearer " + d.admin_key.encode() + b"\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    want = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
    assert b"Sec-WebSocket-Accept: " + want in head, head
    for msg in (b"hello", b"through the relay"):
        s.sendall(msg)
        got = b""
        while len(got) < len(msg):
            got += s.recv(100)
        assert got == msg.upper()
    s.close()


def test_errors(d, sid):
    r = d.request("GET", f"/v1/sandboxes/{sid}/ports/8002/")
    assert r.status == 502 and r.json()["error"]["code"] == "bad_gateway", r
    assert d.request("POST", f"/v1/sandboxes/{sid}/ports/70000/public").status == 400
    assert d.request("GET", "/v1/sandboxes/sb_nope/ports/8000/").status == 404
    s = d.create()
    start_server(d, s, "0.0.0.0", 9000)
    d.kill(s)
    r = d.request("GET", f"/v1/sandboxes/{s}/ports/9000/")
    assert r.status == 409, r
    assert d.request("GET", "/", headers={"Host": f"9000-{s}.localhost"}).status == 409
