"""Group commit: concurrent calls run together as one batch against the store.

One batch is in flight at a time; calls that arrive meanwhile wait and go in the next one. At
light load a call runs at once, alone (no added latency); under load the round trips (a SQLite
transaction, a Redis script call) are shared by many calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

I = TypeVar("I")  # noqa: E741 - an item
R = TypeVar("R")


class Coalescer(Generic[I, R]):
    """``await submit(item)`` -> its result from ``run(batch)`` (one result per item, in order)."""

    def __init__(self, run: Callable[[list[I]], Awaitable[list[R]]], max_batch: int = 256) -> None:
        self._run = run
        self._max_batch = max_batch
        self._waiting: list[tuple[I, asyncio.Future[R]]] = []
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, item: I) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._waiting:
            batch = self._waiting[: self._max_batch]
            del self._waiting[: self._max_batch]
            try:
                results = await self._run([item for item, _ in batch])
            except Exception as exc:  # each caller gets the store's error
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            except BaseException:
                for _, future in batch:
                    future.cancel()
                raise
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    async def wait_idle(self) -> None:
        """Wait until every submitted call has been run."""
        while self._worker is not None and not self._worker.done():
            await asyncio.wait({self._worker})
