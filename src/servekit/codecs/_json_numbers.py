"""Large JSON arrays of numbers read straight from a request body's bytes.

``orjson.loads`` builds a Python object per element: 57 MiB of small integers become about
750 MiB of ints before any array exists. For large bodies the v2 decoder instead cuts each
input's ``"data": [...]`` that holds no string or object (numbers, maybe ``true``, ``false``,
``null``) out of the body (:func:`cut_number_arrays`), parses the small rest with orjson, and
converts each cut array a piece at a time (:meth:`NumberArray.pieces`), so only one piece's
objects ever exist.

A piece is checked, not trusted: its bracket/comma skeleton must be that of a JSON array
(nested to any depth, no empty arrays) and its values are parsed by orjson itself, so each
means exactly what it means in the one-shot parse.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

__all__ = ["MalformedArray", "NotPlain", "NumberArray", "cut_number_arrays"]

#: A cut array is converted a piece of about this many bytes at a time (split at a comma).
PIECE_BYTES = 1 << 19
#: Arrays nested deeper than this are left to orjson (its own depth limit then applies).
MAX_DEPTH = 64
_SCAN_BYTES = 1 << 20

_KEY = re.compile(rb'"data"[ \t\n\r]*:[ \t\n\r]*\[')
# Numbers, and the words true, false, null (valid, though wrong for most datatypes) and NaN or
# Infinity (invalid): a word inside an array is reported as the input's problem.
_TOKEN_CHARS = b"-+.0123456789" + bytes(range(ord("a"), ord("z") + 1))
_TOKEN_CHARS += _TOKEN_CHARS[13:].upper()
_WHITESPACE = b" \t\n\r"
_ARRAY_RUN = re.compile(b"[" + re.escape(_TOKEN_CHARS + b",[]" + _WHITESPACE) + b"]*")
# The skeleton keeps brackets and commas, one x per token character, and drops whitespace.
_SKELETON = bytes.maketrans(_TOKEN_CHARS, b"x" * len(_TOKEN_CHARS))
# Flat text keeps numbers, commas and whitespace: brackets become spaces, so they still part
# tokens ("[1][2]" -> " 1  2 ", which orjson refuses).
_FLAT = bytes.maketrans(b"[]", b"  ")
# Of the 16 pairs of skeleton symbols these may not follow each other ("[]" is valid JSON,
# an empty array: NotPlain, read whole).
_BAD_PAIRS = (b"[,", b",]", b",,", b"x[", b"][", b"]x")
_MARK = "\x00servekit-number-array:"

Buffer = bytes | bytearray


class MalformedArray(ValueError):
    """The cut array is not valid JSON (its message says where)."""


class NotPlain(Exception):
    """The array is valid JSON this reader does not take (an empty array inside): read it
    whole with :meth:`NumberArray.load`."""


@dataclass(frozen=True)
class NumberArray:
    """A JSON array of numbers (any nesting), ``buf[start:end]``, not parsed yet; it may hold
    ``true``, ``false`` and ``null`` too, and is not known to be valid."""

    buf: Buffer
    start: int
    end: int

    def elements(self) -> int:
        """The number of elements, if the array is well formed."""
        return self.buf.count(b",", self.start, self.end) + 1

    def has_booleans(self) -> bool:
        """Whether ``true`` or ``false`` occurs in the array."""
        buf, start, end = self.buf, self.start, self.end
        return buf.find(b"true", start, end) >= 0 or buf.find(b"false", start, end) >= 0

    def pieces(self) -> Iterator[list[Any]]:
        """The elements in order, a flat list per piece; raises ``MalformedArray`` or
        ``NotPlain`` at the first piece that is not well formed."""
        buf, start, end = self.buf, self.start, self.end
        a = start
        while a < end:
            b = buf.find(b",", a + PIECE_BYTES, end)
            b = end if b < 0 else b
            # the skeleton reaches the commas on both sides: no pair is split between pieces
            skeleton = buf[max(start, a - 1) : min(end, b + 1)].translate(_SKELETON, _WHITESPACE)
            if b"[]" in skeleton:
                raise NotPlain
            for pair in _BAD_PAIRS:
                if pair in skeleton:
                    what = pair.decode().replace("x", "a value ")
                    raise MalformedArray(
                        f"is not a well-formed JSON array: {what!r} between bytes {a} and {b} "
                        "of the body"
                    )
            try:
                # no whitespace after "[": orjson then sizes its buffers for pretty-printed
                # JSON, and runs out of them on dense numbers ("failed to allocate memory")
                yield orjson.loads(b"[" + buf[a:b].translate(_FLAT).lstrip(_WHITESPACE) + b"]")
            except orjson.JSONDecodeError as exc:
                raise MalformedArray(
                    f"holds a malformed value between bytes {a} and {b} of the body ({exc})"
                ) from None
            a = b + 1

    def load(self) -> Any:
        """The whole array parsed by orjson: nested lists of Python values."""
        try:
            return orjson.loads(memoryview(self.buf)[self.start : self.end])
        except orjson.JSONDecodeError as exc:
            raise MalformedArray(f"is not valid JSON ({exc})") from None


def cut_number_arrays(
    buf: Buffer, end: int, min_bytes: int
) -> tuple[bytes, dict[str, NumberArray]] | None:
    """Cut every ``"data": [...]`` array of ``buf[:end]`` holding no string or object and at least
    ``min_bytes`` long; returns the rest of the document, each array replaced by a JSON
    string that maps to it, or ``None`` when nothing was cut.

    The strings carry a random nonce, so a client cannot forge one; the caller must check
    each landed where an input's ``data`` belongs (a match may be a key ending in ``data``).
    """
    nonce = os.urandom(8).hex()
    view = memoryview(buf)
    parts: list[Any] = []
    arrays: dict[str, NumberArray] = {}
    pos = last = 0
    while (match := _KEY.search(buf, pos, end)) is not None:
        opening = match.end() - 1
        closing = _array_end(buf, opening, end)
        if closing - opening < min_bytes:  # too small to matter, or not numbers only
            pos = match.end()
            continue
        mark = f"{_MARK}{nonce}:{len(arrays)}"
        parts += [view[last:opening], orjson.dumps(mark)]
        arrays[mark] = NumberArray(buf, opening, closing)
        pos = last = closing
    if not arrays:
        return None
    parts.append(view[last:end])
    return b"".join(parts), arrays


def _array_end(buf: Buffer, opening: int, end: int) -> int:
    """Just past the ``]`` closing the array at ``opening``, if the array holds no string or
    object and is nested at most ``MAX_DEPTH`` deep; else -1."""
    run_end = _array_run_end(buf, opening, end)
    closing = buf.find(b"]", opening, run_end)
    if closing < 0:
        return -1
    if buf.find(b"[", opening + 1, closing) < 0:  # flat: the first "]" closes it
        return closing + 1
    depth = 0
    pos = opening
    while pos < run_end:
        stop = min(pos + _SCAN_BYTES, run_end)
        chars = np.frombuffer(buf, np.uint8, stop - pos, pos)
        steps = (chars == ord("[")).astype(np.int32) - (chars == ord("]"))
        levels = np.cumsum(steps, dtype=np.int32)
        levels += depth
        closed = np.flatnonzero(levels == 0)
        reach = levels[: closed[0]] if closed.size else levels
        if reach.size and reach.max() > MAX_DEPTH:
            return -1
        if closed.size:
            return pos + int(closed[0]) + 1
        depth = int(levels[-1])
        pos = stop
    return -1


def _array_run_end(buf: Buffer, pos: int, end: int) -> int:
    """The end of the run of token, bracket, comma and whitespace characters from ``pos``
    (scanned a window at a time: one regex call holds the GIL)."""
    while pos < end:
        stop = min(pos + _SCAN_BYTES, end)
        match = _ARRAY_RUN.match(buf, pos, stop)
        assert match is not None  # a run of zero characters still matches
        if match.end() < stop:
            return match.end()
        pos = stop
    return end
