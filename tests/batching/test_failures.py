"""Model failures are logged without flooding the log: the first with its traceback, then counts."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from servekit.batching import Batcher, BatchPolicy
from servekit.batching.failures import FailureLog, reported
from servekit.clock import ManualClock
from servekit.errors import BadRequest

LOGGER = "servekit.batching"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def raised(error: Exception) -> Exception:
    """``error`` with a traceback, as a model would raise it."""
    try:
        raise error
    except Exception as exc:
        return exc


def records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER]


def test_repeats_of_an_error_are_counted_and_summarised_once_per_period(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, LOGGER)
    clock = Clock()
    failures = FailureLog(logging.getLogger(LOGGER), "rows", clock, period=10.0)
    for _ in range(524):
        failures.report(raised(ValueError("all input arrays must have the same shape")))
        clock.now += 0.01
    failures.flush()
    (first,) = records(caplog)  # the period is not over: no summary yet
    assert first.exc_info is not None
    assert "model rows failed: ValueError: all input arrays must have the same shape" in (
        first.getMessage()
    )
    assert failures.next_due() == 10.0
    clock.now = 10.0
    failures.flush()
    summary = records(caplog)[1]
    assert summary.exc_info is None
    assert summary.getMessage() == (
        "model rows: 523 more failures like ValueError: all input arrays must have the same"
        " shape in the last 10.0 s"
    )


def test_a_kind_quiet_for_a_period_is_logged_with_its_traceback_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, LOGGER)
    clock = Clock()
    failures = FailureLog(logging.getLogger(LOGGER), "m", clock, period=10.0)
    failures.report(raised(KeyError("k")))
    clock.now = 10.0
    failures.flush()  # no repeats: forgotten, nothing to summarise
    assert failures.next_due() is None
    failures.report(raised(KeyError("k")))
    assert [r.exc_info is not None for r in records(caplog)] == [True, True]


def test_errors_whose_message_changes_are_limited_to_a_burst_of_tracebacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, LOGGER)
    clock = Clock()
    failures = FailureLog(logging.getLogger(LOGGER), "m", clock, period=10.0, burst=3)
    for i in range(8):
        failures.report(raised(ValueError(f"could not convert string 'x{i}' to float")))
    assert sum(r.exc_info is not None for r in records(caplog)) == 3
    failures.flush(everything=True)
    lines = [r.getMessage() for r in records(caplog)[3:]]
    assert len(lines) == 5
    assert lines[0].startswith("model m: 1 failure like ValueError: could not convert string 'x3'")


def test_a_batcher_logs_one_traceback_for_many_identical_model_failures(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, LOGGER)

    def predict(items: list[Any]) -> list[Any]:
        raise ValueError("bad rows")

    async def scenario() -> list[Exception]:
        clock = ManualClock()
        batcher = Batcher(predict, BatchPolicy(max_batch_size=4), clock=clock)
        await batcher.start()
        errors: list[Exception] = []
        for i in range(40):
            with pytest.raises(ValueError) as caught:
                await asyncio.wait_for(batcher.submit([i]), 5)
            errors.append(caught.value)
        clock.advance(10)  # the summary timer fires
        summaries = [r.getMessage() for r in records(caplog) if r.exc_info is None]
        assert summaries == [
            "model model: 39 more failures like ValueError: bad rows in the last 10.0 s"
        ]
        with pytest.raises(ValueError):
            await asyncio.wait_for(batcher.submit([0]), 5)
        await batcher.close()
        return errors

    errors = asyncio.run(scenario())
    assert all(reported(e) for e in errors)  # a door need not log them again
    logged = records(caplog)
    assert sum(r.exc_info is not None for r in logged) == 1
    assert logged[-1].getMessage() == (
        "model model: 1 more failure like ValueError: bad rows in the last 0.0 s"
    )  # close() reports what is still counted


def test_client_errors_and_successes_are_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, LOGGER)

    def predict(items: list[Any]) -> list[Any]:
        return [BadRequest(f"row {x} is empty") if x < 0 else x for x in items]

    async def scenario() -> None:
        batcher = Batcher(predict, BatchPolicy(), clock=ManualClock())
        await batcher.start()
        assert await batcher.submit([1]) == [1]
        with pytest.raises(BadRequest):
            await batcher.submit([-1])
        await batcher.close()

    asyncio.run(scenario())
    assert records(caplog) == []
