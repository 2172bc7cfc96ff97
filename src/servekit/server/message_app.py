"""``http_server``: a Virtex-style door onto the batcher, for ``RequestHandler`` subclasses.

Clients POST ``{"data": [x1, …, xn]}``; elements from concurrent requests are batched
together, and each request gets ``{"data": [y1, …, yn]}`` back.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from servekit.errors import BadRequest, ModelError
from servekit.handler import RequestHandler
from servekit.messages import HttpMessage
from servekit.model import Model
from servekit.server.asgi import (
    Receive,
    Scope,
    Send,
    send_bytes,
    send_json,
    timeout_seconds,
    watch_disconnect,
)
from servekit.server.http_app import HttpApp
from servekit.server.metrics import metrics_registry, render_metrics
from servekit.server.routing import Request, Route
from servekit.server.runtime import ModelRuntime, correlation_id
from servekit.server.virtex_metrics import Pusher, ScrapeServer, start_scrape_server
from servekit.settings import ServerSettings

METRICS_MODES = ("off", "scrape", "push")


class _HandlerModel(Model):
    def __init__(self, name: str, handler: RequestHandler) -> None:
        super().__init__(name=name)
        self.handler = handler

    def predict(self, batch: list[Any]) -> list[Any]:
        return self.handler.handle(batch)


class MessageApp:
    """ASGI app returned by :func:`http_server`."""

    def __init__(
        self,
        runtime: ModelRuntime,
        *,
        max_body_size: int,
        metrics_mode: str,
        metrics_host: str,
        metrics_port: int,
        metrics_interval: float,
    ) -> None:
        self.runtime = runtime
        self.max_body_size = max_body_size
        self.metrics_mode = metrics_mode
        self.metrics_host = metrics_host
        self.metrics_port = metrics_port
        self.metrics_interval = metrics_interval
        self.registry = metrics_registry([runtime])
        #: The scrape endpoint once started (``scrape_server.port`` is the port it took).
        self.scrape_server: ScrapeServer | None = None
        self.pusher: Pusher | None = None
        self._push_task: asyncio.Task[None] | None = None

    @functools.cached_property
    def app(self) -> HttpApp:
        """The routes on the one HTTP kit: POST a message to any path; GET for health."""
        get, post = functools.partial(Route.http, "GET"), functools.partial(Route.http, "POST")
        routes = [get("/metrics", self._metrics)]
        for template in ("/", "/{path:path}"):
            routes += [post(template, self._infer), get(template, self._ready, public=True)]
        return HttpApp(
            routes,
            max_body_size=self.max_body_size,
            startup=self.startup,
            shutdown=self.shutdown,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)

    async def startup(self) -> None:
        await self.runtime.start()
        await self.runtime.load()
        if self.metrics_mode == "scrape":
            self.scrape_server = start_scrape_server(
                self.registry, self.metrics_host, self.metrics_port
            )
        elif self.metrics_mode == "push":
            gateway = f"{self.metrics_host.rstrip('/')}:{self.metrics_port}"
            name = str(self.runtime.model.name)
            self.pusher = Pusher(self.registry, gateway, name, self.metrics_interval)
            self._push_task = asyncio.get_running_loop().create_task(self.pusher.run())

    async def shutdown(self) -> None:
        await self.runtime.stop(30.0)
        if self._push_task is not None and self.pusher is not None:
            self._push_task.cancel()
            await asyncio.gather(self._push_task, return_exceptions=True)
            await self.pusher.push()  # the final counts, after the queue drained
        if self.scrape_server is not None:
            self.scrape_server.close()

    async def _metrics(self, request: Request) -> None:
        body, content_type = render_metrics([self.runtime])
        await send_bytes(request.send, 200, body, [(b"content-type", content_type)])

    async def _ready(self, request: Request) -> None:
        ready = self.runtime.ready
        await send_json(request.send, 200 if ready else 503, {"ready": ready})

    async def _infer(self, request: Request) -> None:
        runtime = self.runtime
        runtime.check_ready()
        message = HttpMessage.from_bytes(await request.body())
        seconds = timeout_seconds(request.scope)
        results = await runtime.infer(
            message.data,
            request=message.data,
            deadline=None if seconds is None else runtime.now() + seconds,
            cancelled_by=watch_disconnect(request.scope, request.receive),
            door="virtex",
            correlation_id=correlation_id(request.scope["headers"]) if runtime.observing else None,
        )
        try:
            body = HttpMessage(data=results).to_bytes()
        except TypeError as exc:
            raise ModelError(f"process_response returned a value that is not JSON: {exc}") from exc
        await send_bytes(request.send, 200, body)


def http_server(
    name: str,
    handler: RequestHandler,
    max_batch_size: int | None = None,
    max_time_on_queue: float | None = None,
    metrics_host: str = "127.0.0.1",
    metrics_port: int = 9090,
    metrics_mode: str = "off",
    metrics_interval: float = 10.0,
    *,
    max_queue_size: int | None = None,
    max_body_size: int | None = None,
) -> MessageApp:
    """An ASGI app (run it with uvicorn) that batches message elements for ``handler``.

    ``max_time_on_queue`` is in seconds (Virtex's name for ``max_latency_ms``; 0 dispatches
    at once). Settings not given come from ``SERVEKIT_*`` variables, then defaults
    (``servekit.settings``). ``metrics_mode``: ``"off"`` (``GET /metrics`` on the
    app only), ``"scrape"`` (also a Prometheus endpoint on ``metrics_host`` at the first free
    port from ``metrics_port`` up: one per worker) or ``"push"`` (to the Pushgateway at
    ``metrics_host:metrics_port`` every ``metrics_interval`` seconds); see
    :mod:`servekit.server.virtex_metrics`.
    """
    if not isinstance(handler, RequestHandler):
        raise TypeError(f"handler must be a RequestHandler, got {type(handler).__name__}")
    if metrics_mode not in METRICS_MODES:
        raise BadRequest(f"metrics_mode must be one of {METRICS_MODES}, got {metrics_mode!r}")
    if not 0 < metrics_port < 65536:
        raise BadRequest(f"metrics_port must be a TCP port (1-65535), got {metrics_port}")
    if metrics_mode == "push" and not metrics_interval > 0:
        raise BadRequest(f"metrics_interval must be > 0 seconds, got {metrics_interval}")
    model = _HandlerModel(name, handler)
    policy = model.batch_policy(
        max_batch_size=max_batch_size,
        max_latency_ms=None if max_time_on_queue is None else max_time_on_queue * 1000,
        max_queue_size=max_queue_size,
    )
    body_limit: dict[str, Any] = {} if max_body_size is None else {"max_body_size": max_body_size}
    settings = ServerSettings(**body_limit)
    return MessageApp(
        ModelRuntime(model, policy, settings=settings),
        max_body_size=settings.max_body_size,
        metrics_mode=metrics_mode,
        metrics_host=metrics_host,
        metrics_port=metrics_port,
        metrics_interval=metrics_interval,
    )
