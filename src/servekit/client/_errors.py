"""The errors every servekit client raises: one tree, apart from the server's errors.

ClientError                    a request failed (``.message``; ``.code`` for PAI-EAS users)
 ├── TransportError            no complete answer came back: there is no HTTP status
 │    ├── ConnectError         cannot connect, or the connection broke (``.sent``)
 │    ├── RequestTimeout       no complete answer within the timeout
 │    └── ProtocolError        the answer is not valid HTTP, frames or the expected body
 └── HTTPStatusError           the server answered a failure (``.status .body .headers``)
      ├── BadRequestError          400
      ├── UnauthorizedError        401
      ├── NotFoundError            404
      ├── PayloadTooLargeError     413
      ├── TooManyRequests          429 (``.retry_after`` from ``Retry-After``)
      ├── ServiceUnavailable       503 (not ready, or draining; ``.retry_after``)
      └── GatewayTimeout           504 (the deadline passed before the model ran)

``PredictException`` (the PAI-EAS SDK's name) is ``ClientError``: ``.code`` is the status the
server answered, ``None`` when there was no answer.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping

import orjson

__all__ = [
    "BadRequestError",
    "ClientError",
    "ConnectError",
    "GatewayTimeout",
    "HTTPStatusError",
    "NotFoundError",
    "PayloadTooLargeError",
    "ProtocolError",
    "RequestTimeout",
    "ServiceUnavailable",
    "TooManyRequests",
    "TransportError",
    "UnauthorizedError",
    "status_error",
]


class ClientError(Exception):
    """A request failed; ``message`` says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def code(self) -> int | None:
        """The HTTP status the server answered (the PAI-EAS SDK's name); None without one."""
        return None


class TransportError(ClientError):
    """No complete answer came back from the server."""


class ConnectError(TransportError):
    """No connection, or it broke before a complete answer.

    ``sent`` is False when the request cannot have reached the server (the connection was
    never made): resending it is always safe.
    """

    def __init__(self, message: str, *, sent: bool = True) -> None:
        super().__init__(message)
        self.sent = sent


class RequestTimeout(TransportError):
    """No complete answer within the timeout; the server may still be working on it."""


class ProtocolError(TransportError):
    """The server's bytes are not a valid answer of the protocol spoken."""


class HTTPStatusError(ClientError):
    """The server answered with a failure status; ``message`` is what it said."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = body
        self.headers = dict(headers or {})

    @property
    def code(self) -> int:
        return self.status

    def __str__(self) -> str:
        return f"[{self.status}] {self.message}"


class BadRequestError(HTTPStatusError):
    """400: the server refused the request as malformed."""


class UnauthorizedError(HTTPStatusError):
    """401: missing or wrong token."""


class NotFoundError(HTTPStatusError):
    """404: no such model, queue or route."""


class PayloadTooLargeError(HTTPStatusError):
    """413: the body is over the server's limit."""


class _RetryAfter(HTTPStatusError):
    @property
    def retry_after(self) -> float | None:
        """Seconds the server asked to wait (``Retry-After``), None if it did not say."""
        return parse_retry_after(self.headers.get("retry-after"))


class TooManyRequests(_RetryAfter):
    """429: the server's queue is full; try again after ``retry_after`` seconds."""


class ServiceUnavailable(_RetryAfter):
    """503: the model is not ready yet, or the server is draining."""


class GatewayTimeout(HTTPStatusError):
    """504: the request's deadline passed before the model ran it."""


_BY_STATUS: dict[int, type[HTTPStatusError]] = {
    400: BadRequestError,
    401: UnauthorizedError,
    404: NotFoundError,
    413: PayloadTooLargeError,
    429: TooManyRequests,
    503: ServiceUnavailable,
    504: GatewayTimeout,
}


def status_error(
    status: int,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
    *,
    where: str = "",
    message: str | None = None,
) -> HTTPStatusError:
    """The most specific error for a failure answer; ``message`` defaults to the body's."""
    text = message if message is not None else server_message(body) or f"HTTP {status}"
    if where:
        text = f"{where}: {text}"
    cls = _BY_STATUS.get(status, HTTPStatusError)
    return cls(text, status=status, body=body, headers=headers)


def server_message(body: bytes) -> str:
    """The ``error`` (or ``message``/``detail``) of a JSON body, else the body as text."""
    text = body[:4096].decode("utf-8", "replace").strip()
    if text.startswith("{"):
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return text
        for key in ("error", "message", "detail"):
            if isinstance(data, dict) and isinstance(data.get(key), str):
                return str(data[key])
    return text


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: delay-seconds or an HTTP date; None if absent or invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
