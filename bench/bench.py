#!/usr/bin/python3
"""Start-up latency of corral next to bare exec, unshare(1) and bubblewrap.

One run alternates between the contenders round-robin (the order rotates
every round), so drift on the host - frequency scaling, a noisy neighbour,
page cache - falls on every contender alike.  Every contender is started the
same way: os.posix_spawn() and os.wait4(), timed around the pair, with
stdin/stdout/stderr on /dev/null.  See bench/README.md.

Exit status: 0 whether or not the targets are met (this is a benchmark, not a
test); 1 if a contender fails to run (non-zero exit or signal); 2 on bad
usage.  Python standard library only.
"""
import argparse
import datetime
import gc
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
START, END = "<!-- bench:start -->", "<!-- bench:end -->"

# Targets for `corral run -- /bin/true` (median wall-clock time).
TARGET_MS = 2.0
TARGET_VS_BWRAP = 0.6

BWRAP_ARGS = ["--unshare-all", "--die-with-parent", "--ro-bind", "/usr", "/usr",
              "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib",
              "--symlink", "usr/lib64", "/lib64", "--symlink", "usr/sbin", "/sbin",
              "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "/bin/true"]


class Contender:
    def __init__(self, key, label, argv, rss=False):
        self.key = key
        self.label = label
        self.argv = argv
        self.rss = rss          # also measure the peak RSS of this command
        self.times = []         # seconds
        self.maxrss = []        # KiB
        self.rss_floor = []     # KiB: the same method applied to /bin/true
        self.skipped = None     # reason, when not measured at all
        self.failed = None      # first failure seen

    def command(self):
        return " ".join(self.argv)

    def shown(self):
        """The command as the table shows it: short paths, bwrap's mounts elided."""
        argv = [os.path.relpath(a) if a.startswith(os.getcwd() + os.sep) else a for a in self.argv]
        if self.key == "bwrap" and len(argv) > 6:
            argv = argv[:6] + ["...", argv[-1]]
        return " ".join(argv)


def resolve(path):
    """An executable's absolute path, or None."""
    if os.sep in path:
        return os.path.abspath(path) if os.access(path, os.X_OK) else None
    return shutil.which(path)


def spawn_and_wait(argv, env, actions):
    """Run argv once; return (seconds, wait status, rusage)."""
    t0 = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
    while True:
        try:
            _, status, ru = os.wait4(pid, 0)
            break
        except InterruptedError:
            continue
    return time.perf_counter() - t0, status, ru


def describe_status(status):
    if os.WIFSIGNALED(status):
        return "killed by signal %d" % os.WTERMSIG(status)
    return "exit code %d" % os.waitstatus_to_exitcode(status)


def preflight(c, env):
    """Run once with output captured, so a failure can be shown in full."""
    try:
        p = subprocess.run(c.argv, env=env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        c.failed = str(e)
        return
    if p.returncode != 0:
        out = (p.stderr or p.stdout).decode(errors="replace").strip()
        c.failed = "exit code %d%s" % (p.returncode, (": " + out[-400:]) if out else "")


def make_subreaper():
    """Adopt orphaned descendants (PR_SET_CHILD_SUBREAPER), so we can wait4() them."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def peak_rss(argv, env, actions):
    """ru_maxrss (KiB) of argv, measured without our own RSS leaking in.

    A process's ru_maxrss is kept across execve and includes the high-water
    mark of the address space it replaced.  posix_spawn() shares Python's
    address space until the exec (CLONE_VM), so a direct child would report
    Python's ~10 MiB whatever it does itself.  Instead /bin/sh starts argv in
    the background and exits: argv is forked from the shell's small address
    space, becomes our orphan (we are its subreaper), and wait4() on it gives
    max(its own peak, the shell's ~1.5 MiB) - the latter measured separately
    as the floor.  Returns None on failure."""
    try:
        sh = os.posix_spawn("/bin/sh", ["sh", "-c", '"$@" &', "sh"] + argv, env, file_actions=actions)
    except OSError:
        return None
    rss, ok = None, True
    for _ in range(2):
        try:
            pid, status, ru = os.wait4(-1, 0)
        except ChildProcessError:
            break
        ok = ok and status == 0
        if pid != sh:
            rss = ru.ru_maxrss
    return rss if ok else None


def percentile(sorted_values, q):
    """Nearest-rank percentile (q in 0..100) of an ascending list."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, int(round(q / 100.0 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def cgroup_mode(corral, env):
    """The cgroup mode corral reports in its result record ("v1", "v2", "none")."""
    fd, path = tempfile.mkstemp(prefix="corral-bench-", suffix=".json")
    os.close(fd)
    try:
        subprocess.run([corral, "run", "--result", path, "--", "/bin/true"], env=env,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=60)
        with open(path) as f:
            text = f.read().strip()
        if text:
            return str(json.loads(text.splitlines()[-1]).get("cgroup", "?"))
    except (OSError, ValueError, subprocess.TimeoutExpired):
        pass
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
    return "?"


def fmt_ms(seconds):
    return "%.2f" % (seconds * 1000.0)


def build_table(contenders, ref):
    ref_med = statistics.median(ref.times) if ref.times else None
    lines = ["| contender | command | median (ms) | p90 (ms) | x corral |",
             "|---|---|---:|---:|---:|"]
    for c in contenders:
        cmd = "`%s`" % c.shown().replace("|", "\\|")
        if c.skipped:
            lines.append("| %s | %s | skipped | | %s |" % (c.label, cmd, c.skipped))
            continue
        if c.failed and not c.times:
            lines.append("| %s | %s | FAILED | | |" % (c.label, cmd))
            continue
        ts = sorted(c.times)
        med = statistics.median(ts)
        ratio = ("%.2f" % (med / ref_med)) if ref_med else "-"
        lines.append("| %s | %s | %s | %s | %s |" % (c.label, cmd, fmt_ms(med), fmt_ms(percentile(ts, 90)), ratio))
    if ref.maxrss:
        floor = (" (measurement floor, same method on `/bin/true`: %d KiB)" % int(statistics.median(ref.rss_floor))
                 if ref.rss_floor else "")
        lines.append("")
        lines.append("corral supervisor peak RSS (`ru_maxrss` from wait4, `corral run -- /bin/true`, %d runs): "
                     "median %d KiB, max %d KiB%s."
                     % (len(ref.maxrss), int(statistics.median(ref.maxrss)), max(ref.maxrss), floor))
    return "\n".join(lines)


def targets(ref, bwrap):
    out = []
    if not ref.times:
        return ["MISS corral run -- /bin/true: not measured"]
    med = statistics.median(ref.times)
    out.append("%s corral run -- /bin/true median %.2f ms <= %.1f ms"
               % ("PASS" if med * 1000 <= TARGET_MS else "MISS", med * 1000, TARGET_MS))
    if bwrap is None or not bwrap.times:
        out.append("MISS corral run -- /bin/true <= %.1fx bwrap: bwrap not measured" % TARGET_VS_BWRAP)
    else:
        b = statistics.median(bwrap.times)
        out.append("%s corral run -- /bin/true median %.2f ms <= %.1fx bwrap median %.2f ms (%.2fx)"
                   % ("PASS" if med <= TARGET_VS_BWRAP * b else "MISS", med * 1000, TARGET_VS_BWRAP,
                      b * 1000, med / b))
    return out


def write_readme(path, body):
    with open(path) as f:
        text = f.read()
    if START not in text or END not in text or text.index(START) > text.index(END):
        raise SystemExit("bench.py: %s lacks the %s ... %s markers" % (path, START, END))
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    with open(path + ".tmp", "w") as f:
        f.write(head + START + "\n" + body.rstrip("\n") + "\n" + END + tail)
    os.replace(path + ".tmp", path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corral", default=os.path.join(HERE, "..", "build", "bin", "corral"),
                    help="corral binary (default: build/bin/corral)")
    ap.add_argument("--bwrap", default="/usr/bin/bwrap", help="bubblewrap binary (default /usr/bin/bwrap)")
    ap.add_argument("--unshare", default="unshare", help="unshare(1) binary (default: from PATH)")
    ap.add_argument("--iterations", "-n", type=int, default=200, help="timed runs per contender (default 200)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed rounds first (default 10, --quick 3)")
    ap.add_argument("--quick", action="store_true", help="30 iterations")
    ap.add_argument("--write-readme", action="store_true",
                    help="replace the table between the markers in bench/README.md")
    ap.add_argument("--readme", default=os.path.join(HERE, "README.md"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.iterations = 30
    if args.warmup is None:
        args.warmup = 3 if args.quick else 10
    if args.iterations < 1 or args.warmup < 0:
        ap.error("--iterations must be >= 1 and --warmup >= 0")

    env = dict(os.environ)
    corral = resolve(args.corral)
    if corral is None:
        print("bench.py: corral binary `%s` not found (run `make`)" % args.corral, file=sys.stderr)
        return 1
    true = "/bin/true"
    python = "/usr/bin/python3"
    unshare = resolve(args.unshare)
    bwrap = resolve(args.bwrap)

    contenders = [
        Contender("bare", "bare exec", [true]),
        Contender("unshare", "unshare", [unshare or "unshare", "-Urmpinuc", "--fork", true]),
        Contender("bwrap", "bwrap", [bwrap or args.bwrap] + BWRAP_ARGS),
        Contender("corral", "corral", [corral, "run", "--", true], rss=True),
        Contender("corral-py", "corral python", [corral, "run", "--", python, "-c", "pass"]),
    ]
    by_key = {c.key: c for c in contenders}
    if unshare is None:
        by_key["unshare"].skipped = "unshare(1) not installed"
    if bwrap is None:
        by_key["bwrap"].skipped = "bubblewrap not installed"
    if not os.access(python, os.X_OK):
        by_key["corral-py"].skipped = "%s not found" % python

    for c in contenders:
        if not c.skipped:
            preflight(c, env)
            if c.failed:
                print("FAIL %s (%s): %s" % (c.label, c.command(), c.failed), file=sys.stderr)
    live = [c for c in contenders if not c.skipped and not c.failed]

    mode = cgroup_mode(corral, env)
    n = args.iterations
    print("corral bench: %d iterations x %d contenders (+%d warm-up rounds), cgroup %s"
          % (n, len(live), args.warmup, mode), file=sys.stderr)

    devnull = os.open(os.devnull, os.O_RDWR)
    actions = [(os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, devnull, 1),
               (os.POSIX_SPAWN_DUP2, devnull, 2)]
    gc.disable()
    t_start = time.monotonic()
    try:
        for rnd in range(args.warmup + n):
            timed = rnd >= args.warmup
            k = rnd % len(live) if live else 0
            for c in live[k:] + live[:k]:
                if c.failed:
                    continue
                try:
                    dt, status, _ = spawn_and_wait(c.argv, env, actions)
                except OSError as e:
                    dt, status = 0.0, None
                    c.failed = "cannot start: %s (round %d)" % (e, rnd)
                    print("FAIL %s (%s): %s" % (c.label, c.command(), c.failed), file=sys.stderr)
                    continue
                if status != 0:
                    c.failed = "%s (round %d)" % (describe_status(status), rnd)
                    print("FAIL %s (%s): %s" % (c.label, c.command(), c.failed), file=sys.stderr)
                    continue
                if timed:
                    c.times.append(dt)
            if rnd == args.warmup + n // 2 and sys.stderr.isatty():
                print("  ... half way (%.0f s)" % (time.monotonic() - t_start), file=sys.stderr)
        # Peak RSS: a separate, untimed pass (see peak_rss()).
        if make_subreaper():
            for c in live:
                if not c.rss or c.failed:
                    continue
                for _ in range(min(n, 30)):
                    r = peak_rss(c.argv, env, actions)
                    f = peak_rss([true], env, actions)
                    if r is None:
                        c.failed = "failed under the peak-RSS pass"
                        print("FAIL %s (%s): %s" % (c.label, c.command(), c.failed), file=sys.stderr)
                        break
                    c.maxrss.append(r)
                    if f is not None:
                        c.rss_floor.append(f)
    finally:
        gc.enable()
        os.close(devnull)
    elapsed = time.monotonic() - t_start

    table = build_table(contenders, by_key["corral"])
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    meta = ("%s, kernel %s, %d CPUs (%s), cgroup %s, %d iterations per contender (round-robin, after %d "
            "warm-up rounds), %.0f s."
            % (datetime.date.today().isoformat(), platform.release(), cpus, cpu_model(), mode, n,
               args.warmup, elapsed))
    verdicts = targets(by_key["corral"], by_key["bwrap"])

    print(table)
    print()
    print(meta)
    print()
    for v in verdicts:
        print(v)

    if args.write_readme:
        write_readme(args.readme, "\n".join([meta, "", table, "", "```"] + verdicts + ["```"]))
        print("\nwrote %s" % os.path.relpath(args.readme), file=sys.stderr)

    failed = [c for c in contenders if c.failed]
    return 1 if failed else 0


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return re.sub(r"\s+", " ", line.split(":", 1)[1]).strip()
    except OSError:
        pass
    return platform.machine() or "?"


if __name__ == "__main__":
    sys.exit(main())
