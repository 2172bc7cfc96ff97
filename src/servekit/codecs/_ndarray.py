"""numpy arrays ⇄ self-describing bytes (dtype, shape, data), without pickle.

Layout, all integers little-endian::

    b"SKNP" | version u8 (=1) | kind u8 | len(name) u8 | name ASCII | ndim u8 | ndim x dim u64
    | payload

``kind`` says how to read ``name`` and the payload:

- ``NUMERIC``: ``name`` is a v2 datatype (BOOL, UINT8…UINT64, INT8…INT64, FP16, FP32, FP64,
  BF16); the payload is the elements row-major, little-endian, no padding.
- ``BYTES`` / ``STR``: an object array of ``bytes`` / ``str``; ``name`` is ``BYTES``; each
  element is a u32 length then its bytes (``str`` as UTF-8), as in the v2 binary extension.
- ``FIXED``: a numpy fixed-width ``U``/``S`` array; ``name`` is its dtype string (``<U7``) and
  the payload its raw little-endian buffer, so the width survives the round trip.

Decoding reads what a peer sent, so every problem is a ``BadRequest`` saying what is wrong.
A decoded array shares memory with ``data`` (read-only when ``data`` is ``bytes``).
"""

from __future__ import annotations

import math
import struct
from typing import Any, NamedTuple

import numpy as np

from servekit.errors import BadRequest

__all__ = ["decode_numpy", "encode_numpy"]

MAGIC = b"SKNP"
VERSION = 1
NUMERIC, BYTES, STR, FIXED = 0, 1, 2, 3

_DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
_NAMES: dict[tuple[str, int], str] = {(dt.kind, dt.itemsize): n for n, dt in _DTYPES.items()}
_ITEMSIZE: dict[str, int] = {**{n: dt.itemsize for n, dt in _DTYPES.items()}, "BF16": 2}
_U32 = struct.Struct("<I")


class Parsed(NamedTuple):
    """The header of an encoded array and a view of its payload."""

    kind: int
    name: str
    shape: tuple[int, ...]
    payload: memoryview


def encode_numpy(array: Any) -> bytes:
    """Encode an array (any v2 datatype, or str/bytes) as self-describing bytes."""
    arr = np.asarray(array)
    dt = arr.dtype
    if dt.kind == "O":
        return _encode_objects(arr)
    if dt.kind in "US":
        arr = np.asarray(arr, dtype=dt.newbyteorder("<"), order="C")
        return encode_raw(FIXED, arr.dtype.str, arr.shape, _raw(arr))
    name = "BF16" if dt.name == "bfloat16" else _NAMES.get((dt.kind, dt.itemsize))
    if name is None:
        raise TypeError(f"cannot encode dtype {dt}: not a v2 datatype, str or bytes")
    if name != "BF16" and dt.byteorder == ">":
        dt = dt.newbyteorder("<")
    arr = np.asarray(arr, dtype=dt, order="C")
    return encode_raw(NUMERIC, name, arr.shape, _raw(arr))


def encode_raw(kind: int, name: str, shape: tuple[int, ...], payload: Any) -> bytes:
    """Frame an already little-endian, row-major payload with its header."""
    header = bytearray(MAGIC)
    header += bytes((VERSION, kind, len(name)))
    header += name.encode("ascii")
    header.append(len(shape))
    header += struct.pack(f"<{len(shape)}Q", *shape)
    return b"".join((header, payload))


def decode_numpy(data: bytes | bytearray | memoryview) -> np.ndarray:
    """Decode bytes made by :func:`encode_numpy` back into an equal array."""
    parsed = parse(data)
    if parsed.kind == NUMERIC:
        if parsed.name == "BF16":
            return from_buffer(parsed, _bfloat16())
        return from_buffer(parsed, _DTYPES[parsed.name])
    if parsed.kind == FIXED:
        return from_buffer(parsed, np.dtype(parsed.name))
    return _decode_objects(parsed)


