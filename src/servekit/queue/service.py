"""The queue semantics, written once over any ``Backend``.

A queue holds records under increasing indexes. ``put`` adds one; ``get`` reads (and by
default removes) records by index, request id or tags, waiting for them up to a timeout;
``watch`` subscribes a consumer ``(gid, uid)`` that is pushed records, never holding more than
``window`` uncommitted ones. Every group sees every record; inside a group records spread over
its consumers; what a consumer held when it left or died goes to another consumer of its group.
A record is gone only after every group committed it, or after ``delete``/``truncate``/an
auto-deleting ``get``: delivery is at-least-once.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Mapping

from servekit.errors import BadRequest, NotFound, PayloadTooLarge, QueueFull
from servekit.queue.backend import Backend
from servekit.queue.coalesce import Coalescer
from servekit.queue.record import Position, Record
from servekit.queue.subscription import Subscription
from servekit.queue.waiting import Signal, wait_event

DEFAULT_GROUP = "eas"
MAX_WINDOW = 10_000
MAX_GET_LENGTH = 10_000
_SCAN_CHUNK = 256


class QueueService:
    """One named queue: the asyncio API every door (HTTP, WebSocket, in-process) goes through.

    Use it as an async context manager, or call ``start()`` and ``close()``::

        async with QueueService(SqliteBackend("q.db"), name="svc") as queue:
            index, request_id = await queue.put(b"payload", {"k": "v"})
            async with queue.watch(window=8, gid="workers") as sub:
                async for record in sub:
                    ...
                    await sub.commit([record.index])
    """

    def __init__(
        self,
        backend: Backend,
        *,
        name: str = "queue",
        max_length: int = 0,
        max_payload_bytes: int = 8 << 20,
        lease: float = 10.0,
        poll_interval: float | None = None,
    ) -> None:
        self.backend = backend
        self.name = name
        self.max_length = max_length
        self.max_payload_bytes = max_payload_bytes
        self.lease = lease
        self.poll_interval = backend.poll_interval if poll_interval is None else poll_interval
        self.signal = Signal()
        self._subscriptions: set[Subscription] = set()
        self._started = False
        self._puts: Coalescer[tuple[bytes, Mapping[str, str], str], int] = Coalescer(self._put_many)
        self._commits: Coalescer[tuple[str, tuple[int, ...]], list[int]] = Coalescer(
            self._commit_many
        )

    async def start(self) -> None:
        """Open the backend; idempotent."""
        if not self._started:
            await self.backend.open()
            self._started = True

    async def close(self) -> None:
        """End every subscription and close the backend."""
        for sub in list(self._subscriptions):
            await sub.close()
        await self._puts.wait_idle()
        await self._commits.wait_idle()
        if self._started:
            await self.backend.close()
            self._started = False

    async def __aenter__(self) -> QueueService:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- records --------------------------------------------------------------------------

    async def put(
        self, data: bytes, tags: Mapping[str, str] | None = None, *, request_id: str | None = None
    ) -> tuple[int, str]:
        """Append a record; return its index and request id. ``QueueFull`` if at max length."""
        if len(data) > self.max_payload_bytes:
            raise PayloadTooLarge(
                f"record of {len(data)} bytes exceeds the queue's {self.max_payload_bytes}"
            )
        request_id = request_id or str(uuid.uuid4())
        index = await self._puts.submit((data, tags or {}, request_id))
        if index < 0:
            raise QueueFull(f"queue {self.name!r} is full ({self.max_length} records)")
        return index, request_id

    async def _put_many(self, items: list[tuple[bytes, Mapping[str, str], str]]) -> list[int]:
        indexes = await self.backend.append_many(items, self.max_length)
        self.signal.fire()
        return indexes

    async def get(
        self,
        request_id: str | None = None,
        index: int = 0,
        length: int = 1,
        timeout: float = 5.0,
        auto_delete: bool = True,
        tags: Mapping[str, str] | None = None,
    ) -> list[Record]:
        """Up to ``length`` records from ``index`` on (or the one put as ``request_id``) whose
        tags include ``tags``, waiting up to ``timeout`` seconds for the first to arrive.

        With ``auto_delete`` the records returned are removed; a record is returned to only
        one auto-deleting caller.
        """
        if length < 1 or length > MAX_GET_LENGTH:
            raise BadRequest(f"length must be between 1 and {MAX_GET_LENGTH}, not {length}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0.0)
        while True:
            changed = self.signal.event()
            found = await self._find(request_id, index, length, tags or {})
            if found and auto_delete:
                removed = set(await self.backend.delete([r.index for r in found]))
                found = [r for r in found if r.index in removed]
                if removed:
                    self.signal.fire()
            remaining = deadline - loop.time()
            if found or remaining <= 0:
                return found
            await wait_event(changed, min(remaining, self.poll_interval))

    async def _find(
        self, request_id: str | None, index: int, length: int, tags: Mapping[str, str]
    ) -> list[Record]:
        if request_id is not None:
            record = await self.backend.find(request_id)
            ok = record is not None and record.index >= index and _matches(record, tags)
            return [record] if ok and record is not None else []
        found: list[Record] = []
        start = max(index, 0)
        while len(found) < length:
            chunk = await self.backend.range(start, length if not tags else _SCAN_CHUNK)
            found.extend(r for r in chunk if _matches(r, tags))
            if len(chunk) < (length if not tags else _SCAN_CHUNK):
                break
            start = chunk[-1].index + 1
        return found[:length]

    async def attributes(self) -> dict[str, str]:
        """Counts and settings as EAS names them (``stream.length``, ``stream.lastEntry``, …)."""
        stats = await self.backend.stats()
        attrs = {
            "meta.name": self.name,
            "meta.type": "stream",
            "meta.backend": self.backend.kind,
            "meta.maxLength": str(self.max_length),
            "meta.maxPayloadBytes": str(self.max_payload_bytes),
            "stream.length": str(stats.length),
            "stream.entriesAdded": str(stats.entries_added),
            "groups.count": str(len(stats.groups)),
        }
        if stats.first_index is not None:
            attrs["stream.firstEntry"] = str(stats.first_index)
        if stats.last_index is not None:
            attrs["stream.lastEntry"] = str(stats.last_index)
        for i, g in enumerate(stats.groups):
            attrs[f"groups.list.[{i}]"] = (
                f"Id: {g.gid}, Index: {g.cursor}, Pending: {g.pending}, Consumers: {g.consumers}"
            )
        return attrs

    async def truncate(self, index: int) -> int:
        """Remove every record before ``index``; return how many went."""
        removed = await self.backend.truncate(index)
        self.signal.fire()
        return removed

    async def delete(self, indexes: Iterable[int]) -> list[int]:
        """Remove these records from the queue and every group; return those removed."""
        removed = await self.backend.delete(list(indexes))
        self.signal.fire()
        return removed

    async def search(self, index: int, gid: str = DEFAULT_GROUP) -> Position:
        """Who holds record ``index`` in group ``gid``, and how many records wait before it."""
        position = await self.backend.position(index, gid)
        if position is None:
            raise NotFound(f"queue {self.name!r} has no record {index}")
        return position

    async def commit(self, indexes: Iterable[int], gid: str = DEFAULT_GROUP) -> list[int]:
        """Commit records for group ``gid``; return those this call committed (each once)."""
        return await self._commits.submit((gid, tuple(indexes)))

    async def _commit_many(self, calls: list[tuple[str, tuple[int, ...]]]) -> list[list[int]]:
        done: dict[str, set[int]] = {}
        for gid in dict.fromkeys(g for g, _ in calls):
            wanted = {i for g, indexes in calls if g == gid for i in indexes}
            done[gid] = set(await self.backend.ack(gid, sorted(wanted)))
        if any(done.values()):
            self.signal.fire()
        results = []
        for gid, indexes in calls:  # an index committed once is reported to one caller only
            mine = [i for i in dict.fromkeys(indexes) if i in done[gid]]
            done[gid].difference_update(mine)
            results.append(mine)
        return results

    # -- consumers ------------------------------------------------------------------------

    def watch(
        self,
        index: int = 0,
        window: int = 1,
        *,
        uid: str | None = None,
        gid: str = DEFAULT_GROUP,
        auto_commit: bool = False,
    ) -> Subscription:
        """Subscribe consumer ``(gid, uid)``; a new group starts at ``index`` (0: the oldest).

        With ``auto_commit`` a record is committed once the next one is asked for.
        """
        if not 1 <= window <= MAX_WINDOW:
            raise BadRequest(f"window must be between 1 and {MAX_WINDOW}, not {window}")
        if not gid:
            raise BadRequest("group id must not be empty")
        return Subscription(
            self,
            gid=gid,
            uid=uid or str(uuid.uuid4()),
            index=index,
            window=window,
            auto_commit=auto_commit,
        )

    def _opened(self, sub: Subscription) -> None:
        self._subscriptions.add(sub)

    def _closed(self, sub: Subscription) -> None:
        self._subscriptions.discard(sub)


def _matches(record: Record, tags: Mapping[str, str]) -> bool:
    return all(record.tags.get(k) == v for k, v in tags.items())
