"""The batcher seen through HTTP: batches form, big requests split, failures stay isolated."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

import servekit


def scalar_rows(*values: float) -> dict[str, Any]:
    """A request whose items are single-value rows."""
    return {
        "inputs": [
            {"name": "x", "datatype": "FP64", "shape": [len(values), 1], "data": list(values)}
        ]
    }


def output_values(response: Any) -> list[float]:
    assert response.status_code == 200, response.text
    return response.json()["outputs"][0]["data"]


class Gated(servekit.Model):
    """Answers ``x * 2``; records every batch; with a gate, each batch waits for it to open.

    Rows whose value is negative make it raise (``raise_on_negative``) or return an
    ``Exception`` for that item alone (``fail_item_on_negative``).
    """

    name = "gated"

    def __init__(self, gate: Any = None, **settings: Any) -> None:
        self.raise_on_negative = settings.pop("raise_on_negative", False)
        self.fail_item_on_negative = settings.pop("fail_item_on_negative", False)
        super().__init__(**settings)
        self.gate = gate
        self.batches: list[list[float]] = []

    def predict(self, batch: list[np.ndarray]) -> list[Any]:
        values = [float(row[0]) for row in batch]
        self.batches.append(values)
        if self.gate is not None:
            self.gate.block()
        if self.raise_on_negative and any(v < 0 for v in values):
            raise RuntimeError(f"cannot rank negative values {[v for v in values if v < 0]}")
        return [
            ValueError(f"item {v} is negative") if self.fail_item_on_negative and v < 0 else row * 2
            for v, row in zip(values, batch, strict=True)
        ]


class WrongCount(servekit.Model):
    name = "wrongcount"

    def predict(self, batch: list[Any]) -> list[Any]:
        return [*batch, batch[0]]


def test_fifty_concurrent_requests_each_get_their_own_result(serve):
    live = serve([Gated()])

    async def main() -> list[list[float]]:
        async with live.async_client() as client:
            calls = [
                client.post("/v2/models/gated/infer", json=scalar_rows(i, i + 0.5))
                for i in range(50)
            ]
            return [output_values(r) for r in await asyncio.gather(*calls)]

    results = asyncio.run(main())
    assert results == [[2.0 * i, 2.0 * i + 1] for i in range(50)]


def test_concurrent_requests_are_grouped_into_batches(serve, gate):
    model = Gated(gate)
    live = serve([model])
    batcher = live.runtime("gated").batcher

    async def main() -> list[list[float]]:
        async with live.async_client() as client:
            first = asyncio.ensure_future(
                client.post("/v2/models/gated/infer", json=scalar_rows(1000))
            )
            deadline = time.monotonic() + 5
            while not gate.entered.is_set():  # the first batch holds the only instance
                assert time.monotonic() < deadline, "first batch never reached the model"
                await asyncio.sleep(0.002)
            rest = [
                asyncio.ensure_future(client.post("/v2/models/gated/infer", json=scalar_rows(i)))
                for i in range(49)
            ]
            while batcher.queued_items < 49:
                assert time.monotonic() < deadline, f"only {batcher.queued_items} queued"
                await asyncio.sleep(0.002)
            gate.open()
            responses = await asyncio.gather(first, *rest)
            return [output_values(r) for r in responses]

    results = asyncio.run(main())
    assert results == [[2000.0]] + [[2.0 * i] for i in range(49)]
    sizes = [len(b) for b in model.batches]
    assert sizes[0] == 1
    assert max(sizes) == 32  # the default max_batch_size, filled by waiting requests
    assert sum(sizes) == 50
    assert live.runtime("gated").batcher.stats.batch_sizes[32] == 1


def test_request_larger_than_max_batch_size_is_split_and_reassembled_in_order(serve):
    model = Gated(max_batch_size=4)
    live = serve([model])
    values = [float(v) for v in range(10)]
    response = live.client().post("/v2/models/gated/infer", json=scalar_rows(*values))
    assert output_values(response) == [2 * v for v in values]
    assert model.batches == [values[0:4], values[4:8], values[8:10]]


def test_a_batch_that_raises_fails_only_the_request_that_caused_it_and_server_keeps_serving(
    serve, gate, wait_until
):
    model = Gated(gate, raise_on_negative=True)
    live = serve([model])
    client = live.client()
    batcher = live.runtime("gated").batcher
    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(client.post, "/v2/models/gated/infer", json=scalar_rows(1))
        gate.wait_entered()
        bad = pool.submit(client.post, "/v2/models/gated/infer", json=scalar_rows(-1))
        neighbour = pool.submit(client.post, "/v2/models/gated/infer", json=scalar_rows(3))
        wait_until(lambda: batcher.queued_items == 2, "both requests are queued")
        gate.open()
        assert output_values(first.result(10)) == [2.0]
        failed = bad.result(10)
        assert failed.status_code == 500
        assert "cannot rank negative values [-1.0]" in failed.json()["error"]
        assert output_values(neighbour.result(10)) == [6.0]  # re-run alone, it succeeded
    assert sorted(model.batches[1]) == [-1.0, 3.0]  # the two really shared the failing batch
    assert output_values(client.post("/v2/models/gated/infer", json=scalar_rows(4))) == [8.0]


def test_an_exception_returned_for_one_item_fails_that_request_alone(serve, gate, wait_until):
    model = Gated(gate, fail_item_on_negative=True)
    live = serve([model])
    client = live.client()
    batcher = live.runtime("gated").batcher
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(client.post, "/v2/models/gated/infer", json=scalar_rows(1))
        gate.wait_entered()
        before = pool.submit(client.post, "/v2/models/gated/infer", json=scalar_rows(2))
        wait_until(lambda: batcher.queued_items == 1, "the first neighbour is queued")
        bad = pool.submit(client.post, "/v2/models/gated/infer", json=scalar_rows(5, -7))
        wait_until(lambda: batcher.queued_items == 3, "the bad request is queued")
        after = pool.submit(client.post, "/v2/models/gated/infer", json=scalar_rows(9))
        wait_until(lambda: batcher.queued_items == 4, "the last neighbour is queued")
        gate.open()
        assert output_values(first.result(10)) == [2.0]
        assert output_values(before.result(10)) == [4.0]
        assert output_values(after.result(10)) == [18.0]
        failed = bad.result(10)
    assert model.batches[1] == [2.0, 5.0, -7.0, 9.0]  # all four shared one batch
    assert failed.status_code == 500
    assert "item -7.0 is negative" in failed.json()["error"]


def test_wrong_number_of_outputs_is_a_clear_500(serve):
    live = serve([WrongCount()])
    client = live.client()
    response = client.post("/v2/models/wrongcount/infer", json=scalar_rows(1, 2))
    assert response.status_code == 500
    message = response.json()["error"]
    assert "returned 3 results for a batch of 2 items" in message
    assert "exactly one result per item" in message
    again = client.post("/v2/models/wrongcount/infer", json=scalar_rows(1, 2))
    assert again.status_code == 500  # the dispatcher survived and answers again
