"""Every door reaches the batcher through ModelRuntime.infer: validate, deadlines, disconnects.

One model, served on each door in turn (v2, PAI-EAS, Virtex messages, TCP frames, the
asynchronous queue consumer and the thread API): a request ``validate`` refuses is a 400 on
every door and never reaches ``predict``; a deadline that passes while the request is queued
is a 504; a caller that goes away while queued is dropped before the model sees its item.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import pytest

import servekit
from servekit.batching import BatchPolicy
from servekit.client import QueueClient
from servekit.errors import BadRequest
from servekit.server import App
from servekit.server.message_app import MessageApp
from servekit.server.runtime import ModelRuntime
from support.servers import LiveServer

WAIT = 10.0


class Guarded(servekit.Model):
    """Refuses any request mentioning 'poison'; records every item; waits on a gate."""

    name = "guarded"
    eas_format = "string"

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Any] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def validate(self, inputs: Any) -> None:
        if "poison" in repr(inputs):
            raise ValueError("poison is not allowed")

    def predict(self, batch: list[Any]) -> list[Any]:
        self.seen.extend(batch)
        self.entered.set()
        assert self.gate.wait(WAIT), "test gate never opened"
        return [item.upper() if isinstance(item, (str, bytes)) else item for item in batch]

    def hold(self) -> None:
        self.gate.clear()
        self.entered.clear()


def wait_until(predicate: Callable[[], bool], what: str) -> None:
    done = threading.Event()
    for _ in range(int(WAIT / 0.002)):
        if predicate():
            return
        done.wait(0.002)
    raise AssertionError(f"timed out waiting until {what}")


@pytest.fixture
def model() -> Iterator[Guarded]:
    made = Guarded()
    yield made
    made.gate.set()


def serving(app: App, model: Guarded) -> Iterator[tuple[App, LiveServer]]:
    live = LiveServer(app).start()
    live.call(app.wait_loaded())
    yield app, live
    model.gate.set()
    live.stop()


@pytest.fixture
def app_server(model: Guarded) -> Iterator[tuple[App, LiveServer]]:
    yield from serving(App([model], tcp_port=0), model)


@pytest.fixture
def queue_server(model: Guarded, tmp_path: Path) -> Iterator[tuple[App, LiveServer]]:
    # in queue mode /api/predict/<model> is the model's input queue (EAS queue protocol)
    yield from serving(App([model], queue_url=f"sqlite://{tmp_path / 'queues'}"), model)


@pytest.fixture
def message_server(model: Guarded) -> Iterator[tuple[ModelRuntime, LiveServer]]:
    runtime = ModelRuntime(model, BatchPolicy(max_latency=0.001))
    app = MessageApp(
        runtime,
        max_body_size=1 << 20,
        metrics_mode="off",
        metrics_host="127.0.0.1",
        metrics_port=0,
        metrics_interval=10.0,
    )
    live = LiveServer(app).start()
    yield runtime, live
    model.gate.set()
    live.stop()


# ---------------------------------------------------------------------- wire helpers
def v2_body(text: str) -> bytes:
    tensor = {"name": "text", "datatype": "BYTES", "shape": [1], "data": [text]}
    return orjson.dumps({"inputs": [tensor]})


def http_request(path: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: test", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def exchange(port: int, request: bytes) -> tuple[int, bytes]:
    """Send one HTTP request on a fresh connection; the status and body of the reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(request)
        reply = b""
        while b"\r\n\r\n" not in reply:
            reply += sock.recv(65536)
        head, _, body = reply.partition(b"\r\n\r\n")
        length = int(
            next(
                line.split(b":")[1]
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
        )
        while len(body) < length:
            body += sock.recv(65536)
    return int(head.split(b" ")[1]), body


def tcp_call(port: int, frame: dict[str, Any]) -> dict[str, Any]:
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        body = orjson.dumps(frame)
        sock.sendall(struct.pack("!I", len(body)) + body)
        header = b""
        while len(header) < 4:
            header += sock.recv(4 - len(header))
        (length,) = struct.unpack("!I", header)
        data = b""
        while len(data) < length:
            data += sock.recv(length - len(data))
    return orjson.loads(data)  # type: ignore[no-any-return]


HttpDoor = tuple[str, Callable[[str], bytes]]
HTTP_DOORS: dict[str, HttpDoor] = {
    "v2": ("/v2/models/guarded/infer", v2_body),
    "eas": ("/api/predict/guarded", str.encode),
}


# ---------------------------------------------------------------------- validate
@pytest.mark.parametrize("door", sorted(HTTP_DOORS))
def test_validate_refuses_with_400_on_http_doors(door: str, app_server, model) -> None:
    _, live = app_server
    path, encode = HTTP_DOORS[door]
    status, body = exchange(live.port, http_request(path, encode("poison pill")))
    assert status == 400 and b"poison is not allowed" in body, body
    status, _ = exchange(live.port, http_request(path, encode("fine")))
    assert status == 200
    assert all("poison" not in repr(item) for item in model.seen)


def test_validate_refuses_with_400_on_the_message_door(message_server, model) -> None:
    _, live = message_server
    status, body = exchange(live.port, http_request("/", b'{"data": ["poison"]}'))
    assert status == 400 and b"poison is not allowed" in body
    status, body = exchange(live.port, http_request("/", b'{"data": ["ok"]}'))
    assert status == 200 and orjson.loads(body)["data"] == ["OK"]
    assert model.seen == ["ok"]


def test_validate_refuses_with_code_400_on_the_tcp_door(app_server, model) -> None:
    app, _ = app_server
    refused = tcp_call(app.tcp_port, {"req_type": 3, "request_number": 1, "data": "poison"})
    assert refused["flag"] == 2 and refused["code"] == 400
    assert "poison is not allowed" in refused["message"]
    accepted = tcp_call(app.tcp_port, {"req_type": 3, "request_number": 2, "data": "fine"})
    assert accepted["flag"] == 1 and accepted["data"] == "FINE"
    assert model.seen == ["fine"]


def test_validate_answers_400_into_the_sink_for_queued_work(queue_server, model) -> None:
    _, live = queue_server
    inputs = QueueClient(f"127.0.0.1:{live.port}", "guarded")
    sink = QueueClient(f"127.0.0.1:{live.port}", "guarded/sink")
    for client in (inputs, sink):
        client.init()
    try:
        _, refused_id = inputs.put(b"poison")
        _, accepted_id = inputs.put(b"fine")
        refused = sink.get(request_id=refused_id, timeout="10s")[0]
        accepted = sink.get(request_id=accepted_id, timeout="10s")[0]
    finally:
        inputs.close()
        sink.close()
    assert refused.tags["status"] == "400" and b"poison is not allowed" in refused.data
    assert accepted.tags["status"] == "200" and accepted.data == b"FINE"
    assert model.seen == [b"fine"]


def test_validate_refuses_on_the_thread_api() -> None:
    model = Guarded()
    runtime = ModelRuntime(model, BatchPolicy())
    runtime.state = "ready"
    with pytest.raises(BadRequest, match="poison is not allowed"):
        runtime.infer_threadsafe(["poison"])
    assert model.seen == []


# ---------------------------------------------------------------------- deadlines
def hold_first_request(model: Guarded, send_first: Callable[[], object]) -> Any:
    """Start a request that occupies the model, so the next one waits in the queue."""
    model.hold()
    pool = ThreadPoolExecutor(1)
    first = pool.submit(send_first)
    assert model.entered.wait(WAIT), "the first request never reached the model"
    pool.shutdown(wait=False)
    return first


@pytest.mark.parametrize("door", sorted(HTTP_DOORS))
def test_deadline_passing_in_the_queue_is_504_on_http_doors(door, app_server, model) -> None:
    _, live = app_server
    path, encode = HTTP_DOORS[door]
    first = hold_first_request(model, lambda: exchange(live.port, http_request(path, encode("a"))))
    late = http_request(path, encode("late"), {"X-Request-Timeout-Ms": "50"})
    status, body = exchange(live.port, late)  # answered at its deadline, the gate still shut
    assert status == 504 and b"deadline" in body, body
    model.gate.set()
    assert first.result(WAIT)[0] == 200
    assert all("late" not in repr(item) for item in model.seen)


def test_deadline_passing_in_the_queue_is_504_on_the_message_door(message_server, model) -> None:
    runtime, live = message_server
    first = hold_first_request(
        model, lambda: exchange(live.port, http_request("/", b'{"data": ["a"]}'))
    )
    late = http_request("/", b'{"data": ["late"]}', {"X-Request-Timeout-Ms": "50"})
    status, _ = exchange(live.port, late)
    assert status == 504
    model.gate.set()
    assert first.result(WAIT)[0] == 200
    assert model.seen == ["a"] and runtime.batcher.stats.timed_out == 1


def test_deadline_passing_in_the_queue_is_code_504_on_the_tcp_door(app_server, model) -> None:
    app, _ = app_server
    first = hold_first_request(
        model, lambda: tcp_call(app.tcp_port, {"req_type": 3, "request_number": 1, "data": "a"})
    )
    late = {"req_type": 3, "request_number": 2, "data": "late", "timeout_ms": 50}
    answer = tcp_call(app.tcp_port, late)
    assert answer["flag"] == 2 and answer["code"] == 504
    model.gate.set()
    assert first.result(WAIT)["flag"] == 1
    assert "late" not in model.seen


@pytest.mark.parametrize("bad", ["nan", "-5", "soon"])
def test_a_timeout_that_is_not_a_duration_is_400_on_every_http_door(bad, app_server) -> None:
    _, live = app_server
    for path, encode in HTTP_DOORS.values():
        request = http_request(path, encode("x"), {"X-Request-Timeout-Ms": bad})
        status, body = exchange(live.port, request)
        assert status == 400 and b"X-Request-Timeout-Ms" in body, (path, body)


def test_an_infinite_timeout_means_none(app_server) -> None:
    _, live = app_server
    request = http_request("/api/predict/guarded", b"x", {"X-Request-Timeout-Ms": "inf"})
    assert exchange(live.port, request) == (200, b"X")


# ---------------------------------------------------------------------- disconnects
def send_and_hang_up(port: int, payload: bytes, queued: Callable[[], bool]) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(payload)
        wait_until(queued, "the request is queued")


@pytest.mark.parametrize("door", sorted(HTTP_DOORS))
def test_client_gone_while_queued_is_dropped_on_http_doors(door, app_server, model) -> None:
    app, live = app_server
    path, encode = HTTP_DOORS[door]
    batcher = app.registry.get("guarded").batcher
    first = hold_first_request(model, lambda: exchange(live.port, http_request(path, encode("a"))))
    send_and_hang_up(
        live.port, http_request(path, encode("gone")), lambda: batcher.queued_items == 1
    )
    wait_until(lambda: batcher.stats.cancelled == 1, "the server noticed the disconnect")
    model.gate.set()
    assert first.result(WAIT)[0] == 200
    assert batcher.queued_items == 0
    assert all("gone" not in repr(item) for item in model.seen)


def test_client_gone_while_queued_is_dropped_on_the_message_door(message_server, model) -> None:
    runtime, live = message_server
    batcher = runtime.batcher
    first = hold_first_request(
        model, lambda: exchange(live.port, http_request("/", b'{"data": ["a"]}'))
    )
    gone = http_request("/", b'{"data": ["gone"]}')
    send_and_hang_up(live.port, gone, lambda: batcher.queued_items == 1)
    wait_until(lambda: batcher.stats.cancelled == 1, "the server noticed the disconnect")
    model.gate.set()
    assert first.result(WAIT)[0] == 200
    assert model.seen == ["a"]


def test_connection_closed_while_queued_is_dropped_on_the_tcp_door(app_server, model) -> None:
    app, _ = app_server
    batcher = app.registry.get("guarded").batcher
    first = hold_first_request(
        model, lambda: tcp_call(app.tcp_port, {"req_type": 3, "request_number": 1, "data": "a"})
    )
    frame = orjson.dumps({"req_type": 3, "request_number": 2, "data": "gone"})
    send_and_hang_up(
        app.tcp_port, struct.pack("!I", len(frame)) + frame, lambda: batcher.queued_items == 1
    )
    wait_until(lambda: batcher.stats.cancelled == 1, "the door noticed the closed connection")
    model.gate.set()
    assert first.result(WAIT)["flag"] == 1
    assert model.seen == ["a"]
