"""The servekit server app: models, their doors and lifecycle (load → serve → drain)."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from servekit import __version__
from servekit.events.engine import apply_settings as apply_event_settings
from servekit.model import Model
from servekit.protocol.v2 import server_metadata
from servekit.queue.config import open_queue
from servekit.server import eas as eas_route
from servekit.server import triton, v2
from servekit.server.asgi import Receive, Scope, Send, send_bytes, send_json
from servekit.server.async_inference import AsyncInference, queue_names
from servekit.server.auth import TokenGuard
from servekit.server.discovery import Announcer, DiscoveryRoutes, DiscoveryStore, advertised_address
from servekit.server.http_app import HttpApp
from servekit.server.metrics import render_metrics
from servekit.server.openapi import ApiInfo
from servekit.server.queue_door import QueueDoor
from servekit.server.routing import Request, Route
from servekit.server.runtime import ModelRegistry, ModelRuntime
from servekit.server.tcp import TcpDoor
from servekit.serving.adapter import MlrunModel
from servekit.settings import (
    QueueSettings,
    ServerSettings,
    event_overrides,
    split_overrides,
    with_overrides,
)

if TYPE_CHECKING:
    from servekit.server.grpc_door import GrpcDoor

log = logging.getLogger("servekit.server")
_TEXT = [(b"content-type", b"text/plain; charset=utf-8")]

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
    ``app.tcp_port`` after startup); ``grpc_port`` the v2 protocol over gRPC (the same,
    ``app.grpc_port``; needs ``servekit[grpc]``); ``freeze_gc`` moves what exists once the
    models have loaded out of the garbage collector's scans. Batching keywords
    (``max_batch_size=64``, ``max_latency_ms=0``, ...) override every model's own settings.
    ``queue=True`` (or a ``queue_url``) gives each model an input queue ``<name>`` and a sink
    ``<name>/sink`` served at ``/api/predict/…`` in the EAS queue protocol, consumed through the
    batcher (asynchronous inference); ``queue_max_length``, ``queue_lease``, ... tune those queues.
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
        engine_events = apply_event_settings(event_overrides(overrides))
        settings = with_overrides(ServerSettings, settings, server)
        self.settings = settings
        self.registry = ModelRegistry()
        for model in models:
            if not isinstance(model, Model):
                raise TypeError(f"expected a servekit.Model, got {type(model).__name__}")
            policy = model.batch_policy(**batching)
            runtime = ModelRuntime(model, policy, settings=settings, engine_events=engine_events)
            self.registry.add(runtime)
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
        self.grpc_port = settings.grpc_port
        self.grpc_host = settings.grpc_host or settings.host
        self.grpc: GrpcDoor | None = None
        if self.grpc_port is not None:  # grpcio is an optional extra: fail here without it
            from servekit.server.grpc_door import GrpcDoor

            metadata = server_metadata("servekit", __version__, EXTENSIONS)
            self.grpc = GrpcDoor.from_settings(self.registry, settings, metadata)
        self.started = False
        self._load_tasks: list[asyncio.Task[None]] = []
        self.announcer: Announcer | None = None
        self._announce_task: asyncio.Task[None] | None = None
        self.discovery = DiscoveryRoutes(
            self.registry, None, settings.advertise_address, settings.discovery_weight
        )
        if settings.discovery_url:
            self.discovery.store = DiscoveryStore(settings.discovery_url)
            self.discovery.address = address = advertised_address(settings)
            self.announcer = Announcer(
                DiscoveryStore(settings.discovery_url),
                self.registry,
                address,
                weight=settings.discovery_weight,
                ttl=settings.discovery_ttl,
            )

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
            self.tcp = TcpDoor.from_settings(self.registry, self.settings)
            self.tcp_port = await self.tcp.start(self.tcp_host, self.tcp_port)
            log.info("TCP door listening on %s:%d", self.tcp_host, self.tcp_port)
        if self.grpc is not None and self.grpc_port is not None:
            self.grpc_port = await self.grpc.start(self.grpc_host, self.grpc_port)
            log.info("gRPC door (v2) listening on %s:%d", self.grpc_host, self.grpc_port)
        if self.announcer is not None:  # lists each model once it is ready (heartbeat)
            self.announcer.start()
            self._announce_task = loop.create_task(self._announce_when_loaded())
        for runtime in self.registry:
            model = runtime.model
            base = f"/v2/models/{model.name}"
            urls = [f"{base}/infer"]
            if model.version:
                urls.append(f"{base}/versions/{model.version}/infer")
            door = "queue" if self.queue_door is not None else "EAS"
            urls.append(f"/api/predict/{model.name} ({door})")
            version = model.version or "none"
            log.info("model %s (version %s): POST %s", model.name, version, ", ".join(urls))

    async def _freeze_gc_when_loaded(self) -> None:
        # Everything loaded so far (weights, modules) lives for the whole process: moving it
        # out of the collector's reach spares each full collection from scanning it, which
        # is what set the tail latency under load (20 ms pauses every second or so).
        await asyncio.gather(*self._load_tasks[:-1])
        gc.collect()
        gc.freeze()

    async def _announce_when_loaded(self) -> None:
        assert self.announcer is not None
        await asyncio.gather(*self._load_tasks[: len(self.registry)])  # the models' loads
        await self.announcer.beat()

    async def leave_discovery(self) -> None:
        """Deregister from service discovery, then serve ``discovery_grace`` seconds more while
        clients refresh their lists (before draining: clients move away first)."""
        if self.announcer is not None and await self.announcer.leave():
            await asyncio.sleep(self.settings.discovery_grace)

    async def wait_loaded(self) -> None:
        """Wait until every model finished loading (successfully or not)."""
        await asyncio.gather(*self._load_tasks)

    async def shutdown(self) -> None:
        """Refuse new work (503), let queued work finish, then stop."""
        await self.leave_discovery()
        if self.tcp is not None:
            await self.tcp.close()
        if self.grpc is not None:  # RPCs in flight finish on the batchers, still running
            await self.grpc.close(self.drain_timeout)
        # queue consumers first: what they took is finished and committed, the rest stays queued
        await asyncio.gather(*(consumer.stop() for consumer in self.consumers))
        await asyncio.gather(*(rt.stop(self.drain_timeout) for rt in self.registry))
        if self.queue_door is not None:
            await self.queue_door.shutdown()
        if self.discovery.store is not None:
            await self.discovery.store.close()

    @property
    def public_metrics(self) -> bool:
        return self.settings.public_metrics

    @property
    def ready(self) -> bool:
        return all(rt.ready for rt in self.registry)

    # ------------------------------------------------------------------ HTTP
    @functools.cached_property
    def http(self) -> HttpApp:
        """The v2 and EAS routes (and the queue door's) on the one HTTP kit."""
        return HttpApp(
            self.routes(),
            guard=TokenGuard.from_settings(self.settings),
            max_body_size=self.max_body_size,
            startup=self.startup,
            shutdown=self.shutdown,
            api=self.api_info(),
        )

    def api_info(self) -> ApiInfo:
        """What ``GET /openapi.json`` lists as each path parameter's values."""
        names = sorted({str(rt.model.name) for rt in self.registry})
        versions = sorted({rt.model.version for rt in self.registry if rt.model.version})
        values = {"name": names, "version": versions, "service": names}
        if self.queue_door is not None:
            values["queue"] = sorted(self.queue_door.queues)
        return ApiInfo("servekit", values)

    def routes(self) -> list[Route]:
        """Every HTTP route this app serves; health routes are public (probes)."""
        get, post = functools.partial(Route.http, "GET"), functools.partial(Route.http, "POST")
        routes = [
            get("/v2/health/live", self._live, public=True),
            get("/v2/health/ready", self._ready, public=True),
            get("/v2", self._server_metadata),
            get("/metrics", self._metrics, public=self.public_metrics),
            get("/", self._info),
            get("/health", self._info),
            # Triton's extensions, for tritonclient (before /v2/models/{name}: first match wins)
            get("/v2/models", self._model_list),
            get("/v2/models/stats", self._all_statistics),
            post("/v2/repository/index", self._repository_index),
        ]
        for base in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
            routes += [
                get(base, self._model_metadata),
                get(base + "/ready", self._model_ready, public=True),
                get(base + "/config", self._model_config),
                get(base + "/stats", self._model_statistics),
                post(base + "/infer", self._infer),
                post(base + "/explain", self._explain),
                post(base + "/{op}", self._operation),
            ]
        if self.queue_door is not None:  # a POST that is no queue request predicts at once
            inputs = [queue_names(runtime)[0] for runtime in self.registry]
            routes += self.queue_door.routes(predict=self._eas_predict, services=inputs)
        else:
            routes.append(post("/api/predict/{name}", self._eas_predict))
        return routes + self.discovery.routes()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.http(scope, receive, send)

    def _runtime(self, request: Request) -> ModelRuntime:
        return self.registry.get(request.params["name"], request.params.get("version"))

    async def _live(self, request: Request) -> None:
        await send_json(request.send, 200, {"live": True})

    async def _ready(self, request: Request) -> None:
        ready = self.ready
        await send_json(request.send, 200 if ready else 503, {"ready": ready})

    async def _server_metadata(self, request: Request) -> None:
        await send_json(request.send, 200, server_metadata("servekit", __version__, EXTENSIONS))

    async def _metrics(self, request: Request) -> None:
        body, content_type = render_metrics(self.registry)
        await send_bytes(request.send, 200, body, [(b"content-type", content_type)])

    async def _info(self, request: Request) -> None:
        models = {rt.model.full_name: rt.state for rt in self.registry}
        info = {"name": "servekit", "version": __version__, "pid": os.getpid(), "models": models}
        await send_json(request.send, 200, info)

    async def _model_metadata(self, request: Request) -> None:
        runtime = self._runtime(request)
        version = request.params.get("version")
        versions = [version] if version else self.registry.versions(request.params["name"])
        await send_json(request.send, 200, v2.metadata(runtime, versions))

    async def _model_ready(self, request: Request) -> None:
        runtime = self._runtime(request)
        ready = runtime.ready
        model = runtime.model
        if isinstance(model, MlrunModel) and not (ready and model.server.ready):
            await send_bytes(request.send, 408, b"model not ready", _TEXT)  # as mlrun answers
            return
        body = {"name": request.params["name"], "ready": ready}
        await send_json(request.send, 200 if ready else 503, body)

    async def _model_list(self, request: Request) -> None:
        await send_json(request.send, 200, triton.model_list(self.registry))

    async def _model_config(self, request: Request) -> None:
        await send_json(request.send, 200, triton.model_config(self._runtime(request)))

    async def _model_statistics(self, request: Request) -> None:
        document = triton.model_statistics([self._runtime(request)])
        await send_json(request.send, 200, document)

    async def _all_statistics(self, request: Request) -> None:
        await send_json(request.send, 200, triton.model_statistics(list(self.registry)))

    async def _repository_index(self, request: Request) -> None:
        await request.body()  # Triton's body may filter by "ready"; every model is listed
        await send_json(request.send, 200, triton.repository_index(self.registry))

    async def _infer(self, request: Request) -> None:
        runtime = self._runtime(request)
        runtime.check_ready()
        body = await request.body()
        await v2.infer(runtime, request.scope, request.receive, request.send, body)

    async def _explain(self, request: Request) -> None:
        runtime = self._runtime(request)
        runtime.check_ready()
        await v2.explain(runtime, request.scope, request.send, await request.body())

    async def _operation(self, request: Request) -> None:
        runtime = self._runtime(request)
        runtime.check_ready()
        body = await request.body()
        await v2.operation(
            runtime, request.params["op"], request.send, body, request.scope, request.receive
        )

    async def _eas_predict(self, request: Request) -> None:
        runtime = self._runtime(request)
        runtime.check_ready()
        body = await request.body()
        await eas_route.predict(runtime, request.scope, request.receive, request.send, body)
