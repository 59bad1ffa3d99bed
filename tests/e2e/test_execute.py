"""Code-interpreter contexts over HTTP: /v1/sandboxes/{id}/contexts and
/execute, against a real corrald."""
import base64
import concurrent.futures
import struct

import pytest

from corrald_harness import Daemon


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    daemon = Daemon(tmp_path_factory.mktemp("state")).start()
    yield daemon
    for s in daemon.request("GET", "/v1/sandboxes", query={"state": "running"}).json()["sandboxes"]:
        daemon.kill(s["id"])
    daemon.stop()


@pytest.fixture(scope="module")
def sid(d):
    return d.create()


def execute(d, sid, code, **kw):
    r = d.request("POST", f"/v1/sandboxes/{sid}/execute", body={"code": code, **kw})
    assert r.status == 200, r
    return r.json()


def err(r, status, code):
    assert r.status == status, r
    assert r.json()["error"]["code"] == code, r.json()


def test_state_persists_and_last_expression_is_the_result(d, sid):
    first = execute(d, sid, "import os\nx = 20\ndef f(y):\n    return x + y\nos.chdir('/tmp')")
    assert first["error"] is None and first["results"] == []
    r = execute(d, sid, "print('side', end='')\nf(22)")
    assert r["results"] == [{"is_main_result": True, "text": "42"}]
    assert "".join(r["logs"]["stdout"]) == "side"
    assert r["execution_count"] == first["execution_count"] + 1
    assert execute(d, sid, "os.getcwd()")["results"][0]["text"] == "'/tmp'"


def test_error_keeps_the_context(d, sid):
    r = execute(d, sid, "keep = 7\n\ndef boom():\n    raise ValueError('bad value')\nboom()")
    e = r["error"]
    assert e["name"] == "ValueError" and e["value"] == "bad value"
    assert 'line 5' in e["traceback"] and "boom()" in e["traceback"] and "runner.py" not in e["traceback"]
    assert execute(d, sid, "keep")["results"][0]["text"] == "7"


def test_matplotlib_figure_is_a_png_of_its_size(d, sid):
    r = execute(d, sid, "import matplotlib.pyplot as plt\nfig = plt.figure(figsize=(4, 3), dpi=50)\n"
                        "plt.plot([1, 3, 2])\nNone")
    pngs = [x for x in r["results"] if "png" in x]
    assert len(pngs) == 1, r
    raw = base64.b64decode(pngs[0]["png"])
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", raw[16:24])
    assert (width, height) == (200, 150)
    # Figures are closed once sent.
    assert execute(d, sid, "len(plt.get_fignums())")["results"][0]["text"] == "0"


def test_dataframe_gives_html_and_text(d, sid):
    r = execute(d, sid, "import pandas as pd\npd.DataFrame({'col': [111, 222]})")
    res = r["results"][0]
    assert res["is_main_result"] and "<table" in res["html"] and "222" in res["html"]
    assert "col" in res["text"] and "111" in res["text"]


def test_display_and_rich_reprs(d, sid):
    r = execute(d, sid, "class M:\n    def _repr_markdown_(self): return '**hi**'\n"
                        "    def _repr_json_(self): return {'a': 1}\n"
                        "display(M())\n'last'")
    assert r["results"][0]["markdown"] == "**hi**" and r["results"][0]["json"] == {"a": 1}
    assert r["results"][0]["is_main_result"] is False
    assert r["results"][1] == {"is_main_result": True, "text": "'last'"}


def test_timeout_interrupts_and_state_survives(d, sid):
    execute(d, sid, "survivor = 'still here'")
    r = execute(d, sid, "import time\nwhile True:\n    time.sleep(0.05)", timeout_ms=400)
    assert r["error"]["name"] == "KeyboardInterrupt"
    assert execute(d, sid, "survivor")["results"][0]["text"] == "'still here'"


def test_output_cap_has_a_marker(d, sid):
    r = execute(d, sid, "print('z' * 5000)", max_output=1000)
    out, errs = "".join(r["logs"]["stdout"]), "".join(r["logs"]["stderr"])
    assert len(out) == 1000 and "output truncated" in errs


