"""One consumer's session on a queue: an async iterator of records, bounded by a window."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING

from servekit.queue.backend import Superseded
from servekit.queue.record import Record
from servekit.queue.waiting import wait_event

if TYPE_CHECKING:
    from servekit.queue.service import QueueService

log = logging.getLogger("servekit.queue")


class Subscription:
    """Records pushed to consumer ``(gid, uid)``; at most ``window`` held uncommitted.

    Iterate with ``async for``; commit with ``commit(indexes)``. On a (re)connect the records
    the consumer still held are sent again first. ``close()`` hands what is still held back to
    the group at once; a consumer that dies instead loses its lease after ``service.lease``
    seconds, and then its group's other consumers claim what it held. Iteration ends when the
    subscription is closed, or when another session of the same consumer takes it over
    (``superseded`` is then True).
    """

    def __init__(
        self,
        service: QueueService,
        *,
        gid: str,
        uid: str,
        index: int,
        window: int,
        auto_commit: bool,
    ) -> None:
        self.service = service
        self.gid = gid
        self.uid = uid
        self.index = index
        self.window = window
        self.auto_commit = auto_commit
        self.token = uuid.uuid4().hex
        self.superseded = False
        self._buffer: deque[Record] = deque()
        self._last: int | None = None  # yielded, awaiting the next call to count as done
        self._done: list[int] = []  # auto-commit: records to commit at the next round trip
        self._resend = True
        self._started = False
        self._closed = False
        self._heartbeat: asyncio.Task[None] | None = None
        self._filling: asyncio.Future[list[Record]] | None = None
        self._closing: asyncio.Future[None] | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    async def start(self) -> None:
        """Join the group and begin the lease; called by ``async with`` and the first ``next``."""
        if self._started:
            return
        self._started = True
        backend = self.service.backend
        await backend.join(self.gid, self.uid, self.token, self.index, self.service.lease)
        self.service._opened(self)
        self._heartbeat = asyncio.create_task(self._beat(), name=f"lease {self.gid}/{self.uid}")

    async def __aenter__(self) -> Subscription:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Record:
        if self._closed:
            raise StopAsyncIteration
        await self.start()
        if self._last is not None:
            self._done.append(self._last)
            self._last = None
        while not self._buffer:
            await self._flush()
            if self._closed:
                raise StopAsyncIteration
            changed = self.service.signal.event()
            try:
                got = await self._fill()
            except Superseded:
                await self._superseded()
                raise StopAsyncIteration from None
            if not got:
                await wait_event(changed, self.service.poll_interval)
        record = self._buffer.popleft()
        if self.auto_commit:
            self._last = record.index
        return record

    async def _fill(self) -> bool:
        """Ask the store for records; a cancelled caller still finds them in the buffer later,
        because what the store handed over must not be dropped on the floor."""
        if self._filling is None:
            self._filling = asyncio.ensure_future(self._fetch())
        task = self._filling
        try:
            records = await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done():  # finished as we were cancelled: keep its records for next time
                self._filling = None
                if not task.cancelled() and task.exception() is None:
                    self._buffer.extend(task.result())
            raise
        except BaseException:
            self._filling = None
            raise
        self._filling = None
        self._buffer.extend(records)
        return bool(records)

    async def _fetch(self) -> list[Record]:
        backend = self.service.backend
        if self._resend:
            self._resend = False
            held = await backend.held(self.gid, self.uid, self.token, self.window)
            if held:
                return held
        return await backend.claim(self.gid, self.uid, self.token, self.window)

    async def commit(self, indexes: Iterable[int]) -> list[int]:
        """Commit records for this consumer's group; return those this call committed."""
        return await self.service.commit(indexes, self.gid)

    async def _flush(self) -> None:
        if self._done:
            done, self._done = self._done, []
            await self.commit(done)

    async def close(self) -> None:
        """End the session; what the consumer still holds goes back to its group now."""
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close())
        await asyncio.shield(self._closing)  # every caller waits for the one closing

    async def _close(self) -> None:
        self._closed = True
        try:
            await self._stop_heartbeat()
            await self._settle()
            if self._started and not self.superseded:
                await self._flush()
                await self.service.backend.leave(self.gid, self.uid, self.token)
        finally:
            self._end()

    async def abort(self) -> None:
        """Drop the session as a crash would: no commit, no hand-back; the lease just lapses."""
        self._closed = True
        await self._stop_heartbeat()
        await self._settle()
        self._end()

    async def _settle(self) -> None:
        """Wait for a fetch still in flight, so it never outlives the session; what it took
        stays held by this consumer and goes back to the group when the session ends."""
        task, self._filling = self._filling, None
        if task is not None:
            await asyncio.wait({task})
            if not task.cancelled() and task.exception() is not None:
                log.debug(
                    "fetch ended with %r as %s/%s closed", task.exception(), self.gid, self.uid
                )

    def _end(self) -> None:
        self._buffer.clear()
        self.service._closed(self)
        self.service.signal.fire()

    async def _stop_heartbeat(self) -> None:
        task, self._heartbeat = self._heartbeat, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.wait({task}, timeout=5.0)  # never re-raises the task's cancellation

    async def _superseded(self) -> None:
        self.superseded = True
        self._closed = True
        await self._stop_heartbeat()
        self._end()

    async def _beat(self) -> None:
        backend = self.service.backend
        interval = self.service.lease / 3
        while not self._closed:  # a flag too: a store client may swallow our cancel
            await asyncio.sleep(interval)
            if self._closed:
                return
            try:
                alive = await backend.heartbeat(self.gid, self.uid, self.token, self.service.lease)
            except Exception:  # boundary: a store hiccup must not end the session
                log.warning("lease renewal failed for %s/%s", self.gid, self.uid, exc_info=True)
                continue
            if not alive:
                self.superseded = True
                self._closed = True
                self._heartbeat = None
                self._end()
                return
