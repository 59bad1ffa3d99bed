"""HTTP transport of the SDK: http.client over TCP (http/https) or a unix socket.

One connection per request: the SDK is then safe to use from several threads
without locking, and a streamed answer (a file download, an ndjson command
stream) owns its connection until it is closed.
"""
import http.client
import json as _json
import os
import socket
import stat
import urllib.parse

from .exceptions import CorralConnectionError, CorralError, error_for

DEFAULT_URL = "http://127.0.0.1:7070"
CHUNK = 1 << 20


def resolve(api_key=None, url=None):
    """(api_key, url) from the arguments, else CORRAL_API_KEY / CORRAL_URL, else defaults."""
    key = api_key if api_key is not None else os.environ.get("CORRAL_API_KEY")
    base = url or os.environ.get("CORRAL_URL") or DEFAULT_URL
    return key, base


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTPConnection to a unix socket (``unix:/path/to.sock`` URLs)."""

    def __init__(self, path, timeout=None, blocksize=CHUNK):
        super().__init__("localhost", timeout=timeout, blocksize=blocksize)
        self._socket_path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self._socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def _file_chunks(f):
    """Chunks of a file object as bytes (text files are encoded as UTF-8)."""
    while True:
        chunk = f.read(CHUNK)
        if not chunk:
            return
        yield chunk.encode("utf-8") if isinstance(chunk, str) else chunk


def _remaining_size(f):
    """Bytes left in a regular binary file from its current position, else None."""
    try:
        if "b" not in getattr(f, "mode", "b"):
            return None                     # text: the encoded size is unknown
        st = os.fstat(f.fileno())
        return st.st_size - f.tell() if stat.S_ISREG(st.st_mode) else None
    except (AttributeError, OSError, ValueError):
        return None


class Response:
    """An answer whose body is read on demand; owns its connection."""

    def __init__(self, conn, resp):
        self._conn = conn
        self._resp = resp
        self.status = resp.status
        self.headers = resp.headers
        self.content = None

    def read(self, n=-1):
        return self._resp.read(n) if n is not None and n >= 0 else self._resp.read()

    def readline(self):
        return self._resp.readline()

    def close(self):
        try:
            self._resp.close()
        finally:
            self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Transport:
    """Talks to one corrald with one key.

    :param api_key: sent as ``Authorization: Bearer``.
    :param url: ``http://host:port``, ``https://...`` or ``unix:/path/to.sock``.
    :param request_timeout: socket timeout in seconds for ordinary calls
        (``None``: wait forever).  Command runs and file transfers wait as long
        as they take.
    """

    def __init__(self, api_key=None, url=None, request_timeout=60.0):
        self.api_key, self.url = resolve(api_key, url)
        self.request_timeout = request_timeout
        if self.url.startswith("unix:"):
            self._unix = self.url[len("unix:"):]
            self._scheme, self._netloc, self._prefix = "http", "localhost", ""
        else:
            parts = urllib.parse.urlsplit(self.url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise CorralError(f"invalid corrald URL {self.url!r} (http://host:port or unix:/path)")
            self._unix = None
            self._scheme, self._netloc = parts.scheme, parts.netloc
            self._prefix = parts.path.rstrip("/")

    def _connect(self, timeout):
        if self._unix is not None:
            return _UnixHTTPConnection(self._unix, timeout=timeout)
        cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
        return cls(self._netloc, timeout=timeout, blocksize=CHUNK)

    def _headers(self, extra):
        h = {"User-Agent": "corral-python"}
        if self.api_key:
            h["Authorization"] = f"Bearer {self.api_key}"
        h.update(extra or {})
        return h

    @staticmethod
    def path(template, *segments, **query):
        """A request path: ``template`` with URL-quoted ``segments``, then the
        query (None values dropped, lists repeated)."""
        p = template.format(*(urllib.parse.quote(str(s), safe="") for s in segments))
        items = []
        for k, v in query.items():
            for one in (v if isinstance(v, (list, tuple)) else [v]):
                if one is not None:
                    items.append((k, str(one)))
        return p + ("?" + urllib.parse.urlencode(items) if items else "")

    @staticmethod
    def _body(json, data, headers):
        if json is not None:
            headers.setdefault("Content-Type", "application/json")
            return _json.dumps(json).encode("utf-8")
        if data is None:
            return None
        headers.setdefault("Content-Type", "application/octet-stream")
        if isinstance(data, str):
            return data.encode("utf-8")
        if isinstance(data, (bytes, bytearray, memoryview)):
            return bytes(data)
        size = _remaining_size(data)
        if size is not None:
            headers["Content-Length"] = str(size)
        else:
            headers["Transfer-Encoding"] = "chunked"
        return _file_chunks(data)

    @staticmethod
    def _send(conn, method, path, body, headers):
        chunked = headers.get("Transfer-Encoding") == "chunked"
        try:
            conn.request(method, path, body=body, headers=headers, encode_chunked=chunked)
        except (BrokenPipeError, ConnectionResetError) as e:
            # corrald may refuse an upload (404, 413, ...) and close before
            # reading it all: its answer says more than the broken pipe.
            if conn.sock is None:
                raise
            try:
                return conn.getresponse()
            except (OSError, http.client.HTTPException):
                raise e from None
        return conn.getresponse()

    def request(self, method, path, json=None, data=None, headers=None, timeout=..., stream=False):
        """Send a request and return the :class:`Response` of a 2xx answer;
        any other answer raises the matching :class:`CorralError`.

        ``data`` is a raw body: str, bytes, or a file object (streamed).  With
        ``stream=False`` the body is read at once into ``Response.content``.
        """
        headers = self._headers(headers)
        body = self._body(json, data, headers)
        if body is None and method in ("POST", "PUT"):
            headers["Content-Length"] = "0"
        conn = self._connect(self.request_timeout if timeout is ... else timeout)
        try:
            resp = self._send(conn, method, self._prefix + path, body, headers)
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise CorralConnectionError(f"cannot reach corrald at {self.url}: {e}") from e
        r = Response(conn, resp)
        if not 200 <= r.status < 300:
            raise self._error(r)
        if not stream:
            try:
                r.content = r.read()
            except (OSError, http.client.HTTPException) as e:
                raise CorralConnectionError(f"connection to corrald at {self.url} lost: {e}") from e
            finally:
                r.close()
        return r

    def call(self, method, path, json=None, timeout=...):
        """A JSON request; returns the decoded JSON answer (None when empty)."""
        r = self.request(method, path, json=json, timeout=timeout)
        return _json.loads(r.content) if r.content.strip() else None

    @staticmethod
    def _error(r):
        try:
            raw = r.read(1 << 20)
        except (OSError, http.client.HTTPException):
            raw = b""
        finally:
            r.close()
        code, message = None, None
        try:
            err = _json.loads(raw).get("error") or {}
            code, message = err.get("code"), err.get("message")
        except (ValueError, AttributeError):
            pass
        if not message:
            text = raw.decode("utf-8", "replace").strip()
            message = text.splitlines()[0] if text else http.client.responses.get(r.status, "error")
        return error_for(r.status, code, message)
