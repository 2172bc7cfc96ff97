"""``inline`` models: a plain ``predict`` run on the event loop, batched like any model."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from tests.server.conftest import LiveServer

import servekit
from servekit.batching import Batcher, BatchPolicy

Serve = Callable[..., LiveServer]


def scalar_rows(*values: float) -> dict[str, Any]:
    return {
        "inputs": [
            {"name": "x", "datatype": "FP64", "shape": [len(values), 1], "data": list(values)}
        ]
    }


class InlineDouble(servekit.Model):
    """``x * 2``; records each batch and the thread it ran on; fails on negative values."""

    name = "inlinedouble"

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.batches: list[list[float]] = []
        self.threads: set[str] = set()

    def predict(self, batch: list[np.ndarray]) -> list[Any]:
        asyncio.get_running_loop()  # raises in a worker thread: this runs on the loop
        self.threads.add(threading.current_thread().name)
        values = [float(row[0]) for row in batch]
        self.batches.append(values)
        if any(v < 0 for v in values):
            raise ValueError(f"negative values {[v for v in values if v < 0]}")
        return [row * 2 for row in batch]


async def post_all(live: LiveServer, bodies: list[dict[str, Any]]) -> list[Any]:
    async with live.async_client() as client:
        calls = [client.post("/v2/models/inlinedouble/infer", json=b) for b in bodies]
        return list(await asyncio.gather(*calls))


def values(response: Any) -> list[float]:
    assert response.status_code == 200, response.text
    data: list[float] = response.json()["outputs"][0]["data"]
    return data


def test_an_inline_model_runs_on_the_loop_and_is_batched(serve: Serve) -> None:
    # the batch waits for 20 items (or 5 s): the 20 concurrent requests share one predict
    model = InlineDouble(inline=True, idle_batch_size=20, max_latency_ms=5000)
    live = serve([model])
    responses = asyncio.run(post_all(live, [scalar_rows(i) for i in range(20)]))
    assert [values(r) for r in responses] == [[2.0 * i] for i in range(20)]
    assert [len(b) for b in model.batches] == [20]
    (thread,) = model.threads  # the server's loop thread, no model worker thread
    assert not thread.startswith("servekit-")
    batcher = live.runtime("inlinedouble").batcher
    assert batcher.inline and not batcher.awaited and not batcher._threads


def test_an_inline_failure_fails_only_the_request_that_caused_it(serve: Serve) -> None:
    model = InlineDouble(inline=True, idle_batch_size=3, max_latency_ms=5000)
    live = serve([model])
    good, bad, other = asyncio.run(
        post_all(live, [scalar_rows(1.0), scalar_rows(-1.0), scalar_rows(4.0)])
    )
    assert values(good) == [2.0] and values(other) == [8.0]
    assert bad.status_code == 500 and "negative values [-1.0]" in bad.text
    assert sorted(len(b) for b in model.batches) == [1, 1, 1, 3]  # the batch, then each alone
    # the server keeps serving on the same loop afterwards
    (after,) = asyncio.run(post_all(live, [scalar_rows(5.0)]))
    assert values(after) == [10.0]


def test_the_environment_turns_inline_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVEKIT_INLINE", "true")
    assert InlineDouble().batch_settings().policy().inline
    monkeypatch.setenv("SERVEKIT_INLINE", "maybe")
    with pytest.raises(Exception, match="inline"):
        InlineDouble().batch_settings()


def three_callers_in_batches_of_one(seconds_per_batch: float) -> list[str]:
    """The order in which an inline batcher runs three one-item batches and answers them."""
    order: list[str] = []

    def handler(batch: list[int]) -> list[int]:
        order.append(f"batch {batch}")
        time.sleep(seconds_per_batch)
        return batch

    async def caller(batcher: Batcher, item: int) -> None:
        await batcher.run([item])
        order.append(f"answered {item}")

    async def main() -> None:
        batcher = Batcher(handler, BatchPolicy(max_batch_size=1, inline=True))
        await batcher.start()
        await asyncio.gather(*(caller(batcher, i) for i in range(3)))
        await batcher.close()

    asyncio.run(main())
    return order


def test_inline_batches_queued_meanwhile_run_in_the_same_loop_pass() -> None:
    """Three callers, batches of one: the three batches run back to back in one loop
    callback (not one loop turn each), then the answered callers resume, in order."""
    assert three_callers_in_batches_of_one(0.0) == [
        "batch [0]",
        "batch [1]",
        "batch [2]",
        "answered 0",
        "answered 1",
        "answered 2",
    ]


def test_a_pass_that_runs_out_of_time_hands_the_next_batch_to_a_later_loop_turn() -> None:
    """Batches slower than the pass's 2 ms: each ends its pass, the callers it answered
    resume, then the next batch runs; nothing is lost on the way."""
    assert three_callers_in_batches_of_one(0.003) == [
        "batch [0]",
        "answered 0",
        "batch [1]",
        "answered 1",
        "batch [2]",
        "answered 2",
    ]
