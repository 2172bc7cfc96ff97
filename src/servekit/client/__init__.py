"""Clients for servekit's doors: one error tree, one retry policy, pooled transports.

=================  ==========================================================
``Client``         v2 (Open Inference Protocol), numpy in and out; blocking
``AsyncClient``    the same on asyncio
``PredictClient``  PAI-EAS predict (the ``eas-prediction`` SDK's names)
``QueueClient``    PAI-EAS queue service
``TcpClient``      the length-prefixed JSON frame door
``HttpClient``     Virtex ``HttpMessage``s to an ``http_server``
``GrpcClient``     v2 over gRPC, ``Client``'s surface (needs ``servekit[grpc]``)
=================  ==========================================================

Importing this package imports no server, batching or queue-backend module.
"""

from typing import TYPE_CHECKING, Any

from servekit.client._errors import (
    BadRequestError,
    ClientError,
    ConnectError,
    GatewayTimeout,
    HTTPStatusError,
    NotFoundError,
    PayloadTooLargeError,
    ProtocolError,
    RequestTimeout,
    ServiceUnavailable,
    TooManyRequests,
    TransportError,
    UnauthorizedError,
)
from servekit.client._http11 import Response
from servekit.client._retry import Retry
from servekit.client._transport import Transport
from servekit.client.eas import (
    ENDPOINT_TYPE_DEFAULT,
    ENDPOINT_TYPE_DIRECT,
    ENDPOINT_TYPE_GATEWAY,
    PredictClient,
    PredictException,
    StringRequest,
    StringResponse,
    TFRequest,
    TFResponse,
    TorchRequest,
    TorchResponse,
)
from servekit.client.message_client import HttpClient
from servekit.client.queue_client import QueueClient
from servekit.client.tcp import TcpClient
from servekit.client.v2 import AsyncClient, Client

if TYPE_CHECKING:
    from servekit.client._async_transport import AsyncTransport
    from servekit.client.grpc_client import GrpcClient


def __getattr__(name: str) -> Any:
    if name == "AsyncTransport":  # asyncio loads on first use
        from servekit.client._async_transport import AsyncTransport

        return AsyncTransport
    if name == "GrpcClient":  # grpcio (an optional extra) loads on first use
        from servekit.client.grpc_client import GrpcClient

        return GrpcClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ENDPOINT_TYPE_DEFAULT",
    "ENDPOINT_TYPE_DIRECT",
    "ENDPOINT_TYPE_GATEWAY",
    "AsyncClient",
    "AsyncTransport",
    "BadRequestError",
    "Client",
    "ClientError",
    "ConnectError",
    "GatewayTimeout",
    "GrpcClient",
    "HTTPStatusError",
    "HttpClient",
    "NotFoundError",
    "PayloadTooLargeError",
    "PredictClient",
    "PredictException",
    "ProtocolError",
    "QueueClient",
    "RequestTimeout",
    "Response",
    "Retry",
    "ServiceUnavailable",
    "StringRequest",
    "StringResponse",
    "TFRequest",
    "TFResponse",
    "TcpClient",
    "TooManyRequests",
    "TorchRequest",
    "TorchResponse",
    "Transport",
    "TransportError",
    "UnauthorizedError",
]
