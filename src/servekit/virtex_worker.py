"""``gunicorn server:app --worker-class servekit.VirtexWorker``: Virtex's gunicorn worker.

Each gunicorn worker runs the ASGI app under uvicorn on uvloop, with servekit's httptools
protocol (the header, body-timeout and connection limits ``servekit serve`` applies, from
``SERVEKIT_*`` settings). gunicorn options map as in uvicorn's own worker: ``--keep-alive``,
``--timeout`` (heartbeat), ``--max-requests`` (+ jitter), ``--backlog``,
``--forwarded-allow-ips``; ``--worker-connections`` is accepted and not used (uvicorn has
no per-worker connection cap; servekit refuses work with ``SERVEKIT_MAX_QUEUE_SIZE``).
Importing this module imports gunicorn; ``import servekit`` does not.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

from gunicorn.arbiter import Arbiter  # type: ignore[import-untyped]
from gunicorn.workers.base import Worker  # type: ignore[import-untyped]
from uvicorn.config import Config
from uvicorn.server import Server

from servekit.server.http_protocol import http_protocol
from servekit.settings import ServerSettings

__all__ = ["VirtexWorker"]


class VirtexWorker(Worker):  # type: ignore[misc]  # gunicorn ships no type hints
    """A gunicorn worker serving an ASGI app with uvicorn, uvloop and httptools."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        backlog = self.cfg.settings["backlog"].value
        settings = ServerSettings(**{})  # SERVEKIT_* from the environment, as `servekit serve`
        config: dict[str, Any] = {
            "app": None,  # gunicorn loads the app after forking: set in _serve
            "loop": "uvloop",
            "http": http_protocol(settings),  # httptools with head, timeout and connection limits
            "lifespan": "on",
            "log_config": None,
            "timeout_keep_alive": self.cfg.keepalive,
            "timeout_notify": self.timeout,
            "callback_notify": self._notify,
            "limit_max_requests": self.max_requests or None,
            "forwarded_allow_ips": self.cfg.forwarded_allow_ips,
        }
        if backlog:
            config["backlog"] = backlog
        self.config = Config(**config)

    def init_signals(self) -> None:
        # uvicorn's server installs SIGTERM/SIGINT handlers itself; gunicorn's would swallow them.
        for sig in self.SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGUSR1, self.handle_usr1)
        signal.siginterrupt(signal.SIGUSR1, False)

    def run(self) -> None:
        loop = (self.config.get_loop_factory() or asyncio.new_event_loop)()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve())
        finally:
            loop.close()

    async def _serve(self) -> None:
        self.config.app = self.wsgi  # gunicorn's name for the loaded app, here an ASGI one
        server = Server(config=self.config)
        # SIGQUIT (gunicorn's "stop now") ends the worker without draining.
        asyncio.get_running_loop().add_signal_handler(
            signal.SIGQUIT, self.handle_exit, signal.SIGQUIT, None
        )
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)

    async def _notify(self) -> None:
        self.notify()
