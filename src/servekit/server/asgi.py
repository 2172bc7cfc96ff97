"""Bare ASGI helpers for the hot path: read a bounded body, send a response."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import orjson

from servekit.errors import BadRequest, Cancelled, PayloadTooLarge, ServekitError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON = b"application/json"
TIMEOUT_HEADER = b"x-request-timeout-ms"
_JSON_HEADERS = [(b"content-type", JSON)]


def header(scope: Scope, name: bytes) -> bytes | None:
    """First value of a request header (``name`` in lower case)."""
    for key, value in scope["headers"]:
        if key == name:
            return value  # type: ignore[no-any-return]
    return None


BODY_SETTING = "--max-body-size / SERVEKIT_MAX_BODY_SIZE"

#: Request bodies at least this large are decoded in a worker thread, so the event loop keeps
#: answering other requests meanwhile; smaller ones are decoded in place (cheaper).
OFF_LOOP_BYTES = 1 << 20


async def read_body(
    scope: Scope, receive: Receive, limit: int, setting: str | None = None
) -> bytes:
    """The whole request body; ``PayloadTooLarge`` past ``limit`` bytes (naming ``setting``)."""
    length = header(scope, b"content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            shown = length.decode(errors="replace")
            raise BadRequest(f"Content-Length {shown!r} is not a number") from None
        if declared > limit:
            raise _too_large(f"request body of {declared} bytes", limit, setting)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Cancelled("client disconnected while sending the request")
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large("request body", limit, setting)
        if not message.get("more_body"):
            if not chunks:
                return chunk
            chunks.append(chunk)
            return b"".join(chunks)
        chunks.append(chunk)


def _too_large(what: str, limit: int, setting: str | None) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"{what} exceeds the limit of {limit} bytes (raise it with {setting or BODY_SETTING})"
    )


#: ASGI scope extension servekit's HTTP protocol sets: a future of the connection that
#: completes when the connection is lost (one per connection, not a task per request).
CONNECTION_LOST = "servekit.connection_lost"


def watch_disconnect(scope: Scope, receive: Receive) -> asyncio.Future[Any]:
    """What completes when the client disconnects (call once the body is read).

    Under servekit's own HTTP protocol, the connection's ``CONNECTION_LOST`` future. Under
    another ASGI server, a task on ``receive()``: once the body is read, its next message is
    ``http.disconnect``, when the client goes away or when the response is complete (by then
    the work is done, so the batcher ignores it); the task is left to finish by itself.
    """
    extensions = scope.get("extensions")
    if extensions is not None:
        lost = extensions.get(CONNECTION_LOST)
        if lost is not None:
            return lost  # type: ignore[no-any-return]
    return asyncio.get_running_loop().create_task(receive())  # type: ignore[arg-type]


def timeout_seconds(scope: Scope) -> float | None:
    """The caller's timeout from ``X-Request-Timeout-Ms`` (``inf`` or absent: none)."""
    raw = header(scope, TIMEOUT_HEADER)
    if raw is None:
        return None
    return checked_timeout(raw.decode("latin-1"), "header X-Request-Timeout-Ms", MILLISECONDS)


MILLISECONDS = ("milliseconds", 1e-3)
MICROSECONDS = ("microseconds", 1e-6)


def checked_timeout(raw: object, what: str, unit: tuple[str, float]) -> float | None:
    """``raw`` in ``unit`` as seconds: a number >= 0 (``inf``: no timeout), else 400."""
    name, seconds = unit
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise BadRequest(f"{what} must be a number of {name}, got {raw!r}") from None
    if math.isnan(value) or value < 0:
        raise BadRequest(f"{what} must be a number of {name} >= 0 (or inf), got {raw!r}")
    if math.isinf(value):
        return None
    return value * seconds


async def send_bytes(
    send: Send,
    status: int,
    body: bytes,
    headers: Iterable[tuple[bytes, bytes]] = _JSON_HEADERS,
) -> None:
    """Send a complete response in two ASGI messages, with its Content-Length (not chunked)."""
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_json(send: Send, status: int, document: Any) -> None:
    await send_bytes(send, status, orjson.dumps(document))


def error_response(error: ServekitError) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """The one error shape of every HTTP door: ``{"error": message}``, status and headers."""
    body = orjson.dumps({"error": error.message})
    headers = [(b"content-type", JSON), (b"content-length", str(len(body)).encode())]
    headers.extend((k.encode(), v.encode()) for k, v in error.headers().items())
    return error.status, headers, body


async def send_error(send: Send, error: ServekitError) -> None:
    """Answer with :func:`error_response` (e.g. a 429 with ``Retry-After``)."""
    status, headers, body = error_response(error)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def run_lifespan(
    receive: Receive,
    send: Send,
    startup: Callable[[], Awaitable[None]],
    shutdown: Callable[[], Awaitable[None]],
) -> None:
    """Answer the ASGI lifespan protocol; a failing startup is reported, and the server exits."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                await startup()
            except Exception as exc:  # report to the server, which exits
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return
