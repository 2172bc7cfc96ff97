"""Run the app on uvicorn (uvloop + httptools), in one process or several."""

from __future__ import annotations

import contextlib
import copy
import logging
import logging.config
import signal
import socket
import sys
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.config import LOG_LEVELS, LOGGING_CONFIG

from servekit.server.app import App
from servekit.server.http_protocol import http_protocol
from servekit.server.loader import load_target
from servekit.server.workers import Workers
from servekit.settings import QueueSettings, ServerSettings, split_overrides

log = logging.getLogger("servekit.server")

_SHARED_QUEUES = ("redis://", "rediss://", "unix://")
#: How long stopping waits for workers beyond ``drain_timeout`` (their own shutdown).
_STOP_MARGIN = 10.0
#: uvicorn's exit code when the app did not start.
_STARTUP_FAILURE = 3


def build_app(targets: list[str], **settings: Any) -> App:
    """Import every target and build one app serving all their models (``App`` keywords)."""
    models = [m for target in targets for m in load_target(target)]
    return App(models, **settings)


class _Server(uvicorn.Server):
    """uvicorn's server, which first takes the app out of service discovery when it stops."""

    def __init__(self, config: uvicorn.Config, app: App) -> None:
        super().__init__(config)
        self.servekit_app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await self.servekit_app.leave_discovery()  # clients move away, then it drains
        await super().shutdown(sockets)


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    sys.exit(0)


def log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging configuration, with servekit's own loggers on its console handler."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["servekit"] = {
        "handlers": ["default"],
        "level": LOG_LEVELS[level],
        "propagate": False,
    }
    return config


def serve(targets: list[str], *, worker_factory: str | None = None, **given: Any) -> None:
    """Serve ``targets`` until interrupted; SIGTERM/SIGINT drain queued work, then exit 0.

    ``given`` are settings by their flat names (as ``App`` keywords and CLI flags); the rest
    come from ``SERVEKIT_*`` variables and defaults. With ``workers > 1`` the targets are
    imported here once (a target that cannot load fails before any worker starts), then each
    worker process imports ``worker_factory`` (``"module:function"`` returning the ``App``).
    """
    server, batching, queue = split_overrides(given)
    settings = ServerSettings(**server)
    # uvicorn re-raises the signal that stopped it once it has drained; a drained shutdown is
    # a clean one, so exit 0 instead of dying by the signal. Installed before the targets are
    # imported, so a signal during a slow import exits quietly too.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    signal.signal(signal.SIGINT, _exit_cleanly)
    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop",
        "http": http_protocol(settings),  # httptools with head, timeout and connection limits
        "log_level": settings.log_level,
        "log_config": log_config(settings.log_level),
        "access_log": settings.access_log,
        "timeout_graceful_shutdown": settings.drain_timeout,
    }
    if settings.workers == 1:
        app = build_app(targets, settings=settings, **batching, **_queue_keywords(queue))
        logging.config.dictConfig(common["log_config"])
        _log_doors(settings, queue, len(app.registry))
        http_server = _Server(uvicorn.Config(app, **common), app)
        with contextlib.suppress(KeyboardInterrupt):
            http_server.run()
        if not http_server.started:
            sys.exit(_STARTUP_FAILURE)  # as uvicorn.run: the app did not start
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
    models = [m for target in targets for m in load_target(target)]
    for model in models:
        model.batch_policy(**batching)  # an invalid batching value fails here, once
    config = uvicorn.Config(worker_factory, factory=True, workers=settings.workers, **common)
    _log_doors(settings, queue, len(models))
    stop_timeout = settings.drain_timeout + _STOP_MARGIN
    code = Workers(config, settings.workers, stop_timeout=stop_timeout).run()
    if code:
        sys.exit(code)


def _log_doors(settings: ServerSettings, queue: dict[str, Any], models: int) -> None:
    doors = [f"HTTP on http://{settings.host}:{settings.port}"]
    if settings.tcp_port is not None:
        doors.append(f"TCP on {settings.tcp_host or settings.host}:{settings.tcp_port}")
    if settings.grpc_port is not None:
        doors.append(f"gRPC (v2) on {settings.grpc_host or settings.host}:{settings.grpc_port}")
    if settings.queue or "url" in queue:
        doors.append(f"queues at {QueueSettings(**queue).url}")
    workers = f", {settings.workers} worker processes" if settings.workers > 1 else ""
    log.info("serving %d model(s): %s%s", models, "; ".join(doors), workers)


def _queue_keywords(queue: dict[str, Any]) -> dict[str, Any]:
    return {f"queue_{name}": value for name, value in queue.items()}
