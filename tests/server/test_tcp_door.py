"""The TCP frame door: real sockets against a real server on loopback."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

import servekit
from servekit.server import App
from support.servers import LiveServer


class Echo(servekit.Model):
    name = "echo"

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.gate.set()
        self.batches: list[list[Any]] = []

    def predict(self, batch: list[Any]) -> list[Any]:
        self.gate.wait(10)
        self.batches.append(batch)
        return [ValueError("boom") if item == "boom" else {"echo": item} for item in batch]


@pytest.fixture
def door() -> Iterator[tuple[int, Echo, LiveServer]]:
    model = Echo()
    app = App([model], tcp_port=0)
    live = LiveServer(app).start()
    live.call(app.wait_loaded())
    assert app.tcp_port
    yield app.tcp_port, model, live
    model.gate.set()
    live.stop()


def send_frame(sock: socket.socket, doc: Any) -> None:
    body = doc if isinstance(doc, bytes) else orjson.dumps(doc)
    sock.sendall(struct.pack("!I", len(body)) + body)


def recv_frame(sock: socket.socket) -> dict[str, Any]:
    header = _recv_exactly(sock, 4)
    (length,) = struct.unpack("!I", header)
    return orjson.loads(_recv_exactly(sock, length))  # type: ignore[no-any-return]


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "connection closed early"
        data += chunk
    return data


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def test_heartbeat_answers_service_online(door: tuple[int, Echo, LiveServer]) -> None:
    with connect(door[0]) as sock:
        send_frame(sock, {"req_type": 0, "request_number": 7})
        assert recv_frame(sock) == {"flag": 1, "message": "service online", "request_number": 7}


def test_pipelined_requests_on_one_connection_are_batched_and_matched(
    door: tuple[int, Echo, LiveServer],
) -> None:
    port, model, _ = door
    model.gate.clear()
    with connect(port) as sock:
        for i in range(10):
            send_frame(sock, {"req_type": 3, "request_number": i, "data": i})
        model.gate.set()
        replies = {r["request_number"]: r for r in (recv_frame(sock) for _ in range(10))}
    assert {n: r["data"] for n, r in replies.items()} == {i: {"echo": i} for i in range(10)}
    assert all(r["flag"] == 1 for r in replies.values())
    assert max(len(b) for b in model.batches) > 1


def test_a_failing_item_gets_an_error_frame_and_its_neighbours_succeed(
    door: tuple[int, Echo, LiveServer],
) -> None:
    with connect(door[0]) as sock:
        send_frame(sock, {"req_type": 3, "request_number": 1, "data": "boom"})
        send_frame(sock, {"req_type": 3, "request_number": 2, "data": "fine"})
        replies = {r["request_number"]: r for r in (recv_frame(sock), recv_frame(sock))}
    assert replies[1]["flag"] == 2 and "boom" in replies[1]["message"]
    assert replies[2] == {
        "flag": 1,
        "message": "model inference success",
        "request_number": 2,
        "data": {"echo": "fine"},
    }


def test_bad_json_and_bad_fields_get_error_frames_on_a_live_connection(
    door: tuple[int, Echo, LiveServer],
) -> None:
    with connect(door[0]) as sock:
        send_frame(sock, b"{not json")
        assert "not UTF-8 JSON" in recv_frame(sock)["message"]
        send_frame(sock, [1, 2])
        assert "not a JSON object" in recv_frame(sock)["message"]
        send_frame(sock, {"req_type": 9, "request_number": 3})
        assert "req_type 9" in recv_frame(sock)["message"]
        send_frame(sock, {"req_type": 3, "request_number": 4, "data": 1, "model": "nope"})
        reply = recv_frame(sock)
        assert reply["flag"] == 2 and reply["code"] == 404 and "nope" in reply["message"]
        send_frame(sock, {"req_type": 3, "request_number": 5, "data": "ok"})
        assert recv_frame(sock)["data"] == {"echo": "ok"}


def test_oversized_frame_gets_an_error_then_a_clean_close(
    door: tuple[int, Echo, LiveServer],
) -> None:
    port, _, _ = door
    with connect(port) as sock:
        sock.sendall(struct.pack("!I", 1 << 30))
        assert "over the 16777216-byte limit" in recv_frame(sock)["message"]
        assert sock.recv(1) == b""
    with connect(port) as sock:  # the server still serves
        send_frame(sock, {"req_type": 0, "request_number": 1})
        assert recv_frame(sock)["flag"] == 1


def test_half_frame_then_close_does_not_harm_the_server(
    door: tuple[int, Echo, LiveServer],
) -> None:
    port, _, _ = door
    with connect(port) as sock:
        sock.sendall(struct.pack("!I", 100) + b'{"req_type"')
    with connect(port) as sock:
        send_frame(sock, {"req_type": 3, "request_number": 1, "data": "after"})
        assert recv_frame(sock)["data"] == {"echo": "after"}


def test_tcp_client_pipelines_against_the_real_door(door: tuple[int, Echo, LiveServer]) -> None:
    from servekit.client.tcp import TcpClient

    port, model, _ = door
    model.gate.clear()
    with TcpClient("127.0.0.1", port, timeout=10) as client:
        assert client.heartbeat()["message"] == "service online"
        messages = [{"req_type": 3, "request_number": i, "data": i} for i in range(6)]
        threading.Timer(0.2, model.gate.set).start()
        answers = client.pipeline(messages)
        assert [a["data"] for a in answers] == [{"echo": i} for i in range(6)]
        assert client.infer("single") == {"echo": "single"}
