"""The published ``tritonclient.http`` works unchanged: config, statistics, repository index."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import servekit

httpclient = pytest.importorskip("tritonclient.http")


class Doubler(servekit.Model):
    name = "doubler"
    version = "2"
    max_batch_size = 8
    max_latency_ms = 1.5
    inputs = [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}]
    outputs = [{"name": "y", "datatype": "FP32", "shape": [-1, 3]}]

    def predict(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        return [row * 2 for row in batch]


class Broken(servekit.Model):
    name = "broken"

    def load(self) -> None:
        raise RuntimeError("weights missing")

    def predict(self, batch: list[Any]) -> list[Any]:
        return batch


@pytest.fixture(scope="module")
def live(serve_shared: Any) -> Any:
    return serve_shared([Doubler(), Broken()])


@pytest.fixture
def client(live: Any) -> Any:
    triton = httpclient.InferenceServerClient(f"127.0.0.1:{live.port}")
    yield triton
    triton.close()


def infer(client: Any, rows: int) -> None:
    x = httpclient.InferInput("x", [rows, 3], "FP32")
    x.set_data_from_numpy(np.ones((rows, 3), dtype=np.float32))
    result = client.infer("doubler", [x])
    np.testing.assert_array_equal(result.as_numpy("y"), np.full((rows, 3), 2, np.float32))


def test_model_config_describes_batching_and_tensors(client: Any) -> None:
    config = client.get_model_config("doubler")
    assert config["max_batch_size"] == 8
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == 1500
    assert config["input"] == [{"name": "x", "data_type": "TYPE_FP32", "dims": [-1, 3]}]
    assert config["output"][0]["name"] == "y"


def test_inference_statistics_count_what_ran(client: Any) -> None:
    before = client.get_inference_statistics("doubler")["model_stats"][0]
    infer(client, 2)
    infer(client, 1)
    after = client.get_inference_statistics("doubler")["model_stats"][0]
    assert after["name"] == "doubler" and after["version"] == "2"
    assert after["inference_count"] - before["inference_count"] == 3
    assert (
        after["inference_stats"]["success"]["count"] - before["inference_stats"]["success"]["count"]
        == 2
    )
    assert after["inference_stats"]["compute_infer"]["ns"] > 0
    everyone = client.get_inference_statistics()["model_stats"]
    assert {s["name"] for s in everyone} == {"doubler", "broken"}


def test_repository_index_lists_every_model_and_why_one_is_unavailable(client: Any) -> None:
    index = {entry["name"]: entry for entry in client.get_model_repository_index()}
    assert index["doubler"]["state"] == "READY" and index["doubler"]["version"] == "2"
    assert index["broken"]["state"] == "UNAVAILABLE"
    assert "weights missing" in index["broken"]["reason"]


def test_model_list_names_models_with_their_state(live: Any) -> None:
    models = live.client().get("/v2/models").json()["models"]
    states = {m["name"]: m["state"] for m in models}
    assert states == {"doubler": "ready", "broken": "failed"}


def test_config_of_an_unknown_model_is_404(client: Any) -> None:
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException, match="unknown model 'nope'"):
        client.get_model_config("nope")
