"""The event bus: callers append, a sender thread per destination delivers.

:meth:`EventBus.publish` never blocks and never raises: it appends to a bounded in-memory
buffer per destination. Each destination has a daemon thread that takes batches from the
buffer and hands them to its :class:`~servekit.events.sinks.Sink`. What a destination cannot
take yet is kept and retried with backoff; past every bound, events are dropped and counted.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import random
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from servekit.events.message import Message
from servekit.events.sinks import Sink, SinkUnavailable, open_sink

__all__ = ["Channel", "EventBus"]

log = logging.getLogger("servekit.events")

BATCH = 512
RETRY_FIRST, RETRY_MAX = 0.1, 5.0


class Channel:
    """One destination: its buffer, its sender thread, what it delivered and dropped."""

    def __init__(self, sink: Sink, buffer_size: int) -> None:
        self.sink = sink
        self.buffer_size = buffer_size
        self._buffer: deque[Message] = deque()
        self._pending: deque[Message] = deque()  # taken from the buffer, not yet delivered
        self._wake = threading.Event()
        self._idle = threading.Condition()
        self._sleeping = False
        self._closing = False
        self._busy = False
        self._dropped = itertools.count()
        self.dropped = 0
        self.delivered = 0
        self.failures = 0
        self._thread = threading.Thread(
            target=self._run, name=f"servekit-events-{sink.name}", daemon=True
        )
        self._thread.start()

    def put(self, message: Message) -> None:
        """Queue ``message`` (dropped and counted when the buffer is full)."""
        if len(self._buffer) >= self.buffer_size:
            self.dropped = next(self._dropped) + 1
            return
        self._buffer.append(message)
        if self._sleeping:
            self._wake.set()

    def backlog(self) -> int:
        """Messages not yet delivered."""
        return len(self._buffer) + len(self._pending)

    def _run(self) -> None:
        delay = RETRY_FIRST
        while True:
            if not self._pending:
                self._take()
            if not self._pending:
                with self._idle:
                    self._idle.notify_all()
                if self._closing:
                    return
                self._sleeping = True
                if not self._buffer:
                    self._wake.wait(0.5)
                self._sleeping = False
                self._wake.clear()
                continue
            batch = list(self._pending)
            try:
                self.sink.send(batch)
                sent = len(batch)
            except SinkUnavailable as exc:
                sent = max(0, min(exc.delivered, len(batch)))
                self.failures += 1
                log.warning("events: %s (%d waiting, retry in %.1f s)", exc, self.backlog(), delay)
            except Exception:  # a sink bug must not end the thread
                sent = 0
                self.failures += 1
                log.exception("events: sink %s failed", self.sink.name)
            for _ in range(sent):
                self._pending.popleft()
            self.delivered += sent
            if sent < len(batch):
                if self._closing:
                    return
                self._wake.wait(delay * (0.5 + random.random()))
                self._wake.clear()
                delay = min(delay * 2, RETRY_MAX)
            else:
                delay = RETRY_FIRST

    def _take(self) -> None:
        buffer = self._buffer
        for _ in range(min(BATCH, len(buffer))):
            self._pending.append(buffer.popleft())

    def flush(self, timeout: float) -> bool:
        """Wait until everything queued so far is delivered; ``False`` if it took too long."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self.backlog():
                self._wake.set()
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    return False
                self._idle.wait(min(left, 0.05))
        return True

    def close(self, timeout: float) -> bool:
        delivered = self.flush(timeout)
        self._closing = True
        self._wake.set()
        self._thread.join(max(0.0, min(timeout, 1.0)))
        self.sink.close()
        return delivered


class EventBus:
    """Events fanned out to one channel per destination."""

    def __init__(
        self,
        sinks: Iterable[str | Sink],
        *,
        buffer_size: int = 100_000,
        exit_flush_timeout: float = 5.0,
        **_: Any,
    ) -> None:
        self.channels = [
            Channel(open_sink(s) if isinstance(s, str) else s, buffer_size) for s in sinks
        ]
        self.exit_flush_timeout = exit_flush_timeout
        self._closed = False
        self._pid = os.getpid()
        atexit.register(self._at_exit)

    def publish(
        self,
        stream: str,
        value: Mapping[str, Any] | bytes,
        *,
        key: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Queue one event for every destination; never blocks, never raises."""
        message = Message(stream, value, key, tuple(headers))
        for channel in self.channels:
            channel.put(message)

    @property
    def dropped(self) -> int:
        """Events dropped so far, over all destinations."""
        return sum(c.dropped for c in self.channels)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait up to ``timeout`` seconds for everything queued so far to be delivered."""
        deadline = time.monotonic() + timeout
        ok = True
        for channel in self.channels:
            ok = channel.flush(max(0.0, deadline - time.monotonic())) and ok
        return ok

    def close(self, timeout: float = 10.0) -> bool:
        """Flush (bounded by ``timeout``), stop the senders and close the destinations."""
        if self._closed:
            return True
        self._closed = True
        atexit.unregister(self._at_exit)
        deadline = time.monotonic() + timeout
        ok = True
        for channel in self.channels:
            ok = channel.close(max(0.0, deadline - time.monotonic())) and ok
        return ok

    def _at_exit(self) -> None:
        if os.getpid() == self._pid:
            self.close(self.exit_flush_timeout)
