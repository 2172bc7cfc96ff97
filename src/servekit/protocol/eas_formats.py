"""The body formats of the PAI-EAS predict protocol, as one batch item and its encoder.

A model says which body it speaks with ``eas_format``: ``"string"`` (raw bytes in, the
model's ``bytes``/``str``/JSON result out), ``"tensorflow"`` (TF ``PredictRequest`` feeds as
a dict of arrays in, a dict of arrays out, filtered by the request's fetches) or
``"pytorch"`` (feeds by index as a list of arrays in, a list of arrays out) or ``"blade"``
(Blade ``Request`` feeds as a dict of arrays in, a dict of arrays out, filtered and converted
by the request's fetches; also what ``blade_tf_request.TFRequest`` sends). Used by the
synchronous route and by the asynchronous-inference consumer alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from servekit.errors import ModelError
from servekit.protocol import eas, eas_blade

FORMATS = ("string", "tensorflow", "pytorch", "blade")

Encoder = Callable[[Any], bytes]


def decode_body(fmt: str, body: bytes, model_name: str) -> tuple[Any, Encoder]:
    """The batch item for ``body`` in format ``fmt``, and how to encode its result."""
    if fmt == "tensorflow":
        feeds, fetches, _signature = eas.decode_tf_request(body)
        return feeds, lambda result: eas.encode_tf_response(result, fetches)
    if fmt == "pytorch":
        tensors, output_filter = eas.decode_torch_request(body)
        return tensors, lambda result: eas.encode_torch_response(result, output_filter)
    if fmt == "string":
        return body, encode_string_result
    if fmt == "blade":
        named, wanted = eas_blade.decode_blade_request(body)
        return named, lambda result: eas_blade.encode_blade_response(result, wanted)
    raise ModelError(f"model '{model_name}' has eas_format {fmt!r}; expected one of {FORMATS}")


def encode_string_result(result: Any) -> bytes:
    """A string-protocol model's result as the response body."""
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
