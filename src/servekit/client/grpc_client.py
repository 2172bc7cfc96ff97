"""A blocking client for the v2 protocol over gRPC (``servekit serve --grpc-port``).

``GrpcClient`` has the ``infer`` / ``ready`` / ``live`` / ``metadata`` surface of
:class:`servekit.client.Client` and raises the same errors: a failure the server answered is
its ``HTTPStatusError`` subclass (servekit servers send the HTTP status in the
``servekit-status`` trailing metadata; for other servers it is read from the gRPC code), no
answer is a ``TransportError``. It speaks to any Open Inference Protocol gRPC server (Triton,
KServe, MLServer). Needs ``grpcio`` (``pip install servekit[grpc]``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from servekit.client._errors import (
    ClientError,
    ConnectError,
    HTTPStatusError,
    ProtocolError,
    RequestTimeout,
    TransportError,
    status_error,
)
from servekit.errors import BadRequest
from servekit.protocol.v2_grpc import SERVICE
from servekit.protocol.v2_grpc import grpc_service_pb2 as pb
from servekit.protocol.v2_grpc.convert import decode_tensors, infer_request_message

try:
    import grpc
except ImportError as exc:  # an optional extra
    raise ImportError("GrpcClient needs grpcio: pip install servekit[grpc]") from exc

__all__ = ["GrpcClient"]

Inputs = Mapping[str, Any] | np.ndarray

#: gRPC code → the HTTP status servekit would have answered, for servers that do not say.
_STATUS_OF_CODE: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 413,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.UNIMPLEMENTED: 501,
}


class GrpcClient:
    """``GrpcClient("127.0.0.1:8001").infer("model", {"x": array})``: numpy in and out.

    Tensors travel as raw contents. ``timeout`` (seconds) is each call's gRPC deadline; the
    server drops the work when it passes. Thread-safe: one HTTP/2 channel for every call.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str = "",
        timeout: float = 30.0,
        max_message_size: int = 64 * 1024 * 1024,
    ) -> None:
        self.target = _target(url)
        self.timeout = timeout
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        options = [
            ("grpc.max_receive_message_length", max_message_size),
            ("grpc.max_send_message_length", max_message_size),
        ]
        self._channel = grpc.insecure_channel(self.target, options=options)

    def infer(
        self,
        model: str,
        inputs: Inputs,
        *,
        version: str | None = None,
        outputs: Sequence[str] = (),
        timeout: float | None = None,
        request_id: str | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> dict[str, np.ndarray]:
        """Run ``model`` on ``inputs`` (a dict of arrays, or one array named ``input-0``)."""
        if isinstance(inputs, np.ndarray):
            inputs = {"input-0": inputs}
        request = infer_request_message(
            model,
            inputs,
            version=version,
            outputs=outputs,
            request_id=request_id,
            parameters=parameters,
        )
        response: pb.ModelInferResponse = self._call(
            "ModelInfer", request, pb.ModelInferResponse, timeout
        )
        try:
            return decode_tensors(response.outputs, response.raw_output_contents, "output")
        except BadRequest as exc:
            raise ProtocolError(
                f"server sent an infer response servekit cannot read: {exc}"
            ) from exc

    def ready(self, model: str | None = None, version: str | None = None) -> bool:
        """Whether the server (or one model) is ready to serve."""
        if model is None:
            reply: Any = self._call("ServerReady", pb.ServerReadyRequest(), pb.ServerReadyResponse)
        else:
            request = pb.ModelReadyRequest(name=model, version=version or "")
            reply = self._call("ModelReady", request, pb.ModelReadyResponse)
        return bool(reply.ready)

    def live(self) -> bool:
        """Whether the server process is up."""
        return bool(self._call("ServerLive", pb.ServerLiveRequest(), pb.ServerLiveResponse).live)

    def metadata(self, model: str | None = None, version: str | None = None) -> dict[str, Any]:
        """Server metadata, or a model's (name, versions, platform, inputs, outputs)."""
        if model is None:
            server = self._call(
                "ServerMetadata", pb.ServerMetadataRequest(), pb.ServerMetadataResponse
            )
            return {
                "name": server.name,
                "version": server.version,
                "extensions": list(server.extensions),
            }
        request = pb.ModelMetadataRequest(name=model, version=version or "")
        doc = self._call("ModelMetadata", request, pb.ModelMetadataResponse)
        return {
            "name": doc.name,
            "versions": list(doc.versions),
            "platform": doc.platform,
            "inputs": [_tensor(t) for t in doc.inputs],
            "outputs": [_tensor(t) for t in doc.outputs],
        }

    def _call(self, method: str, request: Any, reply: Any, timeout: float | None = None) -> Any:
        call = self._channel.unary_unary(
            f"/{SERVICE}/{method}",
            request_serializer=type(request).SerializeToString,
            response_deserializer=reply.FromString,
        )
        try:
            return call(request, timeout=timeout or self.timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise _error(exc, method, self.target) from exc

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def __enter__(self) -> GrpcClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _target(url: str) -> str:
    for scheme in ("grpc://", "http://"):
        if url.startswith(scheme):
            url = url[len(scheme) :]
    return url.rstrip("/")


def _tensor(tensor: Any) -> dict[str, Any]:
    return {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)}


def _error(exc: grpc.RpcError, method: str, target: str) -> ClientError:
    """The client error for a failed call: the server's status, else what gRPC says."""
    code = exc.code()
    details = exc.details() or code.name
    trailing: dict[str, Any] = {m.key: m.value for m in exc.trailing_metadata() or ()}
    raw_status = trailing.get("servekit-status")
    where = f"{method} at {target}"
    if isinstance(raw_status, str) and raw_status.isdigit():
        headers = {k: v for k, v in trailing.items() if isinstance(v, str)}
        return status_error(int(raw_status), headers=headers, where=where, message=details)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return RequestTimeout(f"{where}: no answer before the deadline ({details})")
    if code == grpc.StatusCode.UNAVAILABLE:
        return ConnectError(f"{where}: {details}")
    if code == grpc.StatusCode.CANCELLED:
        return TransportError(f"{where}: cancelled ({details})")
    status = _STATUS_OF_CODE.get(code)
    if status is None:
        return HTTPStatusError(f"{where}: {code.name}: {details}", status=500)
    return status_error(status, where=where, message=details)
