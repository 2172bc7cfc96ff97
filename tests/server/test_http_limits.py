"""HTTP bounds of ``servekit serve``: head size and count, head and body timeouts, connections.

Each server is a real ``python -m servekit serve`` subprocess on loopback, so the memory
measured (``VmRSS`` in ``/proc/<pid>/status``) is the server's own. Abusive clients are raw
sockets; after each abuse a normal request must still be served.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
TARGET = "tests/server/cli_models.py:Echo"
STARTUP_TIMEOUT = 30.0
TIMEOUT = 1.0  # header_timeout and body_timeout of the fast server, seconds
MAX_CONNECTIONS = 8  # of the capped server
MiB = 1024 * 1024


class Served:
    """A ``servekit serve`` subprocess and what the tests read from it."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc = proc
        self.port = port
        self.log = log
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10.0)

    def rss(self) -> int:
        """The server process's resident memory, in bytes."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS line")

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10.0)

    def assert_serving(self) -> None:
        body = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 1], "data": [2.0]}]}
        response = self.client.post("/v2/models/echo/infer", json=body)
        assert response.status_code == 200, response.text
        assert response.json()["outputs"][0]["data"] == [2.0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(tmp: Path, *flags: str) -> Iterator[Served]:
    port = free_port()
    log = tmp / f"server-{port}.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "servekit", "serve", TARGET, "--port", str(port), *flags],
            cwd=ROOT,
            env={**os.environ, "SERVEKIT_LOG_LEVEL": "warning"},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    served = Served(proc, port, log)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            assert proc.poll() is None, f"server exited:\n{log.read_text(errors='replace')}"
            try:
                if served.client.get("/v2/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server not ready in time"
            time.sleep(0.02)
        yield served
    finally:
        served.client.close()
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Default head limits (8 KiB a line, 32 KiB in all, 100 fields); 1 s timeouts."""
    tmp = tmp_path_factory.mktemp("limits")
    timeouts = ("--header-timeout", str(TIMEOUT), "--body-timeout", str(TIMEOUT))
    yield from start(tmp, *timeouts)


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("capped")
    yield from start(tmp, "--max-connections", str(MAX_CONNECTIONS))


