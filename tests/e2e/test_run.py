"""End-to-end tests of `corral run`: every option, every limit, every error path,
and that nothing is left behind."""
import glob
import os
import signal
import subprocess
import tempfile
import time

import pytest

from conftest import CORRAL, corral, run_result

PY = "/usr/bin/python3"


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def cgroup_leftovers():
    """Run cgroups (run-PID-N) whose supervisor PID is gone: leaks.  (Those of
    live supervisors belong to runs still going on, e.g. a parallel session.)"""
    pats = ["/sys/fs/cgroup/*/corral/run-*", "/sys/fs/cgroup/*/*/*/corral/run-*",
            "/sys/fs/cgroup/corral/run-*", "/sys/fs/cgroup/unified/corral/run-*"]
    found = {p for pat in pats for p in glob.glob(pat)}
    return sorted(p for p in found if not _alive(int(os.path.basename(p).split("-")[1])))


def _status(pid):
    fields = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                fields[k] = v.strip()
    except OSError:
        pass
    return fields


def _supervised(pid):
    """Whether a sandbox process still has its supervisor: walk up through the
    sandbox's uid range; the first process outside it must be a `corral`."""
    for _ in range(64):
        st = _status(pid)
        if not st:
            return True  # it (or an ancestor) exited while we looked: not a survivor
        if int(st.get("Uid", "0").split()[0]) < 2000000000:
            return st.get("Name") == "corral"
        pid = int(st.get("PPid", "0"))
        if pid <= 0:
            return False
    return False


def sandbox_processes():
    """Host pids in corral's sandbox id ranges (uid >= 2e9) whose supervisor
    is gone: processes that outlived their sandbox."""
    out = []
    for d in glob.glob("/proc/[0-9]*"):
        pid = int(d.split("/")[2])
        uid = _status(pid).get("Uid", "0").split()
        if uid and int(uid[0]) >= 2000000000 and not _supervised(pid):
            out.append(pid)
    return out


def mounts_snapshot():
    with open("/proc/self/mountinfo") as f:
        return sorted(line.split()[4] for line in f)


@pytest.fixture(autouse=True)
def no_leaks():
    before = mounts_snapshot()
    cg_before, procs_before = set(cgroup_leftovers()), set(sandbox_processes())
    yield
    deadline = time.time() + 5
    while time.time() < deadline and (set(cgroup_leftovers()) - cg_before or set(sandbox_processes()) - procs_before):
        time.sleep(0.05)
    assert set(cgroup_leftovers()) - cg_before == set()
    assert set(sandbox_processes()) - procs_before == set()
    assert mounts_snapshot() == before


# ---- basics ----

def test_echo_and_result_record():
    p, r = run_result("--", "/bin/echo", "hello")
    assert p.returncode == 0 and p.stdout == "hello\n"
    assert r["reason"] == "exited" and r["exit_code"] == 0 and r["signal"] is None
    for key in ("wall_ms", "cpu_user_ms", "cpu_sys_ms", "memory_peak_bytes"):
        assert isinstance(r[key], int) and r[key] >= 0
    assert r["memory_peak_bytes"] > 0


def test_result_to_stderr():
    p = corral("run", "--result", "-", "--", "/bin/true")
    assert p.returncode == 0
    assert '"reason":"exited"' in p.stderr


def test_exit_code_passes_through():
    p, r = run_result("--", "/bin/sh", "-c", "exit 42")
    assert p.returncode == 42 and r["exit_code"] == 42


def test_signal_exit_code():
    p, r = run_result("--", "/bin/sh", "-c", "kill -TERM $$")
    assert p.returncode == 128 + signal.SIGTERM
    assert r["reason"] == "signaled" and r["signal"] == signal.SIGTERM and r["exit_code"] is None


def test_identity_user_and_root():
    p = corral("run", "--", "/bin/sh", "-c", "id -u; id -g; echo $HOME; echo $USER; pwd", check=0)
    assert p.stdout.split() == ["1000", "1000", "/home/user", "user", "/home/user"]
    p = corral("run", "--root", "--", "/bin/sh", "-c", "id -u; echo $USER", check=0)
    assert p.stdout.split() == ["0", "root"]


