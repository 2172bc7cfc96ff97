"""uvicorn's httptools protocol with the bounds it lacks: head size, slow clients, connections.

uvicorn's ``HttpToolsProtocol`` has no limit on the size or count of request headers, no
deadline for a request head or body, and ``limit_concurrency`` only answers 503 once a request
head has arrived (a connection that never sends a byte is held forever). This subclass adds:

- a request head larger than ``max_header_size`` (or a header field over
  ``max_header_line_size``, or more than ``max_headers`` fields): 431; a URL over
  ``max_header_line_size``: 414. Bytes of an unfinished head are counted as they arrive, so
  an unterminated header line is cut at the limit, not buffered.
- a head not received within ``header_timeout`` of the connection opening (or of its first
  byte on a kept-alive connection): 408. A body that receives nothing for ``body_timeout``: 408.
  Time the server itself is not reading (flow control, pipelining, a ``100-continue`` the app
  has not asked for yet) does not count.
- more than ``max_connections`` open connections: the new one is answered 503 and closed.

Each refusal closes the connection. A response's head and body go out in one write
(:class:`~servekit.server.one_send.OneSendTransport`). Pass it to uvicorn as
``http=http_protocol(settings)``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from servekit.server.asgi import CONNECTION_LOST
from servekit.server.one_send import OneSendTransport
from servekit.settings import ServerSettings, settings_group

__all__ = ["HttpLimits", "LimitedHttpProtocol", "http_protocol"]

_REFUSAL_LOG_INTERVAL = 10.0  # seconds between two warnings about refused connections


@dataclass(frozen=True)
class HttpLimits:
    """The bounds :class:`LimitedHttpProtocol` enforces (see ``ServerSettings``)."""

    max_header_line_size: int
    max_header_size: int
    max_headers: int
    header_timeout: float
    body_timeout: float
    max_connections: int

    @classmethod
    def from_settings(cls, settings: ServerSettings) -> HttpLimits:
        return settings_group(cls, settings)


def http_protocol(settings: ServerSettings) -> Callable[..., LimitedHttpProtocol]:
    """uvicorn's ``http=`` value enforcing ``settings``' limits (picklable, for workers)."""
    return functools.partial(LimitedHttpProtocol, limits=HttpLimits.from_settings(settings))


class _Refused(Exception):
    """Raised in a parser callback to stop parsing a request already answered."""


class LimitedHttpProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` bounding request heads, slow clients and open connections."""

    _last_refusal_log = 0.0

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: HttpLimits,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits
        self._awaiting_head = True  # between two requests, or inside a request head
        self._head_read = 0  # bytes read while a head was unfinished (0: none pending)
        self._head_size = 0  # bytes of the current head parsed so far (URL, fields)
        self._header_count = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._body_seen = 0.0  # loop time the body last received bytes
        self._head_held = self._body_held = False  # the server held reading at the last tick
        self._lost: asyncio.Future[None] | None = None  # completes when the connection is lost

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        # a response's head and body leave in one send (see servekit.server.one_send)
        super().connection_made(OneSendTransport(transport, self))  # type: ignore[arg-type]
        if len(self.connections) > self.limits.max_connections:
            self._log_refused_connection()
            self._refuse(
                503,
                f"more than {self.limits.max_connections} open connections (max_connections)",
                [(b"retry-after", b"1")],
            )
            return
        self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        # what a door watches for the client going away: one future per connection
        if self._lost is None:
            self._lost = self.loop.create_future()
        self.scope["extensions"] = {CONNECTION_LOST: self._lost}  # type: ignore[dict-item]

    def data_received(self, data: bytes) -> None:
        if self._awaiting_head:
            self._head_read += len(data)
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if not self.transport.is_closing():  # else a callback already answered
                self.logger.warning("Invalid HTTP request received.")
                self.send_400_response("Invalid HTTP request received.")
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self._awaiting_head:
            self._after_head_data()
        else:  # the body is still arriving: that is progress
            self._body_seen = self.loop.time()
            if self._body_timer is None:
                self._body_timer = self.loop.call_at(
                    self._body_seen + self.limits.body_timeout, self._body_timed_out
                )

    def _after_head_data(self) -> None:
        if self._head_read:  # every byte since the head began is still unparsed head
            if self._head_read > self.limits.max_header_size:
                self._refuse_head(431, self._head_too_large())
            elif self._head_timer is None:
                self._head_timer = self.loop.call_later(
                    self.limits.header_timeout, self._head_timed_out
                )
        elif (
            self._head_timer is None
            and self.timeout_keep_alive_task is None
            and self.cycle is not None
            and self.cycle.response_complete
        ):
            # the answer went out before the body ended: nothing else times this connection
            self._head_timer = self.loop.call_later(
                self.limits.header_timeout, self._head_timed_out
            )

    # Parser callbacks
    def on_url(self, url: bytes) -> None:
        self.url += url
        self._head_size = len(self.url)
        if self._head_size > self.limits.max_header_line_size:
            self._refuse_head(
                414,
                f"request URL longer than {self.limits.max_header_line_size} bytes"
                " (max_header_line_size)",
            )
            raise _Refused

    def on_header(self, name: bytes, value: bytes) -> None:
        size = len(name) + len(value)
        self._head_size += size + 4  # ": " and CRLF
        self._header_count += 1
        if (
            size > self.limits.max_header_line_size
            or self._head_size > self.limits.max_header_size
            or self._header_count > self.limits.max_headers
        ):
            self._refuse_head(431, self._head_too_large(name, size))
            raise _Refused
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._awaiting_head = False
        self._head_read = 0
        self._header_count = 0
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._awaiting_head = True
        super().on_message_complete()

    # Timers
    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self._awaiting_head:
            return
        if self.flow.read_paused or self._head_held:
            # the server is not reading: not the client's delay; once it reads again, the
            # client has a whole period more (the pause may have ended just before this tick)
            self._head_held = self.flow.read_paused
            self._head_timer = self.loop.call_later(
                self.limits.header_timeout, self._head_timed_out
            )
            return
        self._refuse_head(
            408,
            f"request head not received within {self.limits.header_timeout:g} s (header_timeout)",
        )

    def _body_timed_out(self) -> None:
        self._body_timer = None
        if self.transport.is_closing() or self._awaiting_head:
            return
        now = self.loop.time()
        held = self.flow.read_paused or self.cycle.waiting_for_100_continue
        if held or self._body_held:
            # the app has not asked for (more of) the body: not the client's delay; once it
            # has, the client has a whole period more (it may have asked just before this tick)
            self._body_held = held
            self._body_seen = now
        due = self._body_seen + self.limits.body_timeout
        if now < due:
            self._body_timer = self.loop.call_at(due, self._body_timed_out)
            return
        self._refuse(
            408,
            f"request body received nothing for {self.limits.body_timeout:g} s (body_timeout)",
        )

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = None

    # Refusals
    def _head_too_large(self, name: bytes = b"", size: int = 0) -> str:
        limits = self.limits
        if size > limits.max_header_line_size:
            field = name.decode("latin-1")[:64]
            return (
                f"header field {field!r} longer than {limits.max_header_line_size} bytes"
                " (max_header_line_size)"
            )
        if self._header_count > limits.max_headers:
            return f"more than {limits.max_headers} header fields (max_headers)"
        return f"request head larger than {limits.max_header_size} bytes (max_header_size)"

    def _refuse_head(self, status: int, message: str) -> None:
        if status != 408:
            client = "{}:{} - ".format(*self.client) if self.client else ""
            self.logger.warning("%s%s", client, message)
        self._refuse(status, message)

    def _refuse(
        self, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        """Answer ``status`` if no other answer is owed or under way, then close."""
        cycle = self.cycle
        if self._awaiting_head:  # ``cycle`` is the previous request: its answer must come first
            answer = cycle is None or cycle.response_complete
        else:  # ``cycle`` is this request: answer unless the app already began to
            answer = not cycle.response_started
        if answer:
            body = json.dumps({"error": message}).encode()
            lines = [STATUS_LINE[status]]
            for name, value in [*self.server_state.default_headers, *(headers or [])]:
                lines += [name, b": ", value, b"\r\n"]
            lines += [
                b"content-type: application/json\r\n",
                b"content-length: %d\r\n" % len(body),
                b"connection: close\r\n\r\n",
                body,
            ]
            self.transport.write(b"".join(lines))
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the app's own answer must not follow this one
            cycle.message_event.set()
        self._cancel_timers()
        self.transport.close()

    def _log_refused_connection(self) -> None:
        now = time.monotonic()
        if now - LimitedHttpProtocol._last_refusal_log >= _REFUSAL_LOG_INTERVAL:
            LimitedHttpProtocol._last_refusal_log = now
            self.logger.warning(
                "Refusing connections beyond max_connections=%d (503)",
                self.limits.max_connections,
            )