def read_reply(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything the server sends until it closes the connection."""
    sock.settimeout(timeout)
    reply = b""
    try:
        while chunk := sock.recv(65536):
            reply += chunk
    except ConnectionResetError:
        pass
    return reply


def send_all(sock: socket.socket, data: bytes) -> None:
    """Send ``data``; the server may answer and close before it has read all of it."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        sock.sendall(data)


def exchange(served: Served, request: bytes) -> bytes:
    with served.connect() as sock:
        send_all(sock, request)
        return read_reply(sock)


def head(*fields: str, target: str = "/v2/health/live") -> bytes:
    lines = [f"GET {target} HTTP/1.1", "Host: t", *fields, "", ""]
    return "\r\n".join(lines).encode()


def status_of(reply: bytes) -> int:
    assert reply.startswith(b"HTTP/1.1 "), f"not an HTTP reply: {reply[:80]!r}"
    return int(reply[9:12])


def test_a_header_field_over_the_line_limit_is_431_naming_the_setting(server: Served) -> None:
    reply = exchange(server, head("X-Big: " + "a" * 100_000))
    assert status_of(reply) == 431
    assert b"max_header_line_size" in reply
    assert b"connection: close" in reply
    server.assert_serving()


def test_more_header_fields_than_max_headers_is_431(server: Served) -> None:
    reply = exchange(server, head(*(f"X-{i}: v" for i in range(2000))))
    assert status_of(reply) == 431
    assert b"more than 100 header fields (max_headers)" in reply
    server.assert_serving()


def test_a_head_over_the_total_limit_is_431_though_each_line_fits(server: Served) -> None:
    reply = exchange(server, head(*(f"X-{i}: " + "a" * 4000 for i in range(10))))
    assert status_of(reply) == 431
    assert b"max_header_size" in reply
    server.assert_serving()


def test_a_url_over_the_line_limit_is_414(server: Served) -> None:
    reply = exchange(server, head(target="/v2/" + "a" * 20_000))
    assert status_of(reply) == 414
    assert b"max_header_line_size" in reply
    server.assert_serving()


def test_heads_within_the_limits_are_served(server: Served) -> None:
    fields = [f"X-{i}: " + "a" * 250 for i in range(98)]  # ~26 KiB; 100 with Host, Connection
    reply = exchange(server, head(*fields, "Connection: close"))
    assert status_of(reply) == 200, reply[:200]


def test_unterminated_header_lines_are_cut_and_hold_no_memory(server: Served) -> None:
    line = b"GET /v2/health/live HTTP/1.1\r\nX-Long: " + b"a" * MiB  # never terminated
    with server.connect() as sock:  # warm up the refusal path
        send_all(sock, line)
    time.sleep(0.2)
    before = server.rss()
    socks = [server.connect() for _ in range(8)]
    try:
        for sock in socks:
            send_all(sock, line)
        time.sleep(0.5)  # what the server kept of it is in its memory by now
        grown = server.rss() - before
        assert grown < 4 * MiB, f"RSS grew by {grown / MiB:.1f} MiB for 8 1 MiB header lines"
        replies = [read_reply(sock) for sock in socks]
    finally:
        for sock in socks:
            sock.close()
    assert [status_of(reply) for reply in replies] == [431] * 8
    server.assert_serving()


def test_slowloris_head_is_answered_408_and_closed_after_header_timeout(
    server: Served,
) -> None:
    request = head("X-Slow: " + "a" * 100)
    with server.connect() as sock:
        began = time.monotonic()
        sock.settimeout(0.2)
        reply = b""
        for byte in request:  # a byte every 0.2 s; the head would take ~30 s
            try:
                sock.sendall(bytes([byte]))
                reply = sock.recv(65536)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            break
        reply += read_reply(sock)
        waited = time.monotonic() - began
    assert status_of(reply) == 408
    assert b"header_timeout" in reply
    assert TIMEOUT * 0.9 <= waited < TIMEOUT + 2.0
    server.assert_serving()


def test_a_connection_that_sends_nothing_is_closed_after_header_timeout(
    server: Served,
) -> None:
    socks = [server.connect() for _ in range(50)]
    began = time.monotonic()
    try:
        replies = [read_reply(sock) for sock in socks]
    finally:
        for sock in socks:
            sock.close()
    assert time.monotonic() - began < TIMEOUT + 2.0
    assert {status_of(reply) for reply in replies} == {408}
    server.assert_serving()


def post_head(length: str) -> bytes:
    return (
        f"POST /v2/models/echo/infer HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        f"{length}\r\n\r\n"
    ).encode()


@pytest.mark.parametrize(
    "start",
    [
        post_head(f"Content-Length: {50 * MiB}") + b"[" * 1024,
        post_head("Transfer-Encoding: chunked") + b"400\r\n" + b"[" * 1024 + b"\r\n",
    ],
    ids=["content-length", "chunked"],
)
def test_a_stalled_body_is_answered_408_and_closed_after_body_timeout(
    server: Served, start: bytes
) -> None:
    with server.connect() as sock:
        sock.sendall(start)
        began = time.monotonic()
        reply = read_reply(sock)
        waited = time.monotonic() - began
    assert status_of(reply) == 408
    assert b"body_timeout" in reply
    assert TIMEOUT * 0.9 <= waited < TIMEOUT + 2.0
    server.assert_serving()


def test_a_slow_body_that_keeps_arriving_is_not_cut(server: Served) -> None:
    body = b'{"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 1], "data": [5.0]}]}'
    pieces = [body[i : i + 20] for i in range(0, len(body), 20)]
    with server.connect() as sock:
        sock.sendall(post_head(f"Content-Length: {len(body)}\r\nConnection: close"))
        for piece in pieces:  # 5 pieces, 0.5 s apart: 2 s in all, never 1 s without bytes
            time.sleep(TIMEOUT / 2)
            sock.sendall(piece)
        reply = read_reply(sock)
    assert status_of(reply) == 200, reply[:300]


def test_connections_beyond_max_connections_are_answered_503_and_closed(
    capped: Served,
) -> None:
    capped.client.close()  # its kept-alive connection would count
    socks = [capped.connect() for _ in range(MAX_CONNECTIONS + 5)]
    try:
        answered: list[socket.socket] = []
        deadline = time.monotonic() + 3.0
        while len(answered) < 5 and time.monotonic() < deadline:
            answered, _, _ = select.select(socks, [], [], 0.1)
        time.sleep(0.2)  # a sixth answer, if wrongly sent, arrives too
        answered, _, _ = select.select(socks, [], [], 0)
        refused = [read_reply(sock) for sock in answered]
    finally:
        for sock in socks:
            sock.close()
    assert len(refused) == 5
    assert {status_of(reply) for reply in refused} == {503}
    assert b"max_connections" in refused[0]
    assert b"retry-after: 1" in refused[0]
    capped.client = httpx.Client(base_url=f"http://127.0.0.1:{capped.port}", timeout=10.0)
    wait_for_served(capped)


def wait_for_served(served: Served, timeout: float = 5.0) -> None:
    """Closed connections leave the server's count soon after: a request then succeeds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            served.assert_serving()
            return
        except (AssertionError, httpx.TransportError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_connections_under_the_cap_are_all_served(capped: Served) -> None:
    clients = [
        httpx.Client(base_url=f"http://127.0.0.1:{capped.port}", timeout=10.0)
        for _ in range(MAX_CONNECTIONS - 1)
    ]
    try:
        for client in clients:
            assert client.get("/v2/health/live").status_code == 200
        for client in clients:  # each still holds its connection: the next request reuses it
            assert client.get("/v2/health/ready").status_code == 200
    finally:
        for client in clients:
            client.close()
