"""The code interpreter: ``sbx.run_code(...)`` and code contexts.

A context is a persistent interpreter inside the sandbox (today: Python);
variables, imports and the working directory survive from one ``run_code``
to the next.  Every sandbox has a ``default`` Python context, started on
first use.  The shapes follow E2B's code-interpreter SDK::

    execution = sbx.run_code("import pandas as pd\\npd.DataFrame({'a': [1, 2]})")
    execution.text                   # text of the main result (the last expression)
    execution.results[0].html        # rich formats, None when absent
    execution.logs.stdout            # list of str
    execution.error                  # None, or ExecutionError(name, value, traceback)

Errors of the code are returned in ``execution.error``, never raised; only
errors of the request itself (unknown context, ended sandbox, bad argument)
raise :class:`~corral.CorralError` subclasses.
"""
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from .commands import NDJSON, _events
from .exceptions import CorralError, InvalidArgumentError

#: The rich formats a result may carry, besides ``text``, in E2B's order.
FORMATS = ("html", "markdown", "svg", "png", "jpeg", "pdf", "latex", "json", "javascript")


class OutputMessage(str):
    """A chunk of stdout or stderr given to ``on_stdout`` / ``on_stderr``.

    It is the text itself (a ``str``), with E2B's ``OutputMessage`` attributes:
    ``line`` (the text), ``error`` (True for stderr) and ``timestamp``
    (microseconds since the epoch, when the SDK received it)."""

    def __new__(cls, text, error=False, timestamp=None):
        self = super().__new__(cls, text)
        self.error = bool(error)
        self.timestamp = int(time.time() * 1e6) if timestamp is None else timestamp
        return self

    @property
    def line(self):
        return str(self)


@dataclass
class Logs:
    """What the code wrote, as the chunks in which it was written."""

    stdout: List[str] = field(default_factory=list)
    stderr: List[str] = field(default_factory=list)

    def to_json(self):
        return {"stdout": list(self.stdout), "stderr": list(self.stderr)}


@dataclass
class ExecutionError:
    """An exception raised by the executed code (``KeyboardInterrupt`` when a
    ``timeout`` interrupted it; ``ContextDied`` / ``TimeoutError`` when the
    interpreter died or had to be restarted, its state lost)."""

    name: str
    value: str
    traceback: str

    def to_json(self):
        return {"name": self.name, "value": self.value, "traceback": self.traceback}

    @classmethod
    def from_json(cls, d):
        return cls(name=d.get("name") or "", value=d.get("value") or "", traceback=d.get("traceback") or "")


class Result:
    """One result of an execution: the value of the last expression
    (``is_main_result``), a ``display(...)`` call, or a matplotlib figure.

    Each format is an attribute, ``None`` when absent: ``text``, ``html``,
    ``markdown``, ``svg``, ``png``, ``jpeg``, ``pdf`` (the three binary ones
    base64-encoded, as in E2B), ``latex``, ``json`` (the decoded value),
    ``javascript``.  Formats corrald may add later land in ``extra``.
    """

    __slots__ = ("text", "is_main_result", "extra", "raw") + FORMATS

    def __init__(self, is_main_result=False, text=None, extra=None, raw=None, **formats):
        unknown = set(formats) - set(FORMATS)
        if unknown:
            raise TypeError(f"unknown result formats: {', '.join(sorted(unknown))}")
        self.is_main_result = bool(is_main_result)
        self.text = text
        for name in FORMATS:
            setattr(self, name, formats.get(name))
        self.extra = dict(extra or {})
        self.raw = raw if raw is not None else {}

    @classmethod
    def from_json(cls, d):
        known = {k: v for k, v in d.items() if k in FORMATS}
        extra = {k: v for k, v in d.items() if k not in FORMATS and k not in ("type", "text", "is_main_result")}
        return cls(is_main_result=d.get("is_main_result", False), text=d.get("text"), extra=extra, raw=dict(d),
                   **known)

    def formats(self):
        """The names of the rich formats present (``"png"``, ``"html"``, ...),
        then those of ``extra``.  As in E2B, ``text`` is not listed: nearly
        every result has it."""
        return [n for n in FORMATS if getattr(self, n) is not None] + list(self.extra)

    def to_json(self):
        d = {"is_main_result": self.is_main_result}
        if self.text is not None:
            d["text"] = self.text
        d.update({n: getattr(self, n) for n in FORMATS if getattr(self, n) is not None})
        d.update(self.extra)
        return d

    def __getitem__(self, key):
        """E2B compatibility: ``result["png"]``."""
        if key in FORMATS or key in ("text", "is_main_result"):
            return getattr(self, key)
        return self.extra[key]

    def __eq__(self, other):
        return isinstance(other, Result) and self.to_json() == other.to_json()

    def __str__(self):
        return self.text if self.text is not None else repr(self)

    def __repr__(self):
        shown = ", ".join(self.formats())
        text = self.text if self.text is None or len(self.text) <= 60 else self.text[:57] + "..."
        return f"Result(text={text!r}{', formats=[' + shown + ']' if shown else ''}" \
               f"{', main' if self.is_main_result else ''})"

    # Jupyter shows a Result as what it holds.
    def _repr_html_(self):
        return self.html

    def _repr_markdown_(self):
        return self.markdown

    def _repr_svg_(self):
        return self.svg

    def _repr_png_(self):
        return self.png

    def _repr_jpeg_(self):
        return self.jpeg

    def _repr_pdf_(self):
        return self.pdf

    def _repr_latex_(self):
        return self.latex

    def _repr_json_(self):
        return self.json

    def _repr_javascript_(self):
        return self.javascript


