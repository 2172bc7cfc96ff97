"""The process's event bus on a JSON-lines file for one test, and a server to send requests to.

``file_bus(path)`` swaps the process-wide bus for one writing to ``path`` and puts the old one
back afterwards; ``read(bus, path)`` flushes and returns every line as
``{"stream", "key", "headers", "value"}``. ``served(models, **app_settings)`` runs an ``App``
under uvicorn on a loopback port until the block ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

import servekit.events
from servekit.events import EventBus
from servekit.server import App
from support.servers import LiveServer


@contextmanager
def file_bus(path: Path) -> Iterator[EventBus]:
    """The process's bus writes to ``path`` inside the block."""
    old = servekit.events._bus
    servekit.events._bus = None  # so configure() leaves the old bus running
    bus = servekit.events.configure(f"file://{path}")
    try:
        yield bus
    finally:
        bus.close(5.0)
        servekit.events._bus = old


def read(bus: EventBus, path: Path) -> list[dict[str, Any]]:
    """Every line written so far (after a flush)."""
    assert bus.flush(5.0), "the event bus did not deliver in time"
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def structured(lines: list[dict[str, Any]], key: str | None = None) -> list[dict[str, Any]]:
    """The structured events (optionally only those of ``key``), in order."""
    return [
        line["value"]
        for line in lines
        if isinstance(line["value"], dict)
        and "Key" in line["value"]
        and (key is None or line["value"]["Key"] == key)
    ]


@contextmanager
def served(models: list[Any], **settings: Any) -> Iterator[LiveServer]:
    """An ``App`` of ``models`` served until the block ends (models loaded first)."""
    app = App(models, **settings)
    live = LiveServer(app).start()
    try:
        live.call(app.wait_loaded())
        yield live
    finally:
        live.stop()
