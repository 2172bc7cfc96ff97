"""Malformed bodies on a real server: a 4xx naming the problem on the v2 and EAS doors, never a
500, and the server keeps serving."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import servekit
from support.fuzz_bodies import dumps, feeds, tf_body, torch_body, v2_documents

GOOD = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 1], "data": [1, 2]}]}


class Echo(servekit.Model):
    name = "echo"

    def predict(self, batch: list[Any]) -> list[Any]:
        return batch


class EchoTF(servekit.Model):
    name = "echo_tf"
    eas_format = "tensorflow"

    def predict(self, batch: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        return batch


class EchoTorch(servekit.Model):
    name = "echo_torch"
    eas_format = "pytorch"

    def predict(self, batch: list[list[np.ndarray]]) -> list[list[np.ndarray]]:
        return batch


@pytest.fixture(scope="module")
def live(serve_shared):
    return serve_shared([Echo(), EchoTF(), EchoTorch()])


@pytest.fixture(scope="module")
def fuzz_client(live):
    return live.client()


def assert_serving(client: Any) -> None:
    response = client.post("/v2/models/echo/infer", json=GOOD)
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == [1.0, 2.0]


def deep(depth: int, leaf: bytes, shape: list[int]) -> bytes:
    head = b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": %s, "data": ' % (
        orjson.dumps(shape)
    )
    return head + b"[" * depth + leaf + b"]" * depth + b"}]}"


def test_900_deep_data_is_flattened_like_any_nesting(live):
    client = live.client()
    response = client.post("/v2/models/echo/infer", content=deep(900, b"1, 2", [2, 1]))
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == [1.0, 2.0]


def test_900_deep_data_with_the_wrong_count_is_400(live):
    client = live.client()
    response = client.post("/v2/models/echo/infer", content=deep(900, b"1, 2", [1]))
    assert response.status_code == 400, response.text
    assert "shape [1] has 1 elements but data has 2" in response.json()["error"]
    assert_serving(client)


FLOAT = 1  # DT_FLOAT in both EAS protobufs


@pytest.mark.parametrize(
    ("shape", "values", "fragment"),
    [
        pytest.param([1] * 65, [1.0], "65 dimensions; at most 64", id="65-dimensions"),
        pytest.param([0, 2**62, 2**62], [], "too large for any array", id="huge-shape"),
        pytest.param([2, -1], [], "negative dimension", id="negative"),
    ],
)
@pytest.mark.parametrize(("model", "encode"), [("echo_tf", tf_body), ("echo_torch", torch_body)])
def test_eas_tensor_shapes_no_array_can_have_are_400(live, model, encode, shape, values, fragment):
    client = live.client()
    response = client.post(f"/api/predict/{model}", content=encode([(FLOAT, shape, values)]))
    assert response.status_code == 400, response.text
    assert fragment in response.json()["error"]
    assert_serving(client)


def test_eas_zero_rows_reach_the_model_as_one_empty_item(live):
    response = live.client().post("/api/predict/echo_tf", content=tf_body([(FLOAT, [0, 3], [])]))
    assert response.status_code == 200, response.text


SERVER_FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@SERVER_FUZZ
@given(
    v2_documents(binary=False),
    v2_documents(binary=True),
    st.binary(max_size=40),
    feeds,
)
def test_random_bodies_never_get_a_500_and_the_server_keeps_serving(
    fuzz_client, json_doc: Any, binary_doc: Any, tail: bytes, parts: list[Any]
):
    client = fuzz_client
    header = dumps(binary_doc)
    sent = [
        client.post("/v2/models/echo/infer", content=dumps(json_doc)),
        client.post(
            "/v2/models/echo/infer",
            content=header + tail,
            headers={"Inference-Header-Content-Length": str(len(header))},
        ),
        client.post("/api/predict/echo_tf", content=tf_body(parts) + tail[:3]),
        client.post("/api/predict/echo_torch", content=torch_body(parts)),
    ]
    for response in sent:
        assert response.status_code < 500, (response.request.url, response.text)
    assert_serving(client)
