"""System metrics: pyraisdk's keys with sane values every interval, one reporter per process,
stoppable, no GPU events (and no error) where there is no GPU."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from servekit import events, rlog
from servekit.events import sysmetrics
from support.event_records import PYRAISDK_ENV, STRUCTURED_FIELDS, values
from support.redis_server import wait_until


@pytest.fixture
def sink(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for name in PYRAISDK_ENV:
        monkeypatch.delenv(name, raising=False)
    yield tmp_path / "events.jsonl"
    rlog.shutdown()
    events.configure("stdout")


def reporter_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "servekit-sysmetrics"]


def metric_records(path: Path) -> list[dict[str, Any]]:
    rlog.flush(5)
    return [r for r in values(path, "servekit-events") if str(r["Key"]).startswith("pyraisys_")]


def test_cpu_and_memory_every_interval_with_sane_values(sink: Path) -> None:
    rlog.initialize(sink=f"file://{sink}", instance="i", sys_metrics_interval=0.05)
    wait_until(lambda: len(metric_records(sink)) >= 6, 10, "three reports")
    found = metric_records(sink)
    assert all(set(r) == STRUCTURED_FIELDS for r in found)
    assert {r["Key"] for r in found} == {sysmetrics.CPU, sysmetrics.MEMORY}  # no GPU here
    for record in found:
        assert (record["Code"], record["Instance"], record["Role"]) == ("", "i", "RemoteModel")
        assert isinstance(record["Numeric"], (int, float))
        assert 0 <= record["Numeric"] <= 100
    assert any(r["Numeric"] > 0 for r in found if r["Key"] == sysmetrics.MEMORY)


def test_one_reporter_per_process_across_initialize_calls(sink: Path) -> None:
    url = f"file://{sink}"
    rlog.initialize(sink=url, sys_metrics_interval=30)
    first = sysmetrics.current()
    rlog.initialize(sink=url, sys_metrics_interval=30)
    assert sysmetrics.current() is first
    rlog.initialize(sink=url, sys_metrics_interval=20)
    second = sysmetrics.current()
    assert second is not None and second is not first and second.interval == 20
    assert first is not None and not first.alive
    assert len(reporter_threads()) == 1
    rlog.initialize(sink=url, sys_metrics_enable=False)
    assert sysmetrics.current() is None
    assert reporter_threads() == []


def test_a_stopped_reporter_reports_no_more(sink: Path) -> None:
    rlog.initialize(sink=f"file://{sink}", sys_metrics_interval=0.02)
    wait_until(lambda: len(metric_records(sink)) >= 2, 10, "a report")
    sysmetrics.stop()
    assert reporter_threads() == []
    count = len(metric_records(sink))
    time.sleep(0.1)
    assert len(metric_records(sink)) == count


def test_a_reporter_emits_through_the_function_it_is_given() -> None:
    got: list[tuple[str, str, float]] = []
    reporter = sysmetrics.SystemMetricsReporter(0.01, emit=lambda *e: got.append(e))
    reporter.start()
    wait_until(lambda: len(got) >= 4, 10, "two reports")
    reporter.stop()
    assert [key for key, _, _ in got[:2]] == [sysmetrics.CPU, sysmetrics.MEMORY]


def test_no_gpu_is_said_once_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    got: list[tuple[str, str, float]] = []
    with caplog.at_level(logging.DEBUG, logger="servekit.events"):
        reporter = sysmetrics.SystemMetricsReporter(0.01, emit=lambda *e: got.append(e))
        reporter.start()
        wait_until(lambda: len(got) >= 6, 10, "three reports")
        reporter.stop()
    said = [r for r in caplog.records if "no GPU events" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.DEBUG
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("interval", [0, -1.0])
def test_a_non_positive_interval_is_refused(interval: float) -> None:
    with pytest.raises(ValueError, match="sys_metrics_interval must be > 0"):
        rlog.initialize(sink="stdout", sys_metrics_interval=interval)
    with pytest.raises(ValueError, match="sys_metrics_interval must be > 0"):
        sysmetrics.SystemMetricsReporter(interval)
