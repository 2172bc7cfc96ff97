"""``--plot out.png``: latency percentiles per second, and the latency distribution.

matplotlib (Agg backend) is imported only here, and only when a plot is asked for.
"""

from __future__ import annotations

from pathlib import Path

from servekit.bench._errors import BenchError
from servekit.bench.record import Result

_SERIES = ("p50", "p90", "p99", "p99.9", "max")


def write_plot(result: Result, path: str | Path) -> None:
    """Two panels: per-second latency percentiles over time; the 2xx latency histogram."""
    try:
        import matplotlib
    except ImportError:
        raise BenchError("--plot needs matplotlib: pip install 'servekit[bench]'") from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (over_time, spread) = plt.subplots(2, 1, figsize=(9, 8))
    seconds = [w.second + 1 for w in result.windows]
    for key in _SERIES:
        over_time.plot(seconds, [w.latency_ms[key] for w in result.windows], label=key, marker=".")
    over_time.set_xlabel("second of the run (answers completed in that second)")
    over_time.set_ylabel("latency (ms)")
    load = (
        f"{result.rate:g} req/s open loop"
        if result.mode == "open"
        else (f"{result.concurrency} in flight, closed loop")
    )
    over_time.set_title(f"{result.url} - {load} - {result.throughput:,.0f} req/s")
    over_time.legend(loc="upper left")
    over_time.grid(alpha=0.3)

    hist = result.histogram
    if hist is not None and hist.get_total_count():
        points = [
            (i.value_iterated_to / 1e3, i.count_at_value_iterated_to)
            for i in hist.get_recorded_iterator()
        ]
        values, counts = zip(*points, strict=True)
        spread.hist(values, bins=min(100, len(values)), weights=counts, color="tab:blue")
        for key in ("p50", "p99", "p99.9"):
            spread.axvline(result.latency_ms[key], linestyle="--", color="tab:red", alpha=0.6)
            spread.annotate(key, (result.latency_ms[key], 0), rotation=90, va="bottom")
    spread.set_xlabel("latency (ms)")
    spread.set_ylabel("requests")
    spread.set_title(f"distribution of {result.ok:,} answered requests (HDR histogram)")
    spread.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(Path(path), format="png", dpi=100)
    plt.close(fig)
