"""The asyncio HTTP/1.1 transport: the twin of :class:`~servekit.client.Transport`.

Same behaviour (keep-alive pool, a timeout per try, :class:`Retry`, token auth, the same
errors) on asyncio streams, so one event loop keeps as many requests in flight as the
caller starts: one connection per request in flight, at most ``max_connections`` idle ones
kept for reuse. A request cancelled by its caller closes its connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

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

__all__ = ["AsyncTransport"]

T = TypeVar("T")
_CRLF = b"\r\n"


class _StaleConnection(Exception):
    """A reused connection failed before the server answered a single byte."""


class _Connection:
    __slots__ = ("reader", "received", "reused", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.reused = False
        self.received = False

    def looks_closed(self) -> bool:
        """An idle connection the server closed (its EOF has arrived)."""
        return self.writer.is_closing() or self.reader.at_eof()

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop may be closed already
            self.writer.close()


class AsyncTransport(TransportBase[_Connection]):
    """An asyncio HTTP/1.1 client for one base URL (``http://`` or ``https://``).

    Use it from one event loop. ``timeout`` (seconds) bounds each try of a request;
    ``retry`` says what to retry.
    """

    async def request(
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

        async def once() -> Response:
            response = await self._send(method, head, body, seconds)
            if not 200 <= response.status < 300:
                raise status_error(response.status, response.body, response.headers, where=url)
            return response

        return await self.retry.acall(once, idempotent=method in IDEMPOTENT)

    async def send(
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
        return await self._send(method, head, body, timeout or self.timeout)

    async def aclose(self) -> None:
        """Close every idle connection (connections in use close when their request ends)."""
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    async def __aenter__(self) -> AsyncTransport:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # internals

    async def _send(
        self, method: str, head: bytes, body: bytes | bytearray | memoryview, timeout: float
    ) -> Response:
        deadline = time.monotonic() + timeout
        for _ in range(2):  # the second pass only after a stale kept-alive connection
            conn = await self._acquire(deadline)
            try:
                response, keep = await _within(
                    self._exchange(conn, method, head, body), deadline, self._timed_out
                )
            except _StaleConnection:
                conn.close()
                continue
            except BaseException:
                conn.close()
                raise
            if keep and len(self._idle) < self.max_connections:
                self._idle.append(conn)
            else:
                conn.close()
            return response
        raise self._closed_twice()

    async def _acquire(self, deadline: float) -> _Connection:
        while self._idle:
            conn = self._idle.pop()
            if not conn.looks_closed():
                conn.reused = True
                return conn
            conn.close()
        return await _within(self._connect(), deadline, self._connect_timed_out)

    async def _connect(self) -> _Connection:
        try:
            reader, writer = await asyncio.open_connection(
                self.origin.host,
                self.origin.port,
                ssl=self._ssl,
                server_hostname=self.origin.host if self._ssl else None,
                limit=MAX_HEAD,
            )
        except OSError as exc:
            raise self._cannot_connect(exc) from exc
        return _Connection(reader, writer)

    async def _exchange(
        self,
        conn: _Connection,
        method: str,
        head: bytes,
        body: bytes | bytearray | memoryview,
    ) -> tuple[Response, bool]:
        conn.received = False
        try:
            if len(body) < SMALL_BODY:
                conn.writer.write(head + bytes(body))
            else:
                conn.writer.write(head)
                conn.writer.write(body)
            await conn.writer.drain()
            return await _read_response(conn, method)
        except (OSError, asyncio.IncompleteReadError) as exc:
            if isinstance(exc, asyncio.IncompleteReadError) and exc.partial:
                conn.received = True
            if conn.reused and not conn.received:  # the server had closed it while idle
                raise _StaleConnection from exc
            raise self._connection_failed(exc) from exc
        except asyncio.LimitOverrunError:
            raise self._bad_response("invalid HTTP response: headers longer than 64 KiB") from None
        except ProtocolError as exc:
            raise self._bad_response(exc.message) from exc


if sys.version_info >= (3, 11):

    async def _within(work: Awaitable[T], deadline: float, error: Callable[[], Exception]) -> T:
        """``await work`` until the monotonic ``deadline``; then raise ``error()``."""
        loop = asyncio.get_running_loop()
        when = loop.time() + (deadline - time.monotonic())
        try:
            async with asyncio.timeout_at(when):
                return await work
        except TimeoutError:
            raise error() from None

else:  # pragma: no cover - Python 3.10

    async def _within(work: Awaitable[T], deadline: float, error: Callable[[], Exception]) -> T:
        """``await work`` until the monotonic ``deadline``; then raise ``error()``."""
        try:
            return await asyncio.wait_for(work, max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            raise error() from None


async def _read_response(conn: _Connection, method: str) -> tuple[Response, bool]:
    reader = conn.reader
    while True:
        raw = await reader.readuntil(b"\r\n\r\n")
        conn.received = True
        status, version, headers = parse_head(raw[:-4])
        if status >= 200 or status == 101:
            break  # 1xx interim answers (100 Continue) are skipped
    keep = keep_alive(version, headers)
    size = body_size(method, status, headers)
    if size >= 0:
        return Response(status, headers, await reader.readexactly(size)), keep
    if size == NO_BODY:
        return Response(status, headers, b""), keep
    if size == CHUNKED:
        return Response(status, headers, await _read_chunked(reader)), keep
    return Response(status, headers, await reader.read()), False  # body until close


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = chunk_size((await reader.readuntil(_CRLF))[:-2])
        if size == 0:
            while (await reader.readuntil(_CRLF)) != _CRLF:  # trailers, then the empty line
                pass
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        if await reader.readexactly(2) != _CRLF:
            raise ProtocolError("invalid HTTP response: chunk data not followed by CRLF")
