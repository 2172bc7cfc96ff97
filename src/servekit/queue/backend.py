"""The storage interface a queue runs on; the semantics live in ``service.py``, once.

A backend stores records under increasing integer indexes and keeps, per consumer group, a
cursor (the last index handed to the group) and a pending list (records handed to a consumer
and not yet committed). A consumer is alive while it holds a lease; records pending to a
consumer whose lease lapsed are *orphans* that ``claim`` hands to another consumer of the group.
Every method that changes state is atomic on its own.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

from servekit.errors import QueueFull
from servekit.queue.record import Position, Record, Stats


class Superseded(Exception):
    """Another session took over this consumer (same group and user id)."""


class Backend(ABC):
    """Storage primitives for one named queue."""

    kind: str = "abstract"
    #: How often waiters re-check the store for changes made by other processes, in seconds.
    poll_interval: float = 0.5

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Connect or create the store; idempotent."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and threads; idempotent."""

    @abstractmethod
    async def append_many(
        self, items: Sequence[tuple[bytes, Mapping[str, str], str]], max_length: int
    ) -> list[int]:
        """Store ``(data, tags, request_id)`` records in order, atomically; return their indexes,
        -1 for each one refused because the queue held ``max_length`` (>0) records."""

    async def append(
        self, data: bytes, tags: Mapping[str, str], request_id: str, max_length: int
    ) -> int:
        """Store one record; return its index, or raise ``QueueFull`` at ``max_length`` (>0)."""
        (index,) = await self.append_many([(data, tags, request_id)], max_length)
        if index < 0:
            raise QueueFull(f"queue is full ({max_length} records)")
        return index

    @abstractmethod
    async def range(self, start: int, count: int) -> list[Record]:
        """Up to ``count`` records with ``index >= start``, oldest first."""

    @abstractmethod
    async def find(self, request_id: str) -> Record | None:
        """The record put under ``request_id``, if it is still there."""

    @abstractmethod
    async def delete(self, indexes: Sequence[int]) -> list[int]:
        """Remove records (from every group too); return the indexes this call removed."""

    @abstractmethod
    async def truncate(self, before: int) -> int:
        """Remove every record with ``index < before``; return how many went."""

    @abstractmethod
    async def stats(self) -> Stats:
        """Length, entries added, first and last index, and the groups."""

    @abstractmethod
    async def position(self, index: int, gid: str) -> Position | None:
        """Where record ``index`` stands for group ``gid``; None if there is no such record."""

    @abstractmethod
    async def join(self, gid: str, uid: str, token: str, start: int, lease: float) -> None:
        """Create the group at ``start`` if new, and make ``token`` the consumer's live session."""

    @abstractmethod
    async def heartbeat(self, gid: str, uid: str, token: str, lease: float) -> bool:
        """Extend the lease; False if another session took the consumer over."""

    @abstractmethod
    async def leave(self, gid: str, uid: str, token: str) -> None:
        """End the session: what the consumer holds becomes claimable by its group at once."""

    @abstractmethod
    async def held(self, gid: str, uid: str, token: str, count: int) -> list[Record]:
        """Up to ``count`` records pending to this consumer (to resend after a reconnect)."""

    @abstractmethod
    async def claim(self, gid: str, uid: str, token: str, window: int) -> list[Record]:
        """Hand this consumer orphans of its group, then new records, up to ``window`` held.

        Raises ``Superseded`` if ``token`` is no longer the consumer's session.
        """

    @abstractmethod
    async def ack(self, gid: str, indexes: Sequence[int]) -> list[int]:
        """Commit records for group ``gid``; return those this call committed.

        A record committed by every group is removed.
        """
