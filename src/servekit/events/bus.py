"""The event bus: callers append, a sender thread per destination delivers.

:meth:`EventBus.publish` never blocks and never raises: it appends to a bounded in-memory
buffer per destination (a full buffer drops the newest event and counts it). Each destination
has a daemon thread that takes batches from the buffer and hands them to its
:class:`~servekit.events.sinks.Sink`. What the destination does not take goes to the
destination's :class:`~servekit.events.spool.Spool` on disk, and so does everything after it
while the spool holds anything (order is kept); the spool is replayed, oldest first, once the
destination takes messages again. Retries back off exponentially with jitter. Past the
spool's bound events are dropped and counted; the count is reported, once the destination
works again, as a ``servekit_EventsDropped`` structured event and in the Prometheus counter
``servekit_events_dropped_total``. Delivery is at least once: a retry may repeat messages.
"""

from __future__ import annotations

import atexit
import datetime
import itertools
import logging
import os
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from prometheus_client import Counter, Gauge

from servekit.events.message import Message
from servekit.events.sinks import Sink, SinkUnavailable, open_sink
from servekit.events.spool import Spool, spool_folder

__all__ = ["DROPPED_KEY", "Channel", "EventBus", "dropped_event"]

log = logging.getLogger("servekit.events")

BATCH = 512
# The sender is woken by a caller only when this many events wait; otherwise it looks every
# LINGER seconds (up to IDLE_WAIT when nothing came): a wake-up per event would cost the
# caller a lock and both threads a GIL hand-off per event (tens of µs under load).
WAKE_AT = 256
LINGER, IDLE_WAIT = 0.02, 0.5
RETRY_FIRST, RETRY_MAX = 0.1, 5.0
SPILL_EVERY = 0.1  # seconds between moves of the buffer to the spool while retrying
DROPPED_KEY = "servekit_EventsDropped"
STRUCTURED_STREAM = "servekit-events"  # until servekit.rlog names it

DROPPED = Counter(
    "servekit_events_dropped_total",
    "Events dropped (buffer full, spool full or refused by the destination)",
    ["destination"],
)
SPOOLED = Gauge("servekit_events_spooled", "Events waiting in the on-disk spool", ["destination"])


def dropped_event(destination: str, count: int, detail: str) -> Message:
    """The ``servekit_EventsDropped`` structured event (pyraisdk's fields) on the structured
    stream, with the Role and Instance :mod:`servekit.rlog` set."""
    try:
        from servekit.events import records
    except ImportError:  # rlog's records are not there: the defaults it would use
        value = {
            "Key": DROPPED_KEY,
            "Role": "RemoteModel",
            "Instance": f"unknown|unknown|{socket.gethostname()}",
            "CorrelationId": "",
            "Element": -1,
            "Code": destination,
            "Numeric": count,
            "Detail": detail,
            "Timestamp": datetime.datetime.now(datetime.timezone.utc),
        }
        return Message(STRUCTURED_STREAM, value)
    value = records.structured(DROPPED_KEY, destination, count, detail)
    return Message(records.structured_stream(), value)


