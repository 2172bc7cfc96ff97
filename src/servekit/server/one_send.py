"""A transport that sends a response's head together with its body: one ``send`` per answer.

uvicorn writes the status line and headers when the app sends ``http.response.start`` and the
body when it sends ``http.response.body``: two writes, so two ``send`` system calls (and two
TCP segments) for every small response, which on the hot path cost as much as the rest of
servekit's work for a request. This wrapper holds the head back until the first body write
of the same response and writes both at once. Anything else (a ``100 Continue``, a refusal
written before any response started, later chunks of a streamed body) passes straight
through; closing the transport flushes a held head first.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol


class _Cycle(Protocol):
    response_started: bool
    response_complete: bool


class _HasCycle(Protocol):
    cycle: _Cycle | None


class OneSendTransport:
    """Wraps ``transport`` for ``protocol`` (uvicorn's, with its current ``cycle``)."""

    __slots__ = ("_held", "_held_for", "_protocol", "_transport")

    def __init__(self, transport: asyncio.Transport, protocol: _HasCycle) -> None:
        self._transport = transport
        self._protocol = protocol
        self._held: bytes | None = None
        self._held_for: object = None  # the response whose head was held (one per response)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + bytes(data))
            return
        cycle = self._protocol.cycle
        if (
            cycle is not None
            and cycle.response_started
            and not cycle.response_complete
            and cycle is not self._held_for
        ):
            self._held, self._held_for = bytes(data), cycle  # the head: its body comes next
            return
        self._transport.write(data)

    def writelines(self, chunks: Any) -> None:
        self.write(b"".join(chunks))

    def close(self) -> None:
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
