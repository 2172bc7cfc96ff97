"""``async def predict`` models over HTTP: batched like any model, run on the event loop."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from tests.server.conftest import LiveServer

import servekit

Serve = Callable[..., LiveServer]


def scalar_rows(*values: float) -> dict[str, Any]:
    return {
        "inputs": [
            {"name": "x", "datatype": "FP64", "shape": [len(values), 1], "data": list(values)}
        ]
    }


def output_values(response: Any) -> list[float]:
    assert response.status_code == 200, response.text
    values: list[float] = response.json()["outputs"][0]["data"]
    return values


class AsyncDouble(servekit.Model):
    """Answers ``x * 2`` after awaiting ``delay`` seconds per batch; records its batches."""

    name = "asyncdouble"

    def __init__(self, delay: float = 0.0, **settings: Any) -> None:
        super().__init__(**settings)
        self.delay = delay
        self.batches: list[list[float]] = []
        self.threads: set[str] = set()
        self.entered = threading.Event()

    async def predict(self, batch: list[np.ndarray]) -> list[Any]:
        asyncio.get_running_loop()  # raises in a worker thread: this runs on the loop
        self.threads.add(threading.current_thread().name)
        values = [float(row[0]) for row in batch]
        self.batches.append(values)
        self.entered.set()
        if any(v < 0 for v in values):
            raise ValueError(f"negative values {[v for v in values if v < 0]}")
        await asyncio.sleep(self.delay)
        return [row * 2 for row in batch]


class SyncEcho(servekit.Model):
    name = "syncecho"

    def predict(self, batch: list[Any]) -> list[Any]:
        return batch


def test_async_predict_is_batched_and_answers_each_request(serve: Serve) -> None:
    model = AsyncDouble(delay=0.2)
    live = serve([model])

    async def main() -> list[list[float]]:
        async with live.async_client() as client:
            first = asyncio.ensure_future(
                client.post("/v2/models/asyncdouble/infer", json=scalar_rows(-0.5 + 0.5))
            )
            await asyncio.to_thread(model.entered.wait, 5)  # the first batch is running
            calls = [
                client.post("/v2/models/asyncdouble/infer", json=scalar_rows(i, i + 0.5))
                for i in range(1, 21)
            ]
            return [output_values(r) for r in await asyncio.gather(first, *calls)]

    results = asyncio.run(main())
    assert results == [[0.0]] + [[2.0 * i, 2.0 * i + 1] for i in range(1, 21)]
    assert model.batches[0] == [0.0]
    assert max(len(b) for b in model.batches[1:]) >= 20  # the 20 queued meanwhile: merged
    assert not any(name.startswith("servekit-") for name in model.threads)  # no worker thread
    assert live.runtime("asyncdouble").batcher.inline


def test_a_slow_async_model_does_not_block_other_doors(serve: Serve) -> None:
    model = AsyncDouble(delay=2.0)
    live = serve([model, SyncEcho()])
    client = live.client()
    done: list[Any] = []
    slow = threading.Thread(
        target=lambda: done.append(
            client.post("/v2/models/asyncdouble/infer", json=scalar_rows(1.0))
        )
    )
    slow.start()
    assert model.entered.wait(5)
    began = time.monotonic()
    other = live.client()
    assert other.get("/v2/health/ready").status_code == 200
    assert output_values(other.post("/v2/models/syncecho/infer", json=scalar_rows(3.0))) == [3.0]
    assert time.monotonic() - began < 1.0  # answered while the async predict still awaits
    assert not done
    slow.join(10)
    assert output_values(done[0]) == [2.0]


def test_an_async_predict_failure_fails_only_the_request_that_caused_it(serve: Serve) -> None:
    model = AsyncDouble(delay=0.2)
    live = serve([model])

    async def main() -> list[Any]:
        async with live.async_client() as client:
            first = asyncio.ensure_future(
                client.post("/v2/models/asyncdouble/infer", json=scalar_rows(0.0))
            )
            await asyncio.to_thread(model.entered.wait, 5)
            bad = client.post("/v2/models/asyncdouble/infer", json=scalar_rows(-1.0))
            good = client.post("/v2/models/asyncdouble/infer", json=scalar_rows(4.0))
            return list(await asyncio.gather(first, bad, good))

    first, bad, good = asyncio.run(main())
    assert output_values(first) == [0.0]
    assert bad.status_code == 500 and "negative values [-1.0]" in bad.text
    assert output_values(good) == [8.0]  # shared the failing batch, then re-ran alone
    # the two were sent at once, so they may reach the batch in either order
    assert sorted(map(sorted, model.batches)) == [[-1.0], [-1.0, 4.0], [0.0], [4.0]]
