"""Per-second windows: percentiles from a sort of the window's samples, agreeing with HDR."""

from __future__ import annotations

import random

from servekit.bench.record import _histogram, summary_ms, window_summary_ms


def test_a_window_summary_gives_nearest_rank_percentiles_in_ms() -> None:
    summary = window_summary_ms(list(range(1000, 0, -1)))  # 1 … 1000 µs, in any order
    assert summary == {
        "p50": 0.5,
        "p90": 0.9,
        "p99": 0.99,
        "p99.9": 0.999,
        "max": 1.0,
        "mean": 0.5005,
    }
    assert window_summary_ms([]) == summary_ms(_histogram())  # zeros, as before


def test_a_window_summary_agrees_with_the_hdr_histogram_within_its_precision() -> None:
    rng = random.Random(7)
    samples = [int(rng.lognormvariate(8, 0.6)) + 1 for _ in range(20_000)]
    hist = _histogram()
    for value in samples:
        hist.record_value(value)
    exact, hdr = window_summary_ms(samples), summary_ms(hist)
    for key in exact:
        assert abs(exact[key] - hdr[key]) <= 0.002 * hdr[key] + 0.001, (key, exact, hdr)
