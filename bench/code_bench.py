#!/usr/bin/python3
"""Code-interpreter benchmark: create + execute `print(1)`, `1+1` in a live
context (next to jupyter_client on an ipykernel when Debian's
python3-jupyter-client and python3-ipykernel are installed), and the host
memory of live Python contexts with pandas imported.

Starts its own corrald (free port, temp state dir, the pool on, its default
context preloading numpy, pandas and matplotlib).  Standard library only.
Exit status 0 whether or not targets are met; 1 if a request fails.
"""
import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import daemon_bench as db  # noqa: E402

START, END = "<!-- code-bench:start -->", "<!-- code-bench:end -->"
PRELOAD = "numpy,pandas,matplotlib.pyplot"


def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(q / 100 * (len(v) - 1))))]


def execute(c, sid, code):
    r = c.call("POST", f"/v1/sandboxes/{sid}/execute", {"code": code})
    data = r.read()
    if r.status != 200:
        raise RuntimeError(f"execute: {r.status} {data[:200]!r}")
    return json.loads(data)


def wait_pool(port, key, n):
    deadline = time.time() + 120
    while db.pool_ready(port, key) < n and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # let the last pooled context finish its imports


def jupyter_1p1(n):
    try:
        from jupyter_client.manager import start_new_kernel
    except ImportError:
        return None
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            kc.execute_interactive("1+1", timeout=30, output_hook=lambda msg: None)
            times.append((time.perf_counter() - t0) * 1000)
        return times
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def pss_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def runner_pids():
    out = subprocess.run(["pgrep", "-f", "/.corral/runners/python/runner.py"], capture_output=True, text=True)
    return {int(p) for p in out.stdout.split()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corrald", default=os.path.join(HERE, "..", "build", "bin", "corrald"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--write-readme", action="store_true")
    args = ap.parse_args()
    n_create, n_live, n_mem = (10, 50, 5) if args.quick else (40, 200, 20)
    state = tempfile.mkdtemp(prefix="corral-code-bench-")
    port, key = db.free_port(), "bench_" + secrets.token_hex(8)
    env = dict(os.environ, CORRAL_ADMIN_KEY=key)
    daemon = subprocess.Popen([os.path.abspath(args.corrald), "--listen", f"127.0.0.1:{port}", "--state-dir", state,
                               "--socket", "", "--pool", "4", "--preload", PRELOAD], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    c = None
    try:
        time.sleep(0.5)
        c = db.Client(port, key)
        first, live = [], []
        for _ in range(n_create):
            wait_pool(port, key, 4)
            t0 = time.perf_counter()
            sid = c.create()
            e = execute(c, sid, "print(1)")
            first.append((time.perf_counter() - t0) * 1000)
            if e["logs"]["stdout"] != ["1", "\n"]:
                raise RuntimeError(f"unexpected output {e}")
            for _ in range(n_live // n_create):
                t0 = time.perf_counter()
                execute(c, sid, "1+1")
                live.append((time.perf_counter() - t0) * 1000)
            c.kill(sid)
        before = runner_pids()
        sids = [c.create() for _ in range(n_mem)]
        for sid in sids:
            execute(c, sid, "import pandas as pd\ndf = pd.DataFrame({'a': range(100)})")
        time.sleep(0.5)
        mine = runner_pids() - before
        per_ctx = sum(pss_kib(p) for p in runner_pids()) / max(1, len(runner_pids())) / 1024
        for sid in sids:
            c.kill(sid)
        jup = jupyter_1p1(n_live)
    finally:
        if c:
            for sb in json.loads(c.call("GET", "/v1/sandboxes?state=running").read())["sandboxes"]:
                c.kill(sb["id"])
        daemon.terminate()
        daemon.wait()
        shutil.rmtree(state, ignore_errors=True)
    rows = [("create sandbox + execute `print(1)` (pool, imports preloaded) p50 / p99",
             f"{pct(first, 50):.1f} / {pct(first, 99):.1f} ms", "<= 20 ms p50"),
            ("`1+1` in a live context p50 / p99", f"{pct(live, 50):.2f} / {pct(live, 99):.2f} ms", "<= 2 ms p50")]
    if jup:
        rows.append(("`1+1` with jupyter_client on an ipykernel p50 / p99",
                     f"{pct(jup, 50):.2f} / {pct(jup, 99):.2f} ms ({pct(jup, 50) / pct(live, 50):.1f}x corral)",
                     "corral >= 5x faster"))
    else:
        rows.append(("`1+1` with jupyter_client on an ipykernel", "not measured (python3-jupyter-client missing)",
                     "corral >= 5x faster"))
    rows.append((f"PSS of a live Python context with pandas imported ({len(mine)} contexts)", f"{per_ctx:.1f} MiB",
                 "<= 8 MiB"))
    text = db.report(rows, f"{len(first)} creates, {len(live)} live executes; corrald --pool 4 --preload {PRELOAD}.")
    print(text)
    if args.write_readme:
        db.write_readme(START, END, "Code interpreter", "code_bench.py", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
