"""Sandboxes of corrald: create, connect, list, kill."""
import functools
import urllib.parse

from ._http import Transport
from .code import CodeInterpreter
from .commands import Commands
from .exceptions import NotFoundError
from .files import Filesystem
from .models import SandboxInfo


class _class_or_instance:
    """A method that works on an instance (``sbx.kill()``) and on the class
    with a sandbox id (``Sandbox.kill("sb_...", api_key=..., url=...)``), as in E2B."""

    def __init__(self, func):
        self._func = func
        functools.update_wrapper(self, func)

    def __get__(self, obj, cls):
        if obj is not None:
            return functools.partial(self._func, obj)
        func = self._func

        @functools.wraps(func)
        def by_id(sandbox_id, *args, api_key=None, url=None, **kwargs):
            return func(cls(sandbox_id, Transport(api_key, url)), *args, **kwargs)
        return by_id


class Sandbox:
    """A sandbox of corrald.

    Make one with :meth:`create` (or :meth:`connect` to an existing one) and use
    it as a context manager to kill it at the end::

        from corral import Sandbox

        with Sandbox.create(timeout=120, metadata={"job": "42"}) as sbx:
            print(sbx.commands.run("python3 -c 'print(6*7)'").stdout)
            sbx.files.write("/home/user/data.csv", "a,b\\n1,2\\n")

    ``api_key`` and ``url`` default to the ``CORRAL_API_KEY`` and ``CORRAL_URL``
    environment variables (then ``http://127.0.0.1:7070``); ``url`` may be
    ``unix:/path/to/corrald.sock``.

    :ivar commands: :class:`~corral.commands.Commands` of this sandbox.
    :ivar files: :class:`~corral.files.Filesystem` of this sandbox.
    """

    def __init__(self, sandbox_id, transport, info=None):
        self._id = sandbox_id
        self._t = transport
        self._info = info
        self.commands = Commands(sandbox_id, transport)
        self.files = Filesystem(sandbox_id, transport)
        self._code = CodeInterpreter(sandbox_id, transport)

    def __repr__(self):
        return f"Sandbox(id={self._id!r})"

    @property
    def id(self):
        """The sandbox id (``sb_`` + 20 characters)."""
        return self._id

    sandbox_id = id

    # ---- making and finding sandboxes ----

    @classmethod
    def create(cls, template="base", timeout=300, metadata=None, envs=None, memory_mb=None, cpus=None,
               pids=None, disk_mb=None, network=None, allow=None, secrets=None, api_key=None, url=None,
               request_timeout=60.0):
        """Start a new sandbox and return it.

        :param template: only ``"base"`` today.
        :param timeout: seconds until corrald ends the sandbox (see :meth:`set_timeout`).
        :param metadata: string key/values, to find it again with :meth:`list`.
        :param envs: environment variables given to every command.
        :param memory_mb: memory limit (16..65536); ``cpus`` CPU quota (0.01..64);
            ``pids`` process limit; ``disk_mb`` size of each of ``/tmp`` and ``/home/user``.
        :param network: egress mode, ``"none"`` (default), ``"allowlist"`` or ``"open"``;
            ``allow`` its rules (``"pypi.org"``, ``"*.example.com"``, ``"host:443"``,
            ``"10.0.0.0/8"``); see :meth:`set_network`.
        :param secrets: ``[{"name", "value", "hosts": [...], "header"?, "format"?}]``: values
            that stay in corrald's proxy; the sandbox's variable ``name`` holds a placeholder
            that the proxy replaces only in requests to ``hosts`` (needs ``network``).
        :param request_timeout: socket timeout of ordinary API calls, in seconds.
        :raises QuotaExceededError: the tenant is at its quota.
        :raises InvalidArgumentError: a limit is out of range.
        """
        t = Transport(api_key, url, request_timeout)
        body = {"template": template}
        if timeout is not None:
            body["timeout_s"] = int(timeout)
        if metadata:
            body["metadata"] = {str(k): str(v) for k, v in metadata.items()}
        if envs:
            body["env"] = {str(k): str(v) for k, v in envs.items()}
        limits = {k: v for k, v in (("memory_mb", memory_mb), ("cpus", cpus), ("pids", pids),
                                    ("disk_mb", disk_mb)) if v is not None}
        if limits:
            body["limits"] = limits
        if network is not None or allow:
            body["network"] = {"mode": network or "allowlist", "allow": list(allow or [])}
        if secrets:
            body["secrets"] = [dict(s) for s in secrets]
        d = t.call("POST", "/v1/sandboxes", json=body, timeout=None)
        return cls(d["id"], t, SandboxInfo.from_json(d))

    @classmethod
    def connect(cls, sandbox_id, api_key=None, url=None, request_timeout=60.0):
        """The existing sandbox ``sandbox_id`` (:class:`NotFoundError` when unknown)."""
        t = Transport(api_key, url, request_timeout)
        d = t.call("GET", t.path("/v1/sandboxes/{}", sandbox_id))
        return cls(sandbox_id, t, SandboxInfo.from_json(d))

    @classmethod
    def list(cls, state=None, metadata=None, api_key=None, url=None):
        """:class:`SandboxInfo` of the sandboxes the key can see, newest first.

        :param state: ``"running"`` or ``"ended"``.
        :param metadata: only sandboxes whose metadata has all these key/values.
        """
        t = Transport(api_key, url)
        query = {"state": state}
        for k, v in (metadata or {}).items():
            query[f"metadata.{k}"] = v
        d = t.call("GET", t.path("/v1/sandboxes", **query))
        return [SandboxInfo.from_json(s) for s in d.get("sandboxes", [])]

    # ---- one sandbox ----

    def info(self):
        """Fresh :class:`SandboxInfo` from corrald."""
        self._info = SandboxInfo.from_json(self._t.call("GET", self._t.path("/v1/sandboxes/{}", self._id)))
        return self._info

    get_info = info

    def is_running(self):
        """Whether the sandbox is still running (False also once corrald forgot it)."""
        try:
            return self.info().state == "running"
        except NotFoundError:
            return False

    @_class_or_instance
    def set_timeout(self, seconds):
        """End the sandbox ``seconds`` from now; returns the new :class:`SandboxInfo`
        (also ``Sandbox.set_timeout(id, seconds)``)."""
        d = self._t.call("POST", self._t.path("/v1/sandboxes/{}/timeout", self._id),
                         json={"timeout_s": int(seconds)})
        self._info = SandboxInfo.from_json(d) if d else None
        return self._info

    def get_host(self, port):
        """``{port}-{id}.localhost:{corrald's port}``: the Host-routed address of a server
        listening on ``port`` in the sandbox (E2B's ``getHost``); send the API key with it
        unless the port was made public (see docs/api.md, Ports)."""
        netloc = urllib.parse.urlsplit(self._t.url).netloc if self._t.url.startswith("http") else "localhost:7070"
        port_part = netloc.rsplit(":", 1)[1] if ":" in netloc else "80"
        return f"{int(port)}-{self._id}.localhost:{port_part}"

    @_class_or_instance
    def set_network(self, mode, allow=None):
        """Replace the sandbox's egress policy (also ``Sandbox.set_network(id, mode, allow)``):
        ``"none"``, ``"allowlist"`` (only the ``allow`` rules) or ``"open"`` (any public
        destination; private ranges still refused unless listed).  Open connections the
        new policy refuses are closed.  Returns the policy now in force (a dict)."""
        return self._t.call("PUT", self._t.path("/v1/sandboxes/{}/network", self._id),
                            json={"mode": mode, "allow": list(allow or [])})

    @_class_or_instance
    def kill(self):
        """Kill every process and free the sandbox (also ``Sandbox.kill(id)``).

        Returns False when corrald does not know the sandbox; killing an ended
        sandbox is a no-op that returns True."""
        try:
            self._t.call("DELETE", self._t.path("/v1/sandboxes/{}", self._id))
        except NotFoundError:
            return False
        return True

    # ---- code interpreter ----

    def run_code(self, code, language=None, context=None, envs=None, timeout=None, on_stdout=None,
                 on_stderr=None, on_result=None, on_error=None, max_output=None):
        """Run ``code`` in a persistent interpreter of the sandbox and return an
        :class:`~corral.Execution`, as E2B's code interpreter does::

            sbx.run_code("x = 6")
            sbx.run_code("x * 7").text          # '42'

        An exception of the code does not raise: it is ``execution.error``
        (an :class:`~corral.ExecutionError` with ``name``, ``value``,
        ``traceback``); the context keeps its state.

        :param language: ``"python"`` (the default context) - the only one today.
        :param context: a :class:`~corral.Context` (or its id) from
            :meth:`create_code_context`; not together with ``language``.
        :param envs: environment variables set in the interpreter before the code runs
            (today they stay set for later runs of the context).
        :param timeout: seconds after which the code is interrupted
            (``KeyboardInterrupt`` in ``execution.error``; the state survives);
            ``None``: no limit but the sandbox's.
        :param on_stdout: called with each chunk of stdout as it is produced (an
            :class:`~corral.OutputMessage`, i.e. a ``str``); likewise
            ``on_stderr``; ``on_result`` with each :class:`~corral.Result` and
            ``on_error`` with the :class:`~corral.ExecutionError`.  The
            execution returned still holds everything.
        :param max_output: cap in characters of the output kept (default 1 MiB).
        :raises NotFoundError: no such context (or sandbox).
        :raises InvalidArgumentError: empty code, unknown language, bad argument.
        :raises SandboxNotRunningError: the sandbox has ended.
        """
        return self._code.run_code(code, language=language, context=context, envs=envs, timeout=timeout,
                                   on_stdout=on_stdout, on_stderr=on_stderr, on_result=on_result,
                                   on_error=on_error, max_output=max_output)

    def create_code_context(self, language="python", cwd=None, envs=None):
        """Start a new, independent interpreter and return its :class:`~corral.Context`.

        :param cwd: its working directory (default ``/home/user``).
        :param envs: environment variables of the interpreter.
        """
        return self._code.create_context(language=language, cwd=cwd, envs=envs)

    def list_code_contexts(self):
        """The :class:`~corral.Context` list of the sandbox (``default`` always included)."""
        return self._code.list_contexts()

    def remove_code_context(self, context):
        """Stop the interpreter of ``context`` (a :class:`~corral.Context` or an id) and
        forget it; removing ``"default"`` only resets the default context."""
        self._code.remove_context(context)

    def restart_code_context(self, context):
        """Restart the interpreter of ``context``: its state is lost.  Returns the
        :class:`~corral.Context`."""
        return self._code.restart_context(context)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()
