"""Length-prefixed JSON frames, as dubhe-sdk's TCP protocol sends them.

A frame is a 4-byte big-endian length, then that many bytes of UTF-8 JSON. Requests carry
``req_type`` (0 heartbeat, 1 train, 2 predict/evaluate, 3 inference), ``request_number`` and
``data``; answers carry ``flag`` (1 success, 2 failure), ``message`` and, for inference,
``request_number`` and ``data``.

:class:`FrameDecoder` takes bytes as they arrive and hands back every complete message in
order. A frame whose JSON is bad comes back as a :class:`BadFrame` in its place, so its
neighbours still go through; a length above the limit comes back as :class:`FrameTooLarge`
and ends the stream, since what follows can no longer be told apart. A server that decodes
only as fast as it can answer uses :meth:`FrameDecoder.append` and
:meth:`FrameDecoder.next_frame` (one frame and its length at a time) and reads the next frame's
length from :attr:`FrameDecoder.pending_size` once its header is in.
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import Any

import orjson

from servekit.errors import BadRequest, ServekitError

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "FLAG_FAILURE",
    "FLAG_SUCCESS",
    "BadFrame",
    "FrameDecoder",
    "FrameError",
    "FrameTimeout",
    "FrameTooLarge",
    "ReqType",
    "TruncatedFrame",
    "decode_frame",
    "encode_frame",
    "failure",
]

DEFAULT_MAX_FRAME_SIZE = 16 * 1024 * 1024
FLAG_SUCCESS = 1
FLAG_FAILURE = 2
_LENGTH = struct.Struct("!I")


class ReqType(IntEnum):
    """dubhe-sdk request types."""

    HEARTBEAT = 0
    TRAIN = 1
    PREDICT = 2
    INFERENCE = 3


class FrameError(BadRequest):
    """A frame that cannot be read; ``fatal`` means the stream cannot go on after it."""

    fatal = False


class BadFrame(FrameError):
    """A complete frame whose body is not UTF-8 JSON; the stream goes on."""


class FrameTooLarge(FrameError):
    """A frame longer than the limit; the stream ends."""

    status = 413
    fatal = True


class FrameTimeout(FrameError):
    """A frame that did not arrive whole in time; the stream ends."""

    status = 408
    fatal = True


class TruncatedFrame(FrameError):
    """The stream ended in the middle of a frame."""

    fatal = True


def encode_frame(message: Any, *, max_size: int = DEFAULT_MAX_FRAME_SIZE) -> bytes:
    """One frame holding ``message`` as JSON (numpy arrays become lists)."""
    body = orjson.dumps(message, option=orjson.OPT_SERIALIZE_NUMPY)
    if len(body) > max_size:
        raise FrameTooLarge(f"frame of {len(body)} bytes is over the {max_size}-byte limit")
    return _LENGTH.pack(len(body)) + body


def decode_frame(data: bytes, *, max_size: int = DEFAULT_MAX_FRAME_SIZE) -> Any:
    """The message of exactly one complete frame."""
    decoder = FrameDecoder(max_size)
    items = decoder.feed(data)
    decoder.eof()
    if len(items) != 1:
        raise BadFrame(f"expected exactly one frame, got {len(items)}")
    if isinstance(items[0], FrameError):
        raise items[0]
    return items[0]


class FrameDecoder:
    """Incremental decoder: ``feed`` bytes, get back complete messages (or frame errors)."""

    def __init__(self, max_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        self.max_size = max_size
        self._buffer = bytearray()
        self._closed = False

    @property
    def buffered(self) -> int:
        """Bytes received that do not complete a frame yet."""
        return len(self._buffer)

    @property
    def pending_size(self) -> int | None:
        """Length (header included) of the next frame, once its header is in."""
        if len(self._buffer) < 4 or self._closed:
            return None
        return 4 + int(_LENGTH.unpack_from(self._buffer)[0])

    def feed(self, data: bytes | bytearray | memoryview) -> list[Any]:
        """Add bytes; return the messages they complete (a ``FrameError`` for each bad one)."""
        self.append(data)
        out = []
        while (item := self.next_frame()) is not None:
            out.append(item[0])
        return out

    def append(self, data: bytes | bytearray | memoryview) -> None:
        """Add bytes without decoding them: :meth:`next_frame` takes frames one at a time."""
        if self._closed:
            raise FrameTooLarge("the stream ended at an oversized frame")
        self._buffer += data

    def next_frame(self) -> tuple[Any, int] | None:
        """The next complete message and its frame's length (header included), or ``None``."""
        buf = self._buffer
        if len(buf) < 4 or self._closed:
            return None
        (size,) = _LENGTH.unpack_from(buf)
        if size > self.max_size:
            self._closed = True
            buf.clear()
            error = FrameTooLarge(f"frame of {size} bytes is over the {self.max_size}-byte limit")
            return error, 0
        end = 4 + size
        if end > len(buf):
            return None
        message = _parse(buf[4:end])
        del buf[:end]
        return message, end

    def eof(self) -> None:
        """The peer closed: raise ``TruncatedFrame`` if a frame was left half-sent."""
        if self._buffer and not self._closed:
            raise TruncatedFrame(f"connection closed inside a frame ({len(self._buffer)} bytes)")


def _parse(body: bytearray) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return BadFrame(f"frame body is not UTF-8 JSON: {exc}")


def failure(error: ServekitError, number: Any) -> dict[str, Any]:
    """The failure answer of both TCP doors (servekit's, dubhe's jobs): ``flag`` 2, the
    message, and ``code``, the error's HTTP status."""
    return {
        "flag": FLAG_FAILURE,
        "message": error.message,
        "request_number": number,
        "code": error.status,
    }