def test_subprocess_output_is_captured(d, sid):
    r = execute(d, sid, "import subprocess\nsubprocess.run(['echo', 'from child'])\nNone")
    assert "from child\n" in "".join(r["logs"]["stdout"])


def test_ndjson_events(d, sid):
    events = d.stream("POST", f"/v1/sandboxes/{sid}/execute", body={"code": "print(1)\n2"})
    kinds = [e["type"] for e in events]
    assert kinds[0] == "execution_count" and kinds[-1] == "end"
    assert {"type": "stdout", "text": "1\n"} in events  # a line per event, as Jupyter
    assert any(e["type"] == "result" and e["text"] == "2" for e in events)


def test_contexts_are_independent(d, sid):
    r = d.request("POST", f"/v1/sandboxes/{sid}/contexts", body={"language": "python", "cwd": "/tmp"})
    assert r.status == 201, r
    ctx = r.json()
    assert ctx["language"] == "python" and ctx["cwd"] == "/tmp" and ctx["id"].startswith("ctx")
    execute(d, sid, "only_here = 1", context_id=ctx["id"])
    assert execute(d, sid, "only_here")["error"]["name"] == "NameError"
    assert execute(d, sid, "import os; os.getcwd()", context_id=ctx["id"])["results"][0]["text"] == "'/tmp'"
    ids = [c["id"] for c in d.request("GET", f"/v1/sandboxes/{sid}/contexts").json()["contexts"]]
    assert "default" in ids and ctx["id"] in ids
    r = d.request("POST", f"/v1/sandboxes/{sid}/contexts/{ctx['id']}/restart")
    assert r.status == 200
    assert execute(d, sid, "only_here", context_id=ctx["id"])["error"]["name"] == "NameError"
    assert d.request("DELETE", f"/v1/sandboxes/{sid}/contexts/{ctx['id']}").status == 204
    err(d.request("POST", f"/v1/sandboxes/{sid}/execute", body={"code": "1", "context_id": ctx["id"]}), 404,
        "not_found")


def test_concurrent_executes_in_different_sandboxes(d):
    sids = [d.create() for _ in range(4)]

    def one(i):
        return execute(d, sids[i], f"n = {i}\nn * 10")["results"][0]["text"]

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        assert list(pool.map(one, range(4))) == ["0", "10", "20", "30"]
    for s in sids:
        d.kill(s)


def test_bad_input(d, sid):
    base = f"/v1/sandboxes/{sid}"
    err(d.request("POST", base + "/execute", body={"code": ""}), 400, "invalid_argument")
    err(d.request("POST", base + "/execute", body={"code": 1}), 400, "invalid_argument")
    err(d.request("POST", base + "/execute", body={"code": "1", "language": "cobol"}), 400, "invalid_argument")
    err(d.request("POST", base + "/execute", body={"code": "1", "context_id": "ctxnope"}), 404, "not_found")
    err(d.request("POST", base + "/execute", body={"code": "1", "timeout_ms": -1}), 400, "invalid_argument")
    err(d.request("POST", base + "/execute", raw=b'{"code": "' + b"x" * (2 << 20) + b'"}'), 413,
        "payload_too_large")
    err(d.request("POST", base + "/contexts", body={"language": "cobol"}), 400, "invalid_argument")
    err(d.request("POST", "/v1/sandboxes/sb_nope0000000000000000/execute", body={"code": "1"}), 404, "not_found")


def test_context_runs_as_the_sandbox_user_with_every_protection(d, sid):
    r = execute(d, sid, "import os\nopen('/proc/1/environ').read() if False else (os.getuid(), os.getgid())")
    assert r["results"][0]["text"] == "(1000, 1000)"
    r = execute(d, sid, "import ctypes\nctypes.CDLL(None).ptrace(16, 1, 0, 0)")
    assert r["results"][0]["text"] == "-1"