def test_host_uid_is_unprivileged_range():
    # Root inside the sandbox is an unprivileged host uid/gid (>= 2e9), never 0.
    marker = "2.%d" % (os.getpid() % 1000)
    p = subprocess.Popen([CORRAL, "run", "--root", "--", "/bin/sleep", marker])
    try:
        deadline = time.time() + 5
        pids = []
        while time.time() < deadline and not pids:
            for d in os.listdir("/proc"):
                try:
                    with open(f"/proc/{d}/cmdline", "rb") as f:
                        if f.read() == b"/bin/sleep\0" + marker.encode() + b"\0":
                            pids.append(d)
                except OSError:
                    pass
            time.sleep(0.02)
        assert pids, "the sandboxed sleep was not seen on the host"
        st = _status(pids[0])
        ids = st["Uid"].split() + st["Gid"].split()
        assert all(int(u) >= 2000000000 for u in ids), ids
    finally:
        p.wait(timeout=10)


def test_clean_environment():
    env = dict(os.environ, SECRET_TOKEN="hunter2")
    p = corral("run", "--", "/usr/bin/env", env=env, check=0)
    keys = sorted(l.split("=")[0] for l in p.stdout.splitlines())
    assert keys == ["HOME", "LANG", "PATH", "USER"]
    assert "hunter2" not in p.stdout


def test_env_and_workdir():
    p = corral("run", "--env", "FOO=bar baz", "--env", "HOME=/tmp", "--workdir", "/tmp", "--",
               "/bin/sh", "-c", 'echo "$FOO|$HOME|$(pwd)"', check=0)
    assert p.stdout == "bar baz|/tmp|/tmp\n"


def test_hostname_and_namespaces():
    p = corral("run", "--hostname", "box1", "--", "/bin/sh", "-c",
               "hostname; cat /proc/1/cmdline | tr '\\0' ' '; echo; ls /proc | grep -c '^[0-9]'", check=0)
    lines = p.stdout.splitlines()
    assert lines[0] == "box1"
    assert int(lines[2]) <= 5  # PID 1, the shell, and the pipeline
    with open("/proc/sys/kernel/hostname") as f:
        assert f.read().strip() != "box1"


def test_stdin_pipe_and_file():
    p = corral("run", "--", "/bin/cat", input="through the pipe\n", check=0)
    assert p.stdout == "through the pipe\n"
    with tempfile.TemporaryFile("w+") as f:
        f.write("from a file\n")
        f.seek(0)
        p = subprocess.run([CORRAL, "run", "--", "/bin/cat"], stdin=f, capture_output=True, text=True)
    assert p.stdout == "from a file\n"


def test_stdout_to_file():
    with tempfile.NamedTemporaryFile("r") as f:
        with open(f.name, "w") as out:
            rc = subprocess.call([CORRAL, "run", "--", "/bin/echo", "into a file"], stdout=out)
        assert rc == 0
        assert open(f.name).read() == "into a file\n"


def test_stderr_passes_through():
    p = corral("run", "--", "/bin/sh", "-c", "echo out; echo err >&2", check=0)
    assert p.stdout == "out\n" and p.stderr == "err\n"


def test_output_flood():
    p = subprocess.run([CORRAL, "run", "--", "/bin/sh", "-c", "head -c 50000000 /dev/zero"],
                       capture_output=True, timeout=60)
    assert p.returncode == 0 and len(p.stdout) == 50000000


# ---- filesystem ----

def test_root_is_read_only_and_scratch_writable():
    script = ("touch /usr/x 2>/dev/null && echo usr-writable; "
              "touch /x 2>/dev/null && echo root-writable; "
              "touch /etc/passwd 2>/dev/null && echo etc-writable; "
              "echo ok > /tmp/a && cat /tmp/a; echo ok > /home/user/b && cat /home/user/b; "
              "echo ok > /dev/shm/c && cat /dev/shm/c")
    p = corral("run", "--", "/bin/sh", "-c", script, check=0)
    assert p.stdout == "ok\nok\nok\n"


