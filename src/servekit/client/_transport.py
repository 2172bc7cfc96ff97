"""The one HTTP/1.1 transport every servekit client shares.

A small keep-alive client on plain sockets: measured on loopback it spends about half the
CPU per request of ``http.client`` (which sends headers and body in two packets and parses
headers with the ``email`` package) and a fifth of ``urllib3``'s, which is what lets the
clients keep up with ``geventhttpclient``. It gives:

- a pool of idle keep-alive connections per transport (LIFO, at most ``max_connections``
  kept; more may be open at once under load, the extra ones are closed after use);
- a timeout per attempt, covering connect, send and the whole response;
- retries (:class:`Retry`) on connection errors and 5xx answers with exponential backoff
  and jitter, never on 4xx and never after a timeout (the server may still be working);
  a request that fails on a kept-alive connection the server had already closed is resent
  once on a new connection without counting as an attempt;
- token auth (``Authorization: Bearer <token>``) unless a request sets its own header;
- errors from :mod:`servekit.client._errors`, carrying the status and the server's message.

Proxies from the environment are not used.
"""

from __future__ import annotations

import contextlib
import random
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

from servekit.client._errors import ClientError, ConnectError, HTTPStatusError, RequestTimeout

__all__ = ["Response", "Retry", "Transport"]

T = TypeVar("T")
_SMALL_BODY = 64 * 1024  # below this, headers and body go out in one send
_READ_SIZE = 256 * 1024
_NO_BODY_STATUSES = frozenset({204, 304})


@dataclass
class Response:
    """A complete HTTP response; header names are lower-case."""

    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class Retry:
    """How many times to try a request and how long to wait in between.

    ``attempts`` counts every try (at least one). Before try ``k`` (k >= 2) it waits
    ``min(max_backoff, backoff * 2**(k-2))`` times a random factor in [0.5, 1). Connection
    errors and 5xx answers are retried; 4xx answers and timeouts are not. ``sleep`` and
    ``rand`` may be replaced, e.g. by tests.
    """

    attempts: int = 5
    backoff: float = 0.05
    max_backoff: float = 2.0
    sleep: Callable[[float], None] = time.sleep
    rand: Callable[[], float] = random.random

    def delay(self, attempt: int) -> float:
        """Seconds to wait before try number ``attempt + 1`` (``attempt`` >= 1)."""
        ceiling = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        return ceiling * (0.5 + self.rand() / 2)

    def run(self, once: Callable[[], Response], url: str) -> Response:
        """Call ``once`` until it returns a 2xx response; raise the last error otherwise."""

        def checked() -> Response:
            response = once()
            if not 200 <= response.status < 300:
                raise HTTPStatusError.from_response(response.status, response.body, url)
            return response

        return self.call(checked)

    def call(self, once: Callable[[], T]) -> T:
        """Call ``once``, again after a backoff while it raises a retryable ``ClientError``."""
        for attempt in range(max(1, self.attempts)):
            if attempt:
                self.sleep(self.delay(attempt))
            try:
                return once()
            except ClientError as exc:
                if not exc.retryable or attempt == max(1, self.attempts) - 1:
                    raise
        raise AssertionError("unreachable: the last attempt returns or raises")


class _StaleConnection(Exception):
    """A reused connection failed before the server answered a single byte."""


