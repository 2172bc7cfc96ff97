"""Asynchronous inference: a model's input queue → the batcher → its sink queue.

A consumer inside the server watches the input queue ``<service>`` with a window, decodes
each record as the model's EAS body format, runs it through the same batcher as HTTP
requests, puts the answer into ``<service>/sink`` under the record's request id, and only
then commits the input record. If the server dies in between, the record is redelivered:
every record ends up answered in the sink or still in the input queue (at least once).

A sink with a maximum length applies back-pressure: while it has no room for another answer
the consumer takes no more input (the input queue fills up and refuses puts with 429), and it
resumes as soon as the sink is drained. An answer that cannot be stored or committed is retried
with backoff; after ``ANSWER_TRIES`` failures the session ends, which hands every record it
still holds back to the group for redelivery. No record is ever left held by a live consumer
that has stopped working on it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Coroutine
from typing import Any

import orjson

from servekit.errors import PayloadTooLarge, QueueFull, ServekitError, Unavailable
from servekit.protocol.eas_formats import decode_body
from servekit.queue import QueueService, Record, Subscription
from servekit.queue.waiting import wait_event
from servekit.server.runtime import ModelRuntime

log = logging.getLogger("servekit.async")

GROUP = "servekit-async-inference"
STATUS_TAG = "status"
RETRY_SECONDS = 0.5
#: Tries to store (or commit) one answer before its record goes back to the queue.
ANSWER_TRIES = 5
#: The wait after the first failed try; doubled after each further one.
BACKOFF_SECONDS = 0.1


class AnswerFailed(Exception):
    """An answer could not be stored in the sink or committed: its record goes back."""


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
            except AnswerFailed as exc:
                log.error("async inference for %s: %s; its records go back", self.uid, exc)
                await asyncio.sleep(RETRY_SECONDS)
            except Exception:  # a boundary: the consumer must outlive backend hiccups
                log.exception("async inference for %s: consumer failed; restarting", self.uid)
                await asyncio.sleep(RETRY_SECONDS)

    async def _ready(self) -> None:
        while not self.runtime.ready:
            await asyncio.sleep(0.05)

    async def _consume(self, sub: Subscription) -> None:
        """Take records and answer them until the session ends or an answer fails for good."""
        answers = _Answers()
        taker = asyncio.get_running_loop().create_task(self._take(sub, answers))
        either: set[asyncio.Future[Any]] = {taker, answers.failed}
        try:
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        finally:
            taker.cancel()
            await asyncio.wait({taker})
            await answers.settle()  # what was taken is answered (or fails) before the session ends
        if answers.failed.done():
            raise answers.failed.result()
        if not taker.cancelled():
            taker.result()  # a failed fetch restarts the session

    async def _take(self, sub: Subscription, answers: _Answers) -> None:
        room = 0  # answers the sink was last seen to have room for, beyond those in flight
        while True:
            if room <= 0:
                room = await self._room_in_sink(answers)
            try:
                record = await anext(sub)
            except StopAsyncIteration:
                return
            room -= 1
            answers.start(self._answer(sub, record))

    async def _room_in_sink(self, answers: _Answers) -> int:
        """Back-pressure: wait until the sink has room for one more answer; return how many.

        The answers still in flight are counted afresh on every look: they finish while we
        wait, and a count taken once would keep the consumer waiting for room it already has.
        """
        limit = self.sink.max_length
        if limit <= 0:
            return 1 << 30
        full = False
        while True:
            changed = self.sink.signal.event()
            room = limit - (await self.sink.backend.stats()).length - len(answers)
            if room > 0:
                if full:
                    log.info("sink %r has room again: taking input", self.sink.name)
                return room
            if not full:
                full = True
                log.warning(
                    "sink %r is full (%d records): holding input back until it is drained",
                    self.sink.name,
                    limit,
                )
            await wait_event(changed, self.sink.poll_interval)

    async def _answer(self, sub: Subscription, record: Record) -> None:
        body, status = await self._run(record)
        await self._store(record, body, status)
        await self._commit(sub, record)

    async def _store(self, record: Record, body: bytes, status: int) -> None:
        """Put the answer in the sink, waiting while it is full and retrying what failed."""
        tags = {STATUS_TAG: str(status), "index": str(record.index)}
        failures = 0
        too_large = False
        while True:
            try:
                await self.sink.put(body, tags, request_id=record.request_id)
                return
            except QueueFull:
                self._give_back_if_stopping(record)
                changed = self.sink.signal.event()
                await wait_event(changed, self.sink.poll_interval)
            except PayloadTooLarge as exc:
                if too_large:  # even the error answer does not fit: nothing to store
                    failures = await self._backoff("storing the answer", record, failures, exc)
                    continue
                too_large = True  # this answer can never be stored: store why instead
                body = _error(f"the answer does not fit in sink {self.sink.name!r}: {exc.message}")
                tags[STATUS_TAG] = str(exc.status)
            except Exception as exc:
                failures = await self._backoff("storing the answer", record, failures, exc)

    async def _commit(self, sub: Subscription, record: Record) -> None:
        failures = 0
        while True:
            try:
                await sub.commit([record.index])
                return
            except Exception as exc:
                failures = await self._backoff("committing the record", record, failures, exc)

    async def _backoff(self, what: str, record: Record, failures: int, exc: Exception) -> int:
        """Wait before the next try; raise ``AnswerFailed`` once ``ANSWER_TRIES`` have failed."""
        failures += 1
        where = f"record {record.index} of {self.inputs.name!r}"
        if failures >= ANSWER_TRIES:
            raise AnswerFailed(f"{what} for {where} failed {failures} times: {exc!r}") from exc
        self._give_back_if_stopping(record)
        log.warning("%s for %s failed (%r); trying again", what, where, exc)
        await asyncio.sleep(BACKOFF_SECONDS * 2 ** (failures - 1))
        return failures

    def _give_back_if_stopping(self, record: Record) -> None:
        if self._stopping:  # left uncommitted, the record is redelivered after the restart
            raise asyncio.CancelledError(f"record {record.index} goes back: the server stops")

    async def _run(self, record: Record) -> tuple[bytes, int]:
        """The answer for one record: the encoded result, or an error body and its status."""
        while True:
            try:
                model = self.runtime.model
                item, encode = decode_body(model.eas_format, record.data, str(model.name))
                (result,) = await self.runtime.infer(
                    [item], request=item, door="queue", correlation_id=_corr(record)
                )
                return encode(result), 200
            except (QueueFull, Unavailable) as exc:
                if self._stopping:
                    raise asyncio.CancelledError from exc  # leave it uncommitted: redelivered
                await asyncio.sleep(getattr(exc, "retry_after", RETRY_SECONDS))
            except ServekitError as exc:
                return _error(exc.message), exc.status
            except Exception as exc:  # the model's failure is this record's answer
                return _error(f"{type(exc).__name__}: {exc}"), 500


class _Answers:
    """The answer tasks of one session: counted, awaited, and no failure left unretrieved."""

    def __init__(self) -> None:
        self._running: set[asyncio.Task[None]] = set()
        self.failed: asyncio.Future[AnswerFailed] = asyncio.get_running_loop().create_future()

    def __len__(self) -> int:
        return len(self._running)

    def start(self, answer: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(answer)
        self._running.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if task.cancelled():
            return
        exc = task.exception()  # retrieved here, always
        if exc is None or self.failed.done():
            return
        if isinstance(exc, AnswerFailed):
            self.failed.set_result(exc)
        else:  # a bug in the answer path: still give the session's records back
            log.error("answering a record failed", exc_info=exc)
            self.failed.set_result(AnswerFailed(f"answering a record failed: {exc!r}"))

    async def settle(self) -> None:
        if self._running:
            await asyncio.wait(set(self._running))


def _corr(record: Record) -> str | None:
    """A record's correlation id for events and request records: its request id, if any."""
    return record.request_id or None


def _error(message: str) -> bytes:
    return orjson.dumps({"error": message})


def queue_names(runtime: ModelRuntime) -> tuple[str, str]:
    """The input and sink queue names of a model: ``<name>`` and ``<name>/sink``."""
    name = str(runtime.model.name)
    return name, f"{name}/sink"


__all__ = ["AnswerFailed", "AsyncInference", "queue_names"]