def test_no_host_secrets_in_etc():
    p = corral("run", "--", "/bin/sh", "-c",
               "ls /etc; test -e /etc/shadow && echo SHADOW; test -e /etc/ssh && echo SSH; cat /etc/passwd",
               check=0)
    assert "SHADOW" not in p.stdout and "SSH" not in p.stdout
    assert "user:x:1000:1000" in p.stdout


def test_dev_is_minimal():
    p = corral("run", "--", "/bin/sh", "-c", "ls /dev", check=0)
    names = set(p.stdout.split())
    assert {"null", "zero", "urandom", "pts", "shm", "ptmx"} <= names
    assert not names & {"sda", "vda", "mem", "kmem", "kmsg", "port", "mapper"}


def test_proc_sys_read_only():
    p = corral("run", "--root", "--", "/bin/sh", "-c",
               "echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null && echo WROTE; "
               "echo b > /proc/sysrq-trigger 2>/dev/null && echo SYSRQ; echo done", check=0)
    assert p.stdout == "done\n"


def test_disk_limit_enospc():
    p = corral("run", "--disk", "8M", "--", "/bin/sh", "-c",
               "dd if=/dev/zero of=/tmp/big bs=1M count=64; echo rc=$?; ls -l /tmp/big; echo still-alive",
               check=0)
    assert "rc=1" in p.stdout and "still-alive" in p.stdout
    assert "No space left on device" in p.stderr
    assert " 8388608 " in p.stdout


def test_bind_read_only_and_read_write():
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "in.txt"), "w") as f:
            f.write("host data\n")
        os.chmod(d, 0o777)
        p = corral("run", "--bind", f"{d}:/data:ro", "--", "/bin/sh", "-c",
                   "cat /data/in.txt; echo x > /data/new 2>/dev/null && echo WROTE; echo end", check=0)
        assert p.stdout == "host data\nend\n"
        p = corral("run", "--root", "--bind", f"{d}:/mnt/rw", "--", "/bin/sh", "-c",
                   "echo from-sandbox > /mnt/rw/out.txt && echo ok", check=0)
        assert p.stdout == "ok\n"


def test_rootfs_directory():
    with tempfile.TemporaryDirectory() as d:
        os.chmod(d, 0o755)
        # A minimal image: a static busybox-free rootfs made of the host's /usr.
        os.symlink("usr/bin", os.path.join(d, "bin"))
        os.symlink("usr/lib", os.path.join(d, "lib"))
        os.symlink("usr/lib64", os.path.join(d, "lib64"))
        for sub in ("usr/bin", "usr/lib", "usr/lib64"):
            os.makedirs(os.path.join(d, sub))  # mountpoints for the binds below
        os.makedirs(os.path.join(d, "etc"))
        with open(os.path.join(d, "etc", "image-marker"), "w") as f:
            f.write("from the image\n")
        with open(os.path.join(d, "usr", "marker"), "w") as f:
            f.write("image usr\n")
        p = corral("run", "--rootfs", d, "--bind", "/usr/bin:/usr/bin:ro", "--bind", "/usr/lib:/usr/lib:ro",
                   "--bind", "/usr/lib64:/usr/lib64:ro", "--", "/bin/sh", "-c",
                   "cat /etc/image-marker /usr/marker; ls /usr | sort | tr '\\n' ' '", check=0)
        assert p.stdout.startswith("from the image\nimage usr\n")
        # Not searchable by others: refused with a clear message.
        os.chmod(d, 0o700)
        p = corral("run", "--rootfs", d, "--", "/bin/true")
        assert p.returncode == 125 and "chmod o+rx" in p.stderr


# ---- limits ----

def test_memory_hog_is_oom():
    p, r = run_result("--memory", "64M", "--", PY, "-c", "x = bytearray(512 * 1024 * 1024)")
    assert r["reason"] == "oom", (r, p.stderr)
    assert p.returncode == 137
    assert r["memory_peak_bytes"] >= 32 * 1024 * 1024


