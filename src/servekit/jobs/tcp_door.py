"""The jobs TCP door: dubhe-sdk's frames (4-byte big-endian length, UTF-8 JSON; a signed
length as dubhe sends it reads the same for every length a frame can have), several requests
per connection, each answered when it is done.

``req_type``: 0 heartbeat, 1 train (job), 2 offline evaluation (job), 3 inference (answered
with ``data``), and beyond dubhe 4 job status and 5 cancel a job (both with ``job_id``).
Every answer echoes ``request_number``; a failure is ``{"flag": 2, "message": …, "code":
HTTP status}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from servekit.errors import BadRequest, Cancelled, ModelError, ServekitError
from servekit.jobs.service import JobsService
from servekit.protocol.tcp_frames import (
    DEFAULT_MAX_FRAME_SIZE,
    FLAG_SUCCESS,
    FrameDecoder,
    FrameError,
    FrameTooLarge,
    encode_frame,
    failure,
)
from servekit.server.auth import TokenGuard

__all__ = ["JOB_CANCEL", "JOB_STATUS", "JobsTcpDoor"]

log = logging.getLogger("servekit.jobs")

JOB_STATUS, JOB_CANCEL = 4, 5
_READ_SIZE = 64 * 1024
_STARTED = {1: "model train starting now", 2: "model predict starting now"}


class JobsTcpDoor:
    """Serves ``service`` over TCP frames; ``await door.start(host, port)``."""

    def __init__(
        self,
        service: JobsService,
        *,
        token: str | None = None,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    ) -> None:
        self.service = service
        self.guard = TokenGuard(token)
        self.max_frame_size = max_frame_size
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self, host: str = "0.0.0.0", port: int = 0) -> int:
        """Listen; returns the bound port."""
        self.server = await asyncio.start_server(self._connection, host, port)
        self.port = int(self.server.sockets[0].getsockname()[1])
        return self.port

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = FrameDecoder(self.max_frame_size)
        closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        tasks: set[asyncio.Task[None]] = set()
        try:
            while data := await reader.read(_READ_SIZE):
                for message in decoder.feed(data):
                    if isinstance(message, FrameError):
                        if isinstance(message, FrameTooLarge):
                            message = FrameTooLarge(f"{message.message} (tcp_max_frame_size)")
                        writer.write(encode_frame(failure(message, None)))
                        if message.fatal:
                            return
                        continue
                    task = asyncio.create_task(self._answer(message, writer, closed))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
        except ConnectionError:
            pass
        finally:
            closed.set_result(None)  # inference not yet run for this peer is dropped
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(
        self, request: Any, writer: asyncio.StreamWriter, closed: asyncio.Future[None]
    ) -> None:
        answer = await self.handle(request, closed)
        if answer is None or writer.is_closing():
            return
        number = answer.get("request_number")
        try:
            frame = encode_frame(answer, max_size=self.max_frame_size)
        except TypeError as exc:
            frame = encode_frame(failure(ModelError(f"result is not JSON: {exc}"), number))
        except FrameTooLarge as exc:
            frame = encode_frame(failure(ModelError(f"answer too large: {exc}"), number))
        writer.write(frame)

    async def handle(
        self, request: Any, closed: asyncio.Future[None] | None = None
    ) -> dict[str, Any] | None:
        """One request's answer (never raises); ``None`` when the peer has gone."""
        number = request.get("request_number") if isinstance(request, dict) else None
        try:
            answer = await self._handle(request, closed)
        except Cancelled:
            return None
        except ServekitError as exc:
            return failure(exc, number)
        except Exception as exc:  # the inference method's failure is this request's answer
            return failure(
                ModelError(f"model inference failed: {type(exc).__name__}: {exc}"), number
            )
        return {"flag": FLAG_SUCCESS, **answer, "request_number": number}

    async def _handle(self, request: Any, closed: asyncio.Future[None] | None) -> dict[str, Any]:
        if not isinstance(request, dict):
            raise BadRequest("param error: request is not a dict")
        req_type = request.get("req_type")
        if req_type == 0:
            return {"message": "service online"}
        self.guard.check_token(request.get("token"))
        service = self.service
        service.check_instance(request)
        if req_type in (1, 2):
            job = service.submit(req_type, request)
            return {"message": _STARTED[req_type], "job_id": job.id}
        if req_type == 3:
            data = await service.infer(request, cancelled_by=closed)
            return {"message": "model inference success", "data": data}
        if req_type in (JOB_STATUS, JOB_CANCEL):
            job_id = request.get("job_id")
            if not isinstance(job_id, str):
                raise BadRequest("param error: 'job_id' (a string) is missing")
            if req_type == JOB_CANCEL:
                service.runner.cancel(job_id)
            return {"message": "job", **service.runner.get(job_id).to_dict()}
        raise BadRequest(
            f"req_type error: {req_type!r} (0 heartbeat, 1 train, 2 predict, 3 inference,"
            " 4 job status, 5 cancel job)"
        )
