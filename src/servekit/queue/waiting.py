"""Waking waiters without losing a wake-up: take the event, look, then wait."""

from __future__ import annotations

import asyncio


class Signal:
    """Wakes every waiter at once; a waiter takes ``event()`` before looking, then waits."""

    def __init__(self) -> None:
        self._future: asyncio.Future[None] | None = None

    def event(self) -> asyncio.Future[None]:
        """The future the next ``fire()`` completes."""
        if self._future is None or self._future.done():
            self._future = asyncio.get_running_loop().create_future()
        return self._future

    def fire(self) -> None:
        future, self._future = self._future, None
        if future is not None and not future.done():
            future.set_result(None)


async def wait_event(event: asyncio.Future[None], timeout: float) -> None:
    """Wait for ``event`` at most ``timeout`` seconds; never raises on timeout.

    ``asyncio.wait`` rather than ``wait_for``: on Python < 3.12 ``wait_for`` can swallow a
    cancellation that lands as its timeout fires, leaving a task that cannot be stopped.
    """
    if timeout <= 0 or event.done():
        return
    await asyncio.wait((event,), timeout=timeout)
