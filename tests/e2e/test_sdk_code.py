"""End-to-end tests of the SDK's code interpreter (sbx.run_code and code
contexts, sdk/python/corral/code.py) against a real corrald (see daemon.py)."""
import base64
import struct
import sys
import threading
import time

import pytest

from daemon import SDK_DIR, corrald, needs_corrald, tenant  # noqa: F401 (fixtures)

sys.path.insert(0, SDK_DIR)
from corral import (Context, CorralError, Execution, ExecutionError, InvalidArgumentError,  # noqa: E402
                    NotFoundError, OutputMessage, Result, Sandbox, SandboxNotRunningError)

pytestmark = needs_corrald

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def conn(tenant):
    return {"api_key": tenant.key, "url": tenant.daemon.url}


@pytest.fixture(scope="module")
def sbx(conn):
    with Sandbox.create(timeout=900, **conn) as s:
        yield s


@pytest.fixture
def ctx(sbx):
    """A fresh context of its own, removed afterwards."""
    c = sbx.create_code_context()
    yield c
    try:
        sbx.remove_code_context(c)
    except NotFoundError:
        pass


# ---- executions ----

def test_state_persists_between_runs(sbx, ctx):
    first = sbx.run_code("import os\ncounter = 41\ndef bump(n):\n    return counter + n\nos.chdir('/tmp')",
                         context=ctx)
    assert isinstance(first, Execution)
    assert first.error is None and first.results == [] and first.text is None
    ex = sbx.run_code("print('side', end='')\nbump(1)", context=ctx)
    assert ex.error is None
    assert ex.text == "42"
    assert [(r.text, r.is_main_result) for r in ex.results] == [("42", True)]
    assert "".join(ex.logs.stdout) == "side" and ex.logs.stderr == []
    assert ex.execution_count == first.execution_count + 1
    assert sbx.run_code("os.getcwd()", context=ctx.id).text == "'/tmp'"      # an id works too


def test_default_context_and_language(sbx):
    sbx.run_code("in_default = 'yes'")
    assert sbx.run_code("in_default", language="python").text == "'yes'"
    assert sbx.run_code("in_default", context="default").text == "'yes'"


def test_matplotlib_figure_is_a_png_result(sbx):
    ex = sbx.run_code("import matplotlib.pyplot as plt\nfig = plt.figure(figsize=(4, 3), dpi=50)\n"
                      "plt.plot([1, 3, 2])\nNone")
    assert ex.error is None, ex.error
    assert len(ex.results) == 1
    res = ex.results[0]
    assert isinstance(res, Result) and res.is_main_result is False
    assert "png" in res.formats() and res["png"] == res.png
    raw = base64.b64decode(res.png)
    assert raw[:8] == PNG_MAGIC
    assert struct.unpack(">II", raw[16:24]) == (200, 150)
    assert res.html is None and res.jpeg is None and res.svg is None
    assert "Figure" in res.text


def test_dataframe_has_html_with_its_values(sbx):
    ex = sbx.run_code("import pandas as pd\npd.DataFrame({'price': [111, 222], 'item': ['apple', 'pear']})")
    assert ex.error is None, ex.error
    res = ex.results[0]
    assert res.is_main_result
    assert "<table" in res.html and "111" in res.html and "222" in res.html and "pear" in res.html
    assert "html" in res.formats() and "text" not in res.formats()
    assert ex.text == res.text and "apple" in res.text and "price" in res.text


def test_display_and_rich_formats(sbx):
    ex = sbx.run_code("class Rich:\n"
                      "    def _repr_markdown_(self): return '**bold**'\n"
                      "    def _repr_json_(self): return {'k': [1, 2]}\n"
                      "    def _repr_latex_(self): return r'$x^2$'\n"
                      "display(Rich())\n'last'")
    assert len(ex.results) == 2
    shown, main = ex.results
    assert not shown.is_main_result and main.is_main_result
    assert shown.markdown == "**bold**" and shown.json == {"k": [1, 2]} and shown.latex == "$x^2$"
    assert shown.formats() == ["markdown", "latex", "json"]
    assert shown.html is None and shown.png is None
    assert main.formats() == [] and main.text == "'last'" and ex.text == "'last'"


def test_error_is_returned_not_raised(sbx, ctx):
    ex = sbx.run_code("kept = 7\n\ndef inner():\n    raise ValueError('bad value 123')\n\ninner()", context=ctx)
    assert isinstance(ex.error, ExecutionError)
    assert ex.error.name == "ValueError" and ex.error.value == "bad value 123"
    tb = ex.error.traceback
    assert tb.startswith("Traceback") and "line 6" in tb and "inner()" in tb and "line 4" in tb
    assert tb.rstrip().endswith("ValueError: bad value 123") and "runner.py" not in tb
    assert ex.results == [] and ex.text is None
    # The context lives on with its state.
    assert sbx.run_code("kept", context=ctx).text == "7"
    assert sbx.run_code("undefined_name", context=ctx).error.name == "NameError"
    syn = sbx.run_code("def (:", context=ctx).error
    assert syn.name == "SyntaxError"


