"""One caller's submission to the batcher (private to ``servekit.batching``).

A ``Work`` gets exactly one outcome. Callers on the batcher's loop wait on an
``asyncio.Future``; callers in other threads hold the submission itself, a
:class:`ThreadFuture`. Whoever wins :meth:`Work.claim` (the loop failing it, a worker thread
completing it, or a thread caller cancelling it) delivers the outcome; the others leave it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol


class CancelToken(Protocol):
    """Anything with ``is_set()``: a ``threading.Event`` works."""

    def is_set(self) -> bool: ...


class Work:
    """Items from one caller; the batcher owns every field."""

    __slots__ = (
        "deadline",
        "enqueued_at",
        "error",
        "finished",
        "items",
        "queued",
        "remaining",
        "results",
        "ticket",
        "token",
        "waiter",
    )
    #: True for thread callers: a worker thread may deliver the outcome straight to them.
    thread: ClassVar[bool] = False

    def __init__(
        self,
        items: Sequence[Any],
        waiter: asyncio.Future[list[Any]] | None,
        *,
        deadline: float | None = None,
        token: CancelToken | None = None,
    ) -> None:
        self.items = items
        self.waiter = waiter
        self.deadline = deadline
        self.token = token
        self.ticket = [True]
        self.results: list[Any] | None = None
        self.error: BaseException | None = None
        self.finished = False
        self.queued = 0
        self.remaining = len(items)
        self.enqueued_at = 0.0

    def claim(self) -> bool:
        """True for the one caller that may deliver this work's outcome; False afterwards."""
        try:
            self.ticket.pop()  # atomic: of two threads racing here, one gets the ticket
        except IndexError:
            return False
        self.finished = True
        return True

    def notify(self) -> None:
        """Deliver the outcome (``results`` or ``error``) by the thread that claimed it."""
        waiter = self.waiter
        if waiter is None or waiter.done():  # the caller gave up (its future was cancelled)
            return
        if self.error is None:
            waiter.set_result(self.results)  # type: ignore[arg-type]
        else:
            waiter.set_exception(self.error)


class ThreadFuture(Work):
    """A thread caller's submission and its outcome: ``result(timeout)``, ``cancel()``.

    The part of ``concurrent.futures.Future`` a blocked caller needs, on one lock instead of
    a condition variable: it is on the thread API's hot path. ``cancel()`` competes for the
    same :meth:`claim` as the loop and the model's worker threads.
    """

    __slots__ = ("_cancelled", "_on_cancel", "_ready")
    thread: ClassVar[bool] = True

    def __init__(
        self,
        items: Sequence[Any],
        on_cancel: Callable[[ThreadFuture], object],
        *,
        token: CancelToken | None = None,
    ) -> None:
        super().__init__(items, None, token=token)
        self._ready = threading.Lock()
        self._ready.acquire()
        self._cancelled = False
        self._on_cancel = on_cancel

    def notify(self) -> None:
        self._ready.release()

    def done(self) -> bool:
        return self.finished

    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> bool:
        """Give up: True if the work had no outcome yet (its items are then dropped)."""
        if not self.claim():
            return self._cancelled
        self._cancelled = True
        self._ready.release()
        self._on_cancel(self)
        return True

    def result(self, timeout: float | None = None) -> list[Any]:
        """The results; raises the work's error, ``TimeoutError`` or ``CancelledError``."""
        ready = self._ready
        if not ready.acquire(timeout=-1 if timeout is None else timeout):
            raise TimeoutError(f"no result within {timeout} s")
        ready.release()  # a later result() call returns at once
        if self.error is not None:
            raise self.error
        if self._cancelled:
            raise concurrent.futures.CancelledError()
        return self.results  # type: ignore[return-value]
