"""Plain records returned by the SDK."""
import datetime
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional


def parse_time(s):
    """RFC 3339 text from corrald as an aware datetime (None stays None)."""
    if not s:
        return None
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    try:
        return datetime.datetime.fromisoformat(s)
    except ValueError:
        return None


@dataclass
class SandboxInfo:
    """What corrald knows about a sandbox (``GET /v1/sandboxes/{id}``)."""

    sandbox_id: str
    state: str                          #: ``"running"`` or ``"ended"``
    template: str
    tenant: Optional[str]
    created_at: Optional[datetime.datetime]
    expires_at: Optional[datetime.datetime]
    ended_at: Optional[datetime.datetime]
    end_reason: Optional[str]           #: ``killed``, ``timeout``, ``oom``, ``error``, ...
    metadata: Dict[str, str] = field(default_factory=dict)
    limits: Dict[str, Any] = field(default_factory=dict)
    network: Dict[str, Any] = field(default_factory=dict)  #: ``{"mode": ..., "allow": [...]}``
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def id(self):
        return self.sandbox_id

    @property
    def is_running(self):
        return self.state == "running"

    @classmethod
    def from_json(cls, d):
        return cls(sandbox_id=d.get("id"), state=d.get("state"), template=d.get("template"),
                   tenant=d.get("tenant"), created_at=parse_time(d.get("created_at")),
                   expires_at=parse_time(d.get("expires_at")), ended_at=parse_time(d.get("ended_at")),
                   end_reason=d.get("end_reason"), metadata=d.get("metadata") or {},
                   limits=d.get("limits") or {}, network=d.get("network") or {"mode": "none", "allow": []},
                   raw=d)


@dataclass
class CommandResult:
    """How a command ended, with its output.

    ``exit_code`` is 128+N when signal N ended it, 124 on a timeout, 137 on an
    OOM kill; ``reason`` is ``exited``, ``signaled``, ``timeout`` or ``oom``.
    """

    exit_code: int
    stdout: str
    stderr: str
    duration_ms: Optional[int] = None
    reason: Optional[str] = None
    signal: Optional[str] = None
    pid: Optional[int] = None
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    stdout_dropped_bytes: int = 0
    stderr_dropped_bytes: int = 0

    @property
    def error(self):
        """E2B compatibility: a short description when the command failed, else None."""
        if self.exit_code == 0:
            return None
        return f"exit code {self.exit_code} ({self.reason})"

    @classmethod
    def from_json(cls, d, stdout=None, stderr=None):
        code = d.get("exit_code")
        return cls(exit_code=code if code is not None else -1,
                   stdout=stdout if stdout is not None else d.get("stdout") or "",
                   stderr=stderr if stderr is not None else d.get("stderr") or "",
                   duration_ms=d.get("duration_ms"), reason=d.get("reason"), signal=d.get("signal"),
                   pid=d.get("pid"), stdout_truncated=bool(d.get("stdout_truncated")),
                   stderr_truncated=bool(d.get("stderr_truncated")),
                   stdout_dropped_bytes=d.get("stdout_dropped_bytes") or 0,
                   stderr_dropped_bytes=d.get("stderr_dropped_bytes") or 0)


@dataclass
class ProcessInfo:
    """A command of a sandbox (``commands.list()``)."""

    pid: int
    cmd: List[str]
    background: bool
    running: bool
    started_at: Optional[datetime.datetime]
    exit_code: Optional[int]

    @classmethod
    def from_json(cls, d):
        return cls(pid=d.get("pid"), cmd=d.get("cmd") or [], background=bool(d.get("background")),
                   running=bool(d.get("running")), started_at=parse_time(d.get("started_at")),
                   exit_code=d.get("exit_code"))


@dataclass
class EntryInfo:
    """A file system entry inside a sandbox."""

    name: str
    path: str
    type: str                           #: ``file``, ``dir``, ``symlink`` or ``other``
    size: int
    mode: int                           #: permission bits, e.g. ``0o644``
    mtime: Optional[datetime.datetime]
    symlink_target: Optional[str] = None

    @property
    def modified_time(self):
        """E2B's name for ``mtime``."""
        return self.mtime

    @property
    def is_dir(self):
        return self.type == "dir"

    @classmethod
    def from_json(cls, d):
        mode = d.get("mode")
        if isinstance(mode, str):
            try:
                mode = int(mode, 8)
            except ValueError:
                mode = 0
        return cls(name=d.get("name"), path=d.get("path"), type=d.get("type"), size=d.get("size") or 0,
                   mode=mode or 0, mtime=parse_time(d.get("mtime")), symlink_target=d.get("symlink_target"))


@dataclass
class WriteInfo:
    """Where ``files.write`` put the data and how much it wrote."""

    path: str
    size: int

    @property
    def name(self):
        return self.path.rsplit("/", 1)[-1]
