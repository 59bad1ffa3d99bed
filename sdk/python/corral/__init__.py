"""corral: Python client of corrald, the self-hosted sandbox service.

Standard library only.  ``api_key`` and ``url`` default to the environment
variables ``CORRAL_API_KEY`` and ``CORRAL_URL`` (``http://127.0.0.1:7070``;
``unix:/path/to/corrald.sock`` works too)::

    from corral import Sandbox

    with Sandbox.create() as sbx:
        r = sbx.commands.run("echo hi")
        print(r.stdout)
        print(sbx.run_code("6 * 7").text)
"""
from .code import Context, Execution, ExecutionError, Logs, OutputMessage, Result
from .commands import CommandHandle, Commands
from .exceptions import (AuthenticationError, CommandExitError, CommandTimeoutError, ConflictError,
                         CorralConnectionError, CorralError, InsufficientStorageError, InvalidArgumentError,
                         NotFoundError, PermissionDeniedError, QuotaExceededError, SandboxNotRunningError,
                         ServiceUnavailableError)
from .files import FileStream, Filesystem
from .models import CommandResult, EntryInfo, ProcessInfo, SandboxInfo, WriteInfo
from .sandbox import Sandbox

__version__ = "0.1.0"

__all__ = [
    "Sandbox", "SandboxInfo", "Commands", "CommandHandle", "CommandResult", "ProcessInfo",
    "Filesystem", "FileStream", "EntryInfo", "WriteInfo",
    "Execution", "Result", "Logs", "ExecutionError", "Context", "OutputMessage",
    "CorralError", "CorralConnectionError", "AuthenticationError", "NotFoundError",
    "SandboxNotRunningError", "ConflictError", "QuotaExceededError", "InvalidArgumentError",
    "ServiceUnavailableError", "PermissionDeniedError", "InsufficientStorageError",
    "CommandExitError", "CommandTimeoutError",
]
