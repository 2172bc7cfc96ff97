"""``QueueClient``: the PAI-EAS queue client, synchronous, against servekit or EAS.

    client = QueueClient("127.0.0.1:8080", "svc")
    client.set_token(token)
    client.init(uid="worker-1", gid="workers")
    index, request_id = client.put(b"payload", tags={"k": "v"})
    watcher = client.watch(0, window=5)
    for frame in watcher.run():           # reconnects after a dropped connection
        ...
        client.commit(frame.index)
    watcher.close()

HTTP goes through servekit's shared transport (pooled keep-alive connections); the watch
WebSocket through ``websockets``' sync client. Errors are the clients' one tree
(``PredictException`` to EAS users, with ``.code``): ``TooManyRequests`` (429, queue full),
``NotFoundError`` (404), ``UnauthorizedError`` (401), ``BadRequestError`` (400),
``PayloadTooLargeError`` (413), ``ServiceUnavailable`` (503); ``ConnectError`` when the server
cannot be reached. Retries follow :class:`~servekit.client.Retry`: a put is resent only if it
never left this machine, or after a 429/503 answer (which stored nothing).
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import orjson

from servekit.client._errors import (
    ConnectError,
    ProtocolError,
    status_error,
)
from servekit.client._http11 import IDEMPOTENT, Response
from servekit.client._retry import Retry
from servekit.client._transport import Transport

if TYPE_CHECKING:
    from servekit.client._watch import Watcher
    from servekit.protocol.queue_wire import DataFrame

__all__ = ["DataFrame", "QueueClient", "Watcher"]


def __getattr__(name: str) -> Any:
    # protobuf and websockets load on first use: most users of servekit.client need neither
    if name == "Watcher":
        from servekit.client._watch import Watcher

        return Watcher
    if name == "DataFrame":
        from servekit.protocol.queue_wire import DataFrame

        return DataFrame
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


HEADER_UID = "X-EAS-QueueService-Redis-Uid"
HEADER_GID = "X-EAS-QueueService-Redis-Gid"
HEADER_REQUEST_ID = "X-Eas-Queueservice-Request-Id"


def _indexes(index: int | str | list[int] | list[str]) -> str:
    values = index if isinstance(index, list) else [index]
    return ",".join(str(int(i)) for i in values)


class QueueClient:
    """A queue of an EAS-protocol service at ``endpoint`` (``host:port`` or an http(s) URL)."""

    def __init__(self, endpoint: str = "", queue_name: str = "", custom_url: str = "") -> None:
        self.endpoint = endpoint
        self.queue_name = queue_name
        self.custom_url = custom_url
        self.token = ""
        self.uid = str(uuid.uuid4())
        self.gid = "eas"
        self.timeout = 5000  # milliseconds, as in the EAS SDK
        self.retry_count = 3
        self.logger: logging.Logger | None = logging.getLogger("servekit.client.queue")
        self._http: Transport | None = None

    # -- settings (EAS SDK names) ---------------------------------------------------------

    def set_token(self, token: str) -> None:
        self.token = token

    def set_timeout(self, timeout: int) -> None:
        """Per-request timeout in milliseconds."""
        self.timeout = timeout

    def set_retry_count(self, count: int) -> None:
        self.retry_count = count

    def set_logger(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger

    def init(self, uid: str | None = None, gid: str = "eas") -> None:
        """Set the consumer identity (a random uid by default) and open the connection pool."""
        self.uid = uid or str(uuid.uuid4())
        self.gid = gid or "eas"
        if self._http is None:
            self._http = Transport(self._base_url(), retry=Retry(attempts=1))

    def close(self) -> None:
        """Close the connection pool."""
        if self._http is not None:
            self._http.close()
            self._http = None

    # -- plumbing -------------------------------------------------------------------------

    def _base_url(self) -> str:
        if self.custom_url:
            return self.custom_url.rstrip("/")
        host = self.endpoint.rstrip("/")
        if not host.startswith(("http://", "https://")):
            host = "http://" + host
        return f"{host}/api/predict/{self.queue_name}"

    def _url(self, query: Mapping[str, Any], websocket: bool = False) -> str:
        url = self._base_url()
        if websocket:
            url = "ws" + url[len("http") :]
        encoded = urlencode({k: str(v) for k, v in query.items()})
        return f"{url}?{encoded}" if encoded else url

    def _headers(self) -> dict[str, str]:
        headers = {HEADER_UID: self.uid, HEADER_GID: self.gid}
        if self.token:
            headers["Authorization"] = self.token
        return headers

    def _request(
        self,
        method: str,
        query: Mapping[str, Any],
        body: bytes | None = None,
        wait: float = 0.0,
    ) -> Response:
        if self._http is None:
            self.init(self.uid, self.gid)
        assert self._http is not None
        encoded = urlencode({k: str(v) for k, v in query.items()})
        path = f"?{encoded}" if encoded else ""
        timeout = max(self.timeout / 1000.0, wait + 5.0)
        http = self._http

        def once() -> Response:
            response = http.send(method, path, body or b"", self._headers(), timeout=timeout)
            if response.status // 100 != 2:
                raise status_error(response.status, response.body, response.headers)
            return response

        retry = Retry(attempts=self.retry_count + 1, max_backoff=1.0)
        try:
            return retry.call(once, idempotent=method in IDEMPOTENT)
        except ConnectError as exc:
            raise ConnectError(
                f"{method} {self._url(query)}: {exc.message}", sent=exc.sent
            ) from exc

    # -- operations -----------------------------------------------------------------------

    def put(
        self,
        data: bytes | str,
        tags: Mapping[str, str] | None = None,
        request_id: str | None = None,
    ) -> tuple[int, str]:
        """Append a record; return its index and request id."""
        body = data.encode() if isinstance(data, str) else bytes(data)
        query = dict(tags or {})
        if request_id:
            query["requestId"] = request_id
        response = self._request("POST", query, body)
        return int(response.body), response.headers[HEADER_REQUEST_ID.lower()]

    def get(
        self,
        request_id: str | None = None,
        index: int = 0,
        length: int = 1,
        timeout: str = "5s",
        auto_delete: bool = True,
        tags: Mapping[str, str] | None = None,
    ) -> list[DataFrame]:
        """Records from ``index`` (or the one put as ``request_id``), waiting up to ``timeout``."""
        query: dict[str, Any] = {
            "_index_": index,
            "_length_": length,
            "_timeout_": timeout,
            "_auto_delete_": str(auto_delete).lower(),
            **(tags or {}),
        }
        if request_id is not None:
            query["requestId"] = request_id
        response = self._request("GET", query, wait=_seconds(timeout))
        from servekit.protocol.queue_wire import WireError, decode_list

        try:
            return decode_list(response.body)
        except WireError as exc:
            raise ProtocolError(f"server sent an invalid DataFrameListProto: {exc}") from exc

    def attributes(self) -> dict[str, str]:
        """The queue's attributes (``stream.length``, ``stream.lastEntry``, …)."""
        return dict(orjson.loads(self._request("GET", {"_attrs_": "true"}).body))

    def search(self, index: int) -> dict[str, Any]:
        """``{ConsumerId, IsPending, WaitCount}`` of record ``index`` for this client's group."""
        query = {"_search_": "true", "_index_": index}
        return dict(orjson.loads(self._request("GET", query).body))

    def truncate(self, index: int) -> str:
        """Drop every record before ``index``."""
        return self._request("DELETE", {"_index_": index, "_trunc_": "true"}).body.decode()

    def delete(self, index: int | list[int]) -> str:
        """Delete one record or a list of records."""
        return self._request("DELETE", {"_indexes_": _indexes(index)}).body.decode()

    def commit(self, index: int | list[int]) -> str:
        """Commit one record or a list of records for this client's group."""
        return self._request("PUT", {"_indexes_": _indexes(index)}).body.decode()

    def watch(
        self,
        index: int = 0,
        window: int = 1,
        index_only: bool = False,
        auto_commit: bool = False,
        tags: Mapping[str, str] | None = None,
    ) -> Watcher:
        """A subscription: ``run()`` yields records, at most ``window`` uncommitted at a time."""
        query = {
            "_watch_": "true",
            "_index_": index,
            "_window_": window,
            "_index_only_": str(index_only).lower(),
            "_auto_commit_": str(auto_commit).lower(),
            **(tags or {}),
        }
        from servekit.client._watch import Watcher

        return Watcher(self._url(query, websocket=True), self._headers(), self.logger)


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|us|µs|ns|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def _seconds(timeout: str | float) -> float:
    """Seconds of a Go-style duration (``5s``, ``500ms``, ``1m30s``) or a number; else 5."""
    text = str(timeout).strip()
    try:
        seconds = float(text)
    except ValueError:
        parts = _DURATION_PART.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            return 5.0
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    return min(seconds, 3600.0) if seconds >= 0 else 5.0
