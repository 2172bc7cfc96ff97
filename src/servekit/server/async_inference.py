"""Asynchronous inference: a model's input queue → the batcher → its sink queue.

A consumer inside the server watches the input queue ``<service>`` with a window, decodes
each record as the model's EAS body format, runs it through the same batcher as HTTP
requests, puts the answer into ``<service>/sink`` under the record's request id, and only
then commits the input record. If the server dies in between, the record is redelivered:
every record ends up answered in the sink or still in the input queue (at least once).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

import orjson

from servekit.errors import QueueFull, ServekitError, Unavailable
from servekit.protocol.eas_formats import decode_body
from servekit.queue import QueueService, Record, Subscription
from servekit.server.runtime import ModelRuntime

log = logging.getLogger("servekit.async")

GROUP = "servekit-async-inference"
STATUS_TAG = "status"
RETRY_SECONDS = 0.5


class AsyncInference:
    """Feeds one model from its input queue and answers into its sink queue."""

    def __init__(
        self,
        runtime: ModelRuntime,
        inputs: QueueService,
        sink: QueueService,
        *,
        window: int = 64,
    ) -> None:
        self.runtime = runtime
        self.inputs = inputs
        self.sink = sink
        self.window = window
        self.uid = f"{socket.gethostname()}-{os.getpid()}-{runtime.model.full_name}"
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._consume_forever())

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _consume_forever(self) -> None:
        while not self._stopping:
            try:
                await self._ready()
                async with self.inputs.watch(window=self.window, uid=self.uid, gid=GROUP) as sub:
                    await self._consume(sub)
            except asyncio.CancelledError:
                raise
            except Exception:  # a boundary: the consumer must outlive backend hiccups
                log.exception("async inference for %s: consumer failed; restarting", self.uid)
                await asyncio.sleep(RETRY_SECONDS)

    async def _ready(self) -> None:
        while not self.runtime.ready:
            await asyncio.sleep(0.05)

    async def _consume(self, sub: Subscription) -> None:
        running: set[asyncio.Task[None]] = set()
        try:
            async for record in sub:
                task = asyncio.get_running_loop().create_task(self._answer(sub, record))
                running.add(task)
                task.add_done_callback(running.discard)
        finally:
            if running:
                await asyncio.gather(*running, return_exceptions=True)

    async def _answer(self, sub: Subscription, record: Record) -> None:
        body, status = await self._run(record)
        tags = {STATUS_TAG: str(status), "index": str(record.index)}
        await self.sink.put(body, tags, request_id=record.request_id)
        await sub.commit([record.index])

    async def _run(self, record: Record) -> tuple[bytes, int]:
        """The answer for one record: the encoded result, or an error body and its status."""
        while True:
            try:
                model = self.runtime.model
                item, encode = decode_body(model.eas_format, record.data, str(model.name))
                (result,) = await self.runtime.infer([item], request=item)
                return encode(result), 200
            except (QueueFull, Unavailable) as exc:
                if self._stopping:
                    raise asyncio.CancelledError from exc  # leave it uncommitted: redelivered
                await asyncio.sleep(getattr(exc, "retry_after", RETRY_SECONDS))
            except ServekitError as exc:
                return _error(exc.message), exc.status
            except Exception as exc:  # the model's failure is this record's answer
                return _error(f"{type(exc).__name__}: {exc}"), 500


def _error(message: str) -> bytes:
    return orjson.dumps({"error": message})


def queue_names(runtime: ModelRuntime) -> tuple[str, str]:
    """The input and sink queue names of a model: ``<name>`` and ``<name>/sink``."""
    name = str(runtime.model.name)
    return name, f"{name}/sink"


__all__ = ["AsyncInference", "queue_names"]