def parse(data: bytes | bytearray | memoryview) -> Parsed:
    """Read and check the header; the payload is not interpreted yet."""
    view = memoryview(data).cast("B")
    if view[:4] != MAGIC:
        raise BadRequest("not an encoded numpy array: missing the b'SKNP' header")
    try:
        version, kind, name_len = view[4], view[5], view[6]
        name = bytes(view[7 : 7 + name_len]).decode("ascii")
        ndim = view[7 + name_len]
        start = 8 + name_len
        shape = struct.unpack_from(f"<{ndim}Q", view, start)
    except (IndexError, UnicodeDecodeError, struct.error):
        raise BadRequest("encoded numpy array: truncated or corrupt header") from None
    if version != VERSION:
        raise BadRequest(f"encoded numpy array: unsupported format version {version}")
    _check_name(kind, name)
    return Parsed(kind, name, shape, view[start + 8 * ndim :])


def _check_name(kind: int, name: str) -> None:
    if kind == NUMERIC and name in _ITEMSIZE:
        return
    if kind in (BYTES, STR) and name == "BYTES":
        return
    if kind == FIXED and name[:1] in "<|" and name[1:2] in ("U", "S") and name[2:].isdigit():
        return
    raise BadRequest(f"encoded numpy array: unknown datatype {name!r} (kind {kind})")


def from_buffer(parsed: Parsed, dtype: np.dtype) -> np.ndarray:
    """The payload viewed as ``dtype`` with the header's shape, after checking its size."""
    count = math.prod(parsed.shape)
    expected = count * dtype.itemsize
    if len(parsed.payload) != expected:
        raise BadRequest(
            f"encoded numpy array: shape {list(parsed.shape)} of {parsed.name} needs "
            f"{expected} bytes of data, got {len(parsed.payload)}"
        )
    if count == 0:
        return _reshape(np.empty(0, dtype=dtype), parsed.shape)
    return _reshape(np.frombuffer(parsed.payload, dtype=dtype), parsed.shape)


def _reshape(flat: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    try:
        return flat.reshape(shape)
    except ValueError as exc:  # more dimensions than this numpy supports
        raise BadRequest(f"encoded numpy array: shape {list(shape)}: {exc}") from None


def _encode_objects(arr: np.ndarray) -> bytes:
    items = arr.ravel(order="C").tolist()
    if all(isinstance(x, str) for x in items) and items:
        kind, chunks = STR, [x.encode("utf-8") for x in items]
    elif all(isinstance(x, (bytes, bytearray, memoryview)) for x in items):
        kind, chunks = BYTES, [bytes(x) for x in items]
    else:
        bad = next(x for x in items if not isinstance(x, (str, bytes, bytearray, memoryview)))
        raise TypeError(
            "object arrays must hold only str or only bytes, found "
            f"{type(bad).__name__} (use encode_pickle for arbitrary objects)"
        )
    parts = []
    for chunk in chunks:
        parts.append(_U32.pack(len(chunk)))
        parts.append(chunk)
    return encode_raw(kind, "BYTES", arr.shape, b"".join(parts))


def _decode_objects(parsed: Parsed) -> np.ndarray:
    count = math.prod(parsed.shape)
    payload, pos = parsed.payload, 0
    if 4 * count > len(payload):  # checked before allocating `count` slots
        raise BadRequest(
            f"encoded BYTES array: shape {list(parsed.shape)} needs at least {4 * count} "
            f"bytes of data, got {len(payload)}"
        )
    out = np.empty(count, dtype=object)
    try:
        for i in range(count):
            (size,) = _U32.unpack_from(payload, pos)
            end = pos + 4 + size
            if end > len(payload):
                raise BadRequest(f"encoded BYTES array: element {i} runs past the end of data")
            chunk = bytes(payload[pos + 4 : end])
            out[i] = chunk.decode("utf-8") if parsed.kind == STR else chunk
            pos = end
    except struct.error:
        raise BadRequest(f"encoded BYTES array: data ends before element {i} of {count}") from None
    except UnicodeDecodeError as exc:
        raise BadRequest(f"encoded str array: element {i} is not valid UTF-8: {exc}") from None
    if pos != len(payload):
        raise BadRequest(
            f"encoded BYTES array: {len(payload) - pos} bytes left after {count} elements"
        )
    return _reshape(out, parsed.shape)


def _raw(arr: np.ndarray) -> memoryview:
    """The contiguous array's bytes without a copy."""
    return arr.reshape(-1).view(np.uint8).data


def _bfloat16() -> np.dtype:
    try:
        import ml_dtypes
    except ImportError:
        raise BadRequest("BF16 arrays need the ml_dtypes package to decode to numpy") from None
    dtype: np.dtype = np.dtype(ml_dtypes.bfloat16)
    return dtype
