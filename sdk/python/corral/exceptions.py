"""Exceptions raised by the corral SDK.

Every error corrald reports (a JSON body ``{"error": {"code", "message"}}``)
becomes a :class:`CorralError` subclass chosen from the HTTP status and the
error code, so callers can catch exactly what they handle::

    try:
        sbx.files.read("/missing")
    except NotFoundError:
        ...
"""


class CorralError(Exception):
    """Base of every SDK error.

    :ivar status: HTTP status of the answer (``None`` when there was none).
    :ivar code: corrald's error code (``"not_found"``, ``"quota_exceeded"``, ...).
    :ivar message: the human-readable message from corrald.
    """

    def __init__(self, message, status=None, code=None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code

    def __str__(self):
        if self.status is not None:
            return f"{self.message} (HTTP {self.status})"
        return self.message


class CorralConnectionError(CorralError):
    """corrald could not be reached (refused, no such socket, connection lost, ...)."""


class AuthenticationError(CorralError):
    """The key is missing or unknown (401), or not allowed (403, see
    :class:`PermissionDeniedError`)."""


class PermissionDeniedError(AuthenticationError):
    """403: a tenant key on an admin route, or a file operation the sandbox
    user may not do (writing outside ``/home/user``, ``/tmp``, ``/dev/shm``)."""


class NotFoundError(CorralError):
    """Unknown sandbox, command, file, tenant or template (404)."""


class SandboxNotRunningError(CorralError):
    """The sandbox has ended (409 ``sandbox_not_running``)."""


class ConflictError(CorralError):
    """The request conflicts with existing state (409 ``conflict``): path exists, ..."""


class QuotaExceededError(CorralError):
    """The tenant's ``max_sandboxes`` or ``max_memory_mb`` would be exceeded (429)."""


class InvalidArgumentError(CorralError):
    """corrald refused the request's content (400), or it was too large (413)."""


class ServiceUnavailableError(CorralError):
    """corrald is shutting down or cannot create sandboxes (503)."""


class InsufficientStorageError(CorralError):
    """The sandbox's disk is full (507)."""


class CommandExitError(CorralError):
    """A command exited with a non-zero code.

    ``commands.run`` and ``CommandHandle.wait`` raise it unless ``check=False``,
    like E2B's ``CommandExitException``.

    :ivar result: the :class:`~corral.CommandResult`; ``exit_code``, ``stdout``,
        ``stderr`` and ``reason`` are also available on the exception itself.
    """

    def __init__(self, result, message=None):
        msg = message or f"command exited with code {result.exit_code} ({result.reason})"
        tail = (result.stderr or "").strip()[-500:]
        super().__init__(f"{msg}: {tail}" if tail else msg)
        self.result = result

    exit_code = property(lambda self: self.result.exit_code)
    stdout = property(lambda self: self.result.stdout)
    stderr = property(lambda self: self.result.stderr)
    reason = property(lambda self: self.result.reason)


class CommandTimeoutError(CommandExitError):
    """A command was killed by its ``timeout`` (reason ``"timeout"``, exit code 124)."""


_BY_STATUS = {
    400: InvalidArgumentError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    413: InvalidArgumentError,
    429: QuotaExceededError,
    503: ServiceUnavailableError,
    507: InsufficientStorageError,
}


def error_for(status, code, message):
    """The exception for an HTTP error answer."""
    if status == 409:
        cls = SandboxNotRunningError if code == "sandbox_not_running" else ConflictError
    else:
        cls = _BY_STATUS.get(status, CorralError)
    return cls(message, status=status, code=code)
