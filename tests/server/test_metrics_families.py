"""``GET /metrics`` families after real traffic: latency histograms by door, route and status,
per-batch histograms, and errors answered before any model (door "http", model "")."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

import servekit
from servekit.server.metrics import SECONDS


class Checked(servekit.Model):
    """Echoes; a negative value fails ``validate`` (400); ``gate`` holds ``predict``."""

    name = "checked"

    def __init__(self, gate: Any = None, **settings: Any) -> None:
        super().__init__(**settings)
        self.gate = gate

    def validate(self, request: Any) -> None:
        if float(np.asarray(request["x"]).min()) < 0:
            raise ValueError("x must be >= 0")

    def predict(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        if self.gate is not None:
            self.gate.block()
        return batch


class Broken(servekit.Model):
    name = "broken"

    def load(self) -> None:
        raise RuntimeError("no weights")

    def predict(self, batch: list[Any]) -> list[Any]:
        return batch


def rows(*values: float) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "datatype": "FP32", "shape": [len(values)], "data": values}]}


def scrape(client: Any) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """``{(sample name, labels): value}`` of one scrape."""
    response = client.get("/metrics")
    assert response.status_code == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_requests_count_by_door_route_and_status_with_latency_buckets(serve):
    live = serve([Checked(name="checked:1")])
    client = live.client()
    before = scrape(client)
    assert client.post("/v2/models/checked/infer", json=rows(1, 2)).status_code == 200
    assert client.post("/v2/models/checked/infer", json=rows(3)).status_code == 200
    assert client.post("/v2/models/checked/infer", json=rows(-1)).status_code == 400
    assert client.post("/v2/models/nope/infer", json=rows(1)).status_code == 404
    assert client.post("/v2/models/checked/infer", content=b"{not json").status_code == 400
    after = scrape(client)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    ok = {"model": "checked:1", "door": "v2", "route": "infer", "status": "200"}
    assert value(after, "servekit_request_duration_seconds_count", **ok) == 2
    assert value(after, "servekit_request_duration_seconds_bucket", **ok, le="+Inf") == 2
    assert 0 < value(after, "servekit_request_duration_seconds_sum", **ok) < 10
    cumulative = [
        value(after, "servekit_request_duration_seconds_bucket", **ok, le=repr(b)) for b in SECONDS
    ]
    assert cumulative == sorted(cumulative) and cumulative[0] >= 0 and cumulative[-1] == 2
    rejected = {**ok, "status": "400"}
    assert value(after, "servekit_request_duration_seconds_count", **rejected) == 1
    assert value(after, "servekit_responses_total", model="checked:1", door="v2", status="200") == 2
    assert value(after, "servekit_responses_total", model="checked:1", door="v2", status="400") == 1
    # answered by the HTTP kit before any model: unknown model, malformed body
    unknown = {"model": "", "door": "http", "route": "/v2/models/{name}/infer", "status": "404"}
    assert grew("servekit_request_duration_seconds_count", **unknown) == 1
    assert grew("servekit_responses_total", model="", door="http", status="404") == 1
    assert grew("servekit_responses_total", model="", door="http", status="400") == 1
    # per batch: two batches of 2 and 1 items
    model = {"model": "checked:1"}
    assert value(after, "servekit_batch_size_count", **model) == 2
    assert value(after, "servekit_batch_size_sum", **model) == 3
    assert value(after, "servekit_batch_size_bucket", **model, le="1.0") == 1
    assert value(after, "servekit_batch_size_bucket", **model, le="2.0") == 2
    assert value(after, "servekit_batch_predict_seconds_count", **model) == 2
    assert value(after, "servekit_batch_queue_wait_seconds_count", **model) == 2
    assert value(after, "servekit_inflight_batches", **model) == 0
    assert value(after, "servekit_model_ready", **model) == 1
    assert value(after, "servekit_model_load_seconds", **model) > 0
    assert value(after, "servekit_items_total", **model) == 3


def test_queue_full_is_a_429_and_counts_as_refused(serve, gate, wait_until):
    live = serve([Checked(gate, max_batch_size=1, max_queue_size=1)])
    client = live.client()
    batcher = live.runtime("checked").batcher
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(client.post, "/v2/models/checked/infer", json=rows(1))
        gate.wait_entered()
        second = pool.submit(client.post, "/v2/models/checked/infer", json=rows(2))
        wait_until(lambda: batcher.queued_items == 1, "one request is queued")
        samples = scrape(client)
        assert value(samples, "servekit_queued_items", model="checked") == 1
        assert value(samples, "servekit_inflight_batches", model="checked") == 1
        # the HTTP kit's own counts (model "") belong to the process: compare, don't assume 0
        kit_429 = value(samples, "servekit_responses_total", model="", door="http", status="429")
        assert client.post("/v2/models/checked/infer", json=rows(3)).status_code == 429
        gate.open()
        assert first.result(10).status_code == second.result(10).status_code == 200
    samples = scrape(client)
    full = {"model": "checked", "door": "v2", "route": "infer", "status": "429"}
    assert value(samples, "servekit_request_duration_seconds_count", **full) == 1
    assert value(samples, "servekit_responses_total", model="checked", door="v2", status="200") == 2
    assert value(samples, "servekit_refused_total", model="checked") == 1
    assert value(samples, "servekit_inflight_batches", model="checked") == 0
    # a 429 reached the model's runtime: the HTTP kit did not count it a second time
    assert (
        value(samples, "servekit_responses_total", model="", door="http", status="429") == kit_429
    )


def test_a_failed_load_counts_and_shows_not_ready(serve):
    live = serve([Broken(), Checked()])
    samples = scrape(live.client())
    assert value(samples, "servekit_model_load_failures_total", model="broken") == 1
    assert value(samples, "servekit_model_ready", model="broken") == 0
    assert value(samples, "servekit_model_load_failures_total", model="checked") == 0


def test_metrics_off_keeps_the_batcher_totals_only(serve):
    live = serve([Checked()], metrics=False)
    client = live.client()
    assert client.post("/v2/models/checked/infer", json=rows(1)).status_code == 200
    samples = scrape(client)
    assert value(samples, "servekit_requests_total", model="checked") == 1
    assert not [k for k in samples if k[0].startswith("servekit_batch_size")]
    assert value(samples, "servekit_responses_total", model="checked", door="v2", status="200") == 0
    assert live.runtime("checked").metrics is None
