"""Run the app on uvicorn (uvloop + httptools), in one process or several."""

from __future__ import annotations

import signal
import sys
from typing import Any

import uvicorn

from servekit.server.app import App
from servekit.server.http_protocol import http_protocol
from servekit.server.loader import load_target
from servekit.settings import QueueSettings, ServerSettings, split_overrides

_SHARED_QUEUES = ("redis://", "rediss://", "unix://")


def build_app(targets: list[str], **settings: Any) -> App:
    """Import every target and build one app serving all their models (``App`` keywords)."""
    models = [m for target in targets for m in load_target(target)]
    return App(models, **settings)


def _exit_cleanly(signum: int, frame: object) -> None:
    sys.exit(0)


def serve(targets: list[str], *, worker_factory: str | None = None, **given: Any) -> None:
    """Serve ``targets`` until interrupted; SIGTERM/SIGINT drain queued work first.

    ``given`` are settings by their flat names (as ``App`` keywords and CLI flags); the rest
    come from ``SERVEKIT_*`` variables and defaults. With ``workers > 1``, uvicorn imports
    ``worker_factory`` (``"module:function"`` returning the ``App``) in each worker process.
    """
    server, batching, queue = split_overrides(given)
    settings = ServerSettings(**server)
    # uvicorn re-raises the signal that stopped it once it has drained; a drained shutdown
    # is a clean one, so exit 0 instead of dying by SIGTERM.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop",
        "http": http_protocol(settings),  # httptools with head, timeout and connection limits
        "log_level": settings.log_level,
        "access_log": False,
        "timeout_graceful_shutdown": settings.drain_timeout,
    }
    if settings.workers == 1:
        app = build_app(targets, settings=settings, **batching, **_queue_keywords(queue))
        uvicorn.run(app, **common)
        return
    if settings.queue or "url" in queue:
        url = QueueSettings(**queue).url
        if not url.startswith(_SHARED_QUEUES):
            raise ValueError(
                "--workers > 1 with --queue needs a shared queue: pass --queue-url redis://…"
                " (a SQLite queue belongs to one process)"
            )
    if worker_factory is None:
        raise ValueError("workers > 1 needs worker_factory, an app factory's import string")
    uvicorn.run(worker_factory, factory=True, workers=settings.workers, **common)


def _queue_keywords(queue: dict[str, Any]) -> dict[str, Any]:
    return {f"queue_{name}": value for name, value in queue.items()}
