"""Running commands in a sandbox: ``sbx.commands``."""
import http.client
import json

from .exceptions import (CommandExitError, CommandTimeoutError, CorralConnectionError, CorralError,
                         NotFoundError, SandboxNotRunningError)
from .models import CommandResult, ProcessInfo

NDJSON = "application/x-ndjson"


def _text(data, what):
    if data is None or isinstance(data, str):
        return data
    try:
        return bytes(data).decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{what} must be UTF-8 text (write binary data with files.write)") from None


def _checked(result, check):
    if check and result.reason == "timeout":
        raise CommandTimeoutError(result, f"command timed out after {result.duration_ms} ms")
    if check and result.exit_code != 0:
        raise CommandExitError(result)
    return result


def _events(resp):
    """The JSON events of an ndjson answer, until it ends."""
    try:
        while True:
            try:
                line = resp.readline()
            except (OSError, http.client.HTTPException) as e:
                raise CorralConnectionError(f"connection to corrald lost: {e}") from e
            if not line:
                return
            if line.strip():
                yield json.loads(line)
    finally:
        resp.close()


def _consume(resp, on_stdout, on_stderr):
    """Read an ndjson command stream to its exit event; returns the CommandResult.
    An error event (the sandbox ended first) raises SandboxNotRunningError."""
    out, err = [], []
    for ev in _events(resp):
        kind = ev.get("type")
        if kind in ("stdout", "stderr"):
            data = ev.get("data", "")
            (out if kind == "stdout" else err).append(data)
            cb = on_stdout if kind == "stdout" else on_stderr
            if cb is not None:
                cb(data)
        elif kind == "exit":
            return CommandResult.from_json(ev, stdout="".join(out), stderr="".join(err))
        elif kind == "error":
            raise SandboxNotRunningError(ev.get("message") or "the sandbox ended before the command did",
                                         code=ev.get("code") or "sandbox_not_running")
    raise CorralError("the connection to corrald ended before the command did")


class CommandHandle:
    """A background command (``commands.run(..., background=True)`` or
    ``commands.connect(pid)``)."""

    def __init__(self, commands, pid, on_stdout=None, on_stderr=None):
        self._commands = commands
        self.pid = pid
        self._on_stdout = on_stdout
        self._on_stderr = on_stderr

    def __repr__(self):
        return f"CommandHandle(pid={self.pid})"

    def wait(self, on_stdout=None, on_stderr=None, check=True):
        """Wait for the command to end and return its :class:`CommandResult`.

        Output produced so far is delivered first, then the rest as it comes
        (to the callbacks, when given).  Raises :class:`CommandExitError` on a
        non-zero exit unless ``check=False``.
        """
        on_stdout = on_stdout or self._on_stdout
        on_stderr = on_stderr or self._on_stderr
        return self._commands._attach(self.pid, on_stdout, on_stderr, check)

    def kill(self):
        """SIGKILL the command's process group.  False when it is already gone."""
        return self._commands.kill(self.pid)

    def send_stdin(self, data, eof=False):
        """Write ``data`` (str, or UTF-8 bytes) to the command's stdin; ``eof`` closes it after."""
        self._commands.send_stdin(self.pid, data, eof=eof)

    def close_stdin(self):
        """Close the command's stdin (it reads end-of-file)."""
        self._commands.send_stdin(self.pid, "", eof=True)

    def signal(self, sig):
        """Send a signal (a name such as ``"SIGTERM"``, or a number) to the command."""
        self._commands.send_signal(self.pid, sig)


