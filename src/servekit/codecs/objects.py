"""Python objects ⇄ bytes: numpy, pandas, PIL, torch, raw bytes, base64 and pickle.

Every ``encode_*`` returns ``bytes`` and its ``decode_*`` twin takes ``bytes``-like data and
gives back an equal object. Decoders read what a peer sent, so bad input is a
``BadRequest`` that says what is wrong. pandas, PIL and torch are imported only when their
codec is called. Pickle can run arbitrary code while loading, so :func:`decode_pickle`
refuses unless the caller passes ``allow_pickle=True``.
"""

from __future__ import annotations

import base64
import binascii
import pickle
from typing import Any

from servekit.codecs._ndarray import decode_numpy, encode_numpy
from servekit.codecs._pandas import decode_pandas, encode_pandas
from servekit.codecs._pil import decode_pil, encode_pil
from servekit.codecs._torch import decode_torch, encode_torch
from servekit.errors import BadRequest, PickleNotAllowed

__all__ = [
    "decode_base64",
    "decode_bytes",
    "decode_numpy",
    "decode_pandas",
    "decode_pickle",
    "decode_pil",
    "decode_torch",
    "encode_base64",
    "encode_bytes",
    "encode_numpy",
    "encode_pandas",
    "encode_pickle",
    "encode_pil",
    "encode_torch",
]

BytesLike = bytes | bytearray | memoryview


def encode_bytes(data: BytesLike | str) -> bytes:
    """Raw bytes as they are; ``str`` becomes its UTF-8 encoding."""
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"encode_bytes takes bytes or str, not {type(data).__name__}")


def decode_bytes(data: BytesLike) -> bytes:
    """The payload as an immutable ``bytes`` object."""
    return bytes(data)


def encode_base64(data: BytesLike | str) -> bytes:
    """Standard base64 (RFC 4648, with padding) of the bytes, or of a str's UTF-8."""
    return base64.b64encode(encode_bytes(data))


def decode_base64(data: BytesLike | str) -> bytes:
    """Decode standard base64; anything outside its alphabet is a ``BadRequest``."""
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(f"invalid base64 data: {exc}") from None


def encode_pickle(obj: Any, *, protocol: int = pickle.HIGHEST_PROTOCOL) -> bytes:
    """Pickle any Python object (only a trusted peer should ever unpickle it)."""
    return pickle.dumps(obj, protocol=protocol)


def decode_pickle(data: BytesLike, allow_pickle: bool = False) -> Any:
    """Unpickle data, refused with ``PickleNotAllowed`` unless ``allow_pickle=True``."""
    if not allow_pickle:
        raise PickleNotAllowed(
            "refusing to unpickle: loading pickled data can run arbitrary code; "
            "pass allow_pickle=True to accept pickled data from a trusted source"
        )
    try:
        return pickle.loads(data)
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise BadRequest(f"invalid pickled data: {exc}") from None
