"""Native clients for the Open Inference Protocol (v2): numpy in, numpy out.

``Client`` is blocking and thread-safe; ``AsyncClient`` is its asyncio twin on its own
transport, so one event loop keeps as many requests in flight as it starts.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np
import orjson

from servekit.client._discovery import DiscoveryBalancer
from servekit.client._errors import ProtocolError
from servekit.client._http11 import Response, TransportBase
from servekit.client._retry import Retry
from servekit.client._transport import Transport
from servekit.errors import BadRequest
from servekit.protocol.v2 import encode_infer_request, parse_infer_response

if TYPE_CHECKING:
    from servekit.client._async_transport import AsyncTransport

__all__ = ["AsyncClient", "Client"]

Inputs = Mapping[str, Any] | np.ndarray
T = TypeVar("T", bound=TransportBase[Any])


class _ClientBase(Generic[T]):
    """The settings both v2 clients take; each builds its own kind of transport from them."""

    def __init__(
        self,
        url: str,
        *,
        token: str = "",
        timeout: float = 30.0,
        retries: int = 3,
        binary: bool = False,
        max_connections: int = 100,
    ) -> None:
        self.binary = binary
        self._transport: T = self._transport_class()(
            url,
            timeout=timeout,
            retry=Retry(attempts=retries),
            token=token,
            max_connections=max_connections,
        )

    @staticmethod
    def _transport_class() -> type[T]:
        raise NotImplementedError


class Client(_ClientBase[Transport]):
    """A pooled, retrying v2 client: ``Client(url).infer("model", {"x": array})``.

    ``binary=True`` sends tensors with the binary data extension (faster for big arrays)
    and asks for binary outputs. A failure answer raises its ``HTTPStatusError`` subclass
    (``NotFoundError``, ``TooManyRequests``, …) with the server's message; no answer raises
    a ``TransportError``. ``retries`` counts every try of what :class:`Retry` deems safe to
    resend (never a 500 or a 4xx other than 429).

    ``discovery=True`` sends each model's ``infer`` to the replicas ``url``'s service
    discovery route lists for it (refreshed every ``discovery_interval`` seconds), by weight;
    a replica that refuses connections or answers 503 is passed over and the retry goes to
    another one. Other calls go to ``url``.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str = "",
        timeout: float = 30.0,
        retries: int = 3,
        binary: bool = False,
        max_connections: int = 100,
        discovery: bool = False,
        discovery_interval: float = 3.0,
    ) -> None:
        super().__init__(
            url,
            token=token,
            timeout=timeout,
            retries=retries,
            binary=binary,
            max_connections=max_connections,
        )
        self._discovery = discovery
        self._discovery_interval = discovery_interval
        self._url = url
        self._balancers: dict[str, DiscoveryBalancer] = {}
        self._balancers_lock = threading.Lock()

    def _balancer(self, model: str) -> DiscoveryBalancer:
        with self._balancers_lock:
            balancer = self._balancers.get(model)
            if balancer is None:
                transport = self._transport
                balancer = self._balancers[model] = DiscoveryBalancer(
                    self._url,
                    model,
                    interval=self._discovery_interval,
                    timeout=transport.timeout,
                    max_connections=transport.max_connections,
                    token=transport.token,
                )
            return balancer

    @staticmethod
    def _transport_class() -> type[Transport]:
        return Transport

    def infer(
        self,
        model: str,
        inputs: Inputs,
        *,
        version: str | None = None,
        outputs: Sequence[str] = (),
        binary: bool | None = None,
        timeout: float | None = None,
        request_id: str | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> dict[str, np.ndarray]:
        """Run ``model`` on ``inputs`` (a dict of arrays, or one array named ``input-0``)."""
        binary = self.binary if binary is None else binary
        path, body, headers = _infer_request(
            model, version, inputs, outputs, binary, request_id, parameters
        )
        if not self._discovery:
            return _decode(self._transport.request("POST", path, body, headers, timeout=timeout))
        balancer, seconds = self._balancer(model), timeout or self._transport.timeout
        response = self._transport.retry.call(
            lambda: balancer.request("POST", path, body, headers, timeout=seconds)
        )
        return _decode(response)

    def ready(self, model: str | None = None, version: str | None = None) -> bool:
        """Whether the server (or one model) is ready to serve."""
        return self._transport.send("GET", _ready_path(model, version)).status == 200

    def live(self) -> bool:
        """Whether the server process is up."""
        return self._transport.send("GET", "/v2/health/live").status == 200

    def metadata(self, model: str | None = None, version: str | None = None) -> dict[str, Any]:
        """Server metadata, or a model's (name, versions, inputs, outputs)."""
        return _json_object(self._transport.request("GET", _metadata_path(model, version)))

    def close(self) -> None:
        """Close the idle connections (and stop refreshing discovered replicas)."""
        self._transport.close()
        with self._balancers_lock:
            balancers, self._balancers = list(self._balancers.values()), {}
        for balancer in balancers:
            balancer.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncClient(_ClientBase["AsyncTransport"]):
    """The asyncio twin of :class:`Client`: same arguments, methods awaited.

    Requests run on the event loop (no threads): one connection per request in flight,
    ``max_connections`` idle ones kept. Create and use it on one event loop.
    """

    @staticmethod
    def _transport_class() -> type[AsyncTransport]:
        from servekit.client._async_transport import AsyncTransport  # asyncio on first use

        return AsyncTransport

    async def infer(
        self,
        model: str,
        inputs: Inputs,
        *,
        version: str | None = None,
        outputs: Sequence[str] = (),
        binary: bool | None = None,
        timeout: float | None = None,
        request_id: str | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> dict[str, np.ndarray]:
        """Run ``model`` on ``inputs`` (a dict of arrays, or one array named ``input-0``)."""
        binary = self.binary if binary is None else binary
        path, body, headers = _infer_request(
            model, version, inputs, outputs, binary, request_id, parameters
        )
        return _decode(await self._transport.request("POST", path, body, headers, timeout=timeout))

    async def ready(self, model: str | None = None, version: str | None = None) -> bool:
        """Whether the server (or one model) is ready to serve."""
        return (await self._transport.send("GET", _ready_path(model, version))).status == 200

    async def live(self) -> bool:
        """Whether the server process is up."""
        return (await self._transport.send("GET", "/v2/health/live")).status == 200

    async def metadata(
        self, model: str | None = None, version: str | None = None
    ) -> dict[str, Any]:
        """Server metadata, or a model's (name, versions, inputs, outputs)."""
        return _json_object(await self._transport.request("GET", _metadata_path(model, version)))

    async def close(self) -> None:
        """Close the idle connections."""
        await self._transport.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


# Both clients build their requests and read their answers with these.


def _infer_request(
    model: str,
    version: str | None,
    inputs: Inputs,
    outputs: Sequence[str],
    binary: bool,
    request_id: str | None,
    parameters: dict[str, Any] | None,
) -> tuple[str, bytes, dict[str, str]]:
    """The path, body and headers of an infer request."""
    if isinstance(inputs, np.ndarray):
        inputs = {"input-0": inputs}
    body, json_length = encode_infer_request(
        inputs,
        binary=binary,
        outputs=outputs,
        binary_output=binary,
        request_id=request_id,
        parameters=parameters,
    )
    if json_length is None:
        headers = {"content-type": "application/json"}
    else:
        headers = {
            "content-type": "application/octet-stream",
            "inference-header-content-length": str(json_length),
        }
    return _model_path(model, version) + "/infer", body, headers


def _ready_path(model: str | None, version: str | None) -> str:
    return "/v2/health/ready" if model is None else _model_path(model, version) + "/ready"


def _metadata_path(model: str | None, version: str | None) -> str:
    return "/v2" if model is None else _model_path(model, version)


def _json_object(response: Response) -> dict[str, Any]:
    try:
        data = orjson.loads(response.body)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"server sent invalid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ProtocolError(f"expected a JSON object, got {type(data).__name__}")
    return data


def _model_path(model: str, version: str | None) -> str:
    path = f"/v2/models/{model}"
    return f"{path}/versions/{version}" if version else path


def _decode(response: Response) -> dict[str, np.ndarray]:
    raw = response.headers.get("inference-header-content-length")
    try:
        return parse_infer_response(response.body, int(raw) if raw is not None else None).outputs
    except (BadRequest, ValueError) as exc:
        raise ProtocolError(f"server sent an infer response servekit cannot read: {exc}") from exc
