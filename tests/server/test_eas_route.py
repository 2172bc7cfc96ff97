"""The PAI-EAS predict route, driven by the published eas-prediction client, unchanged."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

import servekit
from servekit.server import App
from support.servers import LiveServer

SCRIPT = Path(__file__).with_name("eas_client_script.py")


class Shout(servekit.Model):
    name = "shout"

    def predict(self, batch: list[bytes]) -> list[bytes]:
        return [item.upper() for item in batch]


class DoubleTF(servekit.Model):
    name = "double_tf"
    eas_format = "tensorflow"

    def predict(self, batch: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        return [{"doubled": feeds["x"] * 2, "ignored": feeds["x"]} for feeds in batch]


class SquareTorch(servekit.Model):
    name = "square_torch"
    eas_format = "pytorch"

    def predict(self, batch: list[list[np.ndarray]]) -> list[list[np.ndarray]]:
        return [[tensors[0] ** 2] for tensors in batch]


def _server(token: str | None) -> LiveServer:
    app = App([Shout(), DoubleTF(), SquareTorch()], token=token)
    live = LiveServer(app).start()
    live.call(app.wait_loaded())
    return live


@pytest.fixture(scope="module")
def open_server() -> Iterator[LiveServer]:
    live = _server(None)
    yield live
    live.stop()


@pytest.fixture(scope="module")
def token_server() -> Iterator[LiveServer]:
    live = _server("s3cret-token")
    yield live
    live.stop()


def sdk(python: str, live: LiveServer, service: str, kind: str, token: str = "") -> Any:
    endpoint = f"127.0.0.1:{live.port}"
    done = subprocess.run(
        [python, str(SCRIPT), endpoint, service, kind, token],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_sdk_string_request_reaches_the_model_as_bytes(
    eas_sdk_python: str, open_server: LiveServer
) -> None:
    assert sdk(eas_sdk_python, open_server, "shout", "string") == {"body": "HELLO SERVEKIT"}


def test_sdk_tf_request_gets_only_the_fetched_output(
    eas_sdk_python: str, open_server: LiveServer
) -> None:
    reply = sdk(eas_sdk_python, open_server, "double_tf", "tf")
    assert reply == {"shape": [2, 2], "values": [2.0, 4.0, 6.0, 8.0]}


def test_sdk_torch_request_by_index(eas_sdk_python: str, open_server: LiveServer) -> None:
    reply = sdk(eas_sdk_python, open_server, "square_torch", "torch")
    assert reply == {"shape": [3], "values": [1.0, 4.0, 9.0]}


def test_sdk_with_the_right_token_is_served(eas_sdk_python: str, token_server: LiveServer) -> None:
    reply = sdk(eas_sdk_python, token_server, "shout", "string", "s3cret-token")
    assert reply == {"body": "HELLO SERVEKIT"}


def test_sdk_with_a_wrong_or_missing_token_gets_401(
    eas_sdk_python: str, token_server: LiveServer
) -> None:
    wrong = sdk(eas_sdk_python, token_server, "shout", "string", "not-it")
    assert wrong["code"] == 401 and "token" in wrong["error"]
    missing = httpx.post(f"{token_server.url}/api/predict/shout", content=b"x")
    assert missing.status_code == 401


def test_plain_and_bearer_tokens_guard_the_v2_routes(token_server: LiveServer) -> None:
    url = f"{token_server.url}/v2/models/shout"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
    assert httpx.get(url, headers={"Authorization": "s3cret-token"}).status_code == 200
    assert httpx.get(f"{token_server.url}/v2/health/live").status_code == 200


def test_garbage_protobuf_gets_a_clear_400_and_the_server_keeps_serving(
    open_server: LiveServer,
) -> None:
    bad = httpx.post(f"{open_server.url}/api/predict/double_tf", content=b"\xff\xfe garbage")
    assert bad.status_code == 400
    assert "PredictRequest" in bad.json()["error"]
    good = httpx.post(f"{open_server.url}/api/predict/shout", content=b"still here")
    assert good.status_code == 200 and good.content == b"STILL HERE"


def test_unknown_service_is_404(open_server: LiveServer) -> None:
    reply = httpx.post(f"{open_server.url}/api/predict/nope", content=b"x")
    assert reply.status_code == 404 and "nope" in reply.json()["error"]


def test_servekit_predict_client_against_the_real_server(token_server: LiveServer) -> None:
    from servekit.client import PredictClient, StringRequest, TFRequest, TorchRequest

    def client(service: str) -> PredictClient:
        made = PredictClient(f"127.0.0.1:{token_server.port}", service)
        made.set_token("s3cret-token")
        made.init()
        return made

    shout, double, square = client("shout"), client("double_tf"), client("square_torch")
    assert shout.predict(StringRequest(b"quiet")).response_data == b"QUIET"
    tf = TFRequest("serving_default")
    tf.add_feed("x", [1, 3], TFRequest.DT_FLOAT, [1.0, 2.0, 3.0])
    tf.add_fetch("doubled")
    tf_reply = double.predict(tf)
    assert tf_reply.get_tensor_shape("doubled") == [1, 3]
    assert list(tf_reply.get_values("doubled")) == [2.0, 4.0, 6.0]
    torch = TorchRequest()
    torch.add_feed(0, [2], TorchRequest.DT_FLOAT, [3.0, 4.0])
    torch_reply = square.predict(torch)
    assert list(torch_reply.get_values(0)) == [9.0, 16.0]
    for made in (shout, double, square):
        made.close()


def test_a_large_tf_body_is_decoded_off_the_loop_and_answered(open_server: LiveServer) -> None:
    from servekit.client import PredictClient, TFRequest

    values = np.arange(600_000, dtype=np.float32)  # 2.4 MB of feed: decoded in a worker thread
    client = PredictClient(f"127.0.0.1:{open_server.port}", "double_tf")
    client.init()
    tf = TFRequest("serving_default")
    tf.add_feed("x", [600_000], TFRequest.DT_FLOAT, values.tolist())
    tf.add_fetch("doubled")
    reply = client.predict(tf)
    assert len(tf.to_string()) > 1 << 20
    np.testing.assert_array_equal(np.asarray(reply.get_values("doubled")), values * 2)
    client.close()