def test_callbacks_are_called_live_and_in_order(sbx):
    events = []
    code = ("import sys, time\nprint('first')\nsys.stdout.flush()\ntime.sleep(1.5)\n"
            "print('oops', file=sys.stderr)\ndisplay('shown')\nprint('second')\n'the end'")
    ex = sbx.run_code(code, on_stdout=lambda m: events.append(("out", m, time.monotonic())),
                      on_stderr=lambda m: events.append(("err", m, time.monotonic())),
                      on_result=lambda r: events.append(("result", r, time.monotonic())),
                      on_error=lambda e: events.append(("error", e, time.monotonic())))
    seen = [(kind, str(x) if kind != "result" else x.text) for kind, x, _ in events]
    # Output comes a line at a time (print's text and newline together).
    assert seen == [("out", "first\n"), ("err", "oops\n"), ("result", "'shown'"), ("out", "second\n"),
                    ("result", "'the end'")]
    # 'first' came while the code was still sleeping, not at the end.
    assert events[1][2] - events[0][2] >= 1.0
    first = events[0][1]
    assert isinstance(first, OutputMessage) and first.line == "first\n" and first.error is False
    assert events[1][1].error is True and isinstance(first.timestamp, int)
    # The execution still holds it all.
    assert ex.logs.stdout == ["first\n", "second\n"] and ex.logs.stderr == ["oops\n"]
    assert [r.text for r in ex.results] == ["'shown'", "'the end'"] and ex.text == "'the end'"
    assert ex.error is None and ex.execution_count >= 1


def test_on_error_callback(sbx):
    errors, results = [], []
    ex = sbx.run_code("print('before')\n1 / 0", on_error=errors.append, on_result=results.append)
    assert len(errors) == 1 and errors[0] is ex.error
    assert ex.error.name == "ZeroDivisionError" and ex.error.value == "division by zero"
    assert results == [] and ex.logs.stdout == ["before\n"]


def test_a_failing_callback_stops_the_run_and_the_context_recovers(sbx, ctx):
    sbx.run_code("alive = 'yes'", context=ctx)

    def explode(_):
        raise RuntimeError("callback failed")

    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="callback failed"):
        sbx.run_code("print('go')\nimport time\ntime.sleep(20)", context=ctx, on_stdout=explode)
    assert time.monotonic() - t0 < 10
    # corrald interrupted the abandoned code; the next run works, state intact.
    ex = sbx.run_code("alive", context=ctx, timeout=30)
    assert ex.error is None and ex.text == "'yes'"
    assert time.monotonic() - t0 < 10                   # it did not wait for the sleep to end


def test_timeout_interrupts_and_state_survives(sbx, ctx):
    sbx.run_code("survivor = 'still here'", context=ctx)
    t0 = time.monotonic()
    # Bounded, so that a timeout that is not applied fails the test instead of hanging it.
    ex = sbx.run_code("import time\nend = time.monotonic() + 20\nwhile time.monotonic() < end:\n"
                      "    time.sleep(0.05)", context=ctx, timeout=0.5)
    assert time.monotonic() - t0 < 10
    assert ex.error is not None and ex.error.name == "KeyboardInterrupt"
    assert sbx.run_code("survivor", context=ctx).text == "'still here'"
    # Streamed too.
    out = []
    t0 = time.monotonic()
    ex = sbx.run_code("print('tick')\nimport time\ntime.sleep(20)", context=ctx, timeout=0.5, on_stdout=out.append)
    assert time.monotonic() - t0 < 10
    assert out[0] == "tick\n" and ex.error.name == "KeyboardInterrupt"
    assert sbx.run_code("survivor", context=ctx).text == "'still here'"


def test_envs_and_max_output(sbx, ctx):
    assert sbx.run_code("import os\nos.environ.get('RUN_VAR')", context=ctx,
                        envs={"RUN_VAR": 12}).text == "'12'"
    ex = sbx.run_code("print('z' * 5000)", context=ctx, max_output=1000)
    assert len("".join(ex.logs.stdout)) == 1000
    assert "output truncated" in "".join(ex.logs.stderr)


# ---- contexts ----