class _Connection:
    """One socket plus the bytes read from it but not consumed yet."""

    __slots__ = ("buffer", "received", "reused", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.reused = False  # served a request before this one
        self.received = False  # got a byte of the current response

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def looks_closed(self) -> bool:
        """An idle connection that is readable has been closed (or spoken to) by the server."""
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def recv_more(self, deadline: float) -> int:
        self.sock.settimeout(_remaining(deadline))
        chunk = self.sock.recv(_READ_SIZE)
        if chunk:
            self.received = True
            self.buffer += chunk
        return len(chunk)


class Transport:
    """A thread-safe HTTP/1.1 client for one base URL (``http://`` or ``https://``).

    ``timeout`` (seconds) bounds each try of a request; ``retry`` says how to retry.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 5.0,
        retry: Retry | None = None,
        max_connections: int = 100,
        token: str = "",
        headers: Mapping[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(base_url if "://" in base_url else f"http://{base_url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.base_url = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.prefix = parts.path.rstrip("/")
        self.query = parts.query  # a base URL's query goes with every request
        self._host_header = parts.netloc.rpartition("@")[2]
        self._ssl = None
        if parts.scheme == "https":
            self._ssl = ssl_context or ssl.create_default_context()
        self.timeout = timeout
        self.retry = retry or Retry()
        self.max_connections = max_connections
        self.token = token
        self.headers = dict(headers or {})
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()

    def request(
        self,
        method: str,
        path: str,
        body: bytes | bytearray | memoryview = b"",
        headers: Mapping[str, str] | None = None,
        *,
        timeout: float | None = None,
    ) -> Response:
        """Send a request, retrying as configured; non-2xx answers raise ``HTTPStatusError``."""
        head = self._head(method, self.prefix + path, len(body), headers)
        seconds = timeout or self.timeout
        return self.retry.run(lambda: self._send(method, head, body, seconds), self.url(path))

    def send(
        self,
        method: str,
        path: str,
        body: bytes | bytearray | memoryview = b"",
        headers: Mapping[str, str] | None = None,
        *,
        timeout: float | None = None,
    ) -> Response:
        """One try, whatever the status; raises ``ConnectError`` or ``RequestTimeout``."""
        head = self._head(method, self.prefix + path, len(body), headers)
        return self._send(method, head, body, timeout or self.timeout)

    def url(self, path: str) -> str:
        """The full URL of ``path`` (for messages)."""
        return f"{self.base_url.rstrip('/')}{path}"

    def close(self) -> None:
        """Close every idle connection (connections in use close when their request ends)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # internals

    def _head(
        self, method: str, target: str, length: int, extra: Mapping[str, str] | None
    ) -> bytes:
        merged = {**self.headers, **(extra or {})}
        if self.token and not any(k.lower() == "authorization" for k in merged):
            merged["Authorization"] = f"Bearer {self.token}"
        if self.query:
            target += ("&" if "?" in target else "?") + self.query
        lines = [f"{method} {target or '/'} HTTP/1.1", f"Host: {self._host_header}"]
        if not any(k.lower() == "content-length" for k in merged):
            lines.append(f"Content-Length: {length}")
        lines += [f"{k}: {v}" for k, v in merged.items()]
        if any("\r" in line or "\n" in line for line in lines):
            raise ValueError("header names, values and the path must not contain CR or LF")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _send(
        self, method: str, head: bytes, body: bytes | bytearray | memoryview, timeout: float
    ) -> Response:
        deadline = time.monotonic() + timeout
        for _ in range(2):  # the second pass only after a stale kept-alive connection
            conn = self._acquire(deadline)
            try:
                response, keep = self._exchange(conn, method, head, body, deadline)
            except _StaleConnection:
                conn.close()
                continue
            except BaseException:
                conn.close()
                raise
            if keep:
                self._release(conn)
            else:
                conn.close()
            return response
        raise ConnectError(f"{self.base_url}: connection closed by the server twice")

    def _acquire(self, deadline: float) -> _Connection:
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self._connect(deadline)
            if not conn.looks_closed():
                conn.reused = True
                return conn
            conn.close()

    def _release(self, conn: _Connection) -> None:
        with self._lock:
            if len(self._idle) < self.max_connections:
                self._idle.append(conn)
                return
        conn.close()

    def _connect(self, deadline: float) -> _Connection:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=_remaining(deadline))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._ssl is not None:
                sock = self._ssl.wrap_socket(sock, server_hostname=self.host)
        except TimeoutError:
            error = ConnectError(f"{self.base_url}: timed out connecting")
            error.sent = False
            raise error from None
        except OSError as exc:
            error = ConnectError(f"{self.base_url}: cannot connect: {exc}")
            error.sent = False
            raise error from exc
        return _Connection(sock)

    def _exchange(
        self,
        conn: _Connection,
        method: str,
        head: bytes,
        body: bytes | bytearray | memoryview,
        deadline: float,
    ) -> tuple[Response, bool]:
        conn.received = False
        try:
            conn.sock.settimeout(_remaining(deadline))
            if len(body) < _SMALL_BODY:
                conn.sock.sendall(head + bytes(body))
            else:
                conn.sock.sendall(head)
                conn.sock.sendall(body)
            return _read_response(conn, method, deadline)
        except TimeoutError:
            raise RequestTimeout(f"{self.base_url}: no response within the timeout") from None
        except _StaleConnection:
            raise
        except (OSError, _Closed) as exc:
            if conn.reused and not conn.received:  # the server had closed it while idle
                raise _StaleConnection from exc
            raise ConnectError(f"{self.base_url}: connection failed: {exc}") from exc
        except _ProtocolError as exc:
            raise ConnectError(f"{self.base_url}: invalid HTTP response: {exc}") from exc


