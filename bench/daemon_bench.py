#!/usr/bin/python3
"""corrald benchmark: create -> first command output latency (sequential and
concurrent), create-exec-kill cycles per second, host memory per idle sandbox.

Starts its own corrald (free port, temp state dir) and talks to it over HTTP
with keep-alive connections, one per client thread, as an SDK would.  The
latency of one sample is: POST /v1/sandboxes, then POST .../commands with
`echo hi` and Accept: application/x-ndjson, until the first stdout event has
arrived.  Standard library only.  Exit status 0 whether or not the targets
are met (a benchmark, not a test); 1 if a request fails.
"""
import argparse
import concurrent.futures
import datetime
import http.client
import json
import os
import platform
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
START, END = "<!-- daemon-bench:start -->", "<!-- daemon-bench:end -->"
TARGETS = {"p50_32": 10.0, "p99_32": 50.0, "cycles": 200.0, "idle_mib": 2.0}


class Client:
    def __init__(self, port, key):
        self.port, self.key = port, key
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(self, method, path, body=None, ndjson=False):
        h = {"Authorization": f"Bearer {self.key}"}
        if body is not None:
            h["Content-Type"] = "application/json"
        if ndjson:
            h["Accept"] = "application/x-ndjson"
        self.conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=h)
        return self.conn.getresponse()

    def create(self):
        r = self.call("POST", "/v1/sandboxes", {"timeout_s": 600})
        data = r.read()
        if r.status != 201:
            raise RuntimeError(f"create: {r.status} {data[:200]!r}")
        return json.loads(data)["id"]

    def first_output(self, sid):
        """Run `echo hi`; returns when the first stdout event is in, then drains."""
        r = self.call("POST", f"/v1/sandboxes/{sid}/commands", {"cmd": ["echo", "hi"]}, ndjson=True)
        if r.status != 200:
            raise RuntimeError(f"exec: {r.status} {r.read()[:200]!r}")
        while True:
            line = r.readline()
            kind = json.loads(line).get("type") if line else None
            if kind != "start":
                break
        t = time.perf_counter()
        if kind != "stdout":
            raise RuntimeError(f"first output event: {line!r}")
        r.read()
        return t

    def kill(self, sid):
        r = self.call("DELETE", f"/v1/sandboxes/{sid}")
        r.read()
        if r.status != 204:
            raise RuntimeError(f"kill: {r.status}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_daemon(corrald, state, port, key, pool):
    env = dict(os.environ, CORRAL_ADMIN_KEY=key)
    p = subprocess.Popen([corrald, "--listen", f"127.0.0.1:{port}", "--state-dir", state, "--socket", "",
                          "--pool", str(pool)],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(500):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                return p
        except OSError:
            time.sleep(0.01)
    p.kill()
    raise RuntimeError("corrald did not start")


def sample(client):
    t0 = time.perf_counter()
    sid = client.create()
    t1 = client.first_output(sid)
    client.kill(sid)
    return (t1 - t0) * 1000


def pct(values, q):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q / 100 * (len(v) - 1))))]


def latency(port, key, clients, per_client):
    def worker(_):
        c = Client(port, key)
        return [sample(c) for _ in range(per_client)]

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        out = [ms for chunk in pool.map(worker, range(clients)) for ms in chunk]
    return out


def pool_ready(port, key):
    c = Client(port, key)
    text = c.call("GET", "/metrics").read().decode()
    for line in text.splitlines():
        if line.startswith("corral_pool_ready "):
            return int(line.split()[1])
    return 0


def burst(port, key, clients, pool, rounds):
    """`clients` creates at the same instant, the pool full beforehand."""
    import threading
    out = []
    for _ in range(rounds):
        deadline = time.time() + 60
        while pool_ready(port, key) < min(pool, clients) and time.time() < deadline:
            time.sleep(0.05)
        gate = threading.Barrier(clients)

        def worker(_):
            c = Client(port, key)
            gate.wait()
            t0 = time.perf_counter()
            sid = c.create()
            t1 = c.first_output(sid)
            return (t1 - t0) * 1000, sid

        with concurrent.futures.ThreadPoolExecutor(clients) as p:
            done = list(p.map(worker, range(clients)))
        out += [ms for ms, _ in done]
        killer = Client(port, key)
        for _, sid in done:
            killer.kill(sid)
    return out


