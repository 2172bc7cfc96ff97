"""servekit.client.PredictClient against a real EAS server on a loopback port."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from servekit.client import (
    ENDPOINT_TYPE_DIRECT,
    ClientError,
    ConnectError,
    HTTPStatusError,
    PredictClient,
    PredictException,
    RequestTimeout,
    Retry,
    StringRequest,
    StringResponse,
    TFRequest,
    TFResponse,
    TorchRequest,
    TorchResponse,
)


def _tag() -> str:
    return uuid.uuid4().hex[:8]


def _client(url: str, service: str, *, sleeps: list[float] | None = None) -> PredictClient:
    client = PredictClient(url, service)
    if sleeps is not None:
        client.retry = Retry(sleep=sleeps.append)
    client.init()
    return client


def test_string_request_round_trips_bytes_and_text(eas_server) -> None:
    with _client(eas_server.url, "echo") as client:
        response = client.predict(StringRequest(b"\x00\xffraw"))
        assert isinstance(response, StringResponse)
        assert response.response_data == b"\x00\xffraw"
        assert client.predict(StringRequest("héllo")).to_string() == "héllo"


def test_endpoint_without_scheme_is_reached_over_http(eas_server) -> None:
    with _client(f"127.0.0.1:{eas_server.port}", "echo") as client:
        assert client.predict(StringRequest(b"x")).response_data == b"x"


def test_tf_request_round_trip_applies_fetches_and_signature(eas_server) -> None:
    request = TFRequest("serving_default")
    request.add_feed("x", [2, 2], TFRequest.DT_FLOAT, [1.0, 2.0, 3.0, 4.5])
    request.add_fetch("doubled")
    request.add_fetch("signature")
    with _client(eas_server.url, "tf") as client:
        response = client.predict(request)
    assert isinstance(response, TFResponse)
    assert response.get_tensor_shape("doubled") == [2, 2]
    assert list(response.get_values("doubled")) == [2.0, 4.0, 6.0, 9.0]
    assert list(response.get_values("signature")) == [b"serving_default"]
    assert response.get_array("doubled").dtype == np.float32
    with pytest.raises(KeyError, match="no output 'total'"):
        response.get_values("total")


def test_tf_request_accepts_numpy_content_and_keeps_int_dtypes(eas_server) -> None:
    request = TFRequest()
    request.add_feed("x", [3], TFRequest.DT_INT64, np.array([1, 2, 2**40]))
    with _client(eas_server.url, "tf") as client:
        response = client.predict(request)
    assert response.get_array("doubled").tolist() == [2, 4, 2**41]
    assert response.get_array("total").dtype == np.int64
    assert list(response.get_values("signature")) == [b""]


def test_torch_request_round_trip_by_index_with_filter(eas_server) -> None:
    request = TorchRequest()
    request.add_feed(0, [1, 3], TorchRequest.DT_FLOAT, [1.0, 2.0, 3.0])
    with _client(eas_server.url, "torch") as client:
        both = client.predict(request)
        assert isinstance(both, TorchResponse)
        assert list(both.get_values(0)) == [2.0, 3.0, 4.0]
        assert both.get_tensor_shape(1) == [1, 3]
        request.add_fetch(1)
        only_second = client.predict(request)
    assert len(only_second.response.outputs) == 1
    assert list(only_second.get_values(0)) == [10.0, 20.0, 30.0]


def test_bad_tf_request_is_a_400_carrying_the_servers_message(eas_server) -> None:
    request = TFRequest("s")
    request.add_feed("x", [2, 2], TFRequest.DT_FLOAT, [1.0])
    with _client(eas_server.url, "tf") as client, pytest.raises(HTTPStatusError) as info:
        client.predict(request)
    assert info.value.status == info.value.code == 400
    assert "shape [2, 2] needs 4 values, got 1" in info.value.message


def test_503_twice_then_200_succeeds_after_backed_off_retries(eas_server) -> None:
    sleeps: list[float] = []
    path = f"/api/predict/flaky-2-{_tag()}"
    with _client(eas_server.url, path.rsplit("/", 1)[1], sleeps=sleeps) as client:
        assert client.predict(StringRequest(b"ok")).response_data == b"ok"
    assert eas_server.calls[path] == 3
    assert len(sleeps) == 2
    assert 0 < sleeps[0] < sleeps[1]  # exponential: [0.025, 0.05) then [0.05, 0.1)


def test_400_is_never_retried(eas_server) -> None:
    sleeps: list[float] = []
    path = f"/api/predict/bad-{_tag()}"
    client = _client(eas_server.url, path.rsplit("/", 1)[1], sleeps=sleeps)
    with client, pytest.raises(PredictException) as info:
        client.predict(StringRequest(b"x"))
    assert info.value.status == 400
    assert "feed 'x' is malformed" in info.value.message
    assert eas_server.calls[path] == 1
    assert sleeps == []


def test_persistent_503_gives_up_after_retry_count_tries(eas_server) -> None:
    sleeps: list[float] = []
    path = f"/api/predict/down-{_tag()}"
    with _client(eas_server.url, path.rsplit("/", 1)[1], sleeps=sleeps) as client:
        client.set_retry_count(3)
        with pytest.raises(HTTPStatusError) as info:
            client.predict(StringRequest(b"x"))
    assert info.value.status == 503
    assert "service down" in info.value.message
    assert eas_server.calls[path] == 3
    assert len(sleeps) == 2


def test_timeout_raises_promptly_and_is_not_retried(eas_server) -> None:
    path = f"/api/predict/slow-1000-{_tag()}"
    with _client(eas_server.url, path.rsplit("/", 1)[1], sleeps=[]) as client:
        client.set_timeout(200)
        started = time.monotonic()
        with pytest.raises(RequestTimeout) as info:
            client.predict(StringRequest(b"x"))
        elapsed = time.monotonic() - started
    assert info.value.status == 504
    assert 0.15 < elapsed < 1.5
    assert eas_server.calls[path] == 1


def test_connection_refused_is_retried_then_raised_as_connect_error() -> None:
    with socket_closed_port() as port:
        sleeps: list[float] = []
        with _client(f"http://127.0.0.1:{port}", "echo", sleeps=sleeps) as client:
            client.set_retry_count(4)
            with pytest.raises(ConnectError) as info:
                client.predict(StringRequest(b"x"))
    assert isinstance(info.value, ClientError)
    assert info.value.status == 503
    assert len(sleeps) == 3


def test_signed_requests_pass_a_token_guarded_service(token_server) -> None:
    with _client(token_server.url, "echo") as client:
        client.set_token("s3cret")
        client.set_content_type("text/plain")
        assert client.predict(StringRequest(b"signed")).response_data == b"signed"
        tf = TFRequest("s")
        tf.add_feed("x", [1], TFRequest.DT_DOUBLE, [0.5])
        client.set_service_name("tf")
        client.init()
        assert list(client.predict(tf).get_values("doubled")) == [1.0]


def test_custom_url_sends_the_plain_token(token_server) -> None:
    client = PredictClient(custom_url=f"{token_server.url}/api/predict/echo")
    client.set_token("s3cret")
    with client:
        assert client.predict(StringRequest(b"plain")).response_data == b"plain"


def test_custom_url_keeps_its_query_string(eas_server) -> None:
    with PredictClient(custom_url=f"{eas_server.url}/api/predict/query?a=1&b=x") as client:
        assert client.predict(StringRequest(b"")).response_data == b"a=1&b=x"


@pytest.mark.parametrize("token", ["", "wrong"])
def test_missing_or_wrong_token_is_a_401_without_retry(token_server, token: str) -> None:
    sleeps: list[float] = []
    before = token_server.calls["/api/predict/echo"]
    with _client(token_server.url, "echo", sleeps=sleeps) as client:
        client.set_token(token)
        with pytest.raises(HTTPStatusError) as info:
            client.predict(StringRequest(b"x"))
    assert info.value.status == 401
    assert "missing or wrong token" in info.value.message
    assert token_server.calls["/api/predict/echo"] == before + 1
    assert sleeps == []


def test_direct_mode_sends_to_the_instances_service_discovery_lists(eas_server) -> None:
    discovery = "/api/v1/servicediscovery/upstreams/echo"
    before = eas_server.calls[discovery]
    client = PredictClient(f"localhost:{eas_server.port}", "echo")
    client.set_endpoint_type(ENDPOINT_TYPE_DIRECT)
    with client:
        client.init()
        assert client.predict(StringRequest(b"direct")).response_data == b"direct"
        router = client._router
        assert router is not None
        assert router.url == f"http://127.0.0.1:{eas_server.port}/api/predict/echo"
    assert eas_server.calls[discovery] == before + 1


def test_direct_mode_falls_back_to_the_endpoint_without_discovery(eas_server) -> None:
    client = PredictClient(eas_server.url, "tf")
    client.set_endpoint_type(ENDPOINT_TYPE_DIRECT)
    request = TFRequest()
    request.add_feed("x", [1], TFRequest.DT_FLOAT, [1.5])
    with client:
        assert list(client.predict(request).get_values("total")) == [1.5]
    assert eas_server.calls["/api/v1/servicediscovery/upstreams/tf"] >= 1


def test_unknown_endpoint_type_is_refused_at_init() -> None:
    client = PredictClient("127.0.0.1:1", "echo")
    client.set_endpoint_type("VIPSERVER")
    with pytest.raises(ClientError, match="unsupported endpoint type"):
        client.init()


def test_one_client_serves_many_threads_without_mixing_responses(eas_server) -> None:
    client = _client(eas_server.url, "echo")
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


class socket_closed_port:
    """A loopback port nothing listens on (bound, never listening, so nobody else gets it)."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return int(self.sock.getsockname()[1])

    def __exit__(self, *exc_info: object) -> None:
        self.sock.close()


SDK_SCRIPT = Path(__file__).parent.parent / "protocol" / "eas_sdk_script.py"


@pytest.mark.parametrize("with_token", [False, True])
def test_published_sdk_client_is_answered_by_the_eas_functions(
    eas_sdk_python: str, eas_server, token_server, with_token: bool
) -> None:
    server, token = (token_server, "s3cret") if with_token else (eas_server, "")
    result = subprocess.run(
        [eas_sdk_python, str(SDK_SCRIPT), "client", server.url, token],
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


def test_string_requests_need_no_protobuf_installed(eas_server) -> None:
    code = (
        "import sys; sys.modules['google.protobuf'] = None\n"
        "from servekit.client import PredictClient, StringRequest\n"
        f"c = PredictClient({eas_server.url!r}, 'echo')\n"
        "print(c.predict(StringRequest(b'no protobuf')).response_data.decode())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "no protobuf"