@dataclass
class Execution:
    """The outcome of ``run_code``."""

    results: List[Result] = field(default_factory=list)
    logs: Logs = field(default_factory=Logs)
    error: Optional[ExecutionError] = None
    execution_count: Optional[int] = None
    duration_ms: Optional[int] = None

    @property
    def text(self):
        """The text of the main result (the value of the last expression), else None."""
        for r in self.results:
            if r.is_main_result:
                return r.text
        return None

    def to_json(self):
        return {"results": [r.to_json() for r in self.results], "logs": self.logs.to_json(),
                "error": self.error.to_json() if self.error else None, "execution_count": self.execution_count,
                "duration_ms": self.duration_ms}

    @classmethod
    def from_json(cls, d):
        logs = d.get("logs") or {}
        err = d.get("error")
        return cls(results=[Result.from_json(r) for r in d.get("results") or []],
                   logs=Logs(stdout=list(logs.get("stdout") or []), stderr=list(logs.get("stderr") or [])),
                   error=ExecutionError.from_json(err) if err else None,
                   execution_count=d.get("execution_count"), duration_ms=d.get("duration_ms"))


@dataclass
class Context:
    """A code context: one persistent interpreter of a sandbox."""

    id: str
    language: str
    cwd: str
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, d):
        return cls(id=d.get("id"), language=d.get("language"), cwd=d.get("cwd"), raw=dict(d))


def _context_id(context):
    if isinstance(context, Context):
        return context.id
    if isinstance(context, str) and context:
        return context
    raise InvalidArgumentError(f"a context must be a Context or a context id, not {context!r}")


def _envs(envs):
    return {str(k): str(v) for k, v in envs.items()}


class CodeInterpreter:
    """The code-interpreter calls of one sandbox (exposed as ``Sandbox`` methods)."""

    def __init__(self, sandbox_id, transport):
        self._id = sandbox_id
        self._t = transport

    def _path(self, suffix, *segments):
        return self._t.path("/v1/sandboxes/{}" + suffix, self._id, *segments)

    def run_code(self, code, language=None, context=None, envs=None, timeout=None, on_stdout=None,
                 on_stderr=None, on_result=None, on_error=None, max_output=None):
        if not isinstance(code, str) or not code:
            raise InvalidArgumentError("code must be a non-empty string")
        if language is not None and context is not None:
            raise InvalidArgumentError("give a context or a language, not both (a context has its language)")
        body = {"code": code}
        if context is not None:
            body["context_id"] = _context_id(context)
        elif language is not None:
            body["language"] = str(language)
        if envs:
            body["env"] = _envs(envs)
        if timeout is not None:
            if timeout <= 0:
                raise InvalidArgumentError("timeout must be a positive number of seconds")
            body["timeout_ms"] = max(1, int(round(timeout * 1000)))
        if max_output is not None:
            body["max_output"] = int(max_output)
        path = self._path("/execute")
        if all(cb is None for cb in (on_stdout, on_stderr, on_result, on_error)):
            return Execution.from_json(self._t.call("POST", path, json=body, timeout=None))
        resp = self._t.request("POST", path, json=body, headers={"Accept": NDJSON}, stream=True, timeout=None)
        return _consume(resp, on_stdout, on_stderr, on_result, on_error)

    def create_context(self, language="python", cwd=None, envs=None):
        body = {"language": language or "python"}
        if cwd is not None:
            body["cwd"] = cwd
        if envs:
            body["env"] = _envs(envs)
        return Context.from_json(self._t.call("POST", self._path("/contexts"), json=body, timeout=None))

    def list_contexts(self):
        d = self._t.call("GET", self._path("/contexts"))
        return [Context.from_json(c) for c in (d or {}).get("contexts", [])]

    def remove_context(self, context):
        self._t.call("DELETE", self._path("/contexts/{}", _context_id(context)))

    def restart_context(self, context):
        d = self._t.call("POST", self._path("/contexts/{}/restart", _context_id(context)), timeout=None)
        return Context.from_json(d) if d else None


def _consume(resp, on_stdout, on_stderr, on_result, on_error):
    """Read an ndjson execute stream to its end event, calling back as events come."""
    ex = Execution()
    events = _events(resp)
    try:
        return _fold(ex, events, on_stdout, on_stderr, on_result, on_error)
    finally:
        events.close()
        resp.close()


def _fold(ex, events, on_stdout, on_stderr, on_result, on_error):
    for ev in events:
        kind = ev.get("type")
        if kind in ("stdout", "stderr"):
            text = ev.get("text") or ""
            (ex.logs.stdout if kind == "stdout" else ex.logs.stderr).append(text)
            cb = on_stdout if kind == "stdout" else on_stderr
            if cb is not None:
                cb(OutputMessage(text, error=kind == "stderr"))
        elif kind == "result":
            result = Result.from_json(ev)
            ex.results.append(result)
            if on_result is not None:
                on_result(result)
        elif kind == "error":
            ex.error = ExecutionError.from_json(ev)
            if on_error is not None:
                on_error(ex.error)
        elif kind == "execution_count":
            ex.execution_count = ev.get("count")
        elif kind == "end":
            ex.duration_ms = ev.get("duration_ms")
            return ex
    raise CorralError("the connection to corrald ended before the execution did")
