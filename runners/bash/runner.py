"""corral's bash code-interpreter runner: one persistent bash (a "context")
inside a sandbox.  Same protocol as runners/python/runner.py: JSON requests
on stdin, JSON events on stdout.  Each request's code is sourced by the same
bash process, so the working directory, variables and functions persist; its
output comes back as stdout/stderr events, a non-zero status as an error.
SIGINT (a timeout) interrupts the running command; the shell survives.
"""
import json
import os
import secrets
import signal
import subprocess
import threading
import time

PROTO_FD = os.dup(1)
_lock = threading.Lock()
_state = {"budget": 0, "dropped": 0, "interrupted": False}


def emit(event):
    data = (json.dumps(event) + "\n").encode()
    with _lock:
        view = memoryview(data)
        while view:
            view = view[os.write(PROTO_FD, view):]


def emit_text(kind, text):
    if not text:
        return
    left = _state["budget"]
    if len(text) > left:
        _state["dropped"] += len(text) - max(left, 0)
        text = text[:max(left, 0)]
    _state["budget"] = left - len(text)
    if text:
        emit({"type": kind, "text": text})


class Pump(threading.Thread):
    """A bash output stream; `marker` ends one request's output."""

    def __init__(self, stream, kind):
        super().__init__(daemon=True)
        self.stream, self.kind = stream, kind
        self.marker = None
        self.done = threading.Event()
        self.status = None
        self.start()

    def run(self):
        pending = b""
        while True:
            chunk = os.read(self.stream.fileno(), 65536)
            if not chunk:
                emit_text(self.kind, pending.decode(errors="replace"))
                self.done.set()
                return
            pending += chunk
            marker = self.marker
            if marker and marker in pending:
                before, rest = pending.split(marker, 1)
                emit_text(self.kind, before.decode(errors="replace"))
                line, _, pending = rest.partition(b"\n")
                self.status = line.decode(errors="replace").strip()
                self.done.set()
                continue
            keep = len(marker) + 16 if marker else 0
            if len(pending) > keep:
                cut = len(pending) - keep
                emit_text(self.kind, pending[:cut].decode(errors="replace"))
                pending = pending[cut:]


def start_bash():
    bash = subprocess.Popen(["/bin/bash", "--noprofile", "--norc"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, bufsize=0)
    bash.stdin.write(b"trap 'printf \"\\nKeyboardInterrupt\\n\" >&2' INT\n")
    return bash, Pump(bash.stdout, "stdout"), Pump(bash.stderr, "stderr")


def main():
    signal.signal(signal.SIGINT, lambda *_: _state.update(interrupted=True))
    requests = os.fdopen(os.dup(0), "r")
    bash, out, err = start_bash()
    count = 0
    emit({"type": "ready", "pid": os.getpid()})
    for line in requests:
        try:
            req = json.loads(line)
        except ValueError:
            continue
        count += 1
        t0 = time.monotonic()
        _state.update(budget=int(req.get("max_output") or (1 << 20)), dropped=0, interrupted=False)
        emit({"type": "execution_count", "count": count})
        if bash.poll() is not None:
            bash, out, err = start_bash()
        tag = "CORRAL_" + secrets.token_hex(8)
        marker = f"\x00{tag}\x00".encode()
        for p in (out, err):
            p.marker, p.status = marker, None
            p.done.clear()
        env = "".join(f"export {k}={json.dumps(str(v))}\n" for k, v in (req.get("env") or {}).items()
                       if str(k).isidentifier())
        script = (f"{env}. /dev/stdin <<'{tag}'\n{req.get('code', '')}\n{tag}\n"
                  f"__corral_status=$?\nprintf '\\0{tag}\\0%s\\n' \"$__corral_status\"\n"
                  f"printf '\\0{tag}\\0\\n' >&2\n")
        try:
            bash.stdin.write(script.encode())
        except BrokenPipeError:
            pass
        while not (out.done.wait(0.2) and err.done.wait(0.2)):
            if bash.poll() is not None:
                break
        status = out.status
        if bash.poll() is not None:
            emit({"type": "error", "name": "ContextDied", "value": f"bash exited with status {bash.returncode}",
                  "traceback": ""})
        elif _state["interrupted"]:
            emit({"type": "error", "name": "KeyboardInterrupt", "value": "", "traceback": ""})
        elif status not in (None, "", "0"):
            emit({"type": "error", "name": "ExitCode", "value": status, "traceback": ""})
        if _state["dropped"]:
            emit({"type": "stderr", "text": f"\n[corral: output truncated, {_state['dropped']} characters dropped]\n"})
        emit({"type": "end", "duration_ms": int((time.monotonic() - t0) * 1000)})


if __name__ == "__main__":
    main()
