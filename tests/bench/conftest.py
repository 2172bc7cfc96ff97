"""A real servekit server on 127.0.0.1 for the load-tester tests (uvicorn in a thread)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from servekit.server import App
from support.servers import LiveServer


@pytest.fixture(scope="module")
def serve_models() -> Iterator[Callable[..., LiveServer]]:
    """``serve_models([Model(), ...], **app_settings)``: started, models loaded; stopped after."""
    servers: list[LiveServer] = []

    def start(models: list[Any], **settings: Any) -> LiveServer:
        app = App(models, **settings)
        live = LiveServer(app).start()
        live.call(app.wait_loaded())
        servers.append(live)
        return live

    yield start
    for live in servers:
        live.stop()
