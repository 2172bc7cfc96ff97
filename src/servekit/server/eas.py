"""PAI-EAS predict route: ``POST /api/predict/{service}`` in the model's EAS body format.

A model says which body it speaks with ``eas_format``: ``"string"`` (raw bytes in, the
model's ``bytes``/``str`` result out), ``"tensorflow"`` (TF ``PredictRequest`` feeds as a
dict of arrays in, a dict of arrays out, filtered by the request's fetches) or
``"pytorch"`` (feeds by index as a list of arrays in, a list of arrays out). Each request
is one batch item.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from servekit.errors import ModelError
from servekit.protocol import eas
from servekit.server.asgi import Receive, Scope, Send, send_bytes
from servekit.server.runtime import ModelRuntime
from servekit.server.v2 import run_watching_disconnect

FORMATS = ("string", "tensorflow", "pytorch")
_OCTETS = [(b"content-type", b"application/octet-stream")]


Codec = Callable[[Any], bytes]


def decode_body(runtime: ModelRuntime, body: bytes) -> tuple[Any, Codec]:
    """The batch item for ``body`` in the model's ``eas_format``, and how to encode its result."""
    fmt = runtime.model.eas_format
    if fmt == "tensorflow":
        feeds, fetches, _signature = eas.decode_tf_request(body)
        return feeds, lambda result: eas.encode_tf_response(result, fetches)
    if fmt == "pytorch":
        tensors, output_filter = eas.decode_torch_request(body)
        return tensors, lambda result: eas.encode_torch_response(result, output_filter)
    if fmt == "string":
        return body, _string_body
    raise ModelError(
        f"model '{runtime.model.name}' has eas_format {fmt!r}; expected one of {FORMATS}"
    )


async def predict(
    runtime: ModelRuntime, scope: Scope, receive: Receive, send: Send, body: bytes
) -> None:
    """Decode the body for the model's ``eas_format``, run it as one item, encode the reply."""
    item, encode = decode_body(runtime, body)
    (result,) = await run_watching_disconnect(runtime, receive, [item], None)
    await send_bytes(send, 200, encode(result), _OCTETS)


def _string_body(result: Any) -> bytes:
    if isinstance(result, (bytes, bytearray, memoryview)):
        return bytes(result)
    if isinstance(result, str):
        return result.encode("utf-8")
    try:
        return orjson.dumps(result, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError as exc:
        raise ModelError(
            f"a string-protocol model must return bytes, str or a JSON value: {exc}"
        ) from exc
