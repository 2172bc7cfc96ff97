"""Errors the clients raise; each carries the HTTP status and the server's message.

ServekitError
 └── ClientError          anything a client reports (.status, .message, .body)
      ├── HTTPStatusError  the server answered with a status that is not 2xx
      ├── ConnectError     no connection, or it broke before a full response (503)
      └── RequestTimeout   no full response within the timeout (504)
"""

from __future__ import annotations

import orjson

from servekit.errors import ServekitError

__all__ = ["ClientError", "ConnectError", "HTTPStatusError", "RequestTimeout"]


class ClientError(ServekitError):
    """A request failed; ``status`` is the HTTP status (or 503/504 for transport failures)."""

    def __init__(self, message: str, *, status: int | None = None, body: bytes = b"") -> None:
        super().__init__(message, status=status)
        self.body = body

    @property
    def retryable(self) -> bool:
        """Whether trying again may help: connection errors and 5xx answers."""
        return False

    @property
    def code(self) -> int:
        """The status under the name the PAI-EAS SDK's ``PredictException`` uses."""
        return self.status

    def __str__(self) -> str:
        return f"[{self.status}] {self.message}"


class HTTPStatusError(ClientError):
    """The server answered with a non-2xx status; ``message`` is what it said."""

    @property
    def retryable(self) -> bool:
        return self.status >= 500

    @classmethod
    def from_response(cls, status: int, body: bytes, url: str) -> HTTPStatusError:
        return cls(f"{url}: {_server_message(body) or 'no message'}", status=status, body=body)


class ConnectError(ClientError):
    status = 503
    #: False when the request never left this machine (no connection): safe to resend.
    sent = True

    @property
    def retryable(self) -> bool:
        return True


class RequestTimeout(ClientError):
    status = 504


def _server_message(body: bytes) -> str:
    """The ``error`` (or ``message``/``detail``) of a JSON body, else the body as text."""
    text = body[:4096].decode("utf-8", "replace").strip()
    if text.startswith("{"):
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return text
        for key in ("error", "message", "detail"):
            if isinstance(data, dict) and isinstance(data.get(key), str):
                return data[key]
    return text
