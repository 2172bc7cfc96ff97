"""The Open Inference Protocol (KServe v2) over gRPC: ``inference.GRPCInferenceService``.

Served by ``grpcio``'s asyncio server on the HTTP server's event loop, onto the same
batchers through ``ModelRuntime.infer``; requests decode to the same arrays as the REST
routes' (``servekit.protocol.v2_grpc.convert``) and go through the same checks (declared
inputs, rows, requested outputs). RPCs: ``ServerLive``, ``ServerReady``, ``ModelReady``
(these three need no token), ``ServerMetadata``, ``ModelMetadata``, ``ModelInfer`` and
``ModelStreamInfer`` (each request of a stream answered when its result is ready, a failure
as the response's ``error_message``).

- Token: ``authorization`` metadata holding ``Bearer <token>`` or the token itself.
- Deadline: the gRPC deadline, or the ``timeout`` parameter (microseconds) if sooner.
- A client that cancels (or whose deadline passes) drops its work that has not run yet.
- Errors: the status of the error tree mapped to a gRPC code (:data:`GRPC_CODES`); the
  trailing metadata carries ``servekit-status`` (the HTTP status) and, for a 429,
  ``retry-after``.
- Messages larger than ``max_body_size`` are refused by gRPC (``RESOURCE_EXHAUSTED``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from servekit.batching.failures import reported
from servekit.errors import ModelError, ServekitError, Unauthorized
from servekit.protocol.eas_auth import verify
from servekit.protocol.v2 import InferRequest
from servekit.protocol.v2_grpc import SERVICE
from servekit.protocol.v2_grpc import grpc_service_pb2 as pb
from servekit.protocol.v2_grpc.convert import infer_request_from_message, infer_response_message
from servekit.server import v2
from servekit.server.asgi import MICROSECONDS, checked_timeout
from servekit.server.runtime import ModelRegistry, ModelRuntime
from servekit.settings import ServerSettings

try:
    import grpc
    import grpc.aio
except ImportError as exc:  # an optional extra
    raise ImportError(
        "the gRPC door (--grpc-port) needs grpcio: pip install servekit[grpc]"
    ) from exc

log = logging.getLogger("servekit.grpc")

__all__ = ["GRPC_CODES", "GrpcDoor"]

#: HTTP status of a servekit error → gRPC status code.
GRPC_CODES: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    499: grpc.StatusCode.CANCELLED,
    500: grpc.StatusCode.INTERNAL,
    501: grpc.StatusCode.UNIMPLEMENTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}
_PUBLIC = frozenset({"ServerLive", "ServerReady", "ModelReady"})
Context = grpc.aio.ServicerContext[Any, Any]


class GrpcDoor:
    """Serves a model registry over gRPC; ``await door.start(host, port)``, then ``close``."""

    def __init__(
        self,
        registry: ModelRegistry,
        *,
        token: str | None = None,
        max_message_size: int = 64 * 1024 * 1024,
        server_metadata: dict[str, Any] | None = None,
    ) -> None:
        self.registry = registry
        self.token = token or None
        self.max_message_size = max_message_size
        self.server_metadata = server_metadata or {"name": "servekit", "version": ""}
        self.server: grpc.aio.Server | None = None

    @classmethod
    def from_settings(
        cls,
        registry: ModelRegistry,
        settings: ServerSettings,
        server_metadata: dict[str, Any] | None = None,
    ) -> GrpcDoor:
        """A door with the token and body limit of ``settings``."""
        return cls(
            registry,
            token=settings.token_value,
            max_message_size=settings.max_body_size,
            server_metadata=server_metadata,
        )

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on the running event loop; returns the bound port."""
        options = [
            ("grpc.max_receive_message_length", self.max_message_size),
            ("grpc.max_send_message_length", -1),
            # several worker processes may share one port, like the HTTP one
            ("grpc.so_reuseport", int(port != 0)),
        ]
        server = grpc.aio.server(options=options)
        server.add_generic_rpc_handlers((self._handlers(),))
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            bound = server.add_insecure_port(address)
        except RuntimeError as exc:
            raise OSError(f"cannot listen for gRPC on {address}: {exc}") from exc
        if not bound:
            raise OSError(f"cannot listen for gRPC on {address}")
        await server.start()
        self.server = server
        return bound

    async def close(self, grace: float | None = None) -> None:
        """Stop taking RPCs; those in flight get ``grace`` seconds to finish."""
        if self.server is not None:
            await self.server.stop(grace)

    # ------------------------------------------------------------------ RPCs
    def _handlers(self) -> grpc.GenericRpcHandler:
        unary: dict[str, tuple[Callable[[Any, Context], Awaitable[Any]], Any, Any]] = {
            "ServerLive": (self._server_live, pb.ServerLiveRequest, pb.ServerLiveResponse),
            "ServerReady": (self._server_ready, pb.ServerReadyRequest, pb.ServerReadyResponse),
            "ModelReady": (self._model_ready, pb.ModelReadyRequest, pb.ModelReadyResponse),
            "ServerMetadata": (
                self._server_metadata_rpc,
                pb.ServerMetadataRequest,
                pb.ServerMetadataResponse,
            ),
            "ModelMetadata": (
                self._model_metadata,
                pb.ModelMetadataRequest,
                pb.ModelMetadataResponse,
            ),
            "ModelInfer": (self._model_infer, pb.ModelInferRequest, pb.ModelInferResponse),
        }
        handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
            name: grpc.unary_unary_rpc_method_handler(
                self._unary(name, behaviour),
                request_deserializer=request.FromString,
                response_serializer=response.SerializeToString,
            )
            for name, (behaviour, request, response) in unary.items()
        }
        handlers["ModelStreamInfer"] = grpc.stream_stream_rpc_method_handler(
            self._model_stream_infer,
            request_deserializer=pb.ModelInferRequest.FromString,
            response_serializer=pb.ModelStreamInferResponse.SerializeToString,
        )
        return grpc.method_handlers_generic_handler(SERVICE, handlers)

    def _unary(
        self, name: str, behaviour: Callable[[Any, Context], Awaitable[Any]]
    ) -> Callable[[Any, Context], Awaitable[Any]]:
        public = name in _PUBLIC

        async def rpc(request: Any, context: Context) -> Any:
            try:
                if not public:
                    self._check_token(context)
                return await behaviour(request, context)
            except ServekitError as exc:
                await _abort(context, exc)
            except Exception as exc:  # a boundary: answer INTERNAL, keep serving
                await _abort(context, _internal(exc, name))

        return rpc

    def _check_token(self, context: Context) -> None:
        if self.token is None:
            return
        given = ""
        for key, value in context.invocation_metadata() or ():
            if key == "authorization" and isinstance(value, str):
                given = value
        path = f"/{SERVICE}"
        # the token itself or Bearer <token>, compared in constant time; an EAS signature
        # covers an HTTP request's method, path and body, none of which gRPC has
        if verify(self.token, method="POST", path=path, headers={"authorization": given}) != (
            "token"
        ):
            raise Unauthorized(
                "missing or wrong token: send gRPC metadata 'authorization: Bearer <token>'"
            )

    async def _server_live(self, request: Any, context: Context) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def _server_ready(self, request: Any, context: Context) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=all(rt.ready for rt in self.registry))

    async def _model_ready(
        self, request: pb.ModelReadyRequest, context: Context
    ) -> pb.ModelReadyResponse:
        runtime = self.registry.get(request.name, request.version or None)
        return pb.ModelReadyResponse(ready=runtime.ready)

    async def _server_metadata_rpc(
        self, request: Any, context: Context
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(**self.server_metadata)

    async def _model_metadata(
        self, request: pb.ModelMetadataRequest, context: Context
    ) -> pb.ModelMetadataResponse:
        runtime = self.registry.get(request.name, request.version or None)
        versions = [request.version] if request.version else self.registry.versions(request.name)
        doc = v2.metadata(runtime, versions)
        return pb.ModelMetadataResponse(
            name=doc["name"],
            versions=doc["versions"],
            platform=doc["platform"],
            inputs=[pb.ModelMetadataResponse.TensorMetadata(**t) for t in doc["inputs"]],
            outputs=[pb.ModelMetadataResponse.TensorMetadata(**t) for t in doc["outputs"]],
        )

    async def _model_infer(
        self, message: pb.ModelInferRequest, context: Context
    ) -> pb.ModelInferResponse:
        return await self._infer(message, context, _cancelled_by(context))

    async def _infer(
        self,
        message: pb.ModelInferRequest,
        context: Context,
        cancelled_by: asyncio.Future[Any] | None,
    ) -> pb.ModelInferResponse:
        """One request, as ``POST …/infer`` runs it: the same decoded arrays and checks."""
        runtime = self.registry.get(message.model_name, message.model_version or None)
        runtime.check_ready()
        request = infer_request_from_message(message)
        if runtime.model.inputs:
            v2.input_signature(runtime).check(request.inputs)
        items = v2.split_items(runtime, request.inputs)
        results = await runtime.infer(
            items,
            request=request.inputs,
            deadline=_deadline(runtime, request, context),
            cancelled_by=cancelled_by,
            door="grpc",
            correlation_id=_correlation_id(context, request) if runtime.observing else None,
        )
        outputs = v2.join_outputs(runtime, results)
        if request.outputs:
            outputs = v2.select_outputs(runtime, request, outputs)
        model = runtime.model
        return infer_response_message(str(model.name), model.version, request.id, outputs)

    async def _model_stream_infer(
        self, requests: AsyncIterator[pb.ModelInferRequest], context: Context
    ) -> None:
        """Each request of the stream runs as it arrives; answers are written as they come."""
        if self.token is not None:
            try:
                self._check_token(context)
            except ServekitError as exc:
                await _abort(context, exc)
        answers: asyncio.Queue[pb.ModelStreamInferResponse | None] = asyncio.Queue()
        running: set[asyncio.Task[None]] = set()
        cancelled_by = _cancelled_by(context)

        async def run(message: pb.ModelInferRequest) -> None:
            try:
                response = await self._infer(message, context, cancelled_by)
                answer = pb.ModelStreamInferResponse(infer_response=response)
            except ServekitError as exc:
                answer = _stream_error(message, exc.message)
            except Exception as exc:  # a boundary: report it on the stream, keep serving
                answer = _stream_error(message, _internal(exc, "ModelStreamInfer").message)
            answers.put_nowait(answer)

        async def read() -> None:
            async for message in requests:
                task = asyncio.get_running_loop().create_task(run(message))
                running.add(task)
                task.add_done_callback(running.discard)
            while running:
                await asyncio.gather(*running)
            answers.put_nowait(None)

        reader = asyncio.get_running_loop().create_task(read())
        try:
            while (answer := await answers.get()) is not None:
                await context.write(answer)
        finally:
            reader.cancel()
            for task in list(running):
                task.cancel()


def _stream_error(message: pb.ModelInferRequest, error: str) -> pb.ModelStreamInferResponse:
    response = pb.ModelInferResponse(
        model_name=message.model_name, model_version=message.model_version, id=message.id
    )
    return pb.ModelStreamInferResponse(error_message=error, infer_response=response)


def _cancelled_by(context: Context) -> asyncio.Future[None]:
    """A future that completes when the RPC ends: cancelled, past its deadline, or done."""
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[None] = loop.create_future()

    def done(_: object) -> None:
        if not ended.done():
            ended.set_result(None)

    context.add_done_callback(done)  # type: ignore[arg-type]  # the stubs want a class
    return ended


def _deadline(runtime: ModelRuntime, request: InferRequest, context: Context) -> float | None:
    """The sooner of the gRPC deadline and the ``timeout`` parameter, on the runtime's clock."""
    seconds: float | None = context.time_remaining()
    if request.timeout_us is not None:
        asked = checked_timeout(request.timeout_us, "parameter 'timeout'", MICROSECONDS)
        if asked is not None and (seconds is None or asked < seconds):
            seconds = asked
    return None if seconds is None else runtime.now() + max(0.0, seconds)


def _correlation_id(context: Context, request: InferRequest) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "correlation-id" and isinstance(value, str):
            return value
    return request.id


def _internal(exc: Exception, rpc: str) -> ServekitError:
    if not reported(exc):  # the batcher logs model failures itself, rate-limited
        log.error("unhandled error in gRPC %s", rpc, exc_info=exc)
    return ModelError(f"internal error: {type(exc).__name__}: {exc}")


async def _abort(context: Context, error: ServekitError) -> None:
    """End the RPC with the gRPC code of ``error``'s status (raises ``grpc.aio.AbortError``)."""
    code = GRPC_CODES.get(error.status, grpc.StatusCode.UNKNOWN)
    trailing = [("servekit-status", str(error.status))]
    trailing += list(error.headers().items())  # retry-after of a 429
    await context.abort(code, error.message, trailing_metadata=tuple(trailing))
