"""PAI-EAS predict route: ``POST /api/predict/{service}`` in the model's EAS body format.

Each request is one batch item, decoded by :mod:`servekit.protocol.eas_formats` according
to the model's ``eas_format``.
"""

from __future__ import annotations

import asyncio

from servekit.protocol.eas_formats import decode_body
from servekit.server.asgi import (
    OFF_LOOP_BYTES,
    Receive,
    Scope,
    Send,
    send_bytes,
    timeout_seconds,
    watch_disconnect,
)
from servekit.server.runtime import ModelRuntime, correlation_id

_OCTETS = [(b"content-type", b"application/octet-stream")]


async def predict(
    runtime: ModelRuntime, scope: Scope, receive: Receive, send: Send, body: bytes
) -> None:
    """Decode the body for the model's ``eas_format``, run it as one item, encode the reply.

    Protobuf bodies of ``OFF_LOOP_BYTES`` or more are decoded in a worker thread.
    """
    model = runtime.model
    fmt, name = model.eas_format, str(model.name)
    if len(body) < OFF_LOOP_BYTES or fmt == "string":
        item, encode = decode_body(fmt, body, name)
    else:
        item, encode = await asyncio.to_thread(decode_body, fmt, body, name)
    seconds = timeout_seconds(scope)
    (result,) = await runtime.infer(
        [item],
        request=item,
        deadline=None if seconds is None else runtime.now() + seconds,
        cancelled_by=watch_disconnect(scope, receive),
        door="eas",
        correlation_id=correlation_id(scope["headers"]) if runtime.observing else None,
    )
    await send_bytes(send, 200, encode(result), _OCTETS)
