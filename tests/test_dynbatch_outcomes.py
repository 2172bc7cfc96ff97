"""Thread callers that time out or cancel never leak queue capacity or miscount outcomes."""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Any

import pytest

from servekit.dynbatch import (
    BaseModel,
    DynamicBatchModel,
    PredictCancelledError,
    PredictTimeoutError,
)
from servekit.errors import QueueFull


class Slow(BaseModel):
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def predict(self, items: list[Any]) -> list[Any]:
        time.sleep(self.seconds)
        return items


def test_timed_out_calls_give_their_queue_capacity_back() -> None:
    model = DynamicBatchModel(Slow(0.2), max_batch_size=1, max_queue_size=10)
    try:
        blocker = threading.Thread(target=model.predict_one, args=("busy",), kwargs={"timeout": 5})
        blocker.start()
        time.sleep(0.02)  # the model is now busy with "busy"
        for i in range(10):
            with pytest.raises(PredictTimeoutError):
                model.predict_one(i, timeout=0.001)
        blocker.join()
        # the queue is empty again: ten more fit, and none is refused
        assert model.predict(list(range(10)), timeout=5) == list(range(10))
        assert model._batcher.queued_items == 0
    finally:
        model.close()


def test_random_timeouts_and_cancels_from_many_threads_are_counted_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="servekit.batching")
    model = DynamicBatchModel(Slow(0.001), max_batch_size=8, max_queue_size=64)
    calls = 0
    false_refusals = 0
    lock = threading.Lock()
    stop_at = time.monotonic() + 2.0

    def caller(seed: int) -> None:
        nonlocal calls, false_refusals
        rng = random.Random(seed)
        while time.monotonic() < stop_at:
            token = threading.Event()
            if rng.random() < 0.2:
                token.set()
            try:
                model.predict(
                    [seed], timeout=rng.choice([0.0005, 0.002, 1.0]), cancellation_token=token
                )
            except (PredictTimeoutError, PredictCancelledError):
                pass
            except QueueFull:
                with lock:
                    false_refusals += 1  # 20 threads x 1 item can never fill 64 places
            with lock:
                calls += 1

    threads = [threading.Thread(target=caller, args=(seed,)) for seed in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    model.close()
    stats = model._batcher.stats
    outcomes = stats.completed + stats.failed + stats.refused + stats.timed_out + stats.cancelled
    assert false_refusals == 0
    assert stats.requests == calls and outcomes == calls
    assert model._batcher.queued_items == 0
    assert "repaired" not in caplog.text


def test_a_negative_timeout_is_refused_before_anything_is_submitted() -> None:
    model = DynamicBatchModel(Slow(0.0))
    try:
        with pytest.raises(ValueError, match="timeout"):
            model.predict_one(1, timeout=-0.5)
        assert model.predict_one(2) == 2
        assert model.stats["requests"] == 1  # the refused call was never submitted
    finally:
        model.close()
