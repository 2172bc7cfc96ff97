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
WebSocket through ``websockets``' sync client. Errors are
``ClientError``s (``PredictException`` to EAS users, with ``.code``) that are also the matching
``servekit.errors`` class: ``QueueFull`` (429), ``NotFound`` (404), ``Unauthorized`` (401),
``BadRequest`` (400), ``PayloadTooLarge`` (413), ``Unavailable`` (503); ``ConnectError`` when
the server cannot be reached.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlencode

import orjson
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from servekit import errors
from servekit.client._errors import ConnectError, HTTPStatusError, _server_message
from servekit.client._transport import Response, Retry, Transport
from servekit.protocol.queue_wire import DataFrame, WireError, decode_frame, decode_list

__all__ = ["DataFrame", "QueueClient", "Watcher"]

HEADER_UID = "X-EAS-QueueService-Redis-Uid"
HEADER_GID = "X-EAS-QueueService-Redis-Gid"
HEADER_REQUEST_ID = "X-Eas-Queueservice-Request-Id"


class _Status(HTTPStatusError):
    """A non-2xx answer that is also the matching ``servekit.errors`` class."""

    def __init__(self, message: str, *, status: int | None = None, body: bytes = b"") -> None:
        errors.ServekitError.__init__(self, message, status=status)
        self.body = body


class BadRequestError(_Status, errors.BadRequest):
    pass


class UnauthorizedError(_Status, errors.Unauthorized):
    pass


class NotFoundError(_Status, errors.NotFound):
    pass


class PayloadTooLargeError(_Status, errors.PayloadTooLarge):
    pass


class QueueFullError(_Status, errors.QueueFull):
    retry_after = 1.0


class UnavailableError(_Status, errors.Unavailable):
    pass


_STATUS_ERRORS: dict[int, type[_Status]] = {
    400: BadRequestError,
    401: UnauthorizedError,
    404: NotFoundError,
    413: PayloadTooLargeError,
    429: QueueFullError,
    503: UnavailableError,
}


def _error(status: int, body: bytes) -> HTTPStatusError:
    message = _server_message(body) or f"HTTP {status}"
    return _STATUS_ERRORS.get(status, _Status)(message, status=status, body=body)


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
            # retries are this client's own (a put is resent only if it never left)
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
        for attempt in range(self.retry_count + 1):
            try:
                response = self._http.send(
                    method, path, body or b"", self._headers(), timeout=timeout
                )
            except ConnectError as exc:
                # a put is retried only if it never reached the server
                retry = method != "POST" or not exc.sent
                if not retry or attempt == self.retry_count:
                    raise ConnectError(f"{method} {self._url(query)}: {exc.message}") from exc
                if self.logger:
                    self.logger.debug("%s %s failed (%s), retrying", method, path, exc)
                time.sleep(min(0.05 * 2**attempt, 1.0))
                continue
            if response.status // 100 != 2:
                raise _error(response.status, response.body)
            return response
        raise AssertionError("unreachable")

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
        try:
            return decode_list(response.body)
        except WireError as exc:
            raise _Status(f"server sent an invalid DataFrameListProto: {exc}", status=502) from exc

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
        return Watcher(self._url(query, websocket=True), self._headers(), self.logger)


class Watcher:
    """Records pushed over a WebSocket; reconnects (with backoff) when the connection drops."""

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str],
        logger: logging.Logger | None,
        *,
        max_backoff: float = 2.0,
        open_timeout: float = 10.0,
    ) -> None:
        self.url = url
        self.headers = dict(headers)
        self.logger = logger
        self.max_backoff = max_backoff
        self.open_timeout = open_timeout
        self._lock = threading.Lock()
        self._conn: ClientConnection | None = None
        self._closed = threading.Event()
        self._running = False

    def run(self) -> Iterator[DataFrame]:
        """Yield records until ``close()``; refused handshakes (401, 404, …) raise at once."""
        with self._lock:
            if self._running:
                raise BadRequestError("this watcher is already running", status=400)
            self._running = True
        backoff = 0.05
        try:
            while not self._closed.is_set():
                conn = self._connect()
                if conn is None:
                    self._closed.wait(backoff)
                    backoff = min(backoff * 2, self.max_backoff)
                    continue
                backoff = 0.05
                try:
                    for message in conn:
                        yield decode_frame(
                            message if isinstance(message, bytes) else message.encode()
                        )
                except ConnectionClosed as exc:
                    if self.logger and not self._closed.is_set():
                        self.logger.warning("watch connection closed (%s), reconnecting", exc)
                finally:
                    conn.close()
        finally:
            with self._lock:
                self._running = False

    def _connect(self) -> ClientConnection | None:
        try:
            conn = connect(
                self.url,
                additional_headers=self.headers,
                open_timeout=self.open_timeout,
                max_size=None,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if 400 <= status < 500:
                raise _error(status, exc.response.body or b"") from exc
            self._log_retry(exc)
            return None
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            self._log_retry(exc)
            return None
        with self._lock:
            if self._closed.is_set():
                conn.close()
                return None
            self._conn = conn
        return conn

    def _log_retry(self, exc: Exception) -> None:
        if self.logger:
            self.logger.warning("watch connect to %s failed (%s), retrying", self.url, exc)

    def close(self) -> None:
        """Stop: ``run()`` returns after the record it is yielding, if any."""
        with self._lock:
            self._closed.set()
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def _seconds(timeout: str | float) -> float:
    from servekit.queue.params import duration

    try:
        return duration({"t": str(timeout)}, "t", 5.0, limit=3600.0)
    except errors.BadRequest:
        return 5.0
