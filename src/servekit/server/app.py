"""The servekit ASGI application: routing, auth, limits, lifespan (load → serve → drain)."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections.abc import Iterable
from typing import Any

from servekit import __version__
from servekit.errors import (
    BadRequest,
    Cancelled,
    ModelError,
    NotFound,
    ServekitError,
    Unauthorized,
)
from servekit.model import Model
from servekit.protocol.eas_auth import check_authorization
from servekit.protocol.v2 import server_metadata
from servekit.queue.config import open_queue
from servekit.queue.door import QueueDoor
from servekit.server import eas as eas_route
from servekit.server import v2
from servekit.server.asgi import (
    Receive,
    Scope,
    Send,
    read_body,
    run_lifespan,
    send_bytes,
    send_error,
    send_json,
)
from servekit.server.async_inference import AsyncInference, queue_names
from servekit.server.metrics import render_metrics
from servekit.server.runtime import ModelRegistry, ModelRuntime
from servekit.server.tcp import TcpDoor
from servekit.settings import QueueSettings, ServerSettings, split_overrides, with_overrides

log = logging.getLogger("servekit.server")

DEFAULT_MAX_BODY = 64 * 1024 * 1024
EXTENSIONS = ["binary_tensor_data", "parameters"]


class App:
    """An ASGI app serving ``models`` over the v2 REST protocol.

    Settings (``servekit.settings``) come from ``settings`` / ``queue_settings`` and keyword
    overrides named as the CLI flags, else ``SERVEKIT_*`` variables, else defaults; a keyword
    set to ``None`` counts as not given. ``token`` guards every route but liveness
    (``Authorization: Bearer <token>`` or the plain token); ``max_body_size`` bounds request
    bodies (413 beyond); ``drain_timeout`` is how long shutdown waits for queued work;
    ``tcp_port`` also opens the TCP frame door (0 picks a free port, readable from
    ``app.tcp_port`` after startup); ``freeze_gc`` moves what exists once the models have loaded
    out of the garbage collector's scans. Batching keywords (``max_batch_size=64``,
    ``max_latency_ms=0``, ...) override every model's own settings. ``queue=True`` (or a
    ``queue_url``) gives each model an input queue ``<name>`` and a sink ``<name>/sink`` served
    at ``/api/predict/…`` in the EAS queue protocol, consumed through the batcher
    (asynchronous inference); ``queue_max_length``, ``queue_lease``, ... tune those queues.
    """

    def __init__(
        self,
        models: Iterable[Model],
        *,
        settings: ServerSettings | None = None,
        queue_settings: QueueSettings | None = None,
        **overrides: Any,
    ) -> None:
        server, batching, queue = split_overrides(overrides)
        settings = with_overrides(ServerSettings, settings, server)
        self.settings = settings
        self.registry = ModelRegistry()
        for model in models:
            if not isinstance(model, Model):
                raise TypeError(f"expected a servekit.Model, got {type(model).__name__}")
            self.registry.add(ModelRuntime(model, model.batch_policy(**batching)))
        if not len(self.registry):
            raise ValueError("App needs at least one model")
        self.token = settings.token_value
        self.max_body_size = settings.max_body_size
        self.drain_timeout = settings.drain_timeout
        self.tcp_port = settings.tcp_port
        self.freeze_gc = settings.freeze_gc
        self.queue_door: QueueDoor | None = None
        self.consumers: list[AsyncInference] = []
        if settings.queue or "url" in queue:
            queues = with_overrides(QueueSettings, queue_settings, queue)
            self._make_queues(queues, settings.queue_window)
        self.tcp_host = settings.tcp_host or settings.host
        self.tcp: TcpDoor | None = None
        self.started = False
        self._load_tasks: list[asyncio.Task[None]] = []

    def _make_queues(self, settings: QueueSettings, window: int) -> None:
        queues = {}
        for runtime in self.registry:
            input_name, sink_name = queue_names(runtime)
            inputs = open_queue(input_name, settings=settings)
            sink = open_queue(sink_name, settings=settings)
            queues[input_name], queues[sink_name] = inputs, sink
            self.consumers.append(AsyncInference(runtime, inputs, sink, window=window))
        self.queue_door = QueueDoor(queues, token=self.token)

    # ------------------------------------------------------------------ lifecycle
    async def startup(self) -> None:
        """Start batchers and begin loading models in the background."""
        if self.started:
            return
        self.started = True
        loop = asyncio.get_running_loop()
        for runtime in self.registry:
            await runtime.start()
            self._load_tasks.append(loop.create_task(runtime.load()))
        if self.freeze_gc:
            self._load_tasks.append(loop.create_task(self._freeze_gc_when_loaded()))
        if self.queue_door is not None:
            await self.queue_door.startup()
            for consumer in self.consumers:
                await consumer.start()
        if self.tcp_port is not None:
            self.tcp = TcpDoor(self.registry)
            self.tcp_port = await self.tcp.start(self.tcp_host, self.tcp_port)
            log.info("TCP door listening on %s:%d", self.tcp_host, self.tcp_port)

    async def _freeze_gc_when_loaded(self) -> None:
        # Everything loaded so far (weights, modules) lives for the whole process: moving it
        # out of the collector's reach spares each full collection from scanning it, which
        # is what set the tail latency under load (20 ms pauses every second or so).
        await asyncio.gather(*self._load_tasks[:-1])
        gc.collect()
        gc.freeze()

    async def wait_loaded(self) -> None:
        """Wait until every model finished loading (successfully or not)."""
        await asyncio.gather(*self._load_tasks)

    async def shutdown(self) -> None:
        """Refuse new work (503), let queued work finish, then stop."""
        if self.tcp is not None:
            await self.tcp.close()
        # queue consumers first: what they took is finished and committed, the rest stays queued
        await asyncio.gather(*(consumer.stop() for consumer in self.consumers))
        await asyncio.gather(*(rt.stop(self.drain_timeout) for rt in self.registry))
        if self.queue_door is not None:
            await self.queue_door.shutdown()

    @property
    def ready(self) -> bool:
        return all(rt.ready for rt in self.registry)

    # ------------------------------------------------------------------ ASGI
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            if self.queue_door is not None and self.queue_door.owns(scope["path"]):
                await self.queue_door.handle(scope, receive, send)
            else:
                await self._http(scope, receive, send)
        elif kind == "websocket" and self.queue_door is not None:
            await self.queue_door.handle(scope, receive, send)
        elif kind == "lifespan":
            await run_lifespan(receive, send, self.startup, self.shutdown)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._route(scope, receive, send)
        except ServekitError as exc:
            if isinstance(exc, Cancelled):
                return  # the client is gone: nobody to answer
            await send_error(send, exc)
        except Exception as exc:  # a boundary: answer 500, keep serving everyone else
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            await send_error(send, ModelError(f"internal error: {type(exc).__name__}: {exc}"))

    def _check_token(self, scope: Scope, body: bytes | None = None) -> None:
        """Plain token, ``Bearer <token>`` or an EAS signature; constant-time comparisons."""
        if not self.token:
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        if not check_authorization(
            self.token, method=scope["method"], path=scope["path"], headers=headers, body=body
        ):
            raise Unauthorized("missing or wrong token in the Authorization header")

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        parts = scope["path"].strip("/").split("/")
        method = scope["method"]
        if parts[0] == "v2":
            if parts[1:] == ["health", "live"]:
                await send_json(send, 200, {"live": True})
                return
            self._check_token(scope)
            if len(parts) == 1:
                self._expect(method, "GET")
                await send_json(send, 200, server_metadata("servekit", __version__, EXTENSIONS))
            elif parts[1:] == ["health", "ready"]:
                ready = self.ready
                await send_json(send, 200 if ready else 503, {"ready": ready})
            elif parts[1] == "models" and len(parts) >= 3:
                await self._model_route(scope, receive, send, parts[2:])
            else:
                raise NotFound(f"no route for {method} {scope['path']}")
        elif parts[0] == "api" and len(parts) == 3 and parts[1] == "predict":
            self._expect(method, "POST")
            body = await read_body(scope, receive, self.max_body_size)
            self._check_token(scope, body)
            runtime = self.registry.get(parts[2])
            runtime.check_ready()
            await eas_route.predict(runtime, scope, receive, send, body)
        elif parts == ["metrics"] or parts == ["health"] or parts == [""]:
            await self._misc(scope, send, parts[0])
        else:
            raise NotFound(f"no route for {method} {scope['path']}")

    async def _misc(self, scope: Scope, send: Send, what: str) -> None:
        self._check_token(scope)
        if what == "metrics":
            body, content_type = render_metrics(self.registry)
            await send_bytes(send, 200, body, [(b"content-type", content_type)])
            return
        await send_json(
            send,
            200,
            {
                "name": "servekit",
                "version": __version__,
                "pid": os.getpid(),
                "models": {rt.model.full_name: rt.state for rt in self.registry},
            },
        )

    @staticmethod
    def _expect(method: str, *allowed: str) -> None:
        if method not in allowed:
            raise ServekitError(
                f"method {method} not allowed here (use {' or '.join(allowed)})", status=405
            )

    async def _model_route(
        self, scope: Scope, receive: Receive, send: Send, parts: list[str]
    ) -> None:
        name, rest = parts[0], parts[1:]
        version = None
        if rest[:1] == ["versions"]:
            if len(rest) < 2 or not rest[1]:
                raise BadRequest("missing version after /versions/")
            version, rest = rest[1], rest[2:]
        runtime = self.registry.get(name, version)
        method = scope["method"]
        if not rest:
            self._expect(method, "GET")
            versions = [version] if version else self.registry.versions(name)
            await send_json(send, 200, v2.metadata(runtime, versions))
            return
        if len(rest) != 1:
            raise NotFound(f"no route for {method} {scope['path']}")
        action = rest[0]
        if action == "ready":
            self._expect(method, "GET")
            ready = runtime.ready
            await send_json(send, 200 if ready else 503, {"name": name, "ready": ready})
            return
        self._expect(method, "POST")
        runtime.check_ready()
        body = await read_body(scope, receive, self.max_body_size)
        if action == "infer":
            await v2.infer(runtime, scope, receive, send, body)
        elif action == "explain":
            await v2.explain(runtime, scope, send, body)
        else:
            await v2.operation(runtime, action, send, body)
