"""``LimitedHttpProtocol`` under uvicorn with inline ASGI apps: time the server is not reading
is not held against the client, and ordinary HTTP/1.1 (keep-alive, pipelining) is unchanged.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from servekit.server.http_protocol import http_protocol
from servekit.settings import ServerSettings
from support.servers import LiveServer

TIMEOUT = 0.5  # body_timeout and header_timeout, seconds


async def slow_reader(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Wait almost 3 timeouts before reading the body; answer its length."""
    if scope["type"] != "http":
        return
    await asyncio.sleep(2.9 * TIMEOUT)  # asks just before the server's third check
    size, more = 0, True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    body = str(size).encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
def server() -> Iterator[LiveServer]:
    settings = ServerSettings.model_validate({"body_timeout": TIMEOUT, "header_timeout": TIMEOUT})
    live = LiveServer(slow_reader, http=http_protocol(settings), lifespan="off").start()
    yield live
    live.stop()


def reply_of(sock: socket.socket) -> bytes:
    reply = b""
    while chunk := sock.recv(65536):
        reply += chunk
    return reply


def post(size: int, *fields: str) -> bytes:
    lines = ["POST / HTTP/1.1", "Host: t", f"Content-Length: {size}", *fields, "", ""]
    return "\r\n".join(lines).encode()


def test_a_body_the_app_is_slow_to_read_is_not_cut(server: LiveServer) -> None:
    size = 4 * 1024 * 1024  # far more than uvicorn buffers before it stops reading
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(post(size, "Connection: close") + b"x" * size)
        reply = reply_of(sock)
    assert reply.startswith(b"HTTP/1.1 200 "), reply[:200]
    assert reply.endswith(str(size).encode())


def test_a_client_waiting_for_100_continue_is_not_cut(server: LiveServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(post(5, "Expect: 100-continue", "Connection: close"))
        assert sock.recv(65536).startswith(b"HTTP/1.1 100 Continue")
        time.sleep(0.4 * TIMEOUT)  # within body_timeout of being asked
        sock.sendall(b"hello")
        reply = reply_of(sock)
    assert reply.startswith(b"HTTP/1.1 200 "), reply[:200]
    assert reply.endswith(b"5")


def test_pipelined_and_kept_alive_requests_are_all_answered(server: LiveServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(post(3) + b"abc" + post(2) + b"de")
        sock.sendall(post(1, "Connection: close") + b"f")
        reply = reply_of(sock)
    assert reply.count(b"HTTP/1.1 200 ") == 3, reply
    assert reply.endswith(b"1")
