"""``Watcher``: a queue subscription over a WebSocket, reconnecting until closed."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from servekit.client._errors import ClientError, ConnectError, ProtocolError, status_error
from servekit.client._retry import Retry
from servekit.protocol.queue_wire import DataFrame, WireError, decode_frame

__all__ = ["Watcher"]


class Watcher:
    """Records pushed over a WebSocket; reconnects (with backoff) when the connection drops.

    Reconnecting follows ``retry`` (by default no limit on attempts or time: a subscription
    lasts until ``close()``); a handshake the server refuses with a status :class:`Retry`
    does not resend (401, 404, 500, …) raises from ``run()`` at once.
    """

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str],
        logger: logging.Logger | None,
        *,
        max_backoff: float = 2.0,
        open_timeout: float = 10.0,
        retry: Retry | None = None,
    ) -> None:
        self.url = url
        self.headers = dict(headers)
        self.logger = logger
        self.open_timeout = open_timeout
        self.retry = retry or Retry(attempts=None, budget=None, max_backoff=max_backoff)
        self._lock = threading.Lock()
        self._conn: ClientConnection | None = None
        self._closed = threading.Event()
        self._running = False

    def run(self) -> Iterator[DataFrame]:
        """Yield records until ``close()``; refused handshakes (401, 404, …) raise at once."""
        with self._lock:
            if self._running:
                raise ClientError("this watcher is already running")
            self._running = True
        try:
            attempt, waited = 1, 0.0
            while not self._closed.is_set():
                try:
                    conn = self._connect()
                except ClientError as exc:
                    pause = self.retry.wait_after(exc, attempt, waited, idempotent=True)
                    if pause is None:
                        raise
                    self._log_retry(exc)
                    self._closed.wait(pause)
                    attempt, waited = attempt + 1, waited + pause
                    continue
                if conn is None:
                    return
                attempt, waited = 1, 0.0
                yield from self._frames(conn)
        finally:
            with self._lock:
                self._running = False

    def _frames(self, conn: ClientConnection) -> Iterator[DataFrame]:
        try:
            for message in conn:
                raw = message if isinstance(message, bytes) else message.encode()
                try:
                    frame = decode_frame(raw)
                except WireError as exc:
                    raise ProtocolError(f"server sent an invalid DataFrameProto: {exc}") from exc
                yield frame
        except ConnectionClosed as exc:
            if self.logger and not self._closed.is_set():
                self.logger.warning("watch connection closed (%s), reconnecting", exc)
        finally:
            conn.close()

    def _connect(self) -> ClientConnection | None:
        """A new connection; None if closed meanwhile; a ``ClientError`` if it failed."""
        try:
            conn = connect(
                self.url,
                additional_headers=self.headers,
                open_timeout=self.open_timeout,
                max_size=None,
            )
        except InvalidStatus as exc:
            response = exc.response
            headers = {k.lower(): v for k, v in response.headers.raw_items()}
            raise status_error(response.status_code, bytes(response.body or b""), headers) from exc
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            # the handshake asks nothing of the queue: whatever failed, resending is safe
            raise ConnectError(f"watch {self.url}: {exc}", sent=False) from exc
        with self._lock:
            if self._closed.is_set():
                conn.close()
                return None
            self._conn = conn
        return conn

    def _log_retry(self, exc: ClientError) -> None:
        if self.logger:
            self.logger.warning("watch connect to %s failed (%s), retrying", self.url, exc)

    def close(self) -> None:
        """Stop: ``run()`` returns after the record it is yielding, if any."""
        with self._lock:
            self._closed.set()
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
