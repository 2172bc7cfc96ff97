"""Shutdown drains: queued work finishes, new work gets 503, leftovers fail clearly."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

import servekit


def one_row(value: float) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "datatype": "FP64", "shape": [1], "data": [value]}]}


class Gated(servekit.Model):
    name = "gated"

    def __init__(self, gate: Any, **settings: Any) -> None:
        super().__init__(**settings)
        self.gate = gate
        self.seen: list[float] = []

    def predict(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        self.seen.extend(float(row) for row in batch)
        self.gate.block()
        return batch


def data(response: Any) -> list[float]:
    assert response.status_code == 200, response.text
    return response.json()["outputs"][0]["data"]


def start_busy(live: Any, gate: Any, pool: ThreadPoolExecutor, wait_until: Any) -> list[Any]:
    """One request inside the model (held by the gate), two more queued behind it."""
    client = live.client()
    batcher = live.runtime("gated").batcher
    calls = [pool.submit(client.post, "/v2/models/gated/infer", json=one_row(1))]
    gate.wait_entered()
    calls += [pool.submit(client.post, "/v2/models/gated/infer", json=one_row(v)) for v in (2, 3)]
    wait_until(lambda: batcher.queued_items == 2, "two requests are queued")
    return calls


def test_server_exit_lets_queued_requests_finish(serve, gate, wait_until):
    model = Gated(gate, max_batch_size=1)
    live = serve([model])
    with ThreadPoolExecutor(3) as pool:
        calls = start_busy(live, gate, pool, wait_until)
        live.server.should_exit = True
        wait_until(lambda: not live.accepts_connections(), "uvicorn stops listening")
        gate.open()
        assert [data(c.result(10)) for c in calls] == [[1.0], [2.0], [3.0]]
    assert sorted(model.seen) == [1.0, 2.0, 3.0]
    live.stop()
    assert live.runtime("gated").state == "stopped"


def test_app_shutdown_finishes_queued_work_and_refuses_new_with_503(serve, gate, wait_until):
    model = Gated(gate)
    live = serve([model])
    client = live.client()
    runtime = live.runtime("gated")
    with ThreadPoolExecutor(3) as pool:
        calls = start_busy(live, gate, pool, wait_until)
        assert live.loop is not None
        draining = asyncio.run_coroutine_threadsafe(live.app.shutdown(), live.loop)
        wait_until(lambda: runtime.state == "draining", "the model is draining")
        refused = client.post("/v2/models/gated/infer", json=one_row(4))
        assert refused.status_code == 503
        assert "shutting down" in refused.json()["error"]
        assert client.get("/v2/health/ready").status_code == 503
        gate.open()
        assert [data(c.result(10)) for c in calls] == [[1.0], [2.0], [3.0]]
        draining.result(10)
    assert runtime.state == "stopped"
    assert 4.0 not in model.seen
    after = client.post("/v2/models/gated/infer", json=one_row(5))
    assert after.status_code == 503


def test_work_outliving_the_drain_timeout_fails_with_a_clear_503(serve, gate, wait_until):
    model = Gated(gate)
    live = serve([model], drain_timeout=0.2)
    with ThreadPoolExecutor(3) as pool:
        calls = start_busy(live, gate, pool, wait_until)
        live.call(live.app.shutdown())  # returns once the 0.2 s drain timeout has passed
        responses = [c.result(10) for c in calls]
    for response in responses:
        assert response.status_code == 503
        assert "shut down before this work ran" in response.json()["error"]
    assert model.seen == [1.0]  # the queued rows were failed, not run
    gate.open()
