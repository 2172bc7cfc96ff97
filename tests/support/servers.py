"""Run any ASGI app under a real uvicorn server (uvloop, httptools) on a loopback port.

The HTTP protocol is servekit's (header, timeout and connection limits from
``ServerSettings``); pass ``http=http_protocol(ServerSettings(...))`` for other limits.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable
from typing import Any

import uvicorn

from servekit.server.http_protocol import http_protocol
from servekit.settings import ServerSettings


class LiveServer:
    """One ASGI app served by uvicorn in a background thread with its own event loop."""

    def __init__(self, app: Any, **config: Any) -> None:
        self.app = app
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        settings: dict[str, Any] = {
            "loop": "uvloop",
            "http": http_protocol(ServerSettings()),  # as `servekit serve` runs it
            "lifespan": "on",
            "log_config": None,
            "log_level": "warning",
            "access_log": False,
            "timeout_graceful_shutdown": 10,
        }
        settings.update(config)
        self.config = uvicorn.Config(app, **settings)
        self.server = uvicorn.Server(self.config)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name="uvicorn-test", daemon=True)

    def _run(self) -> None:
        with asyncio.Runner(loop_factory=self.config.get_loop_factory()) as runner:
            runner.run(self._serve())

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        await self.server.serve(sockets=[self._sock])

    def start(self, timeout: float = 10.0) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise AssertionError("uvicorn failed to start (see the captured log)")
            time.sleep(0.002)
        return self

    def call(self, coro: Awaitable[Any], timeout: float = 10.0) -> Any:
        """Run a coroutine on the server's event loop and return its result."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def stop(self, timeout: float = 30.0) -> None:
        """Stop as ``servekit serve`` does on SIGTERM. The bound is above uvicorn's graceful
        timeout (10 s) plus the app's own drain: a busy machine can need both."""
        self.server.should_exit = True
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "uvicorn did not stop in time"
        self._sock.close()
