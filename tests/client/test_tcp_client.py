"""servekit.client.TcpClient against servekit's real TCP door (``App(tcp_port=0)``)."""

from __future__ import annotations

import socket
import time

import pytest

from servekit.client import (
    BadRequestError,
    ConnectError,
    HTTPStatusError,
    NotFoundError,
    RequestTimeout,
    Retry,
    ServiceUnavailable,
    UnauthorizedError,
)
from servekit.client.tcp import TcpClient
from servekit.protocol.tcp_frames import FrameTooLarge

from .conftest import TOKEN, Boom, Door, closed_port, refusals_of_a_full_queue


def test_heartbeat_is_acknowledged(door: Door) -> None:
    with TcpClient("127.0.0.1", door.tcp_port, token=TOKEN) as client:
        answer = client.heartbeat()
    assert (answer["flag"], answer["message"]) == (1, "service online")


def test_infer_returns_data_and_numbers_requests(door: Door) -> None:
    with TcpClient("127.0.0.1", door.tcp_port, token=TOKEN) as client:
        assert client.infer([1, 2, 3], model="total") == 6
        assert client.infer([10], request_number=77, model="total") == 10
        assert client.infer({"k": "v"}) == {"k": "v"}  # the first model served: echo
        answer = client.request({"req_type": 3, "request_number": 5, "data": [4], "model": "total"})
    assert (answer["flag"], answer["request_number"], answer["data"]) == (1, 5, 4)


def test_many_requests_share_one_connection(door: Door) -> None:
    with TcpClient("127.0.0.1", door.tcp_port, token=TOKEN) as client:
        client.heartbeat()
        sock = client._sock
        assert [client.infer([n], model="total") for n in range(20)] == list(range(20))
        assert client._sock is sock


def test_pipelined_requests_come_back_in_order(door: Door) -> None:
    messages = [
        {"req_type": 3, "request_number": n, "data": [n, n], "model": "total"} for n in range(50)
    ]
    with TcpClient("127.0.0.1", door.tcp_port, token=TOKEN) as client:
        answers = client.pipeline(messages)
    assert [a["request_number"] for a in answers] == list(range(50))
    assert [a["data"] for a in answers] == [2 * n for n in range(50)]


def test_an_unknown_model_is_the_doors_404(door: Door) -> None:
    with TcpClient("127.0.0.1", door.tcp_port, token=TOKEN) as client:
        with pytest.raises(NotFoundError, match="nope") as info:
            client.infer([1], model="nope")
        assert info.value.status == 404
        assert client.infer([1], model="total") == 1  # the connection is still good


def test_bad_input_is_a_400(door: Door) -> None:
    with (
        TcpClient("127.0.0.1", door.tcp_port, token=TOKEN) as client,
        pytest.raises(BadRequestError),
    ):
        client.infer([1], model="total", timeout_ms="soon")


def test_a_model_that_raises_is_a_500_run_once(door: Door) -> None:
    before = Boom.calls
    client = TcpClient("127.0.0.1", door.tcp_port, token=TOKEN)
    with client, pytest.raises(HTTPStatusError, match="the model broke") as info:
        client.infer([1], model="boom")
    assert type(info.value) is HTTPStatusError and info.value.status == 500
    assert Boom.calls == before + 1


def test_a_model_still_loading_is_a_503(door: Door) -> None:
    with (
        TcpClient("127.0.0.1", door.tcp_port, token=TOKEN) as client,
        pytest.raises(ServiceUnavailable),
    ):
        client.infer([1], model="warming")


def test_a_full_queue_is_a_429(door: Door, jammed: None) -> None:
    def send() -> None:
        with TcpClient("127.0.0.1", door.tcp_port, token=TOKEN, timeout=20) as client:
            client.infer([1], model="jam")

    refusals = refusals_of_a_full_queue(send)
    assert all(r.status == 429 for r in refusals)


def test_an_unserved_request_type_is_400(door: Door) -> None:
    client = TcpClient("127.0.0.1", door.tcp_port, token=TOKEN)
    with client, pytest.raises(BadRequestError, match="not served here") as info:
        client.train(epochs=3)
    assert info.value.status == 400


@pytest.mark.parametrize("token", [None, "wrong", TOKEN + "x"])
def test_frames_without_the_token_are_refused_before_the_batcher(
    door: Door, token: str | None
) -> None:
    batcher = door.app.registry.get("total").batcher
    before = batcher.stats.requests
    with TcpClient("127.0.0.1", door.tcp_port, token=token) as client:
        assert client.heartbeat()["flag"] == 1  # heartbeats stay open, like health routes
        with pytest.raises(UnauthorizedError, match="token"):
            client.infer([1], model="total")
    assert batcher.stats.requests == before


def test_a_message_over_the_frame_limit_is_refused_before_sending(door: Door) -> None:
    with TcpClient("127.0.0.1", door.tcp_port, token=TOKEN, max_frame_size=100) as client:
        with pytest.raises(FrameTooLarge):
            client.infer("x" * 200)
        assert client.infer([2], model="total") == 2


def test_no_answer_within_the_timeout_raises_and_the_next_request_reconnects(door: Door) -> None:
    with TcpClient("127.0.0.1", door.tcp_port, token=TOKEN, timeout=0.2) as client:
        with pytest.raises(RequestTimeout) as info:
            client.infer("x", model="slow")
        assert info.value.code is None
        client.timeout = 5.0
        assert client.infer([3], model="total") == 3


def test_a_connection_the_server_closed_is_replaced(door: Door) -> None:
    with TcpClient("127.0.0.1", door.tcp_port, token=TOKEN, retry=Retry(attempts=1)) as client:
        assert client.infer([1], model="total") == 1
        sock = client._sock
        assert sock is not None
        sock.sendall(b"\xff\xff\xff\xff")  # a frame over the door's limit: it answers, then closes
        sock.settimeout(5)
        while sock.recv(65536, socket.MSG_PEEK) and not _closed(sock):
            time.sleep(0.01)
        assert client.infer([2], model="total") == 2
        assert client._sock is not sock


def test_connection_refused_is_retried_with_backoff_then_raised() -> None:
    with closed_port() as port:
        sleeps: list[float] = []
        client = TcpClient("127.0.0.1", port, retry=Retry(attempts=3, sleep=sleeps.append))
        with pytest.raises(ConnectError, match="cannot connect") as info:
            client.heartbeat()
    assert info.value.sent is False
    assert len(sleeps) == 2


def _closed(sock: socket.socket) -> bool:
    """Whether the peer's FIN is queued behind the bytes already received."""
    data = sock.recv(1 << 20, socket.MSG_PEEK)
    sock.setblocking(False)
    try:
        more = sock.recv(len(data) + 1, socket.MSG_PEEK)
        return len(more) == len(data)
    except BlockingIOError:
        return False
    finally:
        sock.setblocking(True)
