"""A PAI-EAS predict client with the published ``eas-prediction`` SDK's names and methods.

It speaks to servekit's ``/api/predict/<service>`` route and to any EAS-protocol server::

    client = PredictClient("http://127.0.0.1:8080", "my_model")
    client.set_token("T")
    client.init()
    response = client.predict(StringRequest(b"hello"))

Where it differs from the SDK, on purpose:

- Only what is safe to resend is retried (:class:`~servekit.client.Retry`): a connection
  that failed before the request left, 503, and 429 after its ``Retry-After``; with
  exponential backoff and jitter. Never a 500 (the SDK resends it, running the model
  again), another 4xx or a timeout. ``set_retry_count`` counts every try.
- Errors are the clients' one tree; ``PredictException`` is its root, with the SDK's
  ``.code`` (the HTTP status; ``None`` when no answer came) and ``.message``.
- ``https://`` endpoints are kept (the SDK rewrites every endpoint to ``http://``).
- The signed ``Date`` header is real GMT (the SDK sends local time labelled GMT).
- ``ENDPOINT_TYPE_DIRECT`` asks ``<endpoint>/api/v1/servicediscovery/upstreams/<service>``
  for the service's instances and spreads requests over them by weight, refreshing the list
  every ``discovery_interval`` seconds, as the SDK does. Where that discovery answers nothing
  usable (a servekit server has no such route, or it is unreachable), the client falls back
  to sending to ``<endpoint>/api/predict/<service>`` directly, instead of failing every
  request as the SDK would after its 5 s wait.
- ``StringResponse.to_string()`` is the body as text (the SDK returns ``str(bytes)``).
"""

from __future__ import annotations

import base64
import dataclasses
import email.utils
import hashlib
import hmac
import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import orjson

from servekit.client._errors import ClientError, status_error
from servekit.client._http11 import Response
from servekit.client._retry import Retry
from servekit.client._transport import Transport

__all__ = [
    "ENDPOINT_TYPE_DEFAULT",
    "ENDPOINT_TYPE_DIRECT",
    "ENDPOINT_TYPE_GATEWAY",
    "PredictClient",
    "PredictException",
    "StringRequest",
    "StringResponse",
    "TFRequest",
    "TFResponse",
    "TorchRequest",
    "TorchResponse",
]

ENDPOINT_TYPE_GATEWAY = "GATEWAY"
ENDPOINT_TYPE_DEFAULT = "DEFAULT"  # the SDK's name for the gateway
ENDPOINT_TYPE_DIRECT = "DIRECT"

PredictException = ClientError
"""The SDK's exception name: ``.code`` is the HTTP status (None without an answer) and
``.message`` the server's text."""

_log = logging.getLogger("servekit.client.eas")

# EAS ArrayDataType numbers: wire constants of the .proto files (protobuf loads lazily, so
# string-only users of this module need not install it).
DT_FLOAT, DT_DOUBLE, DT_INT32, DT_UINT8, DT_INT16, DT_INT8, DT_STRING = 1, 2, 3, 4, 5, 6, 7
DT_INT64, DT_BOOL, DT_QINT8, DT_QUINT8, DT_QINT32 = 9, 10, 11, 12, 13
DT_QINT16, DT_QUINT16, DT_UINT16 = 15, 16, 17


def _eas() -> Any:
    from servekit.protocol import eas

    return eas


def _tf_pb() -> Any:
    from servekit.protocol.eas_pb import tf_predict_pb2

    return tf_predict_pb2


def _torch_pb() -> Any:
    from servekit.protocol.eas_pb import torch_predict_pb2

    return torch_predict_pb2


# requests and responses


