"""Clients for servekit's doors, sharing one pooled, retrying HTTP transport."""

from servekit.client._errors import ClientError, ConnectError, HTTPStatusError, RequestTimeout
from servekit.client._transport import Response, Retry, Transport
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
from servekit.client.queue_client import QueueClient

__all__ = [
    "ENDPOINT_TYPE_DEFAULT",
    "ENDPOINT_TYPE_DIRECT",
    "ENDPOINT_TYPE_GATEWAY",
    "ClientError",
    "ConnectError",
    "HTTPStatusError",
    "PredictClient",
    "PredictException",
    "QueueClient",
    "RequestTimeout",
    "Response",
    "Retry",
    "StringRequest",
    "StringResponse",
    "TFRequest",
    "TFResponse",
    "TorchRequest",
    "TorchResponse",
    "Transport",
]
