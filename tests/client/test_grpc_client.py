"""``GrpcClient`` against a real ``--grpc-port`` door: numpy round trips and the client error
tree (the same classes ``Client`` raises over HTTP)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from servekit.client import (
    BadRequestError,
    ConnectError,
    GatewayTimeout,
    GrpcClient,
    HTTPStatusError,
    NotFoundError,
    RequestTimeout,
    ServiceUnavailable,
    UnauthorizedError,
)
from servekit.server import App
from support.servers import LiveServer

from .conftest import TOKEN, Jam, Warming, closed_port, models, refusals_of_a_full_queue, wait_ready


@pytest.fixture(scope="module")
def grpc_door() -> Iterator[tuple[LiveServer, int]]:
    Jam.gate.set()
    Warming.gate.clear()
    app = App(models(), token=TOKEN, grpc_port=0)
    live = LiveServer(app).start()
    wait_ready(live.url, ["echo", "slow", "scale", "boom", "jam"])
    assert app.grpc_port
    yield live, app.grpc_port
    Warming.gate.set()
    Jam.gate.set()
    live.stop()


@pytest.fixture
def client(grpc_door: tuple[LiveServer, int]) -> Iterator[GrpcClient]:
    with GrpcClient(f"127.0.0.1:{grpc_door[1]}", token=TOKEN, timeout=10) as grpc_client:
        yield grpc_client


def test_infer_round_trips_arrays_of_every_kind(client: GrpcClient) -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    out = client.infer("scale", {"x": x}, version="1", request_id="r1")
    np.testing.assert_array_equal(out["scaled"], x * 2)
    for array in (
        np.array([[1.5, -2]], np.float16),
        np.array([[2**62]], np.int64),
        np.array([[b"a", b"\xff\x00"]], dtype=object),
        np.array([[True, False]]),
    ):
        got = client.infer("echo", array)["output-0"]
        assert got.dtype == array.dtype
        np.testing.assert_array_equal(got, array)


def test_health_and_metadata(client: GrpcClient) -> None:
    assert client.live()
    assert client.ready("scale") and client.ready("scale", "1")
    assert not client.ready("warming")
    assert client.metadata()["name"] == "servekit"
    meta = client.metadata("scale")
    assert meta["name"] == "scale" and meta["versions"] == ["1"]


def test_server_failures_are_the_http_clients_errors(client: GrpcClient) -> None:
    with pytest.raises(NotFoundError, match="unknown model 'nope'") as caught:
        client.infer("nope", np.ones((1, 1), np.float32))
    assert caught.value.status == 404
    with pytest.raises(BadRequestError, match="has no output 'missing'"):
        client.infer("scale", np.ones((1, 1), np.float32), outputs=["missing"])
    with pytest.raises(ServiceUnavailable, match="still loading"):
        client.infer("warming", np.ones((1, 1), np.float32))
    with pytest.raises(HTTPStatusError, match="the model broke") as failed:
        client.infer("boom", np.ones((1, 1), np.float32))
    assert failed.value.status == 500
    with pytest.raises(GatewayTimeout):  # the server's deadline: timeout in microseconds
        client.infer("slow", np.ones((1, 1), np.float32), parameters={"timeout": 0})
    assert client.infer("echo", np.ones((1, 1), np.float32))["output-0"].shape == (1, 1)


def test_a_wrong_token_is_unauthorized(grpc_door: tuple[LiveServer, int]) -> None:
    with GrpcClient(f"127.0.0.1:{grpc_door[1]}", token="wrong") as stranger:
        assert stranger.live()
        with pytest.raises(UnauthorizedError) as caught:
            stranger.infer("echo", np.ones((1, 1), np.float32))
    assert caught.value.status == 401


def test_a_full_queue_is_too_many_requests(client: GrpcClient, jammed_queue: None) -> None:
    refusals = refusals_of_a_full_queue(lambda: client.infer("jam", np.ones((1, 1), np.float32)))
    assert refusals and all(r.status == 429 for r in refusals)


@pytest.fixture
def jammed_queue(grpc_door: Any) -> Iterator[None]:
    Jam.entered.clear()
    Jam.gate.clear()
    yield
    Jam.gate.set()


def test_no_answer_is_a_transport_error(client: GrpcClient) -> None:
    with pytest.raises(RequestTimeout):
        client.infer("slow", np.ones((1, 1), np.float32), timeout=0.2)
    with (
        closed_port() as port,
        GrpcClient(f"127.0.0.1:{port}", timeout=2) as nobody,
        pytest.raises(ConnectError),
    ):
        nobody.live()
