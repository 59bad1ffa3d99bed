#!/usr/bin/python3
"""Egress proxy benchmark: what corral's host-side proxy adds to a sandbox's
HTTP requests, in latency per request and in download throughput.

An HTTP server on 127.0.0.2 (a thread of this script) answers a small body
and a 64 MiB one; a resolver file maps `bench.test` to it (CORRAL_RESOLVER_FILE,
no DNS).  The same client code runs twice in this one run: on the host,
straight to 127.0.0.2 (the baseline), and inside `corral run --network
allowlist --allow bench.test --allow 127.0.0.2`, where its only way out is the
proxy (HTTP_PROXY is set there).  Each of the N sequential GETs is a new
connection (urllib, as most tools do), timed from the request to the last
byte.  The added latency is the proxied percentile minus the direct one (the
samples are not paired).  Standard library only.  Exit status 0 whether or
not the numbers are good (a benchmark, not a test); 1 if a run fails.
"""
import argparse
import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import daemon_bench as db  # noqa: E402

START, END = "<!-- net-bench:start -->", "<!-- net-bench:end -->"
SMALL = b"x" * 100
CHUNK = b"\0" * (1 << 20)

# The client, run as `python3 -c CLIENT BASE_URL N BIG_MIB ROUNDS`: urllib
# takes the proxy from HTTP_PROXY inside the sandbox; on the host the
# environment is cleared of proxies so that it connects directly.
CLIENT = r"""
import json, sys, time, urllib.request
base, n, big, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
opener = urllib.request.build_opener()
def get(path, chunk=1 << 20):
    got = 0
    with opener.open(base + path, timeout=60) as r:
        while True:
            b = r.read(chunk)
            if not b:
                return got
            got += len(b)
for _ in range(30):
    get("/small")
lat = []
for _ in range(n):
    t = time.perf_counter()
    if get("/small") != 100:
        sys.exit("short answer")
    lat.append((time.perf_counter() - t) * 1000)
mibs = []
for _ in range(rounds):
    t = time.perf_counter()
    if get("/big") != big << 20:
        sys.exit("short download")
    mibs.append(big / (time.perf_counter() - t))
print(json.dumps({"latency_ms": lat, "mib_s": mibs}))
"""


class Handler(http.server.BaseHTTPRequestHandler):
    big_mib = 64

    def do_GET(self):
        big = self.path == "/big"
        self.send_response(200)
        self.send_header("Content-Length", str(self.big_mib << 20 if big else len(SMALL)))
        self.end_headers()
        if not big:
            self.wfile.write(SMALL)
            return
        for _ in range(self.big_mib):
            self.wfile.write(CHUNK)

    def log_message(self, *a):
        pass


def start_server(big_mib):
    Handler.big_mib = big_mib
    server = http.server.ThreadingHTTPServer(("127.0.0.2", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def run_client(argv, env, what):
    p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
    if p.returncode != 0:
        raise RuntimeError(f"{what}: exit {p.returncode}: {p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def measure(corral, port, n, big_mib, rounds):
    """Rounds that alternate direct and proxied runs (n / rounds requests and
    one download each), so that a drift of the machine hits both alike."""
    host_env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    direct, proxied = {"latency_ms": [], "mib_s": []}, {"latency_ms": [], "mib_s": []}
    with tempfile.NamedTemporaryFile("w", prefix="corral-bench-resolver-") as f:
        f.write("bench.test 127.0.0.2\n")
        f.flush()
        env = dict(host_env, CORRAL_RESOLVER_FILE=f.name)
        for i in range(rounds):
            args = [str(n // rounds + (i < n % rounds)), str(big_mib), "1"]
            d = run_client(["/usr/bin/python3", "-c", CLIENT, f"http://127.0.0.2:{port}", *args], host_env, "direct")
            p = run_client([corral, "run", "--no-tty", "--timeout", "15m", "--network", "allowlist",
                            "--allow", "bench.test", "--allow", "127.0.0.2", "--",
                            "/usr/bin/python3", "-c", CLIENT, f"http://bench.test:{port}", *args],
                           env, "through the proxy")
            for k in direct:
                direct[k] += d[k]
                proxied[k] += p[k]
    return direct, proxied


def rows_of(direct, proxied, big_mib):
    pct, med = db.pct, (lambda v: db.pct(v, 50))
    d, p = direct["latency_ms"], proxied["latency_ms"]
    dt, pt = med(direct["mib_s"]), med(proxied["mib_s"])
    return [
        ("small GET, new connection each, direct (p50 / p99)", f"{pct(d, 50):.3f} / {pct(d, 99):.3f} ms", ""),
        ("small GET, new connection each, through the proxy (p50 / p99)",
         f"{pct(p, 50):.3f} / {pct(p, 99):.3f} ms", ""),
        ("added latency per request (p50 / p99)",
         f"{pct(p, 50) - pct(d, 50):.3f} / {pct(p, 99) - pct(d, 99):.3f} ms", ""),
        (f"{big_mib} MiB download, direct (median)", f"{dt:.0f} MiB/s", ""),
        (f"{big_mib} MiB download, through the proxy (median)", f"{pt:.0f} MiB/s ({pt / dt:.0%} of direct)", ""),
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corral", default=os.path.join(HERE, "..", "build", "bin", "corral"))
    ap.add_argument("-n", type=int, default=300, help="sequential small requests (default 300)")
    ap.add_argument("--big-mib", type=int, default=64, help="size of the download (default 64 MiB)")
    ap.add_argument("--rounds", type=int, default=5,
                    help="alternating direct/proxied rounds, one download each (default 5; median reported)")
    ap.add_argument("--write-readme", action="store_true", help="update the table in bench/README.md")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("net_bench: run as root (corral run creates namespaces and cgroups)", file=sys.stderr)
        return 2
    server = start_server(args.big_mib)
    try:
        direct, proxied = measure(os.path.abspath(args.corral), server.server_address[1], args.n,
                                  args.big_mib, args.rounds)
    except (RuntimeError, ValueError, subprocess.TimeoutExpired) as e:
        print(f"net_bench: {e}", file=sys.stderr)
        return 1
    finally:
        server.shutdown()
        server.server_close()
    text = db.report(rows_of(direct, proxied, args.big_mib),
                     f"{args.n} sequential GETs of {len(SMALL)} bytes and {args.rounds} downloads of "
                     f"{args.big_mib} MiB each way, in {args.rounds} alternating rounds; server and client "
                     f"in Python on the same host.")
    print(text)
    if args.write_readme:
        db.write_readme(START, END, "Egress proxy", "net_bench.py", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
