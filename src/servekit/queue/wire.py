"""The EAS queue messages (``queueservice.proto``) in protobuf wire format, without a runtime.

``DataFrameProto`` = {1: index uint64, 2: tags map<string,string>, 3: data bytes,
4: message string}; ``DataFrameListProto`` = {1: repeated DataFrameProto}. Encoding follows
protobuf's rules for proto3 (default values omitted, fields in number order); decoding accepts
any field order, repeats (last one wins) and unknown fields (a known number with another wire
type counts as unknown), like protobuf does; strings must be UTF-8.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from servekit.queue.record import Record

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


class WireError(ValueError):
    """The bytes are not a valid message of the expected type."""


@dataclass(slots=True)
class DataFrame:
    """A decoded ``DataFrameProto``."""

    index: int = 0
    data: bytes = b""
    tags: dict[str, str] = field(default_factory=dict)
    message: str = ""


def _varint(value: int) -> bytes:
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _len_field(tag: int, payload: bytes) -> bytes:
    return bytes((tag,)) + _varint(len(payload)) + payload


def encode_frame(
    index: int, data: bytes, tags: Mapping[str, str] | None = None, message: str = ""
) -> bytes:
    """One ``DataFrameProto``."""
    parts = []
    if index:
        parts.append(b"\x08" + _varint(index))
    for key, value in (tags or {}).items():
        entry = b""
        if key:
            entry += _len_field(0x0A, key.encode())
        if value:
            entry += _len_field(0x12, value.encode())
        parts.append(_len_field(0x12, entry))
    if data:
        parts.append(_len_field(0x1A, data))
    if message:
        parts.append(_len_field(0x22, message.encode()))
    return b"".join(parts)


def encode_record(record: Record, *, index_only: bool = False) -> bytes:
    """A record as EAS sends it: its tags plus ``requestId``; no data if ``index_only``."""
    tags = dict(record.tags)
    if record.request_id:
        tags["requestId"] = record.request_id
    return encode_frame(record.index, b"" if index_only else record.data, tags)


def encode_list(frames: Iterable[bytes]) -> bytes:
    """A ``DataFrameListProto`` of already encoded frames."""
    return b"".join(_len_field(0x0A, f) for f in frames)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise WireError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result & 0xFFFFFFFFFFFFFFFF, pos
        shift += 7
        if shift >= 70:
            raise WireError("varint too long")


def _fields(buf: bytes) -> Iterable[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) for each field; lengths checked, unknowns included."""
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, kind = key >> 3, key & 7
        if number == 0:
            raise WireError("field number 0")
        if kind == _VARINT:
            value, pos = _read_varint(buf, pos)
            yield number, kind, value
        elif kind == _LEN:
            size, pos = _read_varint(buf, pos)
            if pos + size > len(buf):
                raise WireError("length-delimited field runs past the end")
            yield number, kind, buf[pos : pos + size]
            pos += size
        elif kind in (_I64, _I32):
            pos += 8 if kind == _I64 else 4
            if pos > len(buf):
                raise WireError("fixed-width field runs past the end")
        else:
            raise WireError(f"unsupported wire type {kind}")


def _text(raw: int | bytes, what: str) -> str:
    if not isinstance(raw, bytes):
        raise WireError(f"{what} must be length-delimited")
    try:
        return raw.decode()
    except UnicodeDecodeError as exc:
        raise WireError(f"{what} is not UTF-8") from exc


def decode_frame(buf: bytes) -> DataFrame:
    """Parse one ``DataFrameProto``; ``WireError`` if it is not one."""
    frame = DataFrame()
    for number, kind, value in _fields(buf):
        if number == 1 and kind == _VARINT:
            assert isinstance(value, int)
            frame.index = value
        elif number == 2 and kind == _LEN:
            assert isinstance(value, bytes)
            key = val = ""
            for n, k, v in _fields(value):
                if n == 1 and k == _LEN:
                    key = _text(v, "tag key")
                elif n == 2 and k == _LEN:
                    val = _text(v, "tag value")
            frame.tags[key] = val
        elif number == 3 and kind == _LEN:
            assert isinstance(value, bytes)
            frame.data = value
        elif number == 4 and kind == _LEN:
            frame.message = _text(value, "message")
        # anything else, a known number with another wire type included, is unknown: skipped
    return frame


def decode_list(buf: bytes) -> list[DataFrame]:
    """Parse a ``DataFrameListProto``."""
    frames = []
    for number, _, value in _fields(buf):
        if number == 1 and isinstance(value, bytes):
            frames.append(decode_frame(value))
    return frames
