"""``HttpClient``: post Virtex-style ``HttpMessage``s to an ``http_server``."""

from __future__ import annotations

from servekit.client._retry import Retry
from servekit.client._transport import Transport
from servekit.messages import HttpMessage


class HttpClient:
    """A pooled, retrying client for one ``http_server`` URL."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        token: str = "",
        max_connections: int = 100,
    ) -> None:
        self._transport = Transport(
            url,
            timeout=timeout,
            retry=Retry(attempts=retries),
            token=token,
            max_connections=max_connections,
        )

    def post(self, message: HttpMessage, *, timeout: float | None = None) -> HttpMessage:
        """Send ``message``; returns the response message (errors raise ``HTTPStatusError``)."""
        body = message.to_bytes()
        response = self._transport.request(
            "POST", "/", body, {"content-type": "application/json"}, timeout=timeout
        )
        return HttpMessage.from_bytes(response.body)

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
