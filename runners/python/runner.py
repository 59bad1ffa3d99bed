"""corral's Python code-interpreter runner: one persistent interpreter (a
"context") inside a sandbox, driven by corrald through the agent.

Protocol: one JSON request per line on stdin, {"code", "max_output"}; JSON
events, one per line, on the original stdout (kept on a private fd): stdout,
stderr, result (rich formats), error, execution_count, and a last "end" per
request.  What user code and its subprocesses write to fds 1 and 2 goes
through pipes and comes back as stdout/stderr events, so nothing can corrupt
the protocol.  SIGINT (sent by corrald on a timeout) raises
KeyboardInterrupt in the running code; the context survives.

Standard library only; numpy, pandas and matplotlib are used when the code
imports them.
"""
import ast
import base64
import builtins
import json
import linecache
import os
import signal
import sys
import threading
import time
import traceback

PROTO_FD = os.dup(1)
_lock = threading.Lock()
_state = {"count": 0, "budget": 0, "dropped": 0}


_pending = {"stdout": "", "stderr": ""}
_pending_lock = threading.RLock()


def flush_text(kind=None):
    """Send what a stream holds back (a line not ended yet)."""
    with _pending_lock:
        for k in (kind,) if kind else ("stdout", "stderr"):
            text, _pending[k] = _pending[k], ""
            emit_text(k, text)


def emit(event):
    # Output written before this event is sent before it.
    if event.get("type") not in ("stdout", "stderr"):
        flush_text()
    data = (json.dumps(event, default=str) + "\n").encode()
    with _lock:
        view = memoryview(data)
        while view:
            n = os.write(PROTO_FD, view)
            view = view[n:]


def emit_text(kind, text):
    """Output, capped per execution: what passes the cap is counted."""
    if not text:
        return
    left = _state["budget"]
    if left <= 0:
        _state["dropped"] += len(text)
        return
    if len(text) > left:
        _state["dropped"] += len(text) - left
        text = text[:left]
    _state["budget"] = left - len(text)
    emit({"type": kind, "text": text})


class Stream:
    """sys.stdout / sys.stderr of user code.  Output goes out a line at a
    time, as Jupyter users see it (print's text and its newline are one
    event), and at once when the code flushes, another event follows or the
    execute ends."""

    def __init__(self, kind):
        self.kind = kind
        self.encoding = "utf-8"
        self.errors = "replace"

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        other = "stderr" if self.kind == "stdout" else "stdout"
        with _pending_lock:
            if _pending[other]:
                flush_text(other)
            buf = _pending[self.kind] + s
            cut = buf.rfind("\n") + 1
            if len(buf) > 65536:
                cut = len(buf)
            _pending[self.kind] = buf[cut:]
            emit_text(self.kind, buf[:cut])
        return len(s)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        flush_text(self.kind)

    def isatty(self):
        return False

    def fileno(self):
        return 1 if self.kind == "stdout" else 2

    @property
    def closed(self):
        return False

    def writable(self):
        return True

    def readable(self):
        return False


class FdPump(threading.Thread):
    """Bytes written to fd 1 or 2 (by subprocesses, os.write, C code)."""

    MARK = b"\x00corral-sync\x00"

    def __init__(self, fd, kind):
        super().__init__(daemon=True)
        r, w = os.pipe()
        os.dup2(w, fd)
        os.close(w)
        self.r, self.fd, self.kind = r, fd, kind
        self.synced = threading.Event()
        self.start()

    def run(self):
        pending = b""
        while True:
            chunk = os.read(self.r, 65536)
            if not chunk:
                return
            pending += chunk
            while self.MARK in pending:
                before, pending = pending.split(self.MARK, 1)
                emit_text(self.kind, before.decode(errors="replace"))
                self.synced.set()
            keep = len(self.MARK) - 1
            if len(pending) > keep:
                emit_text(self.kind, pending[:-keep].decode(errors="replace"))
                pending = pending[-keep:]

    def sync(self):
        """Wait until what was written to the fd before now has been sent."""
        self.synced.clear()
        os.write(self.fd, self.MARK)
        self.synced.wait(1.0)


BINARY = {"png", "jpeg", "pdf"}
REPRS = [("html", "_repr_html_"), ("markdown", "_repr_markdown_"), ("svg", "_repr_svg_"),
         ("png", "_repr_png_"), ("jpeg", "_repr_jpeg_"), ("pdf", "_repr_pdf_"), ("latex", "_repr_latex_"),
         ("json", "_repr_json_"), ("javascript", "_repr_javascript_")]


