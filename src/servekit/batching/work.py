"""One caller's submission to the batcher, and how its outcome reaches the caller."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import Any, Protocol


class CancelToken(Protocol):
    """Anything with ``is_set()``: a ``threading.Event`` works."""

    def is_set(self) -> bool: ...


class Work:
    """Items from one caller; gets exactly one outcome: ``results`` or ``error``.

    The batcher owns every field; callers read ``results``/``error`` once notified.
    """

    __slots__ = (
        "callback",
        "deadline",
        "done",
        "enqueued_at",
        "error",
        "future",
        "items",
        "queued",
        "remaining",
        "results",
        "token",
    )

    def __init__(
        self,
        items: Sequence[Any],
        *,
        deadline: float | None = None,
        future: asyncio.Future[list[Any]] | None = None,
        callback: Callable[[], object] | None = None,
        token: CancelToken | None = None,
    ) -> None:
        self.items = items
        self.deadline = deadline
        self.future = future
        self.callback = callback
        self.token = token
        self.results: list[Any] | None = None
        self.error: BaseException | None = None
        self.done = False
        self.queued = 0
        self.remaining = len(items)
        self.enqueued_at = 0.0

    def notify(self) -> None:
        """Deliver the outcome to whoever waits (loop thread only)."""
        future = self.future
        if future is not None and not future.done():
            if self.error is None:
                future.set_result(self.results)  # type: ignore[arg-type]
            else:
                future.set_exception(self.error)
        if self.callback is not None:
            # A thread caller's lock may be released twice when the worker delivers results at
            # the moment the loop fails the work (timeout/close race): the first one counts.
            with contextlib.suppress(RuntimeError):
                self.callback()
