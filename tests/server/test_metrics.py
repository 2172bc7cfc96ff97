"""``GET /metrics``: Prometheus text with servekit's per-model counters."""

from __future__ import annotations

from typing import Any

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

import servekit


class Echo(servekit.Model):
    name = "echo"

    def predict(self, batch: list[np.ndarray]) -> list[Any]:
        return batch


def samples(text: str) -> dict[tuple[str, str], float]:
    """``{(sample name, model label): value}`` from a Prometheus text exposition."""
    return {
        (sample.name, sample.labels.get("model", "")): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_count_requests_items_and_batches_per_model(serve):
    live = serve([Echo(name="echo:1"), Echo(name="other")])
    client = live.client()
    for rows in (1, 2, 3):
        body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [rows], "data": [0] * rows}]}
        assert client.post("/v2/models/echo/infer", json=body).status_code == 200
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'servekit_requests_total{model="echo:1"} 3.0' in response.text
    values = samples(response.text)
    assert values[("servekit_requests_total", "echo:1")] == 3
    assert values[("servekit_items_total", "echo:1")] == 6
    assert values[("servekit_completed_total", "echo:1")] == 3
    assert values[("servekit_batches_total", "echo:1")] == 3
    assert values[("servekit_requests_total", "other")] == 0
    assert values[("servekit_model_ready", "echo:1")] == 1
    assert values[("servekit_queued_items", "echo:1")] == 0


def test_metrics_count_refusals_and_failures(serve):
    live = serve([Echo(max_queue_size=2)])
    client = live.client()
    too_many = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [3], "data": [0] * 3}]}
    assert client.post("/v2/models/echo/infer", json=too_many).status_code == 413
    values = samples(client.get("/metrics").text)
    assert values[("servekit_refused_total", "echo")] == 1
    assert values[("servekit_completed_total", "echo")] == 0
