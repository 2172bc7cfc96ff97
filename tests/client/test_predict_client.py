"""servekit.client.PredictClient against servekit's real EAS door on a loopback port."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

import servekit
from servekit.client import (
    ENDPOINT_TYPE_DIRECT,
    BadRequestError,
    ClientError,
    ConnectError,
    HTTPStatusError,
    NotFoundError,
    PredictClient,
    PredictException,
    RequestTimeout,
    Retry,
    ServiceUnavailable,
    StringRequest,
    StringResponse,
    TFRequest,
    TFResponse,
    TorchRequest,
    TorchResponse,
    UnauthorizedError,
)
from support.servers import LiveServer

from .conftest import TOKEN, Boom, Door, closed_port, refusals_of_a_full_queue


def _client(
    url: str, service: str, *, sleeps: list[float] | None = None, token: str = TOKEN
) -> PredictClient:
    client = PredictClient(url, service)
    client.set_token(token)
    if sleeps is not None:
        client.retry = Retry(sleep=sleeps.append)
    client.init()
    return client


def test_string_request_round_trips_bytes_and_text(door: Door) -> None:
    with _client(door.url, "echo") as client:
        response = client.predict(StringRequest(b"\x00\xffraw"))
        assert isinstance(response, StringResponse)
        assert response.response_data == b"\x00\xffraw"
        assert client.predict(StringRequest("héllo")).to_string() == "héllo"


def test_endpoint_without_scheme_is_reached_over_http(door: Door) -> None:
    with _client(f"127.0.0.1:{door.port}", "echo") as client:
        assert client.predict(StringRequest(b"x")).response_data == b"x"


def test_tf_request_round_trip_applies_fetches(door: Door) -> None:
    request = TFRequest("serving_default")
    request.add_feed("x", [2, 2], TFRequest.DT_FLOAT, [1.0, 2.0, 3.0, 4.5])
    request.add_fetch("doubled")
    with _client(door.url, "tf") as client:
        response = client.predict(request)
    assert isinstance(response, TFResponse)
    assert response.get_tensor_shape("doubled") == [2, 2]
    assert list(response.get_values("doubled")) == [2.0, 4.0, 6.0, 9.0]
    assert response.get_array("doubled").dtype == np.float32
    with pytest.raises(KeyError, match="no output 'total'"):
        response.get_values("total")


def test_tf_request_accepts_numpy_content_and_keeps_int_dtypes(door: Door) -> None:
    request = TFRequest()
    request.add_feed("x", [3], TFRequest.DT_INT64, np.array([1, 2, 2**40]))
    with _client(door.url, "tf") as client:
        response = client.predict(request)
    assert response.get_array("doubled").tolist() == [2, 4, 2**41]
    assert response.get_array("total").dtype == np.int64


def test_torch_request_round_trip_by_index_with_filter(door: Door) -> None:
    request = TorchRequest()
    request.add_feed(0, [1, 3], TorchRequest.DT_FLOAT, [1.0, 2.0, 3.0])
    with _client(door.url, "torch") as client:
        both = client.predict(request)
        assert isinstance(both, TorchResponse)
        assert list(both.get_values(0)) == [2.0, 3.0, 4.0]
        assert both.get_tensor_shape(1) == [1, 3]
        request.add_fetch(1)
        only_second = client.predict(request)
    assert len(only_second.response.outputs) == 1
    assert list(only_second.get_values(0)) == [10.0, 20.0, 30.0]


def test_bad_tf_request_is_a_400_carrying_the_servers_message_and_not_retried(
    door: Door,
) -> None:
    request = TFRequest("s")
    request.add_feed("x", [2, 2], TFRequest.DT_FLOAT, [1.0])
    sleeps: list[float] = []
    with _client(door.url, "tf", sleeps=sleeps) as client, pytest.raises(BadRequestError) as info:
        client.predict(request)
    assert info.value.status == info.value.code == 400
    assert "shape [2, 2] needs 4 values, got 1" in info.value.message
    assert sleeps == []


def test_a_model_that_raises_is_a_500_run_once_not_retried(door: Door) -> None:
    before = Boom.calls
    sleeps: list[float] = []
    with (
        _client(door.url, "boom", sleeps=sleeps) as client,
        pytest.raises(PredictException) as info,
    ):
        client.predict(StringRequest(b"x"))
    assert type(info.value) is HTTPStatusError and info.value.code == 500
    assert "the model broke" in info.value.message
    assert Boom.calls == before + 1
    assert sleeps == []


def test_unknown_service_is_a_404(door: Door) -> None:
    with _client(door.url, "nope") as client, pytest.raises(NotFoundError) as info:
        client.predict(StringRequest(b"x"))
    assert info.value.code == 404 and "nope" in info.value.message


@pytest.mark.parametrize("token", ["", "wrong"])
def test_missing_or_wrong_token_is_a_401_without_retry(door: Door, token: str) -> None:
    sleeps: list[float] = []
    client = _client(door.url, "echo", sleeps=sleeps, token=token)
    with client, pytest.raises(UnauthorizedError) as info:
        client.predict(StringRequest(b"x"))
    assert info.value.status == 401
    assert sleeps == []


def test_a_model_still_loading_is_a_503_retried_until_the_tries_run_out(door: Door) -> None:
    sleeps: list[float] = []
    with _client(door.url, "warming", sleeps=sleeps) as client:
        client.set_retry_count(3)
        with pytest.raises(ServiceUnavailable) as info:
            client.predict(StringRequest(b"x"))
    assert info.value.status == 503 and "loading" in info.value.message
    assert len(sleeps) == 2
    assert 0 < sleeps[0] < sleeps[1]  # exponential: [0.025, 0.05) then [0.05, 0.1)


def test_503_while_loading_then_200_once_loaded(start_door: Any) -> None:
    gate = threading.Event()

    class Late(servekit.Model):
        name = "late"

        def load(self) -> None:
            gate.wait(30)

        def predict(self, batch: list[Any]) -> list[Any]:
            return list(batch)

    served = start_door([Late()])
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:  # two 503s seen: let the model finish loading
            gate.set()
            deadline = time.monotonic() + 10
            while not served.app.ready:
                assert time.monotonic() < deadline
                time.sleep(0.01)

    client = _client(served.url, "late")
    client.retry = Retry(sleep=sleep)
    with client:
        assert client.predict(StringRequest(b"ok")).response_data == b"ok"
    assert len(sleeps) == 2


def test_a_full_queue_is_a_429_with_retry_after(door: Door, jammed: None) -> None:
    def send() -> None:
        with _client(door.url, "jam") as client:
            client.set_retry_count(1)
            client.predict(StringRequest(b"x"))

    refusals = refusals_of_a_full_queue(send)
    assert all(r.status == 429 and r.retry_after is not None for r in refusals)
    assert refusals[0].retry_after >= 1


def test_timeout_raises_promptly_and_is_not_retried(door: Door) -> None:
    sleeps: list[float] = []
    with _client(door.url, "slow", sleeps=sleeps) as client:
        client.set_timeout(200)
        started = time.monotonic()
        with pytest.raises(RequestTimeout) as info:
            client.predict(StringRequest(b"x"))
        elapsed = time.monotonic() - started
    assert info.value.code is None  # no answer, so no status
    assert 0.15 < elapsed < 0.9
    assert sleeps == []


def test_connection_refused_is_retried_then_raised_as_connect_error() -> None:
    with closed_port() as port:
        sleeps: list[float] = []
        with _client(f"http://127.0.0.1:{port}", "echo", sleeps=sleeps) as client:
            client.set_retry_count(4)
            with pytest.raises(ConnectError) as info:
                client.predict(StringRequest(b"x"))
    assert isinstance(info.value, PredictException)
    assert info.value.sent is False and info.value.code is None
    assert len(sleeps) == 3


def test_signed_tf_request_passes_the_token(door: Door) -> None:
    with _client(door.url, "tf") as client:
        client.set_content_type("application/octet-stream")
        tf = TFRequest("s")
        tf.add_feed("x", [1], TFRequest.DT_DOUBLE, [0.5])
        assert list(client.predict(tf).get_values("doubled")) == [1.0]


def test_custom_url_sends_the_plain_token(door: Door) -> None:
    client = PredictClient(custom_url=f"{door.url}/api/predict/echo")
    client.set_token(TOKEN)
    with client:
        assert client.predict(StringRequest(b"plain")).response_data == b"plain"


class Discovery:
    """The EAS gateway's service discovery (not a servekit door): lists one instance."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.calls = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.calls += 1
        items = [{"ip": "127.0.0.1", "port": self.port, "weight": 1}]
        body = orjson.dumps({"endpoints": {"items": items}})
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


