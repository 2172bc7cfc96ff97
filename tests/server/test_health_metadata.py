"""Health, server and model metadata, versions, custom operations and explain over HTTP."""

from __future__ import annotations

from typing import Any

import numpy as np

import servekit


def fp32(name: str, rows: list[list[float]]) -> dict[str, Any]:
    arr = np.asarray(rows, dtype=np.float32)
    data = arr.ravel().tolist()
    return {"name": name, "datatype": "FP32", "shape": list(arr.shape), "data": data}


class Doubler(servekit.Model):
    name = "doubler"
    inputs = [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}]
    outputs = [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}]

    def predict(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        return [row * 2 for row in batch]

    def explain(self, batch: list[np.ndarray]) -> list[Any]:
        return [{"sum": float(row.sum()), "argmax": int(row.argmax())} for row in batch]

    def op_echo(self, payload: Any) -> dict[str, Any]:
        return {"echo": payload, "model": self.name}

    def op_scale(self, payload: dict[str, Any]) -> list[float]:
        return [v * payload["factor"] for v in payload["values"]]


class Ranker(servekit.Model):
    """Answers every row with its own version number, so routing is visible in the output."""

    name = "ranker"
    outputs = [{"name": "version", "datatype": "INT64", "shape": [-1]}]

    def predict(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        return [np.int64(int(self.version)) for _ in batch]


def test_health_live_and_ready_are_200_once_models_loaded(serve):
    live = serve([Doubler()])
    client = live.client()
    assert client.get("/v2/health/live").json() == {"live": True}
    ready = client.get("/v2/health/ready")
    assert ready.status_code == 200
    assert ready.json() == {"ready": True}


def test_server_metadata_names_servekit_and_its_extensions(serve):
    live = serve([Doubler()])
    doc = live.client().get("/v2").json()
    assert doc["name"] == "servekit"
    assert doc["version"] == servekit.__version__
    assert "binary_tensor_data" in doc["extensions"]


def test_model_metadata_describes_tensors_and_platform(serve):
    live = serve([Doubler()])
    response = live.client().get("/v2/models/doubler")
    assert response.status_code == 200
    doc = response.json()
    assert doc["name"] == "doubler"
    assert doc["platform"] == "servekit"
    assert doc["versions"] == []
    assert doc["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}]
    assert doc["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}]
    assert doc["state"] == "ready"


def test_model_ready_route_reports_ready_for_name_and_version(serve):
    live = serve([Doubler(), Ranker(name="ranker:1")])
    client = live.client()
    assert client.get("/v2/models/doubler/ready").json() == {"name": "doubler", "ready": True}
    versioned = client.get("/v2/models/ranker/versions/1/ready")
    assert versioned.status_code == 200
    assert versioned.json()["ready"] is True


def test_model_metadata_with_version_lists_only_that_version(serve):
    live = serve([Ranker(name="ranker:1"), Ranker(name="ranker:2"), Ranker(name="ranker:10")])
    client = live.client()
    assert client.get("/v2/models/ranker").json()["versions"] == ["1", "2", "10"]
    doc = client.get("/v2/models/ranker/versions/2").json()
    assert doc["name"] == "ranker"
    assert doc["versions"] == ["2"]


def test_unversioned_name_routes_to_the_newest_version(serve):
    live = serve([Ranker(name="ranker:2"), Ranker(name="ranker:10"), Ranker(name="ranker:1")])
    body = {"inputs": [fp32("x", [[0.0], [1.0]])]}
    doc = live.client().post("/v2/models/ranker/infer", json=body).json()
    assert doc["model_version"] == "10"  # numerically newest, not "2" by string order
    assert doc["outputs"][0]["data"] == [10, 10]


def test_each_version_serves_its_own_predictions(serve):
    live = serve([Ranker(name="ranker:1"), Ranker(name="ranker:2")])
    client = live.client()
    body = {"inputs": [fp32("x", [[0.0]])]}
    for version in ("1", "2"):
        doc = client.post(f"/v2/models/ranker/versions/{version}/infer", json=body).json()
        assert doc["model_name"] == "ranker"
        assert doc["model_version"] == version
        assert doc["outputs"][0]["data"] == [int(version)]


def test_several_models_in_one_app_each_answer_their_own_route(serve):
    live = serve([Doubler(), Ranker(name="ranker:3")])
    client = live.client()
    doubled = client.post("/v2/models/doubler/infer", json={"inputs": [fp32("x", [[1, 2]])]})
    ranked = client.post("/v2/models/ranker/infer", json={"inputs": [fp32("x", [[1, 2]])]})
    assert doubled.json()["outputs"][0]["data"] == [2.0, 4.0]
    assert ranked.json()["outputs"][0]["data"] == [3]


def test_custom_operation_receives_the_json_payload(serve):
    live = serve([Doubler()])
    client = live.client()
    echoed = client.post("/v2/models/doubler/echo", json={"hello": [1, 2]})
    assert echoed.status_code == 200
    assert echoed.json() == {"echo": {"hello": [1, 2]}, "model": "doubler"}
    scaled = client.post("/v2/models/doubler/scale", json={"values": [1, 2], "factor": 3})
    assert scaled.json() == [3, 6]


def test_unknown_operation_is_404_listing_the_known_ones(serve):
    live = serve([Doubler()])
    response = live.client().post("/v2/models/doubler/frobnicate", json={})
    assert response.status_code == 404
    message = response.json()["error"]
    assert "frobnicate" in message
    assert "echo" in message and "scale" in message


def test_explain_returns_one_explanation_per_row(serve):
    live = serve([Doubler()])
    body = {"id": "e1", "inputs": [fp32("x", [[1, 5], [7, 2]])]}
    response = live.client().post("/v2/models/doubler/explain", json=body)
    assert response.status_code == 200
    doc = response.json()
    assert doc["id"] == "e1"
    assert doc["explanations"] == [{"sum": 6.0, "argmax": 1}, {"sum": 9.0, "argmax": 0}]


def test_explain_on_a_model_without_explain_is_501(serve):
    live = serve([Ranker(name="ranker:1")])
    response = live.client().post("/v2/models/ranker/explain", json={"inputs": [fp32("x", [[1]])]})
    assert response.status_code == 501
    assert "model 'ranker' has no explain()" in response.json()["error"]
