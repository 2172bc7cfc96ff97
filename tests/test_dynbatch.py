"""The pyraisdk-compatible thread API: a facade over the one Batcher."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from servekit.dynbatch import (
    BaseModel,
    DynamicBatchModel,
    PredictCancelledError,
    PredictTimeoutError,
    RequestCorrelation,
)
from servekit.errors import Draining


class Tagger(BaseModel):
    """Returns (item, batch size); optionally blocks until released."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.batches: list[list[Any]] = []
        self.preprocessed: list[list[Any]] = []

    def preprocess(self, items: list[Any]) -> list[Any]:
        self.preprocessed.append(list(items))
        return items

    def predict(self, items: list[Any]) -> list[Any]:
        self.entered.set()
        assert self.gate.wait(10), "test gate never opened"
        self.batches.append(list(items))
        if "boom" in items:
            raise RuntimeError("model exploded")
        return [(item, len(items)) for item in items]


@pytest.fixture
def model() -> Iterator[tuple[DynamicBatchModel, Tagger]]:
    inner = Tagger()
    batched = DynamicBatchModel(
        inner, max_batch_size=8, idle_batch_size=1, max_batch_interval=0.002
    )
    yield batched, inner
    inner.gate.set()
    batched.close()


def test_twenty_threads_each_get_exactly_their_own_results(
    model: tuple[DynamicBatchModel, Tagger],
) -> None:
    batched, inner = model
    failures: list[str] = []

    def caller(thread: int) -> None:
        for i in range(100):
            item, _ = batched.predict_one((thread, i), timeout=10)
            if item != (thread, i):
                failures.append(f"thread {thread} call {i} got {item}")

    threads = [threading.Thread(target=caller, args=(t,)) for t in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert failures == []
    assert sum(len(b) for b in inner.batches) == 2000
    assert max(len(b) for b in inner.batches) > 1  # calls from different threads were merged
    assert all(len(b) <= 8 for b in inner.batches)


def test_predict_splits_a_long_list_and_keeps_order(
    model: tuple[DynamicBatchModel, Tagger],
) -> None:
    batched, _ = model
    results = batched.predict(list(range(20)), timeout=10)
    assert [item for item, _ in results] == list(range(20))
    assert max(size for _, size in results) <= 8


def test_preprocess_runs_on_each_batch_before_predict(
    model: tuple[DynamicBatchModel, Tagger],
) -> None:
    batched, inner = model
    batched.predict(["a", "b"], timeout=10)
    assert inner.preprocessed == inner.batches == [["a", "b"]]


def test_timeout_raises_or_returns_none(model: tuple[DynamicBatchModel, Tagger]) -> None:
    batched, inner = model
    inner.gate.clear()
    with pytest.raises(PredictTimeoutError):
        batched.predict_one("slow", timeout=0.05)
    assert batched.predict(["x", "y"], timeout=0.05, raise_timeout=False) == [None, None]
    inner.gate.set()
    assert batched.predict_one("fast", timeout=10) == ("fast", 1)


def test_items_timed_out_in_the_queue_never_reach_the_model(
    model: tuple[DynamicBatchModel, Tagger],
) -> None:
    batched, inner = model
    inner.gate.clear()
    blocker = threading.Thread(
        target=batched.predict_one, args=("blocker",), kwargs={"timeout": 10}
    )
    blocker.start()
    assert inner.entered.wait(5)
    with pytest.raises(PredictTimeoutError):
        batched.predict_one("expired", timeout=0.05)
    inner.gate.set()
    blocker.join(10)
    assert batched.predict_one("after", timeout=10) == ("after", 1)
    assert "expired" not in [x for b in inner.batches for x in b]


def test_cancellation_token_drops_the_item_before_the_model_runs(
    model: tuple[DynamicBatchModel, Tagger],
) -> None:
    batched, inner = model
    inner.gate.clear()
    blocker = threading.Thread(
        target=batched.predict_one, args=("blocker",), kwargs={"timeout": 10}
    )
    blocker.start()
    assert inner.entered.wait(5)
    token = threading.Event()
    errors: list[BaseException] = []

    def cancelled_call() -> None:
        try:
            batched.predict_one("cancel me", timeout=10, cancellation_token=token)
        except PredictCancelledError as exc:
            errors.append(exc)

    caller = threading.Thread(target=cancelled_call)
    caller.start()
    token.set()
    inner.gate.set()
    caller.join(10)
    blocker.join(10)
    assert len(errors) == 1
    assert "cancel me" not in [x for b in inner.batches for x in b]


def test_a_model_error_reaches_the_callers_of_that_batch_only(
    model: tuple[DynamicBatchModel, Tagger],
) -> None:
    batched, _ = model
    with pytest.raises(RuntimeError, match="model exploded"):
        batched.predict(["boom"], timeout=10)
    assert batched.predict_one("fine", timeout=10) == ("fine", 1)


def test_settings_come_from_arguments_then_env_then_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SERVEKIT_MAX_BATCH_SIZE", "5")
    monkeypatch.setenv("SERVEKIT_IDLE_BATCH_SIZE", "2")
    monkeypatch.setenv("SERVEKIT_MAX_BATCH_INTERVAL", "0.25")
    with DynamicBatchModel(Tagger()) as from_env:
        assert (from_env.max_batch_size, from_env.idle_batch_size) == (5, 2)
        assert from_env.max_batch_interval == 0.25
    with DynamicBatchModel(Tagger(), max_batch_size=9) as from_args:
        assert from_args.max_batch_size == 9 and from_args.idle_batch_size == 2
    monkeypatch.setenv("SERVEKIT_MAX_BATCH_SIZE", "lots")
    with pytest.raises(ValueError, match="SERVEKIT_MAX_BATCH_SIZE='lots'"):
        DynamicBatchModel(Tagger())


def test_close_finishes_queued_work_then_refuses_more() -> None:
    inner = Tagger()
    inner.gate.clear()
    batched = DynamicBatchModel(inner, max_batch_size=2)
    results: list[Any] = []
    callers = [
        threading.Thread(target=lambda i=i: results.append(batched.predict_one(i, timeout=10)))
        for i in range(4)
    ]
    for t in callers:
        t.start()
    assert inner.entered.wait(5)
    closer = threading.Thread(target=batched.close)
    closer.start()
    inner.gate.set()
    closer.join(10)
    for t in callers:
        t.join(10)
    assert sorted(item for item, _ in results) == [0, 1, 2, 3]
    with pytest.raises(Draining, match="closed"):
        batched.predict_one(5)


def test_pyraisdk_variables_are_read_after_arguments_and_servekit_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PYRAISDK_MAX_BATCH_SIZE", "6")
    monkeypatch.setenv("PYRAISDK_IDLE_BATCH_SIZE", "3")
    monkeypatch.setenv("PYRAISDK_MAX_BATCH_INTERVAL", "0.125")  # seconds, as in pyraisdk
    with DynamicBatchModel(Tagger()) as from_pyraisdk:
        assert (from_pyraisdk.max_batch_size, from_pyraisdk.idle_batch_size) == (6, 3)
        assert from_pyraisdk.max_batch_interval == 0.125
        assert from_pyraisdk.policy.max_latency == 0.125
    monkeypatch.setenv("SERVEKIT_MAX_BATCH_SIZE", "5")
    monkeypatch.setenv("SERVEKIT_MAX_LATENCY_MS", "40")
    with DynamicBatchModel(Tagger(), idle_batch_size=1) as mixed:
        assert (mixed.max_batch_size, mixed.idle_batch_size) == (5, 1)
        assert mixed.max_batch_interval == 0.04


def test_servekit_max_batch_interval_is_seconds_and_beats_pyraisdk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PYRAISDK_MAX_BATCH_INTERVAL", "0.5")
    monkeypatch.setenv("SERVEKIT_MAX_BATCH_INTERVAL", "0.25")
    with DynamicBatchModel(Tagger()) as batched:
        assert batched.max_batch_interval == 0.25


def test_an_explicit_zero_interval_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYRAISDK_MAX_BATCH_INTERVAL", "0.5")
    with DynamicBatchModel(Tagger(), max_batch_interval=0) as batched:
        assert batched.max_batch_interval == 0 and batched.policy.max_latency == 0


def test_an_invalid_pyraisdk_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYRAISDK_IDLE_BATCH_SIZE", "few")
    with pytest.raises(ValueError, match="PYRAISDK_IDLE_BATCH_SIZE='few'"):
        DynamicBatchModel(Tagger())
    monkeypatch.delenv("PYRAISDK_IDLE_BATCH_SIZE")
    monkeypatch.setenv("PYRAISDK_MAX_BATCH_SIZE", "0")
    with pytest.raises(ValueError, match=r"max_batch_size=0.*PYRAISDK_MAX_BATCH_SIZE='0'"):
        DynamicBatchModel(Tagger())


def test_an_out_of_range_setting_says_which_and_why() -> None:
    with pytest.raises(ValueError, match="idle_batch_size \\(9\\) must not exceed max_batch_size"):
        DynamicBatchModel(Tagger(), max_batch_size=4, idle_batch_size=9)


def test_pyraisdk_predict_signatures_with_req_corr_work(
    model: tuple[DynamicBatchModel, Tagger],
) -> None:
    batched, _ = model
    corr = RequestCorrelation("corr-1", 0)
    assert batched.predict(["a"], 10, True, None, corr) == [("a", 1)]
    assert batched.predict(["b"], timeout=10, req_corr=corr) == [("b", 1)]
    assert batched.predict_one("c", timeout=10, req_corr=corr) == ("c", 1)