def test_two_contexts_are_independent(sbx):
    a = sbx.create_code_context(cwd="/tmp", envs={"CTX_VAR": "a-value"})
    b = sbx.create_code_context()
    try:
        assert isinstance(a, Context) and a.id.startswith("ctx") and a.id != b.id
        assert a.language == "python" and a.cwd == "/tmp" and b.cwd == "/home/user"
        sbx.run_code("where = 'a'", context=a)
        sbx.run_code("where = 'b'", context=b)
        assert sbx.run_code("where", context=a).text == "'a'"
        assert sbx.run_code("where", context=b).text == "'b'"
        assert sbx.run_code("where").error.name == "NameError"            # not in default either
        assert sbx.run_code("import os\n(os.getcwd(), os.environ.get('CTX_VAR'))", context=a).text \
            == "('/tmp', 'a-value')"
        assert sbx.run_code("import os\nos.environ.get('CTX_VAR')", context=b).text is None
        listed = {c.id: c for c in sbx.list_code_contexts()}
        assert {"default", a.id, b.id} <= set(listed)
        assert listed[a.id] == a and listed["default"].language == "python"
        # Both run at once.
        results = {}

        def run(c):
            results[c.id] = sbx.run_code("import time\ntime.sleep(1)\nwhere", context=c).text

        threads = [threading.Thread(target=run, args=(c,)) for c in (a, b)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert results == {a.id: "'a'", b.id: "'b'"}
        assert time.monotonic() - t0 < 1.9
    finally:
        sbx.remove_code_context(a)
        sbx.remove_code_context(b.id)
    ids = [c.id for c in sbx.list_code_contexts()]
    assert a.id not in ids and b.id not in ids and "default" in ids
    with pytest.raises(NotFoundError):
        sbx.run_code("1", context=a)
    with pytest.raises(NotFoundError):
        sbx.remove_code_context(a)


def test_restart_clears_state(sbx, ctx):
    sbx.run_code("import json\nforgotten = 1", context=ctx)
    sbx.run_code("forgotten += 1", context=ctx)
    again = sbx.restart_code_context(ctx)
    assert again.id == ctx.id and again.cwd == ctx.cwd and again.language == "python"
    ex = sbx.run_code("forgotten", context=ctx)
    assert ex.error.name == "NameError" and ex.execution_count == 1
    assert sbx.run_code("'json' in dir()", context=ctx).text == "False"


def test_restart_default_context(sbx):
    sbx.run_code("default_state = 1")
    assert sbx.restart_code_context("default").id == "default"
    assert sbx.run_code("default_state").error.name == "NameError"


# ---- request errors raise ----

def test_bad_input_raises_typed_errors(sbx, conn):
    for bad in ("", None, 42):
        with pytest.raises(InvalidArgumentError):
            sbx.run_code(bad)
    with pytest.raises(InvalidArgumentError) as e:
        sbx.run_code("1", language="cobol")
    assert e.value.status == 400 and e.value.code == "invalid_argument" and "cobol" in e.value.message
    with pytest.raises(InvalidArgumentError) as e:
        sbx.run_code("1", language="cobol", on_stdout=print)                 # the streamed path
    assert e.value.status == 400
    with pytest.raises(InvalidArgumentError):
        sbx.run_code("1", language="python", context="default")
    with pytest.raises(InvalidArgumentError):
        sbx.run_code("1", timeout=0)
    with pytest.raises(InvalidArgumentError):
        sbx.run_code("1", context=12)
    with pytest.raises(InvalidArgumentError) as e:
        sbx.run_code("1", max_output=0)
    assert e.value.status == 400
    with pytest.raises(NotFoundError) as e:
        sbx.run_code("1", context="ctxnope")
    assert e.value.status == 404 and e.value.code == "not_found"
    with pytest.raises(NotFoundError):
        sbx.run_code("1", context="ctxnope", on_result=print)
    with pytest.raises(NotFoundError):
        sbx.restart_code_context("ctxnope")
    with pytest.raises(InvalidArgumentError) as e:
        sbx.create_code_context(language="cobol")
    assert e.value.status == 400
    with pytest.raises(CorralError) as e:
        sbx.create_code_context(cwd="/no/such/dir")
    assert e.value.status in (400, 404)
    with pytest.raises(NotFoundError):
        Sandbox("sb_00000000000000000000", sbx._t).run_code("1")


def test_ended_sandbox_raises(conn):
    s = Sandbox.create(**conn)
    try:
        assert s.run_code("1 + 1").text == "2"
        ctx = s.create_code_context()
    finally:
        s.kill()
    with pytest.raises(SandboxNotRunningError):
        s.run_code("1")
    with pytest.raises(SandboxNotRunningError):
        s.run_code("1", context=ctx, on_stdout=print)
    with pytest.raises(SandboxNotRunningError):
        s.list_code_contexts()
    with pytest.raises(SandboxNotRunningError):
        s.create_code_context()
