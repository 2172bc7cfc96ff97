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
  (every servekit server answers it, see docs/discovery.md) for the service's instances and
  spreads requests over them by weight, refreshing the list every ``discovery_interval``
  seconds, as the SDK does. An instance that refuses connections or answers 503 is passed
  over for a while, so the retry goes to another one (the SDK retries in plain round robin).
  Where discovery answers nothing usable (unreachable, or no such route), the client sends
  to ``<endpoint>/api/predict/<service>`` directly, instead of failing every request as the
  SDK would after its 5 s wait.
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

from servekit.client._discovery import Balancer, DiscoveryBalancer
from servekit.client._errors import ClientError
from servekit.client._retry import Retry

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
        self._router: Balancer | None = None
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
        seconds = self.timeout / 1000.0
        path = "" if self.custom_url else f"/api/predict/{self.service_name}"
        response = self.retry.call(
            lambda: router.request("POST", path, body, headers, timeout=seconds)
        )
        return request.parse_response(response.body)

    # internals

    def _ensure_router(self) -> Balancer:
        with self._lock:
            if self._router is None:
                self._router = self._make_router()
            return self._router

    def _make_router(self) -> Balancer:
        connections = self.max_connection_count
        if self.custom_url:
            return Balancer([(self.custom_url, 1)], max_connections=connections)
        if self.endpoint_type in (ENDPOINT_TYPE_GATEWAY, ENDPOINT_TYPE_DEFAULT, ""):
            return Balancer([(self._gateway(), 1)], max_connections=connections)
        if self.endpoint_type == ENDPOINT_TYPE_DIRECT:
            return DiscoveryBalancer(
                self._gateway(),
                self.service_name,
                interval=self.discovery_interval,
                timeout=self.timeout / 1000.0,
                max_connections=connections,
                token=self.token,
            )
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
