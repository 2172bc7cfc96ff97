"""One caller's submission to the batcher (private to ``servekit.batching``).

A ``Work`` gets exactly one outcome, delivered to its waiter: an ``asyncio.Future`` for
callers on the batcher's loop, a ``concurrent.futures.Future`` for callers in other threads.
Whoever wins :meth:`Work.claim` delivers it; everyone else leaves the work alone.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Sequence
from typing import Any, Protocol


class CancelToken(Protocol):
    """Anything with ``is_set()``: a ``threading.Event`` works."""

    def is_set(self) -> bool: ...


class Work:
    """Items from one caller; the batcher owns every field."""

    __slots__ = (
        "deadline",
        "done",
        "enqueued_at",
        "error",
        "items",
        "lock",
        "queued",
        "remaining",
        "results",
        "token",
        "waiter",
    )

    def __init__(
        self,
        items: Sequence[Any],
        waiter: asyncio.Future[list[Any]] | concurrent.futures.Future[list[Any]],
        *,
        deadline: float | None = None,
        token: CancelToken | None = None,
        threadsafe: bool = False,
    ) -> None:
        self.items = items
        self.waiter = waiter
        self.deadline = deadline
        self.token = token
        # Thread callers' work may be completed by a worker thread (straight to the caller)
        # while the loop fails it (timeout, close): the lock makes exactly one of them win.
        self.lock = threading.Lock() if threadsafe else None
        self.results: list[Any] | None = None
        self.error: BaseException | None = None
        self.done = False
        self.queued = 0
        self.remaining = len(items)
        self.enqueued_at = 0.0

    def claim(self) -> bool:
        """True for the one caller that may deliver this work's outcome; False afterwards."""
        lock = self.lock
        if lock is None:
            if self.done:
                return False
            self.done = True
            return True
        with lock:
            if self.done:
                return False
            self.done = True
            return True

    def notify(self) -> None:
        """Deliver the outcome to the waiter (by the thread that claimed the work)."""
        waiter = self.waiter
        if waiter.done():  # the caller gave up (its future was cancelled)
            return
        try:
            if self.error is None:
                waiter.set_result(self.results)  # type: ignore[arg-type]
            else:
                waiter.set_exception(self.error)
        except (asyncio.InvalidStateError, concurrent.futures.InvalidStateError):
            pass  # cancelled by the caller between the check and the set: nobody listens