class Commands:
    """Commands of one sandbox; reached as ``sbx.commands``."""

    def __init__(self, sandbox_id, transport):
        self._id = sandbox_id
        self._t = transport

    def _path(self, suffix="", *segments):
        return self._t.path("/v1/sandboxes/{}/commands" + suffix, self._id, *segments)

    @staticmethod
    def _body(cmd, envs, cwd, timeout, stdin, max_output):
        body = {"cmd": cmd if isinstance(cmd, str) else [str(a) for a in cmd]}
        if envs:
            body["env"] = {str(k): str(v) for k, v in envs.items()}
        if cwd is not None:
            body["cwd"] = cwd
        if timeout is not None:
            body["timeout_ms"] = max(1, int(round(timeout * 1000)))
        if stdin is not None:
            body["stdin"] = _text(stdin, "stdin")
        if max_output is not None:
            body["max_output"] = int(max_output)
        return body

    def run(self, cmd, envs=None, cwd=None, timeout=None, stdin=None, background=False,
            on_stdout=None, on_stderr=None, check=True, max_output=None):
        """Run ``cmd`` in the sandbox and return a :class:`CommandResult`.

        :param cmd: a string (run by ``/bin/sh -c``) or a list of strings (argv).
        :param envs: extra environment variables for this command.
        :param cwd: working directory (default ``/home/user``).
        :param timeout: seconds after which the command is killed (reason
            ``"timeout"``, exit code 124); ``None``: no limit but the sandbox's.
        :param stdin: text (or UTF-8 bytes) given to the command's stdin.
        :param background: return a :class:`CommandHandle` at once instead
            (the callbacks then serve its ``wait()``).
        :param on_stdout: called with each chunk of stdout (str) as it arrives,
            likewise ``on_stderr``; the result still holds all the output.
        :param check: like E2B, a non-zero exit raises :class:`CommandExitError`
            (:class:`CommandTimeoutError` on a timeout); ``check=False`` returns
            the result instead.
        :param max_output: cap in bytes of each of stdout and stderr kept by corrald.
        :raises SandboxNotRunningError: the sandbox has ended.
        :raises InvalidArgumentError: the command could not start (e.g. no such ``cwd``).
        """
        body = self._body(cmd, envs, cwd, timeout, stdin, max_output)
        if background:
            body["background"] = True
            d = self._t.call("POST", self._path(), json=body)
            return CommandHandle(self, d["pid"], on_stdout, on_stderr)
        if on_stdout is None and on_stderr is None:
            result = CommandResult.from_json(self._t.call("POST", self._path(), json=body, timeout=None))
        else:
            resp = self._t.request("POST", self._path(), json=body, headers={"Accept": NDJSON},
                                   stream=True, timeout=None)
            result = _consume(resp, on_stdout, on_stderr)
        return _checked(result, check)

    def _attach(self, pid, on_stdout, on_stderr, check):
        path = self._path("/{}", pid)
        if on_stdout is None and on_stderr is None:
            result = CommandResult.from_json(self._t.call("GET", path, timeout=None))
        else:
            resp = self._t.request("GET", path, headers={"Accept": NDJSON}, stream=True, timeout=None)
            result = _consume(resp, on_stdout, on_stderr)
        if result.pid is None:
            result.pid = pid
        return _checked(result, check)

    def list(self):
        """Running commands, and ended background commands whose output was not read yet
        (a list of :class:`ProcessInfo`)."""
        d = self._t.call("GET", self._path())
        return [ProcessInfo.from_json(c) for c in d.get("commands", [])]

    def connect(self, pid, on_stdout=None, on_stderr=None):
        """A :class:`CommandHandle` for the background command ``pid``
        (:class:`NotFoundError` when there is none)."""
        if not any(p.pid == pid for p in self.list()):
            raise NotFoundError(f"no command with pid {pid}", status=404, code="not_found")
        return CommandHandle(self, pid, on_stdout, on_stderr)

    def send_signal(self, pid, sig):
        """Send ``sig`` (``"SIGTERM"``, ``"TERM"`` or a number) to the command's process group."""
        self._t.call("POST", self._path("/{}/signal", pid), json={"signal": sig})

    def kill(self, pid):
        """SIGKILL the command ``pid``.  Returns False when there is no such command."""
        try:
            self.send_signal(pid, "SIGKILL")
        except NotFoundError:
            return False
        return True

    def send_stdin(self, pid, data, eof=False):
        """Write ``data`` (str, or UTF-8 bytes) to the stdin of command ``pid``;
        ``eof=True`` closes it afterwards."""
        self._t.call("POST", self._path("/{}/stdin", pid),
                     json={"data": _text(data, "data") or "", "eof": bool(eof)})
