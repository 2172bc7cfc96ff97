"""servekit.client.Transport: framing, pooling, retries, against real loopback servers.

The real servekit door (``door``, see conftest) for everything it can show; a raw TCP
server sending canned bytes for what a correct server never sends (framing edge cases).
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from servekit.client import (
    ConnectError,
    NotFoundError,
    ProtocolError,
    Retry,
    ServiceUnavailable,
    Transport,
    UnauthorizedError,
)

from .conftest import TOKEN, Door, Echo


class CannedServer:
    """A raw TCP server: each connection reads one request head, gets ``reply``, is closed."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.connections = 0
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.listener.settimeout(10)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.stop = threading.Event()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            if self.stop.is_set():
                conn.close()
                return
            with conn:
                self.connections += 1
                conn.settimeout(5)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                if self.reply:
                    conn.sendall(self.reply)

    def __enter__(self) -> CannedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        with socket.create_connection(self.listener.getsockname(), timeout=5):
            pass  # wakes the accept() so the thread sees `stop`
        self.thread.join(timeout=5)
        self.listener.close()


ECHO = "/api/predict/echo"


def test_large_bodies_round_trip_both_ways(door: Door) -> None:
    body = bytes(range(256)) * 4096  # 1 MiB
    with Transport(door.url, token=TOKEN) as transport:
        response = transport.request("POST", ECHO, body)
    assert response.status == 200
    assert response.body == body
    assert response.headers["content-length"] == str(len(body))


def test_chunked_responses_are_reassembled() -> None:
    reply = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    with CannedServer(reply) as server, Transport(server.url) as transport:
        response = transport.request("GET", "/")
    assert response.body == b"hello world"


def test_connections_are_kept_alive_and_reused(door: Door) -> None:
    with Transport(door.url, token=TOKEN) as transport:
        for i in range(20):
            assert transport.request("POST", ECHO, b"%d" % i).body == b"%d" % i
        assert len(transport._idle) == 1


def test_a_connection_the_server_closed_while_idle_is_replaced_silently(start_door) -> None:
    served = start_door([Echo()], timeout_keep_alive=1)
    transport = Transport(served.url, token=TOKEN, retry=Retry(attempts=1))
    with transport:
        assert transport.request("POST", ECHO, b"one").body == b"one"
        time.sleep(1.5)  # the server drops the idle connection after 1 s
        assert transport.request("POST", ECHO, b"two").body == b"two"


def test_bearer_token_passes_a_token_guarded_server(door: Door) -> None:
    with Transport(door.url, token=TOKEN) as transport:
        assert transport.request("POST", ECHO, b"hi").body == b"hi"
    with (
        Transport(door.url, token="nope") as transport,
        pytest.raises(UnauthorizedError) as info,
    ):
        transport.request("POST", ECHO, b"hi")
    assert info.value.status == 401


def test_http_errors_carry_status_and_the_json_error_message(door: Door) -> None:
    with Transport(door.url, token=TOKEN) as transport, pytest.raises(NotFoundError) as info:
        transport.request("GET", "/nowhere")
    assert info.value.status == 404
    assert info.value.message.endswith("no route for GET /nowhere")
    assert b"no route" in info.value.body
    assert info.value.headers["content-type"].startswith("application/json")


def test_send_makes_one_try_and_returns_any_status(door: Door) -> None:
    with Transport(door.url, token=TOKEN) as transport:
        response = transport.send("POST", "/api/predict/warming", b"")
        assert response.status == 503
        with pytest.raises(ServiceUnavailable):
            transport.request("POST", "/api/predict/warming", b"")


def test_a_response_without_length_is_read_until_the_server_closes() -> None:
    reply = b"HTTP/1.0 200 OK\r\nX-A: 1\r\nX-A: 2\r\n\r\nuntil close"
    with CannedServer(reply) as server, Transport(server.url) as transport:
        response = transport.request("GET", "/")
        assert response.body == b"until close"
        assert response.headers["x-a"] == "1, 2"
        assert transport._idle == []


def test_garbage_instead_of_http_is_a_protocol_error_not_retried() -> None:
    sleeps: list[float] = []
    retry = Retry(attempts=2, sleep=sleeps.append)
    with CannedServer(b"SSH-2.0-nope\r\n\r\n") as server:
        transport = Transport(server.url, retry=retry)
        with transport, pytest.raises(ProtocolError, match="invalid HTTP response"):
            transport.request("GET", "/")
        assert server.connections == 1
    assert sleeps == []


def test_a_post_the_server_dropped_after_receiving_it_is_not_resent() -> None:
    with CannedServer(b"") as server:
        transport = Transport(server.url, retry=Retry(attempts=3, sleep=lambda s: None))
        with transport, pytest.raises(ConnectError, match="connection failed") as info:
            transport.request("POST", "/", b"x")
        assert server.connections == 1
    assert info.value.sent is True


def test_a_get_the_server_dropped_is_resent_it_is_idempotent() -> None:
    with CannedServer(b"") as server:
        transport = Transport(server.url, retry=Retry(attempts=3, sleep=lambda s: None))
        with transport, pytest.raises(ConnectError, match="connection failed"):
            transport.request("GET", "/")
        assert server.connections == 3


def test_a_truncated_body_is_a_connect_error() -> None:
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort"
    with CannedServer(reply) as server:
        transport = Transport(server.url, retry=Retry(attempts=1))
        with transport, pytest.raises(ConnectError, match="after 5 of 100 body bytes"):
            transport.request("GET", "/")


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    low = Retry(backoff=0.1, max_backoff=0.5, rand=lambda: 0.0)
    high = Retry(backoff=0.1, max_backoff=0.5, rand=lambda: 0.999)
    assert [low.delay(k) for k in range(1, 6)] == [0.05, 0.1, 0.2, 0.25, 0.25]
    assert [round(high.delay(k), 3) for k in range(1, 4)] == [0.1, 0.2, 0.4]


def test_header_injection_is_refused() -> None:
    transport = Transport("http://127.0.0.1:9")
    with pytest.raises(ValueError, match="CR or LF"):
        transport.request("GET", "/", headers={"X-Evil": "a\r\nHost: other"})


def test_non_http_urls_are_refused() -> None:
    with pytest.raises(ValueError, match="not an http"):
        Transport("ftp://127.0.0.1/")