class StringRequest:
    """A raw body: ``str`` goes as UTF-8, ``bytes`` as they are."""

    def __init__(self, request_data: str | bytes | None = None) -> None:
        self.request_data = b"" if request_data is None else request_data

    def to_string(self) -> bytes:
        """The body to send."""
        data = self.request_data
        return data.encode("utf-8") if isinstance(data, str) else bytes(data)

    def parse_response(self, response_data: bytes) -> StringResponse:
        """Wrap the response body."""
        return StringResponse(response_data)

    def __str__(self) -> str:
        data = self.request_data
        return data if isinstance(data, str) else data.decode("utf-8", "replace")


class StringResponse:
    """The raw response body, in ``response_data``."""

    def __init__(self, response_data: bytes | None = None) -> None:
        self.response_data = b"" if response_data is None else response_data

    def to_string(self) -> str:
        """The body as text (UTF-8, undecodable bytes replaced)."""
        return self.response_data.decode("utf-8", "replace")

    __str__ = to_string


class _ArrayRequest:
    """What TF and PyTorch requests share: feeds written into ``ArrayProto`` messages."""

    DT_FLOAT = DT_FLOAT
    DT_DOUBLE = DT_DOUBLE
    DT_INT8 = DT_INT8
    DT_INT16 = DT_INT16
    DT_INT32 = DT_INT32
    DT_INT64 = DT_INT64
    DT_UINT8 = DT_UINT8
    DT_STRING = DT_STRING

    request_data: Any

    @staticmethod
    def _fill(proto: Any, shape: Sequence[int], data_type: int, content: Iterable[Any]) -> None:
        proto.dtype = data_type
        proto.array_shape.dim.extend(int(d) for d in shape)
        values = (
            np.asarray(content).ravel().tolist() if isinstance(content, np.ndarray) else content
        )
        if data_type == DT_STRING:
            values = [v.encode("utf-8") if isinstance(v, str) else v for v in values]
        getattr(proto, _eas().values_field(data_type)).extend(values)

    def to_string(self) -> bytes:
        """The serialized protobuf body."""
        return bytes(self.request_data.SerializeToString())

    def __str__(self) -> str:
        return str(self.request_data)


class TFRequest(_ArrayRequest):
    """A TensorFlow ``PredictRequest``: named feeds, names to fetch, a signature name."""

    DT_UINT16 = DT_UINT16
    DT_QINT8 = DT_QINT8
    DT_QUINT8 = DT_QUINT8
    DT_QINT16 = DT_QINT16
    DT_QUINT16 = DT_QUINT16
    DT_QINT32 = DT_QINT32
    DT_BOOL = DT_BOOL

    def __init__(self, signature_name: str | None = None) -> None:
        self.request_data = _tf_pb().PredictRequest(signature_name=signature_name or "")
        self.signature_name = signature_name

    def set_signature_name(self, signature_name: str) -> None:
        """Set the model signature to run."""
        self.signature_name = signature_name
        self.request_data.signature_name = signature_name or ""

    def add_feed(
        self, input_name: str, shape: Sequence[int], content_type: int, content: Iterable[Any]
    ) -> None:
        """Add input ``input_name``: its shape, a ``DT_*`` type and its values flattened."""
        self._fill(self.request_data.inputs[input_name], shape, content_type, content)

    def add_fetch(self, output_name: str) -> None:
        """Ask for this output only (call again for more); none asked means all."""
        self.request_data.output_filter.append(output_name)

    def parse_response(self, response_data: bytes) -> TFResponse:
        """Parse a TF ``PredictResponse`` body."""
        return TFResponse(response_data)


