"""OneSendTransport: a response's head leaves with its body, in one write to the socket."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from typing import Any

from servekit.server.one_send import OneSendTransport


@dataclass
class Cycle:
    """The two flags of uvicorn's request cycle the wrapper reads."""

    response_started: bool = False
    response_complete: bool = False


@dataclass
class Owner:
    cycle: Cycle | None = None


class Recording:
    """A real transport whose writes are also recorded."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self.transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


async def connected() -> tuple[Recording, socket.socket]:
    """A transport on one end of a socket pair; the other end to read what it sent."""
    ours, peer = socket.socketpair()
    transport, _ = await asyncio.get_running_loop().connect_accepted_socket(asyncio.Protocol, ours)
    peer.settimeout(5)
    return Recording(transport), peer  # type: ignore[arg-type]


def received(peer: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = peer.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_head_and_body_go_out_in_one_write() -> None:
    async def main() -> None:
        recording, peer = await connected()
        owner = Owner(Cycle())
        wrapped = OneSendTransport(recording, owner)  # type: ignore[arg-type]
        owner.cycle.response_started = True  # type: ignore[union-attr]
        wrapped.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        assert recording.writes == []  # held for the body
        wrapped.write(b"{}")
        owner.cycle.response_complete = True  # type: ignore[union-attr]
        assert recording.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
        # the next response on the same connection is held again, once
        owner.cycle = Cycle(response_started=True)
        wrapped.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        wrapped.write(b"1\r\na\r\n")
        wrapped.write(b"0\r\n\r\n")  # a later chunk of the same response: straight through
        assert recording.writes[1:] == [
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\n",
            b"0\r\n\r\n",
        ]
        total = sum(len(w) for w in recording.writes)
        assert received(peer, total) == b"".join(recording.writes)
        wrapped.close()
        peer.close()

    asyncio.run(main())


def test_writes_outside_a_started_response_pass_straight_through() -> None:
    async def main() -> None:
        recording, peer = await connected()
        owner = Owner(None)
        wrapped = OneSendTransport(recording, owner)  # type: ignore[arg-type]
        wrapped.write(b"HTTP/1.1 503 Service Unavailable\r\n\r\n")  # no request cycle yet
        owner.cycle = Cycle()
        wrapped.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # the app asked for the body
        assert recording.writes == [
            b"HTTP/1.1 503 Service Unavailable\r\n\r\n",
            b"HTTP/1.1 100 Continue\r\n\r\n",
        ]
        wrapped.close()
        peer.close()

    asyncio.run(main())


def test_closing_flushes_a_held_head() -> None:
    """An app that fails between the head and the body: the client still gets the head."""

    async def main() -> None:
        recording, peer = await connected()
        owner = Owner(Cycle(response_started=True))
        wrapped = OneSendTransport(recording, owner)  # type: ignore[arg-type]
        head = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n"
        wrapped.write(head)
        wrapped.close()
        await asyncio.sleep(0.05)
        assert received(peer, len(head) + 1) == head  # then end of stream
        peer.close()

    asyncio.run(main())
