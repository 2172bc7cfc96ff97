"""One bad request never fails the good requests batched with it (issue 13, 1b).

Against a real server: rows that cannot be stacked never share a batch, and when ``predict``
raises on a batch of several requests, each request is re-run alone so only the one that
makes ``predict`` raise gets the 500.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

import servekit


def rows(width: int, value: float = 1.0) -> dict[str, Any]:
    return {
        "inputs": [{"name": "x", "datatype": "FP64", "shape": [1, width], "data": [value] * width}]
    }


class Stacker(servekit.Model):
    """Declares no inputs; ``predict`` stacks its batch, as many real models do."""

    name = "stacker"

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.batches: list[list[tuple[int, ...]]] = []

    def predict(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        self.batches.append([row.shape for row in batch])
        stacked = np.stack(batch)
        return list(stacked.sum(axis=1, keepdims=True))


class Picky(servekit.Model):
    """Raises on the whole batch when any row holds the value 13."""

    name = "picky"

    def __init__(self, gate: Any = None, **settings: Any) -> None:
        super().__init__(**settings)
        self.gate = gate
        self.batches: list[list[float]] = []

    def predict(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        values = [float(row[0]) for row in batch]
        self.batches.append(values)
        if self.gate is not None:
            self.gate.block()
        if 13.0 in values:
            raise ValueError("unlucky row: 13")
        return [row * 2 for row in batch]


def test_rows_that_cannot_stack_never_share_a_batch(serve):
    model = Stacker(max_latency_ms=20.0, idle_batch_size=8)
    live = serve([model])
    client = live.client()
    widths = [13, 12] * 40

    def send(width: int) -> tuple[int, int, Any]:
        response = client.post("/v2/models/stacker/infer", json=rows(width))
        return width, response.status_code, response.json()

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, widths))
    failed = [(w, status, body) for w, status, body in answers if status != 200]
    assert not failed, f"{len(failed)} of {len(answers)} requests failed, e.g. {failed[:2]}"
    for width, _, body in answers:
        assert body["outputs"][0]["data"] == [float(width)]
    for batch in model.batches:
        assert len(set(batch)) == 1, f"rows of different shapes shared a batch: {batch}"
    assert sum(len(b) for b in model.batches) == len(widths)  # no re-runs were needed


def test_a_request_that_makes_predict_raise_fails_alone(serve, gate, wait_until):
    model = Picky(gate)
    live = serve([model])
    client = live.client()
    runtime = live.runtime("picky")
    path = "/v2/models/picky/infer"
    with ThreadPoolExecutor(5) as pool:
        first = pool.submit(client.post, path, json=rows(1, 1.0))
        gate.wait_entered()
        neighbours = []
        for queued, value in enumerate((2.0, 3.0), start=1):
            neighbours.append(pool.submit(client.post, path, json=rows(1, value)))
            wait_until(lambda q=queued: runtime.batcher.queued_items == q, f"{value} is queued")
        bad = pool.submit(client.post, path, json=rows(1, 13.0))
        wait_until(lambda: runtime.batcher.queued_items == 3, "the bad request is queued")
        last = pool.submit(client.post, path, json=rows(1, 4.0))
        wait_until(lambda: runtime.batcher.queued_items == 4, "the last neighbour is queued")
        gate.open()
        assert first.result(10).json()["outputs"][0]["data"] == [2.0]
        for future, value in zip([*neighbours, last], (2.0, 3.0, 4.0), strict=True):
            response = future.result(10)
            assert response.status_code == 200, response.text
            assert response.json()["outputs"][0]["data"] == [2 * value]
        failed = bad.result(10)
    assert failed.status_code == 500
    assert "unlucky row: 13" in failed.json()["error"]
    assert model.batches[1] == [2.0, 3.0, 13.0, 4.0]  # they really shared the failing batch
    assert sorted(model.batches[2:]) == [[2.0], [3.0], [4.0], [13.0]]  # each re-run alone
    stats = runtime.batcher.stats
    assert stats.isolation_reruns == 1
    assert (stats.completed, stats.failed) == (4, 1)


class Broken(servekit.Model):
    name = "broken"

    def predict(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        raise ValueError("all input arrays must have the same shape")


def test_repeated_model_failures_log_one_traceback(serve, caplog):
    caplog.set_level(logging.INFO)
    live = serve([Broken()])
    client = live.client()
    for _ in range(30):
        response = client.post("/v2/models/broken/infer", json=rows(2))
        assert response.status_code == 500
        assert "all input arrays must have the same shape" in response.json()["error"]
    tracebacks = [r for r in caplog.records if r.exc_info is not None]
    assert len(tracebacks) == 1, [r.getMessage() for r in tracebacks[:3]]


class Forgetful(servekit.Model):
    """predict returns None; postprocess is overridden, so run_batch reads the outputs."""

    name = "forgetful"

    def predict(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        return None  # type: ignore[return-value]

    def postprocess(self, output: np.ndarray) -> np.ndarray:
        return output


def test_predict_returning_none_says_what_predict_must_return(serve):
    live = serve([Forgetful()])
    response = live.client().post("/v2/models/forgetful/infer", json=rows(2))
    assert response.status_code == 500
    assert "predict returned NoneType; it must return a list" in response.json()["error"]
