"""Files inside a sandbox: ``sbx.files``."""
import json

from .exceptions import NotFoundError
from .models import EntryInfo, WriteInfo

STREAM_CHUNK = 1 << 16


class FileStream:
    """A file being downloaded (``files.read(path, format="stream")``).

    Iterate over it for chunks of bytes, or use it as a binary file object
    (``read(n)``); close it (or use ``with``) when done.  ``size`` is the
    file's length when corrald sent it.
    """

    def __init__(self, resp):
        self._resp = resp
        length = resp.headers.get("Content-Length")
        self.size = int(length) if length and length.isdigit() else None

    def read(self, n=-1):
        return self._resp.read(n)

    def __iter__(self):
        try:
            while True:
                chunk = self._resp.read(STREAM_CHUNK)
                if not chunk:
                    return
                yield chunk
        finally:
            self.close()

    def close(self):
        self._resp.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Filesystem:
    """Files of one sandbox; reached as ``sbx.files``.

    Paths are absolute inside the sandbox or relative to ``/home/user``;
    writable places are ``/home/user``, ``/tmp`` and ``/dev/shm``.
    """

    def __init__(self, sandbox_id, transport):
        self._id = sandbox_id
        self._t = transport

    def _path(self, suffix="", **query):
        return self._t.path("/v1/sandboxes/{}/files" + suffix, self._id, **query)

    def read(self, path, format="text"):
        """Read a file.

        :param format: ``"text"`` (str, UTF-8 decoded with replacement), ``"bytes"``,
            or ``"stream"`` (a :class:`FileStream`: iterate it for chunks, or
            ``read(n)``; the file is never held in memory).
        :raises NotFoundError: no such file.
        :raises InvalidArgumentError: ``path`` is a directory.
        """
        if format not in ("text", "bytes", "stream"):
            raise ValueError("format must be 'text', 'bytes' or 'stream'")
        resp = self._t.request("GET", self._path(path=path), stream=True, timeout=None)
        if format == "stream":
            return FileStream(resp)
        try:
            data = resp.read()
        finally:
            resp.close()
        return data if format == "bytes" else data.decode("utf-8", "replace")

    def write(self, path, data, mode=None):
        """Write ``data`` to ``path`` (parents are created) and return a :class:`WriteInfo`.

        :param data: str (written as UTF-8), bytes, or a file object opened for
            reading, which is streamed from its current position (sent with its
            length when it is a regular binary file, chunked otherwise).
        :param mode: permission bits for the file, e.g. ``0o600``.
        """
        query = {"path": path}
        if mode is not None:
            query["mode"] = "%04o" % mode if isinstance(mode, int) else mode
        r = self._t.request("PUT", self._path(**query), data=data, timeout=None)
        d = json.loads(r.content) if r.content.strip() else {}
        return WriteInfo(path=d.get("path", path), size=d.get("size", 0))

    def list(self, path="/home/user", depth=1):
        """Entries (:class:`EntryInfo`) of the directory ``path``, and of its
        sub-directories down to ``depth`` (1..16)."""
        d = self._t.call("GET", self._path("/list", path=path, depth=depth))
        return [EntryInfo.from_json(e) for e in d.get("entries", [])]

    def get_info(self, path):
        """The :class:`EntryInfo` of ``path`` (:class:`NotFoundError` when missing)."""
        return EntryInfo.from_json(self._t.call("GET", self._path("/stat", path=path)))

    def exists(self, path):
        """Whether ``path`` exists."""
        try:
            self.get_info(path)
        except NotFoundError:
            return False
        return True

    def make_dir(self, path):
        """Create the directory ``path`` and its parents.  Returns False when it
        already existed (as E2B does), True when it was created."""
        if self.exists(path):
            return False
        self._t.call("POST", self._path("/mkdir"), json={"path": path})
        return True

    def rename(self, old_path, new_path):
        """Move ``old_path`` to ``new_path``; returns the new :class:`EntryInfo`."""
        d = self._t.call("POST", self._path("/move"), json={"from": old_path, "to": new_path})
        return EntryInfo.from_json(d) if d else self.get_info(new_path)

    def remove(self, path, recursive=True):
        """Remove a file, or a directory with its content (as E2B does;
        ``recursive=False`` refuses a non-empty directory)."""
        self._t.call("POST", self._path("/remove"), json={"path": path, "recursive": bool(recursive)})
