"""TCP door: length-prefixed JSON frames (dubhe-sdk style) onto the same batcher.

Each frame is a 4-byte big-endian length and a UTF-8 JSON object. Requests carry
``req_type`` (0 heartbeat, 1 train, 2 predict job, 3 inference), ``request_number`` and
``data``; an inference request may name a ``model`` (default: the first served model) and
a ``correlation_id`` (carried by engine events and request records; default: one is made),
and its ``data`` is one batch item. Responses carry ``flag`` (1 success, 2 error), ``message``,
``request_number`` and ``data``; an error also carries ``code``, the HTTP status of the same
error on the HTTP doors. Many requests may be in flight on one connection: each is answered
when its result is ready, matched by ``request_number``. When the connection closes, its
requests that have not run yet are dropped.

When the server has a token, every request but a heartbeat carries it in a ``token`` field
(compared in constant time); a frame without it is answered ``code`` 401 and never reaches the
batcher.

Limits (:class:`TcpLimits`, the ``tcp_*`` server settings). Back-pressure, not errors: the
door stops reading a connection (its client's sends then block) while it has
``tcp_max_inflight`` requests in flight, while the frames it holds would pass
``tcp_max_buffer`` bytes, while its unread replies pass the write buffer's high-water mark
(64 KiB), and while a frame being received cannot be reserved whole from
``tcp_max_total_buffer``, shared by every connection (a connection holding under 64 KiB may
always read, so small requests keep flowing while large frames wait). Errors that close the
connection: a frame over ``tcp_max_frame_size`` (413), a frame not whole within
``tcp_frame_timeout`` seconds of its first byte, counting only time the door spent reading
(408), a connection beyond ``tcp_max_connections`` (503, at once). A connection silent for
``tcp_idle_timeout`` with nothing in flight, or whose replies stay unread that long, is closed
without a frame. Decoded, a JSON frame may take several times its length in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

from servekit.errors import BadRequest, Cancelled, ModelError, ServekitError, Unavailable
from servekit.protocol.tcp_frames import (
    DEFAULT_MAX_FRAME_SIZE,
    FLAG_SUCCESS,
    FrameDecoder,
    FrameError,
    FrameTimeout,
    FrameTooLarge,
    ReqType,
    encode_frame,
    failure,
)
from servekit.server.asgi import MILLISECONDS, checked_timeout
from servekit.server.auth import TokenGuard
from servekit.server.runtime import ModelRegistry, ModelRuntime
from servekit.settings import InvalidSetting, ServerSettings, settings_group

log = logging.getLogger("servekit.tcp")
T = TypeVar("T")

MiB = 1024 * 1024
_READ_SIZE = 256 * 1024
_STREAM_LIMIT = 64 * 1024  # the StreamReader reads ahead at most twice this, then pauses
_WRITE_HIGH = 64 * 1024  # unread replies above this: stop reading the connection
_ALWAYS_READ = 64 * 1024  # a connection holding less may read past the shared budget


@dataclass(frozen=True)
class TcpLimits:
    """What the TCP door holds at most; see the module docstring for each limit."""

    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    frame_timeout: float = 30.0
    idle_timeout: float = 300.0
    max_inflight: int = 64
    max_buffer: int = 32 * MiB
    max_total_buffer: int = 128 * MiB
    max_connections: int = 1024

    def __post_init__(self) -> None:
        for name in ("max_buffer", "max_total_buffer"):
            if getattr(self, name) < self.max_frame_size:
                raise InvalidSetting(
                    f"tcp_{name} ({getattr(self, name)}) must be at least tcp_max_frame_size"
                    f" ({self.max_frame_size}), or a frame of the largest size is never read"
                )

    @classmethod
    def from_settings(cls, settings: ServerSettings) -> TcpLimits:
        """The ``tcp_*`` fields of ``settings``."""
        return settings_group(cls, settings, "tcp_")


class TcpDoor:
    """Serves a model registry over TCP frames; ``await door.start(host, port)``."""

    def __init__(
        self,
        registry: ModelRegistry,
        *,
        token: str | None = None,
        limits: TcpLimits | None = None,
    ) -> None:
        self.registry = registry
        self.guard = TokenGuard(token)
        self.limits = limits or TcpLimits()
        self.server: asyncio.Server | None = None
        self.connections = 0
        self.held = 0  # bytes of frames held by every connection (reserved or in flight)
        self._starved: set[_Connection] = set()

    @classmethod
    def from_settings(cls, registry: ModelRegistry, settings: ServerSettings) -> TcpDoor:
        """A door with the token and ``tcp_*`` limits of ``settings``."""
        return cls(registry, token=settings.token_value, limits=TcpLimits.from_settings(settings))

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen; returns the bound port."""
        # reuse_port: several worker processes may share one TCP port, like the HTTP one
        self.server = await asyncio.start_server(
            self._serve_connection, host, port, reuse_port=port != 0, limit=_STREAM_LIMIT
        )
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if self.connections >= self.limits.max_connections:
            error = Unavailable(
                f"too many TCP connections (tcp_max_connections={self.limits.max_connections})"
            )
            writer.write(encode_frame(failure(error, None)))
            await _close(writer)
            return
        self.connections += 1
        try:
            await _Connection(self, reader, writer).serve()
        finally:
            self.connections -= 1

    # the shared budget

    def reserve(self, connection: _Connection, size: int) -> bool:
        """Take ``size`` bytes of the shared budget for ``connection``; False: wait."""
        over = self.held and self.held + size > self.limits.max_total_buffer
        if over and connection.held + size > _ALWAYS_READ:
            self._starved.add(connection)
            return False
        self.held += size
        return True

    def release(self, size: int) -> None:
        """Give ``size`` bytes back and wake the connections waiting for some."""
        self.held -= size
        if self._starved:
            for connection in self._starved:
                connection.wake.set()
            self._starved.clear()

    def forget(self, connection: _Connection) -> None:
        """``connection`` closed: it waits for nothing any more."""
        self._starved.discard(connection)

    # answering one request

    async def handle(
        self, request: Any, closed: asyncio.Future[None] | None = None
    ) -> dict[str, Any] | None:
        """Answer one decoded request (never raises); ``None`` when the peer has gone."""
        number = request.get("request_number") if isinstance(request, dict) else None
        try:
            return await self._handle(request, number, closed)
        except Cancelled:
            return None
        except ServekitError as exc:
            return failure(exc, number)
        except Exception as exc:  # the model's failure is this request's answer
            return failure(ModelError(f"{type(exc).__name__}: {exc}"), number)

    async def _handle(
        self, request: Any, number: Any, closed: asyncio.Future[None] | None
    ) -> dict[str, Any]:
        if not isinstance(request, dict):
            raise BadRequest("param error: request is not a JSON object")
        req_type = request.get("req_type")
        if req_type == ReqType.HEARTBEAT:  # open, like the HTTP health routes
            return {"flag": FLAG_SUCCESS, "message": "service online", "request_number": number}
        self.guard.check_token(request.get("token"))
        if req_type != ReqType.INFERENCE:
            raise BadRequest(f"req_type {req_type!r} is not served here (0 heartbeat, 3 inference)")
        if "data" not in request:
            raise BadRequest("param error: missing 'data'")
        runtime = self._runtime(request.get("model"))
        data = request["data"]
        seconds = None
        if request.get("timeout_ms") is not None:
            seconds = checked_timeout(request["timeout_ms"], "'timeout_ms'", MILLISECONDS)
        corr = request.get("correlation_id") if runtime.observing else None
        (result,) = await runtime.infer(
            [data],
            request=data,
            deadline=None if seconds is None else runtime.now() + seconds,
            cancelled_by=closed,
            door="tcp",
            correlation_id=None if corr is None else str(corr),
        )
        return {
            "flag": FLAG_SUCCESS,
            "message": "model inference success",
            "request_number": number,
            "data": result,
        }

    def _runtime(self, name: Any) -> ModelRuntime:
        if name is None:
            return next(iter(self.registry))
        if not isinstance(name, str):
            raise BadRequest("param error: 'model' must be a string")
        model, _, version = name.partition(":")
        return self.registry.get(model, version or None)

    def encode_answer(self, answer: dict[str, Any]) -> bytes:
        """``answer`` as a frame; a failure frame when it cannot be sent as it is."""
        number = answer.get("request_number")
        limit = self.limits.max_frame_size
        try:
            return encode_frame(answer, max_size=limit)
        except TypeError as exc:
            error = ModelError(f"result is not JSON-serialisable: {exc}")
        except FrameTooLarge as exc:
            error = ModelError(f"the answer is too large to send: {exc} (tcp_max_frame_size)")
        return encode_frame(failure(error, number))


