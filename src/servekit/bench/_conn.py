"""One keep-alive HTTP/1.1 connection that sends prepared requests and reports each answer.

The load tester's hot path: request bytes are built once, responses are parsed by httptools
(C), and an answer goes straight to a callback (no future, no task switch). No pipelining:
one request in flight per connection, as ``wrk`` does.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, cast

import httptools


class Failure(Exception):
    """A request that got no HTTP answer; ``kind`` is how it shows in the error counts."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


class Sink(Protocol):
    """Where a connection reports the outcome of its request in flight."""

    def answered(self, conn: Connection, status: int, body: bytes) -> None: ...

    def failed(self, conn: Connection, failure: Failure) -> None: ...


class Connection(asyncio.Protocol):
    """A client connection; ``send()`` writes one request, the sink hears how it ended."""

    def __init__(self, sink: Sink, keep_bodies: bool = False) -> None:
        self.sink = sink
        self.transport: asyncio.Transport | None = None
        self.busy = False
        self.closed = False
        self.index = 0  # which request is in flight
        self.intended = 0.0  # when it should have gone out (perf_counter)
        self.sent_at = 0.0  # when it went out (perf_counter)
        self._keep_bodies = keep_bodies
        self._chunks: list[bytes] = []
        self._parser = httptools.HttpResponseParser(self)

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.fail(Failure("invalid response", str(exc)))

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(Failure("connection closed", str(exc or "closed by the server")))
        self.closed = True

    # httptools callbacks
    def on_body(self, body: bytes) -> None:
        if self._keep_bodies:
            self._chunks.append(body)

    def on_message_complete(self) -> None:
        body = b"".join(self._chunks) if self._chunks else b""
        self._chunks.clear()
        if not self._parser.should_keep_alive():
            self.close()
        if self.busy:
            self.busy = False
            self.sink.answered(self, self._parser.get_status_code(), body)

    # client side
    def send(self, wire: bytes, index: int, intended: float, now: float) -> None:
        """Write request ``index``; it was due at ``intended`` and goes out at ``now``."""
        assert self.transport is not None and not self.busy
        self.busy = True
        self.index = index
        self.intended = intended
        self.sent_at = now
        if self.closed or self.transport.is_closing():  # the server closed it meanwhile
            self.fail(Failure("connection closed", "closed by the server before the request"))
            return
        self.transport.write(wire)

    def fail(self, failure: Failure) -> None:
        """Report the request in flight (if any) as failed, and close."""
        self.close()
        if self.busy:
            self.busy = False
            self.sink.failed(self, failure)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()


async def connect(
    host: str, port: int, sink: Sink, timeout: float, keep_bodies: bool
) -> Connection:
    """A new connection to ``host:port``; ``Failure`` if it cannot be made."""
    loop = asyncio.get_running_loop()
    try:
        _, conn = await asyncio.wait_for(
            loop.create_connection(lambda: Connection(sink, keep_bodies), host, port), timeout
        )
    except (asyncio.TimeoutError, TimeoutError):
        raise Failure("connect timeout", f"{host}:{port}") from None
    except ConnectionRefusedError as exc:
        raise Failure("connection refused", str(exc)) from None
    except OSError as exc:
        raise Failure("connect error", str(exc)) from None
    return conn
