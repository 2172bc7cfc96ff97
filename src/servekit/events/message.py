"""One event on its way to a destination, and how its value becomes bytes."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any, NamedTuple

import orjson

__all__ = ["Message", "encode_value"]


class Message(NamedTuple):
    """An event for ``stream`` (a Kafka topic, a Redis stream, a line in a file).

    ``value`` is a JSON-able mapping (numpy arrays and scalars, bytes and datetimes are
    converted when it is encoded, on the sender's thread) or bytes sent as they are.
    ``headers`` travel beside the value where the destination has headers (Kafka).
    """

    stream: str
    value: Mapping[str, Any] | bytes
    key: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS | orjson.OPT_UTC_Z


def _fallback(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    tolist = getattr(value, "tolist", None)  # numpy arrays orjson refuses, torch tensors
    if callable(tolist):
        return tolist()
    if isinstance(value, (set, frozenset)):
        return list(value)
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    return repr(value)


def encode_value(value: Mapping[str, Any] | bytes) -> bytes:
    """``value`` as JSON bytes (bytes are returned as they are)."""
    if isinstance(value, bytes):
        return value
    return orjson.dumps(value, default=_fallback, option=_OPTIONS)