class _Connection:
    """One client: takes frames while the limits allow, answers each when it is done."""

    def __init__(
        self, door: TcpDoor, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.door = door
        self.limits = door.limits
        self.reader = reader
        self.writer = writer
        self.loop = asyncio.get_running_loop()
        self.decoder = FrameDecoder(self.limits.max_frame_size)
        self.closed: asyncio.Future[None] = self.loop.create_future()
        self.wake = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()
        self.inflight = 0
        self.held = 0  # bytes taken from the door's budget: the next frame + frames in flight
        self.reserved = 0  # the part of ``held`` reserved for the next frame
        self.reading_for = 0.0  # seconds spent waiting for the rest of the next frame
        self.ended = False  # a frame error the stream cannot go on after
        writer.transport.set_write_buffer_limits(high=_WRITE_HIGH)

    async def serve(self) -> None:
        try:
            while await self._wait_for_room():
                data = await self._read()
                if not data:
                    break
                self.decoder.append(data)
        except FrameTimeout as exc:
            self.writer.write(encode_frame(failure(exc, None)))
        except (ConnectionError, asyncio.TimeoutError):
            pass  # the peer went away, or stayed silent past the idle timeout
        finally:
            self.closed.set_result(None)  # the peer is gone: drop its requests that have not run
            if self.tasks:
                await asyncio.gather(*self.tasks, return_exceptions=True)
            self.door.forget(self)
            self._release(self.held)
            await _close(self.writer)

    async def _wait_for_room(self) -> bool:
        """Start what was received; wait until more may be read (False: stop reading)."""
        while True:
            if self.writer.transport.get_write_buffer_size() > _WRITE_HIGH:
                # its replies are not being read: wait for them to be
                await _within(self.writer.drain(), self.limits.idle_timeout)
            if self._start_frames():
                return not self.ended and not self.writer.is_closing()
            self.wake.clear()
            await self.wake.wait()

    def _start_frames(self) -> bool:
        """Start answering the frames received, as far as the limits allow; True: read on."""
        while self.inflight < self.limits.max_inflight:
            size = self.decoder.pending_size
            if size is None:
                return True  # no header yet: read it
            if not self.reserved and size - 4 <= self.limits.max_frame_size:
                if self.held and self.held + size > self.limits.max_buffer:
                    return False  # wait for answers to go out
                if not self.door.reserve(self, size):
                    return False  # wait for other connections to give bytes back
                self.reserved = size
                self.held += size
            taken = self.decoder.next_frame()
            if taken is None:
                return True  # reserved, not whole yet: read the rest
            self.reserved = 0
            self.reading_for = 0.0
            if not self._start(*taken):
                self.ended = True
                return True
        return False

    def _start(self, message: Any, size: int) -> bool:
        """Start answering one frame; False: it was an error the stream cannot go on after."""
        if isinstance(message, FrameError):
            self._release(size)
            if isinstance(message, FrameTooLarge):
                message = FrameTooLarge(f"{message.message} (tcp_max_frame_size)")
            self.writer.write(encode_frame(failure(message, None)))
            return not message.fatal
        self.inflight += 1
        task = self.loop.create_task(self._answer(message, size))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return True

    async def _read(self) -> bytes:
        if self.decoder.buffered:
            timeout: float | None = self.limits.frame_timeout - self.reading_for
        else:
            timeout = None if self.inflight else self.limits.idle_timeout
        if timeout is None:
            return await self.reader.read(_READ_SIZE)
        start = self.loop.time()
        try:
            return await _within(self.reader.read(_READ_SIZE), timeout)
        except asyncio.TimeoutError:
            if not self.decoder.buffered:
                raise  # idle: close without a word
            limit = self.limits.frame_timeout
            raise FrameTimeout(
                f"frame not received whole within {limit}s of its first byte"
                f" ({self.decoder.buffered} bytes came; tcp_frame_timeout)"
            ) from None
        finally:
            if self.decoder.buffered:
                self.reading_for += self.loop.time() - start

    async def _answer(self, request: Any, size: int) -> None:
        try:
            answer = await self.door.handle(request, self.closed)
            if answer is not None and not self.writer.is_closing():
                self.writer.write(self.door.encode_answer(answer))
        finally:
            self.inflight -= 1
            self._release(size)
            self.wake.set()

    def _release(self, size: int) -> None:
        self.held -= size
        self.door.release(size)


async def _within(work: Awaitable[T], seconds: float) -> T:
    """``await work``, raising ``asyncio.TimeoutError`` after ``seconds``."""
    if sys.version_info >= (3, 11):  # no extra task, unlike wait_for before 3.12
        async with asyncio.timeout(seconds):
            return await work
    return await asyncio.wait_for(work, seconds)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
