"""A model's declared ``inputs`` (name, datatype, shape with -1) are enforced at the v2 door:
a mismatch is a 400 naming the input and what was expected, before the model sees it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import orjson
import pytest

import servekit


def tensor(name: str, shape: list[int], data: list[Any], datatype: str = "FP64") -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


class Stacker(servekit.Model):
    """Declares ``x: FP64 [-1, 3]``; stacks the batch, as models that declare inputs do."""

    name = "stacker"
    inputs = [{"name": "x", "datatype": "FP64", "shape": [-1, 3]}]

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, ...]] = []

    def predict(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        stacked = np.stack(batch)
        self.seen.append(stacked.shape)
        return list(stacked.sum(axis=1))


class Pair(servekit.Model):
    """Two declared inputs, one BYTES; gets ``{"a": row, "b": row}`` per item."""

    name = "pair"
    inputs = [
        {"name": "a", "datatype": "INT32", "shape": [-1, 2]},
        ("b", "BYTES", [-1]),
    ]

    def predict(self, batch: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
        return [item["a"].sum() + len(item["b"]) for item in batch]


class Undeclared(servekit.Model):
    """No declared inputs: anything decodable reaches predict, as before."""

    name = "undeclared"

    def predict(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        return [np.asarray(row).ravel()[:1] for row in batch]


@pytest.fixture(scope="module")
def live(serve_shared):
    return serve_shared([Stacker(), Pair(), Undeclared()])


def post(live: Any, model: str, *inputs: dict[str, Any]) -> Any:
    return live.client().post(f"/v2/models/{model}/infer", json={"inputs": list(inputs)})


def assert_400(response: Any, *fragments: str) -> None:
    assert response.status_code == 400, response.text
    message = response.json()["error"]
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_matching_request_is_served(live):
    response = post(live, "stacker", tensor("x", [2, 3], [1, 2, 3, 4, 5, 6]))
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == [6.0, 15.0]


def test_unknown_input_name_is_400_naming_the_declared_ones(live):
    response = post(live, "stacker", tensor("y", [1, 3], [1, 2, 3]))
    assert_400(response, "model 'stacker' has no input 'y'", "inputs: x")


def test_wrong_datatype_is_400_naming_both(live):
    response = post(live, "stacker", tensor("x", [1, 3], [1, 2, 3], "INT64"))
    assert_400(response, "input 'x'", "datatype INT64", "expects FP64")


@pytest.mark.parametrize(
    ("shape", "data"),
    [
        pytest.param([1, 2], [1, 2], id="fixed-dimension"),
        pytest.param([3], [1, 2, 3], id="rank"),
        pytest.param([1, 1, 3], [1, 2, 3], id="extra-dimension"),
    ],
)
def test_shape_not_matching_is_400_naming_the_expected_shape(live, shape, data):
    response = post(live, "stacker", tensor("x", shape, data))
    assert_400(response, "input 'x'", f"shape {shape} does not match", "[-1, 3]")


def test_missing_input_of_a_multi_input_model_is_400(live):
    response = post(live, "pair", tensor("a", [1, 2], [1, 2], "INT32"))
    assert_400(response, "lacks input 'b'", "inputs: a, b")


def test_multi_input_model_with_both_inputs_is_served(live):
    response = post(
        live, "pair", tensor("a", [1, 2], [1, 2], "INT32"), tensor("b", [1], ["xyz"], "BYTES")
    )
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == [6]


def test_binary_request_is_checked_too(live):
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "datatype": "FP32",
                    "shape": [1, 3],
                    "parameters": {"binary_data_size": 12},
                }
            ]
        }
    )
    response = live.client().post(
        "/v2/models/stacker/infer",
        content=header + np.ones(3, "<f4").tobytes(),
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert_400(response, "input 'x'", "datatype FP32", "expects FP64")


def test_model_without_declared_inputs_takes_any_input(live):
    for spec in (tensor("whatever", [1, 2], [1, 2], "INT64"), tensor("x", [1], [7.0])):
        assert post(live, "undeclared", spec).status_code == 200


def test_bad_rows_never_reach_the_model_so_good_neighbours_succeed(live):
    good = tensor("x", [1, 3], [1, 1, 1])
    bad = tensor("x", [1, 4], [1, 1, 1, 1])

    def send(spec: dict[str, Any]) -> int:
        return int(post(live, "stacker", spec).status_code)

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(send, [good, bad] * 20))
    assert statuses == [200, 400] * 20
