"""Waking waiters without losing a wake-up: take the event, look, then wait."""

from __future__ import annotations

import asyncio


class Signal:
    """Wakes every waiter at once; a waiter takes ``event()`` before looking, then waits."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def event(self) -> asyncio.Event:
        return self._event

    def fire(self) -> None:
        self._event.set()
        self._event = asyncio.Event()


async def wait_event(event: asyncio.Event, timeout: float) -> None:
    """Wait for ``event`` at most ``timeout`` seconds; never raises on timeout."""
    if timeout <= 0 or event.is_set():
        return
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except asyncio.TimeoutError:
        pass