def test_memory_under_limit_is_fine():
    p, r = run_result("--memory", "256M", "--", PY, "-c", "x = bytearray(64 * 1024 * 1024); print(len(x))")
    assert p.returncode == 0 and r["reason"] == "exited"
    assert r["memory_peak_bytes"] >= 64 * 1024 * 1024


def test_fork_bomb_contained():
    p, r = run_result("--pids", "64", "--timeout", "10", "--", "/bin/sh", "-c",
                      "bomb() { bomb | bomb & }; bomb; sleep 1; echo survived")
    assert r["reason"] in ("exited", "timeout", "signaled")
    # The host still forks.
    assert subprocess.run(["/bin/true"]).returncode == 0


def test_timeout_kills_everything():
    t0 = time.time()
    p, r = run_result("--timeout", "1", "--", "/bin/sh", "-c",
                      "sleep 300 & (setsid sleep 300 &) ; while :; do :; done")
    assert time.time() - t0 < 10
    assert p.returncode == 124 and r["reason"] == "timeout"
    assert 900 <= r["wall_ms"] < 5000


def test_cpu_quota():
    p, r = run_result("--cpus", "0.25", "--timeout", "2", "--", "/bin/sh", "-c", "while :; do :; done")
    assert r["reason"] == "timeout"
    used = r["cpu_user_ms"] + r["cpu_sys_ms"]
    assert 200 <= used <= 1000, r


def test_cpu_time_limit():
    p, r = run_result("--cpu-time", "1", "--timeout", "20", "--", "/bin/sh", "-c", "while :; do :; done")
    assert r["reason"] == "timeout" and p.returncode == 124
    assert r["wall_ms"] < 10000


def test_daemonized_process_is_killed_at_end():
    marker = f"corral-daemon-{os.getpid()}"
    p = corral("run", "--", "/bin/sh", "-c",
               f"(setsid /bin/sh -c 'exec -a {marker} sleep 30' &); echo started", check=0)
    assert p.stdout == "started\n"
    time.sleep(0.3)
    ps = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    assert ps.stdout == ""


def test_sigterm_to_corral_reaches_the_command():
    p = subprocess.Popen([CORRAL, "run", "--", "/bin/sh", "-c",
                          "trap 'echo got-term; exit 3' TERM; echo ready; while :; do sleep 0.05; done"],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline() == "ready\n"
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=10)
    assert "got-term" in out and p.returncode == 3


