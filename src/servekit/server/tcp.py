"""TCP door: length-prefixed JSON frames (dubhe-sdk style) onto the same batcher.

Each frame is a 4-byte big-endian length and a UTF-8 JSON object. Requests carry
``req_type`` (0 heartbeat, 1 train, 2 predict job, 3 inference), ``request_number`` and
``data``; an inference request may name a ``model`` (default: the first served model) and
its ``data`` is one batch item. Responses carry ``flag`` (1 success, 2 error), ``message``,
``request_number`` and ``data``; an error also carries ``code``, the HTTP status of the same
error on the HTTP doors. Many requests may be in flight on one connection: each is answered
when its result is ready, matched by ``request_number``. When the connection closes, its
requests that have not run yet are dropped.

When the server has a token, every request but a heartbeat carries it in a ``token`` field
(compared in constant time); a frame without it is answered ``code`` 401 and never reaches the
batcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from servekit.errors import BadRequest, Cancelled, ModelError, ServekitError
from servekit.protocol.tcp_frames import (
    DEFAULT_MAX_FRAME_SIZE,
    FLAG_FAILURE,
    FLAG_SUCCESS,
    FrameDecoder,
    FrameError,
    ReqType,
    encode_frame,
)
from servekit.server.asgi import MILLISECONDS, checked_timeout
from servekit.server.auth import TokenGuard
from servekit.server.runtime import ModelRegistry, ModelRuntime

log = logging.getLogger("servekit.tcp")

_READ_SIZE = 256 * 1024


class TcpDoor:
    """Serves a model registry over TCP frames; ``await door.start(host, port)``."""

    def __init__(
        self,
        registry: ModelRegistry,
        *,
        token: str | None = None,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    ) -> None:
        self.registry = registry
        self.guard = TokenGuard(token)
        self.max_frame_size = max_frame_size
        self.server: asyncio.Server | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen; returns the bound port."""
        # reuse_port: several worker processes may share one TCP port, like the HTTP one
        self.server = await asyncio.start_server(
            self._serve_connection, host, port, reuse_port=port != 0
        )
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        decoder = FrameDecoder(self.max_frame_size)
        pending: set[asyncio.Task[None]] = set()
        loop = asyncio.get_running_loop()
        closed: asyncio.Future[None] = loop.create_future()
        try:
            while data := await reader.read(_READ_SIZE):
                fatal = False
                for message in decoder.feed(data):
                    if isinstance(message, FrameError):
                        writer.write(encode_frame(failure(message, None)))
                        fatal = fatal or message.fatal
                        continue
                    task = loop.create_task(self._answer(message, writer, closed))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                if fatal:
                    break  # the stream cannot be resynchronised: answer, then close
        except ConnectionError:
            pass
        finally:
            closed.set_result(None)  # the peer is gone: drop its requests that have not run
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(
        self, request: Any, writer: asyncio.StreamWriter, closed: asyncio.Future[None]
    ) -> None:
        response = await self.handle(request, closed)
        if response is not None and not writer.is_closing():
            try:
                writer.write(encode_frame(response))
            except TypeError as exc:  # the model's result is not JSON
                error = ModelError(f"result is not JSON-serialisable: {exc}")
                writer.write(encode_frame(failure(error, response.get("request_number"))))

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
        (result,) = await runtime.infer(
            [data],
            request=data,
            deadline=None if seconds is None else runtime.now() + seconds,
            cancelled_by=closed,
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


def failure(error: ServekitError, number: Any) -> dict[str, Any]:
    """A failure answer: ``flag`` 2, the message, and ``code``, the error's HTTP status."""
    return {
        "flag": FLAG_FAILURE,
        "message": error.message,
        "request_number": number,
        "code": error.status,
    }