def test_javascript_context(d, sid):
    r = d.request("POST", f"/v1/sandboxes/{sid}/contexts", body={"language": "javascript"})
    assert r.status == 201, r
    ctx = r.json()["id"]
    first = execute(d, sid, "let total = 40; const add = (a, b) => a + b", context_id=ctx)
    assert first["error"] is None, first
    r = execute(d, sid, "console.log('from js'); await new Promise(ok => setTimeout(() => ok(add(total, 2)), 20))",
                context_id=ctx)
    assert r["results"][0]["text"] == "42" and "".join(r["logs"]["stdout"]) == "from js\n", r
    r = execute(d, sid, "throw new TypeError('nope')", context_id=ctx)
    assert r["error"]["name"] == "TypeError" and r["error"]["value"] == "nope"
    assert execute(d, sid, "total", context_id=ctx)["results"][0]["text"] == "40"
    # language without a context: that language's default context
    assert execute(d, sid, "[1, 2].map(x => x * 2)", language="javascript")["results"][0]["json"] == [2, 4]


def test_bash_context(d, sid):
    r = execute(d, sid, "cd /tmp; GREETING=hello; greet() { echo \"$GREETING $1\"; }", language="bash")
    assert r["error"] is None, r
    r = execute(d, sid, "pwd; greet world; echo oops >&2; false", language="bash")
    assert "".join(r["logs"]["stdout"]) == "/tmp\nhello world\n"
    assert "".join(r["logs"]["stderr"]) == "oops\n"
    assert r["error"]["name"] == "ExitCode" and r["error"]["value"] == "1"
    r = execute(d, sid, "sleep 30", language="bash", timeout_ms=300)
    assert r["error"]["name"] == "KeyboardInterrupt", r
    assert "".join(execute(d, sid, "echo $GREETING", language="bash")["logs"]["stdout"]) == "hello\n"


def test_contexts_survive_a_daemon_restart(tmp_path):
    dd = Daemon(tmp_path / "state").start()
    try:
        s = dd.create()
        ctx = dd.request("POST", f"/v1/sandboxes/{s}/contexts", body={"language": "python"}).json()["id"]
        execute(dd, s, "kept = 'across restarts'", context_id=ctx)
        execute(dd, s, "default_kept = 1")
        dd.kill9()
        dd.start()
        assert execute(dd, s, "kept", context_id=ctx)["results"][0]["text"] == "'across restarts'"
        assert execute(dd, s, "default_kept")["results"][0]["text"] == "1"
        ids = [c["id"] for c in dd.request("GET", f"/v1/sandboxes/{s}/contexts").json()["contexts"]]
        assert ctx in ids and ids.count("default") == 1
        dd.kill(s)
    finally:
        for sb in dd.request("GET", "/v1/sandboxes", query={"state": "running"}).json()["sandboxes"]:
            dd.kill(sb["id"])
        dd.stop()


def test_execute_env_is_per_execute_and_context_input_is_checked(d, sid):
    r = execute(d, sid, "import os\nos.environ.get('ONLY_NOW')", env={"ONLY_NOW": "1"})
    assert r["results"][0]["text"] == "'1'"
    assert execute(d, sid, "repr(os.environ.get('ONLY_NOW'))")["results"][0]["text"] == "'None'"
    base = f"/v1/sandboxes/{sid}"
    err(d.request("POST", base + "/contexts", body={"cwd": "/no/such/dir"}), 400, "invalid_argument")
    err(d.request("POST", base + "/contexts", body={"env": {"N": 1}}), 400, "invalid_argument")
    err(d.request("POST", base + "/execute", body={"code": "1", "context_id": "default", "language": "bash"}), 400,
        "invalid_argument")
    assert d.request("POST", base + "/execute", body={"code": "1", "context_id": "default",
                                                      "language": "python"}).status == 200


def test_output_is_sent_a_line_at_a_time(d, sid):
    """Partial lines wait for their newline, a flush, another event or the end."""
    code = ("import sys\nprint('a', end='')\nprint('b')\nsys.stdout.write('c')\nsys.stdout.flush()\n"
            "sys.stdout.write('d')\nprint('e', file=sys.stderr)\nsys.stdout.write('tail')")
    events = d.stream("POST", f"/v1/sandboxes/{sid}/execute", body={"code": code})
    texts = [(e["type"], e["text"]) for e in events if e["type"] in ("stdout", "stderr")]
    assert texts == [("stdout", "ab\n"), ("stdout", "c"), ("stdout", "d"), ("stderr", "e\n"), ("stdout", "tail")]