class TorchRequest(_ArrayRequest):
    """A PyTorch ``PredictRequest``: feeds by index and output indices to return.

    ``flag=True`` compresses the body with snappy, as the SDK does (needs ``python-snappy``;
    servekit's own server does not accept compressed bodies).
    """

    def __init__(self, flag: bool = False) -> None:
        self.request_data = _torch_pb().PredictRequest()
        self.flag = flag

    def set_debug_level(self, dbg_lvl: int = 0) -> None:
        """Set the request's ``debug_level`` field."""
        self.request_data.debug_level = dbg_lvl

    def add_feed(
        self, index: int, shape: Sequence[int], content_type: int, content: Iterable[Any]
    ) -> None:
        """Set input number ``index``: its shape, a ``DT_*`` type and its values flattened."""
        while len(self.request_data.inputs) <= index:
            self.request_data.inputs.add()
        self._fill(self.request_data.inputs[index], shape, content_type, content)

    def add_fetch(self, output_index: int) -> None:
        """Ask for this output index only (call again for more); none asked means all."""
        self.request_data.output_filter.append(output_index)

    def to_string(self) -> bytes:
        """The serialized protobuf body, snappy-compressed when ``flag`` is set."""
        data = super().to_string()
        if self.flag:
            try:
                import snappy  # type: ignore[import-not-found]
            except ImportError:
                raise ImportError(
                    "TorchRequest(flag=True) compresses with python-snappy: "
                    "pip install python-snappy"
                ) from None
            data = snappy.compress(data)
        return data

    def parse_response(self, response_data: bytes) -> TorchResponse:
        """Parse a PyTorch ``PredictResponse`` body."""
        return TorchResponse(response_data)


class _ArrayResponse:
    response: Any

    def _output(self, key: Any) -> Any:
        raise NotImplementedError

    def get_tensor_shape(self, key: Any) -> list[int]:
        """The shape of an output."""
        return list(self._output(key).array_shape.dim)

    def get_values(self, key: Any) -> Sequence[Any]:
        """The values of an output, flattened row-major, as the protobuf holds them."""
        proto = self._output(key)
        values: Sequence[Any] = getattr(proto, _eas().values_field(proto.dtype))
        return values

    def get_array(self, key: Any) -> np.ndarray:
        """An output as a numpy array of its shape and dtype (servekit extra)."""
        array: np.ndarray = _eas().array_from_proto(self._output(key), f"output {key!r}")
        return array

    def __str__(self) -> str:
        return str(self.response)

    to_string = __str__


class TFResponse(_ArrayResponse):
    """A TF ``PredictResponse``; outputs by name."""

    def __init__(self, response_data: bytes) -> None:
        self.response = _tf_pb().PredictResponse.FromString(response_data)

    def _output(self, key: str) -> Any:
        if key not in self.response.outputs:
            raise KeyError(f"no output {key!r}; outputs: {sorted(self.response.outputs)}")
        return self.response.outputs[key]


class TorchResponse(_ArrayResponse):
    """A PyTorch ``PredictResponse``; outputs by index."""

    def __init__(self, response_data: bytes) -> None:
        self.response = _torch_pb().PredictResponse.FromString(response_data)

    def _output(self, key: int) -> Any:
        return self.response.outputs[key]


# the client


