"""Build a queue from a URL: constructor arguments, then ``SERVEKIT_QUEUE_*``, then defaults.

=====================================  ================================================
URL                                    backend
=====================================  ================================================
``sqlite:///var/lib/servekit/queues``  one SQLite file per queue in that directory
``sqlite://./queues`` or ``./queues``  the same, relative to the working directory
``sqlite://:memory:``                  in memory (gone with the process; for tests)
``redis://host:6379/0``, ``rediss://``  Redis Streams, shared by every server naming it
=====================================  ================================================

Wiring ``servekit serve --queue`` (the input queue ``<service>`` and its sink)::

    queues = {n: open_queue(n) for n in (service, f"{service}/sink")}
    door = QueueDoor(queues, token=token)   # see servekit.queue.door for mounting
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

from servekit.queue.backend import Backend
from servekit.queue.service import QueueService
from servekit.queue.sqlite_backend import SqliteBackend

DEFAULT_URL = "sqlite://./servekit-queues"


def backend_for(name: str, url: str) -> Backend:
    """The backend a URL names, for queue ``name``."""
    if url.startswith(("redis://", "rediss://", "unix://")):
        from servekit.queue.redis_backend import RedisBackend

        return RedisBackend(name, url)
    where = url.removeprefix("sqlite://")
    if where == ":memory:":
        return SqliteBackend(":memory:")
    if "://" in where:
        raise ValueError(f"unsupported queue URL {url!r}: use sqlite://<dir> or redis://...")
    return SqliteBackend(Path(where) / f"{quote(name, safe='')}.db")


def open_queue(
    name: str,
    url: str | None = None,
    *,
    max_length: int | None = None,
    max_payload_bytes: int | None = None,
    lease: float | None = None,
) -> QueueService:
    """A (not yet started) ``QueueService`` for queue ``name``.

    ``url`` falls back to ``SERVEKIT_QUEUE_URL`` then ``sqlite://./servekit-queues``;
    ``max_length`` to ``SERVEKIT_QUEUE_MAX_LENGTH`` (0: unbounded); ``max_payload_bytes`` to
    ``SERVEKIT_QUEUE_MAX_PAYLOAD_BYTES`` (8 MiB); ``lease`` (seconds a dead consumer keeps its
    records) to ``SERVEKIT_QUEUE_LEASE`` (10).
    """
    url = url or os.environ.get("SERVEKIT_QUEUE_URL") or DEFAULT_URL
    return QueueService(
        backend_for(name, url),
        name=name,
        max_length=_int(max_length, "SERVEKIT_QUEUE_MAX_LENGTH", 0),
        max_payload_bytes=_int(max_payload_bytes, "SERVEKIT_QUEUE_MAX_PAYLOAD_BYTES", 8 << 20),
        lease=float(lease if lease is not None else os.environ.get("SERVEKIT_QUEUE_LEASE", 10.0)),
    )


def _int(value: int | None, env: str, default: int) -> int:
    if value is not None:
        return value
    raw = os.environ.get(env)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{env} must be an integer, not {raw!r}") from None
