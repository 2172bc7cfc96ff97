"""Run the app on uvicorn (uvloop + httptools), in one process or several."""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any

import uvicorn

from servekit.server.app import App
from servekit.server.loader import load_target

_SPEC_ENV = "SERVEKIT_SERVE_SPEC"


def build_app(targets: list[str], **settings: Any) -> App:
    """Import every target and build one app serving all their models."""
    models = [m for target in targets for m in load_target(target)]
    return App(models, **settings)


def app_from_env() -> App:
    """Factory used by worker processes: the spec travels in an environment variable."""
    spec = json.loads(os.environ[_SPEC_ENV])
    return build_app(spec["targets"], **spec["settings"])


def _exit_cleanly(signum: int, frame: object) -> None:
    sys.exit(0)


def serve(
    targets: list[str],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    log_level: str = "info",
    **settings: Any,
) -> None:
    """Serve ``targets`` until interrupted; SIGTERM/SIGINT drain queued work first."""
    # uvicorn re-raises the signal that stopped it once it has drained; a drained shutdown
    # is a clean one, so exit 0 instead of dying by SIGTERM.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "loop": "uvloop",
        "http": "httptools",
        "log_level": log_level,
        "access_log": False,
        "timeout_graceful_shutdown": settings.get("drain_timeout", 30.0),
    }
    if workers > 1:
        queue_url = settings.get("queue_url") or os.environ.get("SERVEKIT_QUEUE_URL") or ""
        if (settings.get("queue") or settings.get("queue_url")) and not queue_url.startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise ValueError(
                "--workers > 1 with --queue needs a shared queue: pass --queue-url redis://…"
                " (a SQLite queue belongs to one process)"
            )
        os.environ[_SPEC_ENV] = json.dumps({"targets": targets, "settings": settings})
        uvicorn.run("servekit.server.runner:app_from_env", factory=True, workers=workers, **common)
    else:
        app = build_app(targets, **settings)
        uvicorn.run(app, **common)
