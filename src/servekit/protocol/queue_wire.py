"""The EAS queue messages (``queue_pb/queueservice.proto``) to and from bytes.

A thin layer over the generated protobuf code: decoded records come back as plain
:class:`DataFrame` values, and every decoding failure is a :class:`WireError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from google.protobuf.message import DecodeError

from servekit.protocol.queue_pb.queueservice_pb2 import DataFrameListProto, DataFrameProto

__all__ = [
    "DataFrame",
    "WireError",
    "decode_frame",
    "decode_list",
    "encode_frame",
    "encode_list",
    "encode_record",
]


class WireError(ValueError):
    """The bytes are not a valid message of the expected type."""


@dataclass(slots=True)
class DataFrame:
    """A decoded ``DataFrameProto``."""

    index: int = 0
    data: bytes = b""
    tags: dict[str, str] = field(default_factory=dict)
    message: str = ""


class RecordLike(Protocol):
    """What :func:`encode_record` reads from a queue record."""

    @property
    def index(self) -> int: ...
    @property
    def data(self) -> bytes: ...
    @property
    def tags(self) -> Mapping[str, str]: ...
    @property
    def request_id(self) -> str: ...


def encode_frame(
    index: int, data: bytes, tags: Mapping[str, str] | None = None, message: str = ""
) -> bytes:
    """One ``DataFrameProto``."""
    proto = DataFrameProto(index=index, data=data, tags=tags or {}, message=message)
    return proto.SerializeToString()


def encode_record(record: RecordLike, *, index_only: bool = False) -> bytes:
    """A record as EAS sends it: its tags plus ``requestId``; no data if ``index_only``."""
    tags = dict(record.tags)
    if record.request_id:
        tags["requestId"] = record.request_id
    return encode_frame(record.index, b"" if index_only else record.data, tags)


def encode_list(frames: Iterable[bytes]) -> bytes:
    """A ``DataFrameListProto`` of already encoded frames."""
    listing = DataFrameListProto()
    for frame in frames:
        listing.index.add().MergeFromString(frame)
    return listing.SerializeToString()


def decode_frame(buf: bytes) -> DataFrame:
    """Parse one ``DataFrameProto``; ``WireError`` if it is not one."""
    try:
        proto = DataFrameProto.FromString(buf)
    except DecodeError as exc:
        raise WireError(f"not a DataFrameProto: {exc}") from exc
    return _frame(proto)


def decode_list(buf: bytes) -> list[DataFrame]:
    """Parse a ``DataFrameListProto``; ``WireError`` if it is not one."""
    try:
        listing = DataFrameListProto.FromString(buf)
    except DecodeError as exc:
        raise WireError(f"not a DataFrameListProto: {exc}") from exc
    return [_frame(proto) for proto in listing.index]


def _frame(proto: DataFrameProto) -> DataFrame:
    return DataFrame(proto.index, proto.data, dict(proto.tags), proto.message)
