"""TCP door: length-prefixed JSON frames (dubhe-sdk style) onto the same batcher.

Each frame is a 4-byte big-endian length and a UTF-8 JSON object. Requests carry
``req_type`` (0 heartbeat, 1 train, 2 predict job, 3 inference), ``request_number`` and
``data``; an inference request may name a ``model`` (default: the first served model) and
its ``data`` is one batch item. Responses carry ``flag`` (1 success, 2 error), ``message``,
``request_number`` and ``data``. Many requests may be in flight on one connection: each is
answered when its result is ready, matched by ``request_number``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from typing import Any

import orjson

from servekit.errors import BadRequest, ServekitError
from servekit.server.runtime import ModelRegistry

log = logging.getLogger("servekit.tcp")

HEARTBEAT, TRAIN, PREDICT, INFERENCE = 0, 1, 2, 3
OK, ERROR = 1, 2
DEFAULT_MAX_FRAME = 16 * 1024 * 1024
_HEADER = struct.Struct("!I")


def encode_frame(document: Any) -> bytes:
    """One frame: length prefix plus the JSON body."""
    body = orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
    return _HEADER.pack(len(body)) + body


class TcpDoor:
    """Serves a model registry over TCP frames; ``await door.start(host, port)``."""

    def __init__(self, registry: ModelRegistry, *, max_frame_size: int = DEFAULT_MAX_FRAME):
        self.registry = registry
        self.max_frame_size = max_frame_size
        self.server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

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
        pending: set[asyncio.Task[None]] = set()
        try:
            while True:
                try:
                    header = await reader.readexactly(4)
                except asyncio.IncompleteReadError:
                    break  # clean close, or a half-sent header: nothing to answer
                (length,) = _HEADER.unpack(header)
                if length > self.max_frame_size:
                    writer.write(
                        encode_frame(
                            {
                                "flag": ERROR,
                                "message": f"frame of {length} bytes exceeds the"
                                f" {self.max_frame_size}-byte limit; closing",
                            }
                        )
                    )
                    break
                try:
                    body = await reader.readexactly(length)
                except asyncio.IncompleteReadError:
                    break  # the peer closed mid-frame
                task = asyncio.get_running_loop().create_task(self._answer(body, writer))
                pending.add(task)
                task.add_done_callback(pending.discard)
        except ConnectionError:
            pass
        finally:
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, body: bytes, writer: asyncio.StreamWriter) -> None:
        response = await self.handle(body)
        if not writer.is_closing():
            try:
                writer.write(encode_frame(response))
            except TypeError as exc:  # the model's result is not JSON
                writer.write(
                    encode_frame(
                        {
                            "flag": ERROR,
                            "message": f"result is not JSON-serialisable: {exc}",
                            "request_number": response.get("request_number"),
                        }
                    )
                )

    async def handle(self, body: bytes) -> dict[str, Any]:
        """Answer one request frame body (never raises)."""
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return {"flag": ERROR, "message": f"param error: frame is not valid JSON: {exc}"}
        if not isinstance(request, dict):
            return {"flag": ERROR, "message": "param error: request is not a JSON object"}
        number = request.get("request_number")
        req_type = request.get("req_type")
        if req_type == HEARTBEAT:
            return {"flag": OK, "message": "service online", "request_number": number}
        if req_type != INFERENCE:
            return {
                "flag": ERROR,
                "message": f"req_type {req_type!r} is not served here (0 heartbeat, 3 inference)",
                "request_number": number,
            }
        if "data" not in request:
            return {
                "flag": ERROR,
                "message": "param error: missing 'data'",
                "request_number": number,
            }
        try:
            runtime = self._runtime(request.get("model"))
            runtime.check_ready()
            (result,) = await runtime.batcher.run([request["data"]])
        except ServekitError as exc:
            return {
                "flag": ERROR,
                "message": exc.message,
                "request_number": number,
                "code": exc.status,
            }
        except Exception as exc:  # the model's failure is this request's answer
            return {
                "flag": ERROR,
                "message": f"{type(exc).__name__}: {exc}",
                "request_number": number,
                "code": 500,
            }
        return {
            "flag": OK,
            "message": "model inference success",
            "request_number": number,
            "data": result,
        }

    def _runtime(self, name: Any) -> Any:
        if name is None:
            return next(iter(self.registry))
        if not isinstance(name, str):
            raise BadRequest("param error: 'model' must be a string")
        model, _, version = name.partition(":")
        return self.registry.get(model, version or None)