def figure_png(fig):
    import io
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches=None)
    return buf.getvalue()


def formats(obj):
    """The representations an object offers, as Jupyter would show them."""
    out = {}
    for key, name in REPRS:
        method = getattr(obj, name, None)
        if not callable(method) or isinstance(obj, type):
            continue
        try:
            value = method()
        except Exception:
            continue
        if isinstance(value, tuple):
            value = value[0]
        if value is None:
            continue
        if key in BINARY:
            if isinstance(value, str):
                value = value.encode()
            value = base64.b64encode(value).decode()
        out[key] = value
    if "png" not in out and type(obj).__module__.startswith("matplotlib") and hasattr(obj, "savefig"):
        out["png"] = base64.b64encode(figure_png(obj)).decode()
    try:
        out["text"] = repr(obj)
    except Exception as e:
        out["text"] = f"<repr failed: {e!r}>"
    return out


def send_result(obj, main):
    emit({"type": "result", "is_main_result": main, **formats(obj)})


def display(*objs, **_):
    for obj in objs:
        send_result(obj, False)


def flush_figures():
    """matplotlib figures appear as PNG results without plt.show()."""
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return
    for num in plt.get_fignums():
        fig = plt.figure(num)
        emit({"type": "result", "is_main_result": False, "text": repr(fig),
              "png": base64.b64encode(figure_png(fig)).decode()})
    plt.close("all")


def compile_cell(code, name):
    """Compile code; the value of a last expression is returned separately."""
    tree = ast.parse(code, filename=name, mode="exec")
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    body = compile(tree, name, "exec")
    expr = compile(last, name, "eval") if last is not None else None
    return body, expr


def user_traceback(exc):
    """The traceback without the runner's own frames."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def run(code, namespace):
    _state["count"] += 1
    count = _state["count"]
    name = f"<cell-{count}>"
    linecache.cache[name] = (len(code), None, code.splitlines(True), name)
    emit({"type": "execution_count", "count": count})
    try:
        body, expr = compile_cell(code, name)
        exec(body, namespace)
        value = eval(expr, namespace) if expr is not None else None
        flush_figures()
        if value is not None:
            namespace["_"] = value
            send_result(value, True)
    except BaseException as e:  # KeyboardInterrupt from a timeout included
        if isinstance(e, SystemExit) and e.code in (None, 0):
            return
        flush_figures()
        emit({"type": "error", "name": type(e).__name__, "value": str(e), "traceback": user_traceback(e)})


def main():
    os.environ.setdefault("MPLBACKEND", "Agg")
    requests = os.fdopen(os.dup(0), "r")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)  # user code reading stdin gets EOF
    os.close(devnull)
    pumps = [FdPump(1, "stdout"), FdPump(2, "stderr")]
    sys.stdout, sys.stderr = Stream("stdout"), Stream("stderr")
    sys.stdin = open(os.devnull)
    builtins.display = display
    namespace = {"__name__": "__main__", "__builtins__": builtins, "display": display}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # Modules imported ahead (corrald --preload), so the first cell that
    # uses them does not pay for the import.
    for name in filter(None, os.environ.pop("CORRAL_PRELOAD", "").split(",")):
        try:
            __import__(name.strip())
        except Exception:
            pass
    emit({"type": "ready", "pid": os.getpid()})
    for line in requests:
        try:
            req = json.loads(line)
        except ValueError:
            continue
        _state["budget"] = int(req.get("max_output") or (1 << 20))
        # The request's env holds for this execute only.
        saved = {}
        if isinstance(req.get("env"), dict):
            for k, v in req["env"].items():
                saved[str(k)] = os.environ.get(str(k))
                os.environ[str(k)] = str(v)
        _state["dropped"] = 0
        t0 = time.monotonic()
        try:
            run(str(req.get("code", "")), namespace)
        except KeyboardInterrupt:  # the interrupt arrived between statements of ours
            emit({"type": "error", "name": "KeyboardInterrupt", "value": "", "traceback": ""})
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        for p in pumps:
            p.sync()
        flush_text()
        if _state["dropped"]:
            emit({"type": "stderr", "text": f"\n[corral: output truncated, {_state['dropped']} characters dropped]\n"})
        emit({"type": "end", "duration_ms": int((time.monotonic() - t0) * 1000)})


if __name__ == "__main__":
    main()
