"""Virtex-style door: HttpMessage, RequestHandler, http_server and HttpClient, end to end."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from servekit import HttpClient, HttpMessage, RequestHandler, http_server
from servekit.client import HTTPStatusError
from servekit.codecs import decode_numpy, encode_numpy
from servekit.errors import BadRequest
from support.servers import LiveServer


class Doubler(RequestHandler):
    def __init__(self) -> None:
        self.batch_sizes: list[int] = []
        self.gate = threading.Event()
        self.gate.set()

    def process_request(self, data: list[Any]) -> np.ndarray:
        self.gate.wait(10)
        self.batch_sizes.append(len(data))
        return np.stack([decode_numpy(x) for x in data])

    def run_inference(self, model_input: np.ndarray) -> np.ndarray:
        return model_input * 2

    def process_response(self, output: np.ndarray) -> Any:
        if output.sum() < 0:
            raise ValueError("negative input")
        return encode_numpy(output)


@pytest.fixture
def served() -> Iterator[tuple[str, Doubler]]:
    handler = Doubler()
    app = http_server(name="doubler", handler=handler, max_batch_size=16, max_time_on_queue=0.001)
    live = LiveServer(app).start()
    yield live.url, handler
    handler.gate.set()
    live.stop()


def test_message_round_trips_through_the_server(served: tuple[str, Doubler]) -> None:
    url, _ = served
    arrays = [np.arange(3, dtype=np.float32), np.ones(3, dtype=np.float32)]
    with HttpClient(url) as client:
        reply = client.post(HttpMessage(data=arrays).encode(encode_numpy)).decode(decode_numpy)
    assert len(reply) == 2
    np.testing.assert_array_equal(reply.data[0], arrays[0] * 2)
    np.testing.assert_array_equal(reply.data[1], arrays[1] * 2)


def test_elements_from_concurrent_requests_share_a_batch(served: tuple[str, Doubler]) -> None:
    url, handler = served
    handler.gate.clear()
    replies: list[HttpMessage] = []

    def post(i: int) -> None:
        with HttpClient(url) as client:
            message = HttpMessage(data=[np.full(2, i, dtype=np.int64)]).encode(encode_numpy)
            replies.append(client.post(message).decode(decode_numpy))

    threads = [threading.Thread(target=post, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.2)  # let the requests queue behind the closed gate
    handler.gate.set()
    for t in threads:
        t.join(10)
    assert sorted(int(r.data[0][0]) for r in replies) == [2 * i for i in range(8)]
    assert max(handler.batch_sizes) > 1


def test_a_failing_element_fails_its_request_and_not_the_server(
    served: tuple[str, Doubler],
) -> None:
    url, _ = served
    with HttpClient(url, retries=1) as client:
        bad = HttpMessage(data=[np.array([-5.0])]).encode(encode_numpy)
        with pytest.raises(HTTPStatusError, match="negative input") as info:
            client.post(bad)
        assert info.value.status == 400
        good = client.post(HttpMessage(data=[np.array([1.0])]).encode(encode_numpy))
        np.testing.assert_array_equal(decode_numpy(good.data[0]), [2.0])


def test_a_body_that_is_not_a_message_gets_a_clear_400(served: tuple[str, Doubler]) -> None:
    import httpx

    url, _ = served
    reply = httpx.post(url, content=b'{"items": [1]}')
    assert reply.status_code == 400
    assert '"data" list' in reply.json()["error"]


def test_validate_names_the_first_element_that_is_not_json() -> None:
    message = HttpMessage(data=[1, "two", object()])
    with pytest.raises(BadRequest, match="element 2"):
        message.validate()


def test_handler_validate_runs_the_three_hooks_locally() -> None:
    handler = Doubler()
    message = HttpMessage(data=[np.array([1.0, 2.0])]).encode(encode_numpy)
    response = handler.validate(message).decode(decode_numpy)
    np.testing.assert_array_equal(response.data[0], [2.0, 4.0])


def test_bytes_elements_travel_as_base64_and_come_back_as_bytes() -> None:
    message = HttpMessage(data=[b"\x00\xffraw", "text", 3])
    parsed = HttpMessage.from_bytes(message.to_bytes())
    assert parsed.data == [b"\x00\xffraw", "text", 3]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_scrape_mode_serves_prometheus_metrics_on_its_own_port() -> None:
    import httpx

    port = _free_port()
    app = http_server(name="scraped", handler=Doubler(), metrics_mode="scrape", metrics_port=port)
    live = LiveServer(app).start()
    try:
        with HttpClient(live.url) as client:
            client.post(HttpMessage(data=[np.ones(2)]).encode(encode_numpy))
        text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert 'servekit_requests_total{model="scraped"} 1.0' in text
    finally:
        live.stop()


def test_push_mode_pushes_to_a_gateway_every_interval() -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    pushed: list[tuple[str, bytes]] = []
    arrived = threading.Event()

    class Gateway(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            pushed.append((self.path, body))
            arrived.set()
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    gateway = ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
    gateway_thread = threading.Thread(target=gateway.serve_forever)
    gateway_thread.start()
    app = http_server(
        name="pushed",
        handler=Doubler(),
        metrics_mode="push",
        metrics_host="127.0.0.1",
        metrics_port=gateway.server_address[1],
        metrics_interval=0.05,
    )
    live = LiveServer(app).start()
    try:
        assert arrived.wait(10), "nothing was pushed to the gateway"
        path, body = pushed[0]
        assert path.startswith("/metrics/job/pushed/instance/")  # one group per worker
        assert b"servekit_requests_total" in body
    finally:
        live.stop()
        gateway.shutdown()
        gateway_thread.join(10)
        gateway.server_close()


def test_unknown_metrics_mode_is_refused_clearly() -> None:
    with pytest.raises(BadRequest, match="metrics_mode must be one of"):
        http_server(name="x", handler=Doubler(), metrics_mode="sometimes")
