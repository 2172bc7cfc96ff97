"""``HttpClient``: post Virtex-style ``HttpMessage``s to an ``http_server``.

``HttpClient()`` with no URL targets ``$SERVEKIT_URL``, else :data:`DEFAULT_URL` (the
address the Virtex README binds its gunicorn example to).
"""

from __future__ import annotations

import os

from servekit.client._retry import Retry
from servekit.client._transport import Transport
from servekit.messages import HttpMessage

#: Where ``HttpClient()`` posts when neither ``url`` nor ``SERVEKIT_URL`` is given.
DEFAULT_URL = "http://localhost:8081"


class HttpClient:
    """A pooled, retrying client for one ``http_server`` URL (default: ``SERVEKIT_URL``)."""

    def __init__(
        self,
        url: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        token: str = "",
        max_connections: int = 100,
    ) -> None:
        self.url = url or os.environ.get("SERVEKIT_URL") or DEFAULT_URL
        self._transport = Transport(
            self.url,
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

    def __del__(self) -> None:
        # The README never closes its client: give the pooled sockets back when it is dropped.
        transport = getattr(self, "_transport", None)
        if transport is not None:
            transport.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