@pytest.fixture
def discovery(door: Door) -> Iterator[tuple[LiveServer, Discovery]]:
    app = Discovery(door.port)
    live = LiveServer(app, lifespan="off").start()
    yield live, app
    live.stop()


def test_direct_mode_sends_to_the_instances_service_discovery_lists(
    door: Door, discovery: tuple[LiveServer, Discovery]
) -> None:
    live, app = discovery
    client = PredictClient(f"localhost:{live.port}", "echo")
    client.set_endpoint_type(ENDPOINT_TYPE_DIRECT)
    client.set_token(TOKEN)
    with client:
        client.init()
        assert client.predict(StringRequest(b"direct")).response_data == b"direct"
        router = client._router
        assert router is not None
        assert router.bases == [f"http://127.0.0.1:{door.port}"]
    assert app.calls == 1


def test_direct_mode_falls_back_to_the_endpoint_without_discovery(door: Door) -> None:
    client = PredictClient(door.url, "tf")
    client.set_endpoint_type(ENDPOINT_TYPE_DIRECT)
    client.set_token(TOKEN)
    request = TFRequest()
    request.add_feed("x", [1], TFRequest.DT_FLOAT, [1.5])
    with client:
        assert list(client.predict(request).get_values("total")) == [1.5]


def test_unknown_endpoint_type_is_refused_at_init() -> None:
    client = PredictClient("127.0.0.1:1", "echo")
    client.set_endpoint_type("VIPSERVER")
    with pytest.raises(ClientError, match="unsupported endpoint type"):
        client.init()