class Channel:
    """One destination: its buffer, spool and sender thread, what it delivered and dropped."""

    def __init__(
        self,
        sink: Sink,
        buffer_size: int,
        spool: Spool | None = None,
        retry_max: float = RETRY_MAX,
    ) -> None:
        self.sink = sink
        self.buffer_size = buffer_size
        self.spool = spool
        self.retry_max = retry_max
        self._buffer: deque[Message] = deque()
        self._pending: list[Message] = []  # taken from the buffer, being sent
        self._wake = threading.Event()
        self._idle = threading.Condition()
        self._sleeping = False
        self._closing = False
        self._abandoned = False  # the closer spooled what the thread still held
        self._full = itertools.count()
        self._buffer_dropped = 0
        self.spool_dropped = 0
        self._reported = 0
        self._counted_drops = 0
        self.delivered = 0
        self.failures = 0
        self.down = False
        self._spool_broken = False
        self._labels = DROPPED.labels(sink.name), SPOOLED.labels(sink.name)
        if spool is not None:
            try:
                if spool.adopt_orphans():
                    log.info("events: %s: replaying %d spooled events", sink.name, len(spool))
            except OSError as exc:
                log.warning("events: %s: spool %s unusable: %s", sink.name, spool.folder, exc)
        self._thread = threading.Thread(
            target=self._run, name=f"servekit-events-{sink.name}", daemon=True
        )
        self._thread.start()

    def put(self, message: Message) -> None:
        """Queue ``message`` (dropped and counted when the buffer is full)."""
        if len(self._buffer) >= self.buffer_size:
            self._buffer_dropped = next(self._full) + 1
            return
        self._buffer.append(message)
        if self._sleeping and len(self._buffer) >= WAKE_AT:
            self._wake.set()

    @property
    def dropped(self) -> int:
        """Events this destination lost: buffer full, spool full, refused by the destination."""
        return self._buffer_dropped + self.spool_dropped + self.rejected

    @property
    def rejected(self) -> int:
        """Messages the destination refused for good (the sink's ``rejected`` count)."""
        return int(getattr(self.sink, "rejected", 0))

    def spooled(self) -> int:
        return len(self.spool) if self.spool is not None else 0

    def backlog(self) -> int:
        """Messages not yet delivered."""
        return len(self._buffer) + len(self._pending) + self.spooled()

    # the sender thread
    def _run(self) -> None:
        delay = RETRY_FIRST
        wait = LINGER
        while not self._abandoned:
            if self.spooled():
                self._spill()
                batch, from_spool = self._peek_spool(), True
            else:
                self._take()
                batch, from_spool = self._pending, False
            if not batch:
                self._account()
                with self._idle:
                    self._idle.notify_all()
                if self._closing:
                    return
                self._sleeping = True
                if not self._buffer:
                    self._wake.wait(wait)
                self._sleeping = False
                self._wake.clear()
                wait = LINGER if self._buffer else min(wait * 2, IDLE_WAIT)
                continue
            sent = self._send(batch)
            if self._abandoned:
                return
            self._settle(batch, sent, from_spool)
            self._account()
            if sent < len(batch):
                self.down = True
                if self._closing:
                    return
                self._back_off(delay * (0.5 + random.random()))
                delay = min(delay * 2, self.retry_max)
            else:
                if self.down:
                    self.down = False
                    log.info("events: %s takes events again", self.sink.name)
                self._report_drops()
                delay = RETRY_FIRST

    def _send(self, batch: Sequence[Message]) -> int:
        try:
            self.sink.send(batch)
            return len(batch)
        except SinkUnavailable as exc:
            self.failures += 1
            log.warning("events: %s (%d waiting)", exc, self.backlog())
            return max(0, min(exc.delivered, len(batch)))
        except Exception:  # a sink bug must not end the thread
            self.failures += 1
            log.exception("events: sink %s failed", self.sink.name)
            return 0

    def _settle(self, batch: Sequence[Message], sent: int, from_spool: bool) -> None:
        self.delivered += sent
        if from_spool:
            assert self.spool is not None
            self.spool.consume(sent)
            return
        rest = self._pending[sent:]
        self._pending = []
        if rest:
            self._to_spool(rest)

    def _take(self) -> None:
        buffer = self._buffer
        self._pending = [buffer.popleft() for _ in range(min(BATCH, len(buffer)))]

    def _peek_spool(self) -> list[Message]:
        spool = self.spool
        assert spool is not None
        try:
            batch = spool.peek(BATCH)
            if batch:
                return batch
            problem = "no whole record at its head"
        except (OSError, ValueError) as exc:
            problem = str(exc)
        log.error(
            "events: %s: spool %s unreadable (%s): its %d events are lost",
            self.sink.name,
            spool.folder,
            problem,
            len(spool),
        )
        with spool.lock:
            self.spool_dropped += len(spool)
            self.spool = None
        return []

    def _spill(self) -> None:
        """Move the buffer behind the spool (order is kept while the spool holds anything)."""
        buffer, spool = self._buffer, self.spool
        while buffer and spool is not None:
            with spool.lock:  # the closer spills under the same lock
                if self._abandoned:
                    return
                self._to_spool([buffer.popleft() for _ in range(min(BATCH, len(buffer)))])

    def _to_spool(self, messages: list[Message]) -> None:
        written = 0
        if self.spool is not None and not self._spool_broken:
            try:
                written = self.spool.append(messages)
            except OSError as exc:
                self._spool_broken = True
                log.error("events: %s: cannot spool to %s: %s", self.sink.name, self.spool, exc)
        self.spool_dropped += len(messages) - written

    def _back_off(self, seconds: float) -> None:
        """Wait ``seconds`` (cut short by close), spilling the buffer meanwhile."""
        deadline = time.monotonic() + seconds
        while not self._closing:
            if self._spool_ready():
                self._spill()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._wake.wait(min(left, SPILL_EVERY))
            self._wake.clear()

    def _spool_ready(self) -> bool:
        return self.spool is not None and not self._spool_broken and self.spool.max_bytes > 0

    def _account(self) -> None:
        dropped, spooled = self._labels
        new = self.dropped - self._counted_drops
        if new > 0:
            dropped.inc(new)
            self._counted_drops += new
        spooled.set(self.spooled())

    def _report_drops(self) -> None:
        new = self.dropped - self._reported
        if new <= 0:
            return
        self._reported += new
        detail = (
            f"{self._buffer_dropped} buffer full, {self.spool_dropped} spool full,"
            f" {self.rejected} refused by the destination (totals since start)"
        )
        log.warning("events: %s dropped %d events (%s)", self.sink.name, new, detail)
        # past the buffer's bound: it is one event
        self._buffer.append(dropped_event(self.sink.name, new, detail))

    # the caller's side
    def flush(self, timeout: float) -> bool:
        """Wait until everything queued so far is delivered; ``False`` if it took too long."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self.backlog():
                if self._sleeping:
                    self._wake.set()
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    return False
                self._idle.wait(min(left, 0.05))
        return True

    def close(self, timeout: float) -> bool:
        """Flush for up to ``timeout`` seconds; spool what is left; stop; close the sink."""
        delivered = self.flush(timeout)
        self._closing = True
        self._wake.set()
        self._thread.join(max(0.0, min(timeout, 0.2)))
        spool = self.spool
        with spool.lock if spool is not None else threading.Lock():
            if self._thread.is_alive():  # stuck in a send: keep what it holds, then stop it
                self._abandoned = True
                if not self.spooled():
                    self._to_spool(list(self._pending))
            self._to_spool(list(self._buffer))
            self._buffer.clear()
        self._account()
        if self.spool is not None:
            self.spool.close()
            if len(self.spool):
                log.warning(
                    "events: %s: %d events left in %s for the next process",
                    self.sink.name,
                    len(self.spool),
                    self.spool.folder,
                )
        if not self._thread.is_alive():
            self.sink.close()
        return delivered


class EventBus:
    """Events fanned out to one channel per destination."""

    def __init__(
        self,
        sinks: Iterable[str | Sink],
        *,
        buffer_size: int = 100_000,
        spool_dir: str | os.PathLike[str] | None = None,
        spool_max_bytes: int = 256 << 20,
        exit_flush_timeout: float = 5.0,
        retry_max: float = RETRY_MAX,
    ) -> None:
        self.channels = []
        for given in sinks:
            sink = open_sink(given) if isinstance(given, str) else given
            spool = Spool(spool_folder(spool_dir, sink.name), spool_max_bytes)
            self.channels.append(Channel(sink, buffer_size, spool, retry_max))
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
        """Flush (bounded by ``timeout``), spool what is left, stop the senders."""
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
