"""The blocking HTTP/1.1 transport the synchronous servekit clients share.

A small keep-alive client on plain sockets: measured on loopback it spends about half the
CPU per request of ``http.client`` (which sends headers and body in two packets and parses
headers with the ``email`` package) and a fifth of ``urllib3``'s. It gives:

- a pool of idle keep-alive connections per transport (LIFO, at most ``max_connections``
  kept; more may be open at once under load, the extra ones are closed after use);
- a timeout per attempt, covering connect, send and the whole response;
- retries as :class:`~servekit.client.Retry` decides (only what is safe to resend); a request
  that fails on a kept-alive connection the server had already closed is resent once on a
  new connection without counting as an attempt;
- token auth (``Authorization: Bearer <token>``) unless a request sets its own header;
- errors from :mod:`servekit.client._errors`: transport errors, or the status error that
  matches the server's answer.

Proxies from the environment are not used.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Mapping

from servekit.client._errors import ProtocolError, status_error
from servekit.client._http11 import (
    CHUNKED,
    IDEMPOTENT,
    MAX_HEAD,
    NO_BODY,
    SMALL_BODY,
    Response,
    TransportBase,
    body_size,
    chunk_size,
    keep_alive,
    parse_head,
)
from servekit.client._retry import Retry

__all__ = ["Response", "Retry", "Transport"]

_READ_SIZE = 256 * 1024


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


class Transport(TransportBase[_Connection]):
    """A thread-safe HTTP/1.1 client for one base URL (``http://`` or ``https://``).

    ``timeout`` (seconds) bounds each try of a request; ``retry`` says what to retry.
    """

    def _setup(self) -> None:
        self._lock = threading.Lock()  # threads share the idle connections

    def request(
        self,
        method: str,
        path: str,
        body: bytes | bytearray | memoryview = b"",
        headers: Mapping[str, str] | None = None,
        *,
        timeout: float | None = None,
    ) -> Response:
        """Send a request, retrying what is safe; a failure answer raises its status error."""
        head = self._head(method, path, len(body), headers)
        seconds = timeout or self.timeout
        url = self.url(path)

        def once() -> Response:
            response = self._send(method, head, body, seconds)
            if not 200 <= response.status < 300:
                raise status_error(response.status, response.body, response.headers, where=url)
            return response

        return self.retry.call(once, idempotent=method in IDEMPOTENT)

    def send(
        self,
        method: str,
        path: str,
        body: bytes | bytearray | memoryview = b"",
        headers: Mapping[str, str] | None = None,
        *,
        timeout: float | None = None,
    ) -> Response:
        """One try, whatever the status; raises only transport errors."""
        head = self._head(method, path, len(body), headers)
        return self._send(method, head, body, timeout or self.timeout)

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
        raise self._closed_twice()

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
        address = (self.origin.host, self.origin.port)
        try:
            sock = socket.create_connection(address, timeout=_remaining(deadline))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._ssl is not None:
                sock = self._ssl.wrap_socket(sock, server_hostname=self.origin.host)
        except TimeoutError:
            raise self._connect_timed_out() from None
        except OSError as exc:
            raise self._cannot_connect(exc) from exc
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
            if len(body) < SMALL_BODY:
                conn.sock.sendall(head + bytes(body))
            else:
                conn.sock.sendall(head)
                conn.sock.sendall(body)
            return _read_response(conn, method, deadline)
        except TimeoutError:
            raise self._timed_out() from None
        except _StaleConnection:
            raise
        except (OSError, _Closed) as exc:
            if conn.reused and not conn.received:  # the server had closed it while idle
                raise _StaleConnection from exc
            raise self._connection_failed(exc) from exc
        except ProtocolError as exc:
            raise self._bad_response(exc.message) from exc


class _Closed(Exception):
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
    keep = keep_alive(version, headers)
    size = body_size(method, status, headers)
    if size >= 0:
        return Response(status, headers, _read_exact(conn, size, deadline)), keep
    if size == NO_BODY:
        return Response(status, headers, b""), keep
    if size == CHUNKED:
        return Response(status, headers, _read_chunked(conn, deadline)), keep
    while conn.recv_more(deadline):  # no framing: the body runs until the server closes
        pass
    body = bytes(conn.buffer)
    conn.buffer.clear()
    return Response(status, headers, body), False


def _read_head(conn: _Connection, deadline: float) -> tuple[int, str, dict[str, str]]:
    buf = conn.buffer
    end = buf.find(b"\r\n\r\n")
    while end < 0:
        if len(buf) > MAX_HEAD:
            raise ProtocolError("invalid HTTP response: headers longer than 64 KiB")
        start = max(0, len(buf) - 3)
        if not conn.recv_more(deadline):
            raise _Closed("connection closed before a complete response head")
        end = buf.find(b"\r\n\r\n", start)
    raw = bytes(buf[:end])
    del buf[: end + 4]
    return parse_head(raw)


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
        size = chunk_size(_read_line(conn, deadline))
        if size == 0:
            while _read_line(conn, deadline):  # trailers, then the empty line
                pass
            return b"".join(parts)
        parts.append(_read_exact(conn, size, deadline))
        if _read_line(conn, deadline):
            raise ProtocolError("invalid HTTP response: chunk data not followed by CRLF")


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