def test_one_client_serves_many_threads_without_mixing_responses(door: Door) -> None:
    client = _client(door.url, "echo")
    client.set_max_connection_count(4)
    client.init()
    errors: list[str] = []

    def worker(n: int) -> None:
        for i in range(40):
            body = f"{n}:{i}".encode() * (1 + i % 5)
            got = client.predict(StringRequest(body)).response_data
            if got != body:
                errors.append(f"{body!r} -> {got!r}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    client.destroy()
    assert errors == []
    assert not any(t.is_alive() for t in threads)


SDK_SCRIPT = Path(__file__).parent.parent / "protocol" / "eas_sdk_script.py"


def test_published_sdk_client_is_answered_by_the_real_door(eas_sdk_python: str, door: Door) -> None:
    result = subprocess.run(
        [eas_sdk_python, str(SDK_SCRIPT), "client", door.url, TOKEN],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    answers = json.loads(result.stdout)
    assert answers["echo"] == "héllo sdk"
    assert answers["tf"] == [3.0, 4.0]
    assert answers["tf_shape"] == [2]
    assert answers["torch"] == [[2, 3, 4], [10, 20, 30]]


def test_request_dtype_constants_are_the_proto_enum_numbers() -> None:
    from servekit.protocol.eas_pb import tf_predict_pb2, torch_predict_pb2

    for cls, enum in (
        (TFRequest, tf_predict_pb2.ArrayDataType),
        (TorchRequest, torch_predict_pb2.ArrayDataType),
    ):
        names = [n for n in dir(cls) if n.startswith("DT_")]
        assert len(names) >= 7
        for name in names:
            assert getattr(cls, name) == enum.Value(name), name


def test_string_requests_need_no_protobuf_installed(door: Door) -> None:
    code = (
        "import sys; sys.modules['google.protobuf'] = None\n"
        "from servekit.client import PredictClient, StringRequest\n"
        f"c = PredictClient({door.url!r}, 'echo')\n"
        f"c.set_token({TOKEN!r})\n"
        "print(c.predict(StringRequest(b'no protobuf')).response_data.decode())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "no protobuf"
