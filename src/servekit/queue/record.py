"""The record a queue holds, and the small value types its API returns."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Record:
    """One queued item: an increasing integer ``index``, opaque ``data`` and string ``tags``."""

    index: int
    data: bytes
    tags: dict[str, str] = field(default_factory=dict)
    request_id: str = ""


@dataclass(frozen=True, slots=True)
class GroupInfo:
    """A consumer group as the backend sees it."""

    gid: str
    cursor: int
    pending: int
    consumers: int


@dataclass(frozen=True, slots=True)
class Stats:
    """Counts a backend keeps about one queue."""

    length: int
    entries_added: int
    first_index: int | None
    last_index: int | None
    groups: tuple[GroupInfo, ...] = ()


@dataclass(frozen=True, slots=True)
class Position:
    """Where one record stands for one group; ``consumer`` is empty if nobody holds it."""

    consumer: str
    pending: bool
    wait_count: int

    def as_eas(self) -> dict[str, object]:
        """The JSON object the EAS queue protocol answers to ``_search_``."""
        return {
            "ConsumerId": self.consumer,
            "IsPending": self.pending,
            "WaitCount": self.wait_count,
        }