def cycles_per_second(port, key, clients, total):
    def worker(n):
        c = Client(port, key)
        for _ in range(n):
            sid = c.create()
            c.first_output(sid)
            c.kill(sid)

    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(worker, [total // clients] * clients))
    return (total // clients * clients) / (time.perf_counter() - t0)


def private_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return sum(int(fields[k].split()[0]) for k in ("Private_Clean", "Private_Dirty"))
    except (OSError, KeyError, ValueError):
        return 0


def descendants(pid):
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True).stdout
    children = {}
    for line in out.splitlines():
        p, pp = map(int, line.split())
        children.setdefault(pp, []).append(p)
    seen, todo = set(), [pid]
    while todo:
        p = todo.pop()
        for c in children.get(p, []):
            if c not in seen:
                seen.add(c)
                todo.append(c)
    return seen


def idle_memory(port, key, daemon_pid, n):
    """Private memory the host spends per idle sandbox: the agents' own
    private pages plus the daemon's growth, divided by n; and what the
    kernel charges to each sandbox's cgroup (page tables, tmpfs, ...)."""
    c = Client(port, key)
    daemon_before = sum(private_kib(p) for p in {daemon_pid} | descendants(daemon_pid))
    ids = [c.create() for _ in range(n)]
    for sid in ids:
        c.first_output(sid)
    time.sleep(0.5)
    agents = [int(p) for p in subprocess.run(["pgrep", "-x", "corral-agent"], capture_output=True,
                                               text=True).stdout.split()]
    wanted = {f"box-{sid}" for sid in ids}

    def ours(pid):
        try:
            with open(f"/proc/{pid}/cgroup") as f:
                return any(part in wanted for part in f.read().replace("\n", "/").split("/"))
        except OSError:
            return False

    mine = [p for p in agents if ours(p)]
    agent_kib = sum(private_kib(p) for p in mine)
    daemon_after = sum(private_kib(p) for p in {daemon_pid} | descendants(daemon_pid) if p not in agents)
    charged = []
    for sid in ids:
        for base in ("/sys/fs/cgroup/memory", "/sys/fs/cgroup"):
            found = subprocess.run(["find", base, "-maxdepth", "6", "-name", f"box-{sid}"], capture_output=True,
                                   text=True).stdout.split()
            if found:
                for name in ("memory.usage_in_bytes", "memory.current"):
                    path = os.path.join(found[0], name)
                    if os.path.exists(path):
                        charged.append(int(open(path).read()) / 1024)
                break
    for sid in ids:
        c.kill(sid)
    per = (agent_kib + max(0, daemon_after - daemon_before)) / n / 1024
    return per, agent_kib / max(1, len(mine)) / 1024, (statistics.mean(charged) / 1024 if charged else None)


def report(rows, what):
    """The markdown table of (measure, result, target) rows, with the machine."""
    table = ["| measure | result | target |", "|---|---|---|"] + [f"| {a} | {b} | {c} |" for a, b, c in rows]
    head = (f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d}, {platform.node()}, kernel "
            f"{platform.release()}, {os.cpu_count()} CPUs; {what}")
    return head + "\n\n" + "\n".join(table) + "\n"


def write_readme(start, end, title, script, text):
    """Replace the section between the markers of bench/README.md (or add it)."""
    path = os.path.join(HERE, "README.md")
    with open(path) as f:
        doc = f.read()
    if start in doc:
        pre, rest = doc.split(start, 1)
        doc = pre + start + "\n" + text + end + rest.split(end, 1)[1]
    else:
        doc += f"\n## {title}\n\n`make bench` also runs `bench/{script}`.\n\n{start}\n{text}{end}\n"
    with open(path, "w") as f:
        f.write(doc)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corrald", default=os.path.join(HERE, "..", "build", "bin", "corrald"))
    ap.add_argument("--quick", action="store_true", help="fewer samples")
    ap.add_argument("--pool", type=int, default=4, help="corrald --pool (default 4, its default)")
    ap.add_argument("--write-readme", action="store_true", help="update the table in bench/README.md")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("daemon_bench: run as root (corrald creates namespaces and cgroups)", file=sys.stderr)
        return 2
    n_seq, per_client, total, idle = (30, 3, 128, 30) if args.quick else (200, 10, 1024, 100)
    state = tempfile.mkdtemp(prefix="corral-bench-")
    port, key = free_port(), "bench_" + secrets.token_hex(8)
    daemon = start_daemon(os.path.abspath(args.corrald), state, port, key, args.pool)
    try:
        warm = Client(port, key)
        for _ in range(5):
            sample(warm)
        seq = latency(port, key, 1, n_seq)
        conc = latency(port, key, 32, per_client)
        bursts = burst(port, key, 32, args.pool, 3 if args.quick else 5)
        cps = cycles_per_second(port, key, 16, total)
        idle_mib, agent_mib, charged_mib = idle_memory(port, key, daemon.pid, idle)
    finally:
        # corrald keeps running sandboxes across a SIGTERM (the next start
        # re-adopts them): end what a failed run left before stopping it.
        try:
            c = Client(port, key)
            for sb in json.loads(c.call("GET", "/v1/sandboxes?state=running").read())["sandboxes"]:
                c.kill(sb["id"])
        except (OSError, RuntimeError, ValueError, KeyError):
            pass
        daemon.terminate()
        daemon.wait()
        shutil.rmtree(state, ignore_errors=True)
    rows = [
        ("create -> first output, sequential (p50 / p99)", f"{pct(seq, 50):.2f} / {pct(seq, 99):.2f} ms", ""),
        ("create -> first output, 32 clients in a closed loop (p50 / p99)",
         f"{pct(conc, 50):.2f} / {pct(conc, 99):.2f} ms", f"<= {TARGETS['p50_32']:.0f} / <= {TARGETS['p99_32']:.0f} ms"),
        (f"create -> first output, bursts of 32 at once, pool {args.pool} (p50 / p99)",
         f"{pct(bursts, 50):.2f} / {pct(bursts, 99):.2f} ms", f"<= {TARGETS['p50_32']:.0f} / <= {TARGETS['p99_32']:.0f} ms"),
        ("create-exec-kill cycles per second (16 clients)", f"{cps:.0f}/s", f">= {TARGETS['cycles']:.0f}/s"),
        (f"host private memory per idle sandbox ({idle} sandboxes)", f"{idle_mib:.2f} MiB",
         f"<= {TARGETS['idle_mib']:.0f} MiB"),
        ("  of which the agent process (USS)", f"{agent_mib:.2f} MiB", ""),
        ("  kernel memory charged to its cgroup", f"{charged_mib:.2f} MiB" if charged_mib else "n/a", ""),
    ]
    text = report(rows, f"{len(seq)} sequential samples, {len(conc)} concurrent samples, {total} cycles; "
                        f"corrald --pool {args.pool}.")
    print(text)
    if args.write_readme:
        write_readme(START, END, "corrald", "daemon_bench.py", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