def test_sigkilled_supervisor_leaves_nothing():
    p = subprocess.Popen([CORRAL, "run", "--", "/bin/sh", "-c", "echo ready; sleep 300"],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline() == "ready\n"
    p.kill()
    p.wait()
    # The sandbox dies with its supervisor (PDEATHSIG on PID 1, re-armed
    # after every credential change); the next run or `corral gc` sweeps
    # the cgroup.
    deadline = time.time() + 5
    while time.time() < deadline and sandbox_processes():
        time.sleep(0.05)
    assert sandbox_processes() == []
    corral("run", "--", "/bin/true", check=0)
    corral("gc", check=0)


def test_leaked_fd_is_closed():
    r, w = os.pipe()
    os.set_inheritable(w, True)
    try:
        p = subprocess.run([CORRAL, "run", "--", "/bin/sh", "-c", f"ls /proc/self/fd; echo x >&{w} && echo LEAK"],
                           pass_fds=(w,), capture_output=True, text=True)
    finally:
        os.close(w)
        os.close(r)
    assert "LEAK" not in p.stdout
    assert sorted(p.stdout.split()) == ["0", "1", "2", "3"]  # 3 is ls's own directory fd


def test_network_is_loopback_only():
    p = corral("run", "--", PY, "-c",
               "import socket\n"
               "print(sorted(n for _, n in socket.if_nameindex()))\n"
               "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); c = socket.create_connection(s.getsockname()); print('loopback-ok')\n"
               "try:\n"
               "    socket.create_connection(('10.255.255.1', 80), timeout=1); print('OUT')\n"
               "except OSError as e: print('no-route', e.errno)\n", check=0)
    lines = p.stdout.splitlines()
    assert lines[0] == "['lo']" and lines[1] == "loopback-ok" and lines[2].startswith("no-route")


def test_python_runs():
    p = corral("run", "--", PY, "-c", "import json, sqlite3, ssl; print(json.dumps({'a': 1}))", check=0)
    assert p.stdout == '{"a": 1}\n'


def test_cgroup_v2_path_join_kill_remove():
    """This host's v2 tree has no controllers; forcing v2 still exercises
    creating, joining (cgroup.procs), cgroup.kill on timeout, cpu.stat and
    removal.  Limits need controllers, so they are refused with a message."""
    if not os.path.exists("/sys/fs/cgroup/unified/cgroup.procs") and not os.path.exists("/sys/fs/cgroup/cgroup.procs"):
        pytest.skip("no cgroup v2 hierarchy")
    env = dict(os.environ, CORRAL_CGROUP="v2")
    p, r = run_result("--memory", "0", "--pids", "0", "--", "/bin/sh", "-c", "cat /proc/self/cgroup", env=env)
    assert p.returncode == 0 and r["cgroup"] == "v2"
    assert p.stdout.strip().splitlines()[-1] == "0::/"  # its own cgroup namespace
    p, r = run_result("--memory", "0", "--pids", "0", "--timeout", "1", "--", "/bin/sh", "-c",
                      "sleep 100 & while :; do :; done", env=env)
    assert r["reason"] == "timeout" and r["cpu_user_ms"] >= 200
    root = "/sys/fs/cgroup/unified" if os.path.exists("/sys/fs/cgroup/unified/cgroup.procs") else "/sys/fs/cgroup"
    with open(f"{root}/cgroup.controllers") as f:
        has_memory = "memory" in f.read().split()
    if not has_memory:
        p = corral("run", "--memory", "64M", "--", "/bin/true", env=env)
        assert p.returncode == 125 and "no memory controller" in p.stderr


# ---- bad input ----

@pytest.mark.parametrize("args,needle", [
    (["--memory", "abc", "--", "true"], "invalid size"),
    (["--cpus", "-1", "--", "true"], "invalid CPU count"),
    (["--cpus", "0", "--", "true"], "CPU count"),
    (["--pids", "x", "--", "true"], "invalid number"),
    (["--timeout", "soon", "--", "true"], "invalid duration"),
    (["--disk", "10Q", "--", "true"], "invalid size"),
    (["--rootfs", "/does/not/exist", "--", "true"], "rootfs"),
    (["--bind", "nocolon", "--", "true"], "invalid bind"),
    (["--bind", "/etc:relative", "--", "true"], "invalid bind"),
    (["--bind", "/does/not/exist:/x", "--", "true"], "bind source"),
    (["--env", "1BAD=x", "--", "true"], "invalid environment"),
    (["--network", "host", "--", "true"], "network mode"),
    (["--hostname", "bad name!", "--", "true"], "invalid hostname"),
    (["--bogus", "--", "true"], "unknown option"),
    (["--memory"], "missing value"),
    ([], "no command"),
    (["--"], "no command"),
])
def test_bad_input_exit_125(args, needle):
    p = corral("run", *args)
    assert p.returncode == 125, (p.returncode, p.stderr)
    assert needle in p.stderr
    assert p.stderr.startswith("corral: ") and p.stderr.count("\n") == 1


def test_missing_program():
    p, r = run_result("--", "/no/such/program")
    assert p.returncode == 127 and "command not found" in p.stderr and r["reason"] == "error"


def test_unprivileged_caller_gets_clear_error():
    p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", CORRAL, "run", "--", "/bin/true"],
                       capture_output=True, text=True)
    assert p.returncode == 125 and "must run as root" in p.stderr


def test_unknown_subcommand():
    p = corral("frobnicate")
    assert p.returncode == 125 and "unknown command" in p.stderr


def test_help():
    p = corral("run", "--help", check=0)
    assert "--memory" in p.stdout and "--timeout" in p.stdout
