"""End-to-end tests of `corral code` (src/cli/code_cmd.c) against a real
corrald (see daemon.py), plus its rendering of events against a canned
ndjson stream."""
import http.server
import json
import re
import select
import subprocess
import threading
import time

import pytest

from daemon import CORRAL, corrald, needs_corrald, tenant  # noqa: F401 (fixtures)

pytestmark = needs_corrald


def cli(env, *args, input=None, timeout=120, check=None):
    """Run `corral ARGS...` (stdin from `input`, else /dev/null)."""
    p = subprocess.run([CORRAL, *args], input=input, capture_output=True, timeout=timeout, env=env, text=True,
                       stdin=None if input is not None else subprocess.DEVNULL)
    if check is not None:
        assert p.returncode == check, (p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    return p


@pytest.fixture(scope="module")
def env(tenant):
    return tenant.daemon.cli_env(tenant.key)


@pytest.fixture(scope="module")
def sandbox(env):
    sid = cli(env, "sandbox", "create", "--timeout", "900", check=0).stdout.strip()
    yield sid
    cli(env, "sandbox", "kill", sid)


@pytest.fixture
def context(tenant, sandbox):
    """A context of its own (made over the HTTP API), removed afterwards."""
    d = tenant.daemon
    status, ctx = d.api("POST", f"/v1/sandboxes/{sandbox}/contexts", {"cwd": "/tmp"}, key=tenant.key)
    assert status == 201, ctx
    yield ctx["id"]
    d.api("DELETE", f"/v1/sandboxes/{sandbox}/contexts/{ctx['id']}", key=tenant.key)


def test_code_from_argument_keeps_state(env, sandbox, context):
    p = cli(env, "code", "--context", context, sandbox, "x = 6\nprint('hi')\nx * 7", check=0)
    assert p.stdout == "hi\n42\n" and p.stderr == ""
    p = cli(env, "code", "--context", context, sandbox, "x + 1", check=0)
    assert p.stdout == "7\n"


def test_code_from_stdin(env, sandbox, context):
    p = cli(env, "code", sandbox, "--context", context, input="a = 'from stdin'\nprint(a)\n", check=0)
    assert p.stdout == "from stdin\n" and p.stderr == ""
    p = cli(env, "code", "--context", context, sandbox, "-", input="a.upper()", check=0)
    assert p.stdout == "'FROM STDIN'\n"
    p = cli(env, "code", sandbox, input="", check=2)
    assert "no code to run" in p.stderr


def test_stdout_and_stderr_go_to_their_streams(env, sandbox):
    p = cli(env, "code", sandbox, "import sys\nprint('out', end='')\nsys.stderr.write('err\\n')\n"
                                  "import subprocess\nsubprocess.run(['echo', 'child'])\nNone", check=0)
    assert p.stdout == "outchild\n" and p.stderr == "err\n"


def test_output_is_streamed_as_it_comes(env, sandbox):
    proc = subprocess.Popen([CORRAL, "code", sandbox, "import time\nprint('first', flush=True)\n"
                                                      "time.sleep(3)\nprint('second')"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env)
    try:
        t0 = time.monotonic()
        ready, _, _ = select.select([proc.stdout], [], [], 2.5)
        assert ready, "nothing printed before the code ended"
        assert proc.stdout.readline() == b"first\n" and time.monotonic() - t0 < 2.5
        out, _ = proc.communicate(timeout=60)
        assert out == b"second\n" and proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_error_exits_1_with_the_traceback_on_stderr(env, sandbox, context):
    p = cli(env, "code", "--context", context, sandbox, "print('before')\ndef f():\n    return 1 / 0\nf()",
            check=1)
    assert p.stdout == "before\n"
    assert p.stderr.startswith("Traceback (most recent call last):")
    assert "line 4" in p.stderr and "line 3" in p.stderr
    assert p.stderr.rstrip().endswith("ZeroDivisionError: division by zero")
    # The context survives its errors.
    assert cli(env, "code", "--context", context, sandbox, "f.__name__", check=0).stdout == "'f'\n"


def test_results_display_and_figures(env, sandbox):
    p = cli(env, "code", sandbox, "import matplotlib.pyplot as plt\nplt.plot([1, 2])\ndisplay('shown')\n"
                                  "{'k': 1}", check=0)
    lines = p.stdout.splitlines()
    assert lines[0] == "'shown'" and lines[-1] == "{'k': 1}"
    assert any(line.startswith("<Figure size") for line in lines[1:-1]), lines


def test_json_prints_every_event(env, sandbox):
    p = cli(env, "code", "--json", sandbox, "print(1)\n2", check=0)
    events = [json.loads(line) for line in p.stdout.splitlines()]
    assert events[0]["type"] == "execution_count" and isinstance(events[0]["count"], int)
    assert events[-1]["type"] == "end" and "duration_ms" in events[-1]
    assert {"type": "stdout", "text": "1\n"} in events  # a line per event, as Jupyter
    assert {"type": "result", "is_main_result": True, "text": "2"} in events
    assert p.stderr == ""
    p = cli(env, "code", "--json", sandbox, "raise KeyError('nope')", check=1)
    errors = [e for e in map(json.loads, p.stdout.splitlines()) if e["type"] == "error"]
    assert len(errors) == 1 and errors[0]["name"] == "KeyError" and "Traceback" in errors[0]["traceback"]
    assert p.stderr == ""


def test_context_option(env, sandbox, context):
    cli(env, "code", "--context", context, sandbox, "only_in_ctx = 1", check=0)
    assert cli(env, "code", "--context", context, sandbox, "import os\nos.getcwd()", check=0).stdout == "'/tmp'\n"
    p = cli(env, "code", sandbox, "only_in_ctx", check=1)                      # the default context
    assert "NameError" in p.stderr
    p = cli(env, "code", "--context", "ctxnope", sandbox, "1", check=1)
    assert re.match(r"^corral: no context `ctxnope` .* \(HTTP 404\)$", p.stderr.strip()), p.stderr
    assert p.stdout == ""


def test_timeout_interrupts_and_state_survives(env, sandbox, context):
    cli(env, "code", "--context", context, sandbox, "kept = 'yes'", check=0)
    t0 = time.monotonic()
    p = cli(env, "code", "--context", context, "--timeout", "500ms", sandbox,
            "import time\nend = time.monotonic() + 20\nwhile time.monotonic() < end:\n    time.sleep(0.05)",
            check=1)
    assert time.monotonic() - t0 < 10
    assert "KeyboardInterrupt" in p.stderr
    assert cli(env, "code", "--context", context, sandbox, "kept", check=0).stdout == "'yes'\n"


def test_language_and_usage_errors(env, sandbox):
    assert cli(env, "code", "--language", "python", sandbox, "3 * 3", check=0).stdout == "9\n"
    p = cli(env, "code", "--language", "cobol", sandbox, "1", check=1)
    assert re.match(r"^corral: unknown language `cobol`.*\(HTTP 400\)$", p.stderr.strip()), p.stderr
    p = cli(env, "code", "--language", "python", "--context", "default", sandbox, "1", check=2)
    assert "not both" in p.stderr
    assert "missing SANDBOX" in cli(env, "code", check=2).stderr
    assert "too many arguments" in cli(env, "code", sandbox, "1", "2", check=2).stderr
    assert "invalid duration" in cli(env, "code", "--timeout", "soon", sandbox, "1", check=2).stderr
    assert "unknown option" in cli(env, "code", "--bogus", sandbox, "1", check=2).stderr
    p = cli(env, "code", "sb_00000000000000000000", "1", check=1)
    assert "(HTTP 404)" in p.stderr
    help_text = cli(env, "code", "--help", check=0).stdout
    assert help_text.startswith("usage: corral code") and "--context" in help_text
    assert "code [OPTIONS] SANDBOX" in cli(env, "help", check=0).stdout


# ---- rendering, against a canned stream ----

class _Canned(http.server.BaseHTTPRequestHandler):
    events = []
    requests = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).requests.append((self.path, self.headers.get("Accept"), json.loads(body)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.end_headers()
        for ev in type(self).events:
            self.wfile.write((json.dumps(ev) + "\n").encode())
        self.wfile.flush()

    def log_message(self, *args):
        pass


@pytest.fixture
def canned():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Canned)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Canned.requests = []
    yield server
    server.shutdown()
    server.server_close()


def test_binary_results_without_text_are_placeholders(canned):
    _Canned.events = [
        {"type": "execution_count", "count": 1},
        {"type": "result", "is_main_result": False, "png": "iVBORw0KGgo="},        # 8 bytes
        {"type": "result", "is_main_result": False, "pdf": "JVBERi0=", "jpeg": "/9j/4A=="},
        {"type": "result", "is_main_result": False, "markdown": "**md**"},
        {"type": "result", "is_main_result": True, "text": "<Figure>", "png": "iVBORw0KGgo="},
        {"type": "end", "duration_ms": 1},
    ]
    env = {"CORRAL_URL": f"http://127.0.0.1:{canned.server_address[1]}", "CORRAL_API_KEY": "k"}
    p = cli(env, "code", "--env", "A=b", "--timeout", "2s", "sb_x", "plot()", check=0)
    assert p.stdout.splitlines() == ["[png image, 8 bytes]", "[jpeg image, 4 bytes]", "[pdf document, 5 bytes]",
                                     "**md**", "<Figure>"]
    path, accept, body = _Canned.requests[0]
    assert path == "/v1/sandboxes/sb_x/execute" and accept == "application/x-ndjson"
    assert body == {"code": "plot()", "env": {"A": "b"}, "timeout_ms": 2000}


def test_a_stream_cut_before_its_end_fails(canned):
    _Canned.events = [{"type": "execution_count", "count": 1}, {"type": "stdout", "text": "partial"}]
    env = {"CORRAL_URL": f"http://127.0.0.1:{canned.server_address[1]}", "CORRAL_API_KEY": "k"}
    p = cli(env, "code", "sb_x", "1", check=1)
    assert p.stdout == "partial" and "ended before the execution did" in p.stderr