class PredictClient:
    """Sends EAS requests to one service through a pool of keep-alive connections."""

    discovery_interval = 3.0

    def __init__(self, endpoint: str = "", service_name: str = "", custom_url: str = "") -> None:
        self.endpoint = endpoint
        self.service_name = service_name
        self.custom_url = custom_url or ""
        self.endpoint_type = ENDPOINT_TYPE_GATEWAY
        self.token = ""
        self.content_type = ""
        self.headers: dict[str, str] = {}
        self.max_connection_count = 100
        self.timeout = 5000
        self.retry = Retry(attempts=5)  # replaceable, e.g. to change the backoff
        self._router: _Router | None = None
        self._lock = threading.Lock()

    # settings (SDK names)

    def set_endpoint(self, endpoint: str) -> None:
        """Set the server address, e.g. ``http://127.0.0.1:8080``."""
        self.endpoint = endpoint

    def set_service_name(self, service_name: str) -> None:
        """Set the service (model) name."""
        self.service_name = service_name

    def set_endpoint_type(self, endpoint_type: str) -> None:
        """``ENDPOINT_TYPE_GATEWAY`` (default) or ``ENDPOINT_TYPE_DIRECT``."""
        self.endpoint_type = endpoint_type

    def set_token(self, token: str) -> None:
        """Set the service token; requests are then signed with it."""
        self.token = token or ""

    def set_content_type(self, content_type: str) -> None:
        """Set the ``Content-Type`` sent (default ``application/octet-stream``)."""
        self.content_type = content_type

    def add_extra_headers(self, headers: Mapping[str, str]) -> None:
        """Send these headers with every request."""
        if not isinstance(headers, Mapping):
            raise TypeError("headers must be a mapping")
        self.headers.update(headers)

    @property
    def retry_count(self) -> int:
        """How many times a request is tried in all."""
        return self.retry.attempts or 1

    def set_retry_count(self, count: int) -> None:
        """How many times a request is tried in all (default 5)."""
        self.retry = dataclasses.replace(self.retry, attempts=count)

    def set_max_connection_count(self, count: int) -> None:
        """How many idle connections each backend keeps (default 100; read by ``init``)."""
        self.max_connection_count = count

    def set_timeout(self, timeout: int) -> None:
        """The timeout of each try, in milliseconds (default 5000)."""
        self.timeout = timeout

    def set_log_level(self, log_level: int | str) -> None:
        """Set the level of the ``servekit.client.eas`` logger."""
        _log.setLevel(log_level)

    # lifecycle

    def init(self) -> None:
        """Resolve the endpoint and open the connection pool (after the ``set_*`` calls)."""
        with self._lock:
            if self._router is not None:
                self._router.close()
            self._router = self._make_router()

    def destroy(self) -> None:
        """Stop background discovery and close all connections."""
        with self._lock:
            router, self._router = self._router, None
        if router is not None:
            router.close()

    close = destroy

    def __enter__(self) -> PredictClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.destroy()

    def predict(self, request: Any) -> Any:
        """Send ``request`` and return its parsed response; failures raise ``PredictException``."""
        router = self._router or self._ensure_router()
        body = request.to_string()
        if isinstance(body, str):
            body = body.encode("utf-8")
        headers = self._headers(body)
        retry = self.retry
        seconds = self.timeout / 1000.0
        path = router.path

        def once() -> Response:
            response = router.next().send("POST", path, body, headers, timeout=seconds)
            if not 200 <= response.status < 300:
                where = router.url
                raise status_error(response.status, response.body, response.headers, where=where)
            return response

        response = retry.call(once)
        return request.parse_response(response.body)

    # internals

    def _ensure_router(self) -> _Router:
        with self._lock:
            if self._router is None:
                self._router = self._make_router()
            return self._router

    def _make_router(self) -> _Router:
        if self.custom_url:
            return _Router([(self.custom_url, 1)], "", self.max_connection_count)
        path = f"/api/predict/{self.service_name}"
        if self.endpoint_type in (ENDPOINT_TYPE_GATEWAY, ENDPOINT_TYPE_DEFAULT, ""):
            return _Router([(self._gateway(), 1)], path, self.max_connection_count)
        if self.endpoint_type == ENDPOINT_TYPE_DIRECT:
            return _DirectRouter(self._gateway(), self.service_name, path, self)
        raise ClientError(f"unsupported endpoint type: {self.endpoint_type!r}")

    def _gateway(self) -> str:
        endpoint = self.endpoint
        if not endpoint:
            namespace = os.getenv("NAMESPACE")
            if not namespace:
                raise ClientError("'endpoint' must be set when running outside an EAS service")
            endpoint = f"{self.service_name.replace('_', '-')}.{namespace}:8080"
        return endpoint if "://" in endpoint else f"http://{endpoint}"

    def _headers(self, body: bytes) -> dict[str, str]:
        content_type = self.content_type or self.headers.get(
            "Content-Type", "application/octet-stream"
        )
        headers = {**self.headers, "Content-Type": content_type}
        if not self.token:
            return headers
        date = email.utils.formatdate(usegmt=True)
        headers["Date"] = date
        if self.custom_url:
            headers["Authorization"] = self.token
            return headers
        md5 = hashlib.md5(body, usedforsecurity=False).hexdigest()
        resource = f"/api/predict/{self.service_name}"
        text = f"POST\n{md5}\n{content_type}\n{date}\n{resource}".strip()
        digest = hmac.new(self.token.encode(), text.encode(), hashlib.sha1).digest()
        headers["Content-MD5"] = md5
        headers["Authorization"] = f"EAS {base64.b64encode(digest).decode()}"
        return headers


