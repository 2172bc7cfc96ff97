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
from servekit.client.message_client import HttpClient
from servekit.client.queue_client import QueueClient
from servekit.client.tcp import TcpClient
from servekit.client.v2 import AsyncClient, Client

__all__ = [
    "ENDPOINT_TYPE_DEFAULT",
    "ENDPOINT_TYPE_DIRECT",
    "ENDPOINT_TYPE_GATEWAY",
    "AsyncClient",
    "Client",
    "ClientError",
    "ConnectError",
    "HTTPStatusError",
    "HttpClient",
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
    "TcpClient",
    "TorchRequest",
    "TorchResponse",
    "Transport",
]
