"""Virtex-style messages: ``HttpMessage(data=[x1, …, xn])``, one element per item.

Elements are JSON values, or ``bytes`` (what the ``servekit.codecs`` encoders return): on
the wire a bytes element travels as ``{"__bytes__": "<base64>"}`` and comes back as bytes.
As in Virtex, ``message.json`` is the JSON string and ``HttpMessage(**json.loads(text))``
rebuilds the message (wrapped bytes elements are unwrapped by the constructor).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

import orjson

from servekit.errors import BadRequest

_BYTES_KEY = "__bytes__"


def _wire(element: Any) -> Any:
    if isinstance(element, (bytes, bytearray, memoryview)):
        return {_BYTES_KEY: base64.b64encode(element).decode("ascii")}
    return element


def _unwire(element: Any) -> Any:
    if isinstance(element, dict) and len(element) == 1 and _BYTES_KEY in element:
        try:
            return base64.b64decode(element[_BYTES_KEY], validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise BadRequest(f"element {{{_BYTES_KEY!r}: ...}} is not valid base64") from None
    return element


class HttpMessage:
    """A list of elements sent to (or received from) an ``http_server``.

    ``encode(fn)`` / ``decode(fn)`` apply ``fn`` to each element in place and return the
    message; ``validate()`` checks every element is JSON-serialisable; ``json`` is the body
    as a JSON string. Elements given as ``{"__bytes__": "<base64>"}`` (the wire form of
    bytes) become bytes, so ``HttpMessage(**orjson.loads(message.json))`` has the same data.
    """

    def __init__(self, data: list[Any] | None = None, **fields: Any) -> None:
        self.data: list[Any] = [_unwire(x) for x in data] if data is not None else []
        self.fields = fields

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        return f"HttpMessage(data=<{len(self.data)} elements>)"

    def encode(self, fn: Callable[[Any], Any]) -> HttpMessage:
        self.data = [fn(x) for x in self.data]
        return self

    def decode(self, fn: Callable[[Any], Any]) -> HttpMessage:
        self.data = [fn(x) for x in self.data]
        return self

    def validate(self) -> None:
        """Raise ``BadRequest`` naming the first element that is not JSON-serialisable."""
        for index, element in enumerate(self.data):
            try:
                orjson.dumps(_wire(element))
            except TypeError as exc:
                raise BadRequest(
                    f"element {index} of the message ({type(element).__name__}) is not"
                    f" JSON-serialisable: {exc}; encode it first, e.g. message.encode(encode_numpy)"
                ) from None

    @property
    def json(self) -> str:
        """The body as a JSON string (bytes elements wrapped as base64), as Virtex's ``.json``."""
        return self.to_bytes().decode()

    def to_bytes(self) -> bytes:
        """The body as UTF-8 JSON bytes; ``BadRequest`` names an element that is not JSON."""
        doc = {**self.fields, "data": [_wire(x) for x in self.data]}
        try:
            return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
        except TypeError:
            self.validate()
            raise

    @classmethod
    def from_bytes(cls, body: bytes) -> HttpMessage:
        """Parse a request/response body; ``BadRequest`` if it is not ``{"data": [...]}``."""
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"message body is not valid JSON: {exc}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
            raise BadRequest('message body must be a JSON object with a "data" list')
        message = cls(data=doc.pop("data"))
        message.fields = doc  # not as keywords: a key such as "self" must not break parsing
        return message
