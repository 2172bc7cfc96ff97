"""How the batching knobs trade latency for throughput, measured with ``servekit bench``.

``bench_http.py``'s model (``sleep(2 ms + 0.05 ms x batch)``: a fixed cost per call, a small
cost per item, like a GPU) is served by ``servekit serve`` once per ``max_batch_size`` in
{1, 4, 16, 64}; for each, ``servekit bench`` (closed loop, Python API) drives it at 1, 4, 16
and 64 requests in flight. Plots throughput against p50 and p99 latency, one line per
``max_batch_size`` (``docs/img/batching.png``, used by the docs' Batching page), prints the
table and writes ``benchmarks/results/batching.json``. About 2 minutes (``--quick``: 30 s).

    python benchmarks/plot_batching.py [--quick] [--out docs/img/batching.png]
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BENCH_DIR, free_port, log, machine, render_table, table, wait_http_ok
from bench_http import request_body

from servekit.bench import Plan, run

BATCH_SIZES = (1, 4, 16, 64)
CONCURRENCY = (1, 4, 16, 64)
OUT = BENCH_DIR.parent / "docs" / "img" / "batching.png"


@contextlib.contextmanager
def server(max_batch_size: int) -> Iterator[str]:
    """``servekit serve bench_http.py:SleepModel`` with ``max_batch_size``; yields its URL."""
    port = free_port()
    command = [
        sys.executable, "-m", "servekit", "serve", f"{BENCH_DIR / 'bench_http.py'}:SleepModel",
        "--host", "127.0.0.1", "--port", str(port), "--max-batch-size", str(max_batch_size),
        "--log-level", "warning", "--no-events-engine",
    ]  # fmt: skip
    proc = subprocess.Popen(command, cwd=BENCH_DIR.parent, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http_ok(url + "/v2/health/ready", timeout=30.0, proc=proc)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def measure(seconds: float) -> list[dict[str, Any]]:
    """One closed-loop run per (max_batch_size, concurrency)."""
    points = []
    body = request_body()
    for size in BATCH_SIZES:
        with server(size) as url:
            run(url, "sleep", body=body, plan=Plan(concurrency=8, duration=1.0))  # warm-up
            for concurrency in CONCURRENCY:
                result = run(
                    url, "sleep", body=body, plan=Plan(concurrency=concurrency, duration=seconds)
                )
                point = {
                    "max_batch_size": size,
                    "concurrency": concurrency,
                    "req_per_s": result.throughput,
                    "p50_ms": result.latency_ms["p50"],
                    "p99_ms": result.latency_ms["p99"],
                    "errors": sum(result.errors.values()),
                }
                log(f"batching {point}")
                points.append(point)
    return points


def plot(points: list[dict[str, Any]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for axis, key, title in ((axes[0], "p50_ms", "p50"), (axes[1], "p99_ms", "p99")):
        for size in BATCH_SIZES:
            mine = [p for p in points if p["max_batch_size"] == size]
            axis.plot(
                [p["req_per_s"] for p in mine],
                [p[key] for p in mine],
                marker="o",
                label=f"max_batch_size={size}",
            )
            for p in mine:
                axis.annotate(f"c={p['concurrency']}", (p["req_per_s"], p[key]), fontsize=7)
        axis.set_xlabel("throughput (req/s)")
        axis.set_title(f"{title} latency vs throughput")
        axis.set_yscale("log")
        axis.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("latency (ms, log scale)")
    axes[1].legend(fontsize=8)
    figure.suptitle(
        "servekit bench, closed loop; model: sleep(2 ms + 0.05 ms x batch); c = requests in flight",
        fontsize=9,
    )
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)


def main(quick: bool = False, out: Path = OUT) -> dict[str, Any]:
    points = measure(1.5 if quick else 5.0)
    plot(points, out)
    spec = table(
        "batching: throughput and latency by max_batch_size and requests in flight",
        ["max_batch_size", "in flight", "req/s", "p50 ms", "p99 ms", "errors"],
        [
            [
                p["max_batch_size"],
                p["concurrency"],
                round(p["req_per_s"]),
                p["p50_ms"],
                p["p99_ms"],
                p["errors"],
            ]
            for p in points
        ],
    )
    print(render_table(spec))
    print(f"plot: {out}")
    return {"machine": machine(), "points": points, "tables": [spec], "plot": str(out)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1.5 s per point instead of 5")
    parser.add_argument("--out", type=Path, default=OUT, help="where the PNG goes")
    args = parser.parse_args()
    from _common import write_json

    write_json("batching", main(args.quick, args.out))
