"""Build a queue from ``QueueSettings``: arguments, then ``SERVEKIT_QUEUE_*``, then defaults.

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
    door = QueueDoor(queues, token=token)   # see servekit.server.queue_door for mounting
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from servekit.queue.backend import Backend
from servekit.queue.service import QueueService
from servekit.queue.sqlite_backend import SqliteBackend
from servekit.settings import QueueSettings

DEFAULT_URL = str(QueueSettings.model_fields["url"].default)


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
    settings: QueueSettings | None = None,
) -> QueueService:
    """A (not yet started) ``QueueService`` for queue ``name``.

    ``settings`` (default: ``QueueSettings()``, read from ``SERVEKIT_QUEUE_URL``,
    ``SERVEKIT_QUEUE_MAX_LENGTH``, ``SERVEKIT_QUEUE_MAX_PAYLOAD_BYTES``, ``SERVEKIT_QUEUE_LEASE``)
    with the given arguments applied (``None``: not given; ``max_length=0``: unbounded).
    """
    given: dict[str, Any] = {
        "url": url,
        "max_length": max_length,
        "max_payload_bytes": max_payload_bytes,
        "lease": lease,
    }
    changes = {key: value for key, value in given.items() if value is not None}
    if settings is None:
        settings = QueueSettings(**changes)
    elif changes:
        settings = settings.replace(**changes)
    return QueueService(
        backend_for(name, settings.url),
        name=name,
        max_length=settings.max_length,
        max_payload_bytes=settings.max_payload_bytes,
        lease=settings.lease,
    )
