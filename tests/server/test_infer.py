"""``POST …/infer``: JSON and binary tensors, one or several inputs, outputs, BYTES."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson

import servekit


def tensor(name: str, data: Any, datatype: str = "FP32") -> dict[str, Any]:
    arr = np.asarray(data)
    flat = arr.ravel().tolist()
    return {"name": name, "datatype": datatype, "shape": list(arr.shape), "data": flat}


class RowRecorder(servekit.Model):
    """One input: records what each item looks like, answers ``row * 10``."""

    name = "rows"
    outputs = [{"name": "scaled", "datatype": "FP32", "shape": [-1, 3]}]

    def __init__(self) -> None:
        super().__init__()
        self.items: list[Any] = []

    def predict(self, batch: list[Any]) -> list[Any]:
        self.items.extend(batch)
        return [row * 10 for row in batch]


class Unnamed(servekit.Model):
    """No output metadata: the single output gets the default name."""

    def predict(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        return [row + 1 for row in batch]


class SumDiff(servekit.Model):
    """Two inputs: gets ``{"a": row, "b": row}`` per item, answers a dict of two outputs."""

    name = "sumdiff"

    def __init__(self) -> None:
        super().__init__()
        self.items: list[Any] = []

    def predict(self, batch: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        self.items.extend(batch)
        return [{"sum": item["a"] + item["b"], "diff": item["a"] - item["b"]} for item in batch]


class Shout(servekit.Model):
    """BYTES in, BYTES out: upper-cases each string."""

    name = "shout"
    outputs = [{"name": "loud", "datatype": "BYTES", "shape": [-1]}]

    def predict(self, batch: list[Any]) -> list[Any]:
        return [np.array(item.upper(), dtype=object) for item in batch]


def binary_request(header: dict[str, Any], *chunks: bytes) -> tuple[bytes, dict[str, str]]:
    """A binary-extension body: JSON header then raw tensors, plus the length header."""
    head = orjson.dumps(header)
    headers = {
        "Inference-Header-Content-Length": str(len(head)),
        "Content-Type": "application/octet-stream",
    }
    return head + b"".join(chunks), headers


def split_binary_response(response: Any) -> tuple[dict[str, Any], bytes]:
    length = int(response.headers["inference-header-content-length"])
    return orjson.loads(response.content[:length]), response.content[length:]


def bytes_elements(*items: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def test_one_input_gives_the_model_one_row_array_per_item(serve):
    model = RowRecorder()
    live = serve([model])
    rows = [[1, 2, 3], [4, 5, 6]]
    response = live.client().post("/v2/models/rows/infer", json={"inputs": [tensor("x", rows)]})
    assert response.status_code == 200, response.text
    assert [type(item) for item in model.items] == [np.ndarray, np.ndarray]
    assert [item.tolist() for item in model.items] == rows
    assert model.items[0].dtype == np.float32
    out = response.json()["outputs"]
    assert out == [
        {"name": "scaled", "datatype": "FP32", "shape": [2, 3], "data": [10, 20, 30, 40, 50, 60]}
    ]


def test_response_echoes_request_id_and_model_name(serve):
    live = serve([RowRecorder()])
    body = {"id": "req-42", "inputs": [tensor("x", [[1, 2, 3]])]}
    doc = live.client().post("/v2/models/rows/infer", json=body).json()
    assert doc["id"] == "req-42"
    assert doc["model_name"] == "rows"


def test_array_output_without_metadata_gets_the_default_name(serve):
    live = serve([Unnamed()])
    body = {"inputs": [tensor("x", [[1, 2], [3, 4]], "INT32")]}
    doc = live.client().post("/v2/models/unnamed/infer", json=body).json()
    assert doc["outputs"] == [
        {"name": "output-0", "datatype": "INT32", "shape": [2, 2], "data": [2, 3, 4, 5]}
    ]


def test_several_inputs_give_the_model_a_dict_per_row_and_dict_outputs(serve):
    model = SumDiff()
    live = serve([model])
    a, b = tensor("a", [[5, 6], [7, 8]], "INT64"), tensor("b", [[1, 1], [2, 3]], "INT64")
    body = {"inputs": [a, b]}
    response = live.client().post("/v2/models/sumdiff/infer", json=body)
    assert response.status_code == 200, response.text
    assert [sorted(item) for item in model.items] == [["a", "b"], ["a", "b"]]
    assert model.items[1]["a"].tolist() == [7, 8]
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    assert outputs["sum"]["data"] == [6, 7, 9, 11]
    assert outputs["sum"]["shape"] == [2, 2]
    assert outputs["diff"]["data"] == [4, 5, 5, 5]


def test_requested_outputs_return_only_that_subset(serve):
    live = serve([SumDiff()])
    body = {
        "inputs": [tensor("a", [[5]], "INT64"), tensor("b", [[1]], "INT64")],
        "outputs": [{"name": "diff"}],
    }
    doc = live.client().post("/v2/models/sumdiff/infer", json=body).json()
    assert [o["name"] for o in doc["outputs"]] == ["diff"]
    assert doc["outputs"][0]["data"] == [4]


def test_requesting_an_unknown_output_is_400_naming_the_known_ones(serve):
    live = serve([SumDiff()])
    body = {
        "inputs": [tensor("a", [[5]], "INT64"), tensor("b", [[1]], "INT64")],
        "outputs": [{"name": "product"}],
    }
    response = live.client().post("/v2/models/sumdiff/infer", json=body)
    assert response.status_code == 400
    message = response.json()["error"]
    assert "product" in message and "sum" in message and "diff" in message


def test_binary_tensor_request_and_binary_response(serve):
    model = RowRecorder()
    live = serve([model])
    rows = np.array([[1.5, 2.5, 3.5], [4.0, 5.0, 6.0]], dtype="<f4")
    header = {
        "inputs": [
            {
                "name": "x",
                "datatype": "FP32",
                "shape": [2, 3],
                "parameters": {"binary_data_size": rows.nbytes},
            },
        ],
        "outputs": [{"name": "scaled", "parameters": {"binary_data": True}}],
    }
    body, headers = binary_request(header, rows.tobytes())
    response = live.client().post("/v2/models/rows/infer", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    doc, raw = split_binary_response(response)
    (out,) = doc["outputs"]
    assert out["name"] == "scaled"
    assert "data" not in out
    assert out["parameters"]["binary_data_size"] == rows.nbytes == len(raw)
    got = np.frombuffer(raw, dtype="<f4").reshape(out["shape"])
    np.testing.assert_array_equal(got, rows * 10)
    assert [item.tolist() for item in model.items] == rows.tolist()


def test_binary_data_output_parameter_makes_every_output_binary(serve):
    live = serve([SumDiff()])
    body = {
        "parameters": {"binary_data_output": True},
        "inputs": [tensor("a", [[5, 6]], "INT64"), tensor("b", [[1, 2]], "INT64")],
    }
    response = live.client().post("/v2/models/sumdiff/infer", json=body)
    assert response.status_code == 200, response.text
    doc, raw = split_binary_response(response)
    sizes = {o["name"]: o["parameters"]["binary_data_size"] for o in doc["outputs"]}
    assert sizes == {"sum": 16, "diff": 16}
    values: dict[str, list[int]] = {}
    offset = 0
    for out in doc["outputs"]:
        size = out["parameters"]["binary_data_size"]
        values[out["name"]] = np.frombuffer(raw[offset : offset + size], "<i8").tolist()
        offset += size
    assert values == {"sum": [6, 8], "diff": [4, 4]}
    assert offset == len(raw)


def test_json_request_can_ask_for_one_binary_output(serve):
    live = serve([SumDiff()])
    body = {
        "inputs": [tensor("a", [[5]], "INT64"), tensor("b", [[1]], "INT64")],
        "outputs": [{"name": "sum", "parameters": {"binary_data": True}}, {"name": "diff"}],
    }
    response = live.client().post("/v2/models/sumdiff/infer", json=body)
    doc, raw = split_binary_response(response)
    by_name = {o["name"]: o for o in doc["outputs"]}
    assert by_name["diff"]["data"] == [4]
    assert np.frombuffer(raw, "<i8").tolist() == [6]


def test_bytes_tensors_round_trip_as_json_strings(serve):
    live = serve([Shout()])
    body = {"inputs": [{"name": "s", "datatype": "BYTES", "shape": [2], "data": ["héllo", "ok"]}]}
    response = live.client().post("/v2/models/shout/infer", json=body)
    assert response.status_code == 200, response.text
    (out,) = response.json()["outputs"]
    assert out["datatype"] == "BYTES"
    assert out["shape"] == [2]
    assert out["data"] == ["HéLLO", "OK"]  # bytes.upper() leaves non-ASCII alone


def test_bytes_tensors_round_trip_as_binary(serve):
    live = serve([Shout()])
    raw_in = bytes_elements(b"abc", b"", b"\x00z")
    header = {
        "parameters": {"binary_data_output": True},
        "inputs": [
            {
                "name": "s",
                "datatype": "BYTES",
                "shape": [3],
                "parameters": {"binary_data_size": len(raw_in)},
            },
        ],
    }
    body, headers = binary_request(header, raw_in)
    response = live.client().post("/v2/models/shout/infer", content=body, headers=headers)
    assert response.status_code == 200, response.text
    doc, raw = split_binary_response(response)
    assert doc["outputs"][0]["datatype"] == "BYTES"
    assert raw == bytes_elements(b"ABC", b"", b"\x00Z")
