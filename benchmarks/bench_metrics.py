"""What Prometheus metrics cost over HTTP (the fixed-cost benchmark), on vs off.

``servekit serve bench_http.py:SleepModel`` (the model and request of ``bench_http.py``) is
driven by ``wrk -t1`` at 64 connections on two sides, which alternate over rounds:

* ``off``: ``SERVEKIT_METRICS=false`` (the batcher's own totals only: the reference);
* ``on``: ``SERVEKIT_METRICS=true`` (the default: request latency histograms by door, route and
  status, per-batch histograms).

Engine events and request logging are off on both sides, so the difference is the metrics'.
After each ``on`` run, one scrape of ``/metrics`` must show the requests wrk sent (a side that
counted nothing measured nothing). Reports the medians of req/s and server CPU per request,
and ``on``'s req/s over ``off``'s (target, issue 10: >= 0.98 at c=64). Needs ``wrk``.

    python benchmarks/bench_metrics.py [--quick] [--rounds N] [--seconds S] [--connections C]
    python benchmarks/bench_metrics.py --calls   # per-call costs in process (timeit)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import bench_http  # noqa: E402
from _common import free_port, render_table, table, verdict, write_json  # noqa: E402

BOTH = {"SERVEKIT_EVENTS_ENGINE": "false", "SERVEKIT_REQUEST_LOG": "off"}
SIDES: dict[str, dict[str, str]] = {
    "off": {**BOTH, "SERVEKIT_METRICS": "false"},
    "on": {**BOTH, "SERVEKIT_METRICS": "true"},
}
TARGET = 0.98  # on's req/s over off's at c=64 (issue 10)


def _counted(port: int) -> float:
    """Requests answered with 200 as one scrape of the server's /metrics shows them."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "servekit_responses_total" and s.labels.get("status") == "200"
    )


def one_run(side: str, connections: int, seconds: float) -> dict[str, float]:
    """One server of ``side`` under wrk; for ``on``, its /metrics must count the requests."""
    port = free_port()
    command = bench_http._server_commands(port)["servekit"]
    saved = dict(os.environ)
    os.environ.update(SIDES[side])
    counted: list[float] = []
    original = bench_http.run_wrk

    def run_wrk_then_scrape(base: str, conns: int, secs: float) -> Any:
        result = original(base, conns, secs)
        if secs == seconds:  # the measured run, not the warm-up
            counted.append(_counted(port))
        return result

    bench_http.run_wrk = run_wrk_then_scrape
    try:
        result = bench_http.drive_server(command, port, connections, seconds)
    finally:
        bench_http.run_wrk = original
        os.environ.clear()
        os.environ.update(saved)
    result["counted"] = counted[-1] if counted else 0.0
    if side == "on" and result["counted"] < result["req_per_s"] * seconds * 0.5:
        raise RuntimeError(f"side 'on' counted {result['counted']:g} requests: it measured nothing")
    return result


def main(
    quick: bool = False,
    rounds: int | None = None,
    seconds: float | None = None,
    connections: int = 64,
) -> dict[str, Any]:
    rounds = rounds or (1 if quick else 7)
    seconds = seconds or (3.0 if quick else 8.0)
    runs: dict[str, list[dict[str, float]]] = {side: [] for side in SIDES}
    for round_no in range(rounds):
        order = list(SIDES) if round_no % 2 == 0 else list(reversed(SIDES))
        for side in order:
            result = one_run(side, connections, seconds)
            runs[side].append(result)
            print(f"[bench] metrics round {round_no + 1} {side}: {result}", flush=True)
    med = {
        side: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for side, rs in runs.items()
    }
    base = med["off"]
    ratio = med["on"]["req_per_s"] / base["req_per_s"] if base["req_per_s"] else 0.0
    rows = [
        [
            side,
            round(m["req_per_s"]),
            round(m["req_per_s"] / base["req_per_s"], 3) if base["req_per_s"] else 0.0,
            round(m["cpu_us_per_req"], 1),
            round(m["cpu_us_per_req"] - base["cpu_us_per_req"], 1),
            f"{m['errors']:g}",
            verdict(ratio >= TARGET) if side == "on" else "",
        ]
        for side, m in med.items()
    ]
    title = (
        f"Prometheus metrics over HTTP, c={connections}"
        f" (median of {rounds} alternating rounds, {seconds:g} s each)"
    )
    columns = ["side", "req/s", "vs off", "cpu us/req", "cost us/req", "errors", "target"]
    notes = [
        "on: the default (histograms by door/route/status, per-batch histograms); off:"
        " SERVEKIT_METRICS=false; engine events and request logging off on both sides",
        f"target (issue 10): metrics cost <= 2% of req/s at c=64 (on/off >= {TARGET})",
    ]
    report = {
        "tables": [table(title, columns, rows)],
        "notes": notes,
        "runs": runs,
        "checks": {f"on req/s >= {TARGET} x off": ratio >= TARGET},
        "settings": {"rounds": rounds, "seconds": seconds, "connections": connections},
    }
    write_json("metrics", report)
    return report


def call_costs(number: int = 200_000) -> dict[str, float]:
    """Microseconds per call (min of 5 timeit repeats): servekit's vs prometheus_client's."""
    import timeit

    from prometheus_client import CollectorRegistry, Counter, Histogram

    from servekit.server.metrics import SECONDS, ModelMetrics

    class Target:  # ModelMetrics keeps a weak reference to its runtime
        pass

    metrics = ModelMetrics(Target())  # type: ignore[arg-type]
    registry = CollectorRegistry()
    histogram = Histogram("h", "h", ["model", "door", "route", "status"], registry=registry,
                          buckets=SECONDS)  # fmt: skip
    counter = Counter("c", "c", ["model", "door", "status"], registry=registry)
    child = histogram.labels("echo", "v2", "infer", "200")
    calls = {
        "servekit ModelMetrics.request": lambda: metrics.request("v2", "infer", 200, 0.0012),
        "servekit ModelMetrics.batch": lambda: metrics.batch(32, 0.0004, 0.002),
        "prometheus Histogram.labels().observe": lambda: histogram.labels(
            "echo", "v2", "infer", "200"
        ).observe(0.0012),
        "prometheus histogram child.observe": lambda: child.observe(0.0012),
        "prometheus Counter.labels().inc": lambda: counter.labels("echo", "v2", "200").inc(),
    }
    costs = {}
    for name, call in calls.items():
        best = min(timeit.repeat(call, number=number, repeat=5))
        costs[name] = best / number * 1e6
        print(f"{name:40s} {costs[name]:.3f} us", flush=True)
    return costs


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--calls", action="store_true", help="per-call costs only")
    args = parser.parse_args()
    if args.calls:
        call_costs()
        sys.exit(0)
    report = main(args.quick, args.rounds, args.seconds, args.connections)
    print(render_table(report["tables"][0]))
    for note in report["notes"]:
        print(f"- {note}")