class _ProtocolError(Exception):
    """The server's bytes are not a valid HTTP/1.1 response."""


class _Closed(_ProtocolError):
    """The server closed the connection before the response was complete."""


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


def _read_response(conn: _Connection, method: str, deadline: float) -> tuple[Response, bool]:
    while True:
        status, version, headers = _read_head(conn, deadline)
        if status >= 200 or status == 101:
            break  # 1xx interim answers (100 Continue) are skipped
    keep = _keep_alive(version, headers)
    if method == "HEAD" or status in _NO_BODY_STATUSES or 100 <= status < 200:
        return Response(status, headers, b""), keep
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return Response(status, headers, _read_chunked(conn, deadline)), keep
    length = headers.get("content-length")
    if length is not None:
        try:
            size = int(length)
        except ValueError:
            raise _ProtocolError(f"bad Content-Length {length!r}") from None
        return Response(status, headers, _read_exact(conn, size, deadline)), keep
    while conn.recv_more(deadline):  # no framing: the body runs until the server closes
        pass
    body = bytes(conn.buffer)
    conn.buffer.clear()
    return Response(status, headers, body), False


def _read_head(conn: _Connection, deadline: float) -> tuple[int, str, dict[str, str]]:
    buf = conn.buffer
    end = buf.find(b"\r\n\r\n")
    while end < 0:
        if len(buf) > 64 * 1024:
            raise _ProtocolError("response headers longer than 64 KiB")
        start = max(0, len(buf) - 3)
        if not conn.recv_more(deadline):
            raise _Closed("connection closed before a complete response head")
        end = buf.find(b"\r\n\r\n", start)
    text = buf[:end].decode("latin-1")
    del buf[: end + 4]
    status_line, *lines = text.split("\r\n")
    version, _, rest = status_line.partition(" ")
    try:
        status = int(rest[:3])
    except ValueError:
        raise _ProtocolError(f"bad status line {status_line[:80]!r}") from None
    if not version.startswith("HTTP/"):
        raise _ProtocolError(f"bad status line {status_line[:80]!r}")
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        key = name.strip().lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return status, version, headers


def _keep_alive(version: str, headers: dict[str, str]) -> bool:
    connection = headers.get("connection", "").lower()
    if version == "HTTP/1.0":
        return "keep-alive" in connection
    return "close" not in connection


def _read_exact(conn: _Connection, size: int, deadline: float) -> bytes:
    buf = conn.buffer
    if len(buf) >= size:
        data = bytes(buf[:size])
        del buf[:size]
        return data
    out = bytearray(size)
    have = len(buf)
    out[:have] = buf
    buf.clear()
    view = memoryview(out)
    sock = conn.sock
    while have < size:
        sock.settimeout(_remaining(deadline))
        n = sock.recv_into(view[have:])
        if not n:
            raise _Closed(f"connection closed after {have} of {size} body bytes")
        conn.received = True
        have += n
    return bytes(out)


def _read_chunked(conn: _Connection, deadline: float) -> bytes:
    parts: list[bytes] = []
    while True:
        line = _read_line(conn, deadline)
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise _ProtocolError(f"bad chunk size line {line[:40]!r}") from None
        if size == 0:
            while _read_line(conn, deadline):  # trailers, then the empty line
                pass
            return b"".join(parts)
        parts.append(_read_exact(conn, size, deadline))
        if _read_line(conn, deadline):
            raise _ProtocolError("chunk data not followed by CRLF")


def _read_line(conn: _Connection, deadline: float) -> bytes:
    buf = conn.buffer
    end = buf.find(b"\r\n")
    while end < 0:
        if not conn.recv_more(deadline):
            raise _Closed("connection closed inside a chunked body")
        end = buf.find(b"\r\n")
    line = bytes(buf[:end])
    del buf[: end + 2]
    return line
