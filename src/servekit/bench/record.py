"""What a load test counts while it runs, and the result it adds up to.

Latencies go into HDR histograms at microsecond resolution (``hdrhistogram``): one for the
whole run, one reset every second for the per-second windows. Only answers with a 2xx
status are timed; every other outcome is counted by its status code or failure kind.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped]

HIGHEST_US = 3_600_000_000  # an hour: longer latencies are recorded as an hour
PERCENTILES = (50.0, 90.0, 99.0, 99.9)
LATE_S = 0.002  # an open-loop send this far behind its intended time fell behind schedule


def _histogram() -> HdrHistogram:
    return HdrHistogram(1, HIGHEST_US, 3)


def summary_ms(hist: HdrHistogram) -> dict[str, float]:
    """p50/p90/p99/p99.9/max/mean of a histogram, in milliseconds (zeros when empty)."""
    if hist.get_total_count() == 0:
        return _zeros()
    out = {f"p{p:g}": hist.get_value_at_percentile(p) / 1e3 for p in PERCENTILES}
    out["max"] = hist.get_max_value() / 1e3
    out["mean"] = hist.get_mean_value() / 1e3
    return out


def window_summary_ms(micros: list[int]) -> dict[str, float]:
    """:func:`summary_ms` of one window's latencies (µs), from a sort of its samples: a
    second's worth sorts in about a millisecond, where reading percentiles off an HDR
    histogram in Python walks its buckets once per percentile (tens of milliseconds, during
    which the tester sends nothing)."""
    if not micros:
        return _zeros()
    ordered = sorted(micros)
    last = len(ordered) - 1
    out = {
        f"p{p:g}": ordered[min(last, max(0, math.ceil(p * len(ordered) / 100 - 1e-9) - 1))] / 1e3
        for p in PERCENTILES
    }
    out["max"] = ordered[-1] / 1e3
    out["mean"] = sum(ordered) / len(ordered) / 1e3
    return out


def _zeros() -> dict[str, float]:
    return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "p99.9": 0.0, "max": 0.0, "mean": 0.0}


@dataclass
class Window:
    """One second of the run, by completion time: answers, errors and 2xx latencies (ms)."""

    second: int
    ok: int
    errors: int
    latency_ms: dict[str, float]


class Recorder:
    """Counts every outcome; ``start`` and all times are ``time.perf_counter()`` seconds."""

    def __init__(self, start: float) -> None:
        self.start = start
        self.sent = 0
        self.ok = 0
        self.errors: dict[str, int] = {}
        self.late = 0
        self.max_lag = 0.0
        self.latency = _histogram()  # from the intended send time
        self.service = _histogram()  # from the actual send time (differs in the open loop)
        self.windows: list[Window] = []
        self._window: list[int] = []  # this second's 2xx latencies, µs
        self._window_index = 0
        self._window_ok = 0
        self._window_errors = 0

    def sending(self, intended: float, now: float) -> None:
        """A request goes out at ``now``; it was due at ``intended``."""
        self.sent += 1
        lag = now - intended
        if lag > LATE_S:
            self.late += 1
            if lag > self.max_lag:
                self.max_lag = lag

    def answered(self, status: int, intended: float, sent_at: float, now: float) -> None:
        if int(now - self.start) != self._window_index:
            self._roll(now)
        if 200 <= status < 300:
            self.ok += 1
            self._window_ok += 1
            micros = min(max(int((now - intended) * 1e6), 1), HIGHEST_US)
            self.latency.record_value(micros)
            self._window.append(micros)
            if sent_at != intended:
                self.service.record_value(min(max(int((now - sent_at) * 1e6), 1), HIGHEST_US))
            else:
                self.service.record_value(micros)
        else:
            self._error(str(status), now)

    def failed(self, kind: str, now: float) -> None:
        """A request that got no answer (``kind``: e.g. ``timeout``, ``connection refused``)."""
        if int(now - self.start) != self._window_index:
            self._roll(now)
        self._error(kind, now)

    def failed_unsent(self, kind: str, now: float) -> None:
        """A request that could not even be sent (no connection): counted as sent and failed."""
        self.sent += 1
        self.failed(kind, now)

    def _error(self, key: str, now: float) -> None:
        self.errors[key] = self.errors.get(key, 0) + 1
        self._window_errors += 1

    def _roll(self, now: float) -> None:
        """Close the current window (and any empty ones up to ``now``)."""
        index = int(now - self.start)
        self.windows.append(
            Window(
                self._window_index,
                self._window_ok,
                self._window_errors,
                window_summary_ms(self._window),
            )
        )
        for empty in range(self._window_index + 1, index):
            self.windows.append(Window(empty, 0, 0, _zeros()))
        self._window = []
        self._window_index = index
        self._window_ok = self._window_errors = 0

    def finish(self, now: float) -> None:
        """Close the last window."""
        if self._window_ok or self._window_errors:
            self._roll(now)
            self._window_index += 1

    @property
    def failures(self) -> int:
        return sum(self.errors.values())


@dataclass
class Result:
    """The numbers of a finished load test (``to_json()`` for ``--json``)."""

    url: str
    protocol: str
    mode: str  # "closed" or "open"
    concurrency: int | None
    rate: float | None
    duration_s: float
    sent: int
    ok: int
    errors: dict[str, int]
    throughput: float  # 2xx answers per second
    latency_ms: dict[str, float]
    service_latency_ms: dict[str, float]
    late_sends: int
    max_send_lag_ms: float
    windows: list[Window] = field(default_factory=list)
    histogram: HdrHistogram | None = None

    @classmethod
    def build(
        cls, recorder: Recorder, elapsed: float, *, url: str, protocol: str, **mode: Any
    ) -> Result:
        return cls(
            url=url,
            protocol=protocol,
            mode="open" if mode.get("rate") else "closed",
            concurrency=mode.get("concurrency"),
            rate=mode.get("rate"),
            duration_s=elapsed,
            sent=recorder.sent,
            ok=recorder.ok,
            errors=dict(sorted(recorder.errors.items())),
            throughput=recorder.ok / elapsed if elapsed > 0 else 0.0,
            latency_ms=summary_ms(recorder.latency),
            service_latency_ms=summary_ms(recorder.service),
            late_sends=recorder.late,
            max_send_lag_ms=recorder.max_lag * 1e3,
            windows=list(recorder.windows),
            histogram=recorder.latency,
        )

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    def to_json(self) -> dict[str, Any]:
        """Every number of the final table, the per-second windows and the distribution."""
        doc = {k: v for k, v in asdict(self).items() if k not in ("histogram", "windows")}
        doc["failed"] = self.failed
        doc["windows"] = [asdict(w) for w in self.windows]
        doc["distribution"] = distribution(self.histogram)
        return doc


def distribution(hist: HdrHistogram | None) -> list[dict[str, float]]:
    """The latency distribution: one entry per recorded HDR bucket (upper value ms, count)."""
    if hist is None or hist.get_total_count() == 0:
        return []
    return [
        {"latency_ms": item.value_iterated_to / 1e3, "count": item.count_at_value_iterated_to}
        for item in hist.get_recorded_iterator()
    ]