class _Router:
    """Backends with weights; ``next()`` picks by smooth weighted round robin."""

    def __init__(self, backends: list[tuple[str, int]], path: str, max_connections: int) -> None:
        self.path = path
        self.max_connections = max_connections
        self._transports: dict[str, Transport] = {}
        self._lock = threading.Lock()
        self._weights: list[tuple[str, int]] = []
        self._current: dict[str, int] = {}
        self.set_backends(backends)

    @property
    def url(self) -> str:
        return ", ".join(f"{base}{self.path}" for base, _ in self._weights)

    def set_backends(self, backends: list[tuple[str, int]]) -> None:
        with self._lock:
            self._weights = [(base, max(1, weight)) for base, weight in backends]
            self._current = {base: self._current.get(base, 0) for base, _ in self._weights}
            for base, _ in self._weights:
                if base not in self._transports:
                    self._transports[base] = Transport(base, max_connections=self.max_connections)

    def next(self) -> Transport:
        with self._lock:
            if len(self._weights) == 1:
                return self._transports[self._weights[0][0]]
            total = sum(weight for _, weight in self._weights)
            for base, weight in self._weights:
                self._current[base] += weight
            best = max(self._weights, key=lambda bw: self._current[bw[0]])[0]
            self._current[best] -= total
            return self._transports[best]

    def close(self) -> None:
        with self._lock:
            transports = list(self._transports.values())
        for transport in transports:
            transport.close()


class _DirectRouter(_Router):
    """Instances found through EAS service discovery, refreshed in the background."""

    def __init__(self, endpoint: str, service: str, path: str, client: PredictClient) -> None:
        self._discovery = Transport(endpoint, timeout=client.timeout / 1000.0)
        internal = os.getenv("NAMESPACE") and os.getenv("POD_NAME")
        self._discovery_path = f"/api/v1/servicediscovery/upstreams/{service.split('/')[0]}" + (
            "?internal=true" if internal else ""
        )
        self._endpoint = endpoint
        self._no_discovery = False
        super().__init__(self._discover() or [(endpoint, 1)], path, client.max_connection_count)
        self._stop = threading.Event()
        self._interval = client.discovery_interval
        self._thread = threading.Thread(target=self._refresh, name="eas-discovery", daemon=True)
        self._thread.start()

    def _discover(self) -> list[tuple[str, int]]:
        """The instances the discovery route lists; empty if it gave nothing usable."""
        try:
            response = self._discovery.send("GET", self._discovery_path)
        except ClientError as exc:
            _log.warning("service discovery at %s failed: %s", self._endpoint, exc)
            return []
        if response.status == 404:
            self._no_discovery = True  # not a discovery service: stop asking
        if response.status != 200:
            _log.warning(
                "service discovery at %s answered %d; sending to the endpoint directly",
                self._endpoint,
                response.status,
            )
            return []
        try:
            items = orjson.loads(response.body)["endpoints"]["items"]
            return [(f"http://{h['ip']}:{h['port']}", int(h.get("weight", 1))) for h in items]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            _log.warning("service discovery at %s sent an unusable answer: %r", self._endpoint, exc)
            return []

    def _refresh(self) -> None:
        while not self._no_discovery and not self._stop.wait(self._interval):
            backends = self._discover()
            if backends:
                self.set_backends(backends)

    def close(self) -> None:
        self._stop.set()
        self._discovery.close()
        super().close()
