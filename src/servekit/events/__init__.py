"""Events: one bus per process carrying structured events, logs, request records and job
messages to stdout, JSON-lines files, Kafka or Redis Streams.

``publish(stream, value)`` never blocks the caller; see :mod:`servekit.events.bus`.
The process-wide bus is made on first use from :class:`~servekit.settings.EventSettings`
(``SERVEKIT_EVENTS_URL`` …), or by :func:`configure`; a forked child makes its own.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from servekit.events.bus import EventBus
from servekit.events.message import Message, encode_value
from servekit.events.sinks import Sink, SinkUnavailable, open_sink

__all__ = [
    "EventBus",
    "Message",
    "Sink",
    "SinkUnavailable",
    "configure",
    "encode_value",
    "flush",
    "get_bus",
    "open_sink",
    "publish",
]

_bus: EventBus | None = None
_lock = threading.Lock()


def _urls(url: str | Sequence[str | Sink] | Sink) -> list[str | Sink]:
    if isinstance(url, str):
        return list(url.split())
    if isinstance(url, Sequence):
        return list(url)
    return [url]


def configure(sink: str | Sequence[str | Sink] | Sink | None = None, **settings: Any) -> EventBus:
    """Make (or remake) the process's bus: ``sink`` a URL, a list of URLs or sinks (default:
    ``SERVEKIT_EVENTS_URL``, else stdout); ``settings`` override :class:`EventSettings`."""
    global _bus
    from servekit.settings import EventSettings

    config = EventSettings(**settings)
    bus = EventBus(
        _urls(config.url if sink is None else sink),
        buffer_size=config.buffer_size,
        spool_dir=config.spool_dir,
        spool_max_bytes=config.spool_max_bytes,
        exit_flush_timeout=config.exit_flush_timeout,
    )
    with _lock:
        old, _bus = _bus, bus
    if old is not None:
        old.close(config.exit_flush_timeout)
    return bus


def get_bus() -> EventBus:
    """The process's bus (made from the environment's settings on first use)."""
    bus = _bus
    if bus is not None:
        return bus
    with _lock:
        if _bus is not None:
            return _bus
    return configure()


def publish(
    stream: str,
    value: Mapping[str, Any] | bytes,
    *,
    key: str | None = None,
    headers: Sequence[tuple[str, str]] = (),
) -> None:
    """Queue one event on the process's bus; never blocks, never raises."""
    get_bus().publish(stream, value, key=key, headers=headers)


def flush(timeout: float = 10.0) -> bool:
    """Wait up to ``timeout`` seconds for the process's bus to deliver what it holds."""
    bus = _bus
    return True if bus is None else bus.flush(timeout)


def _forget_in_child() -> None:
    # the parent's threads do not exist in a forked child: it makes its own bus on first use
    global _bus, _lock
    _bus = None
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
