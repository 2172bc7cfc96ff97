"""Latency against load for the dispatch policies, simulated and over HTTP.

Reads ``results/openloop.json`` (``bench_openloop.py``: the real server under
``servekit bench --rate``) and, if present, ``results/sim_dispatch.json`` (``sim_dispatch.py``:
the real batcher on a manual clock), and draws p50 and p99 latency against the load (% of
capacity) for idle dispatch, adaptive dispatch and a fixed 5 ms window: one row per source,
one column per percentile. Writes ``docs/img/dispatch.png`` (the docs' Batching page shows
it). Measures nothing itself.

    python benchmarks/plot_dispatch.py [--openloop FILE] [--sim FILE] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BENCH_DIR, RESULTS_DIR

OUT = BENCH_DIR.parent / "docs" / "img" / "dispatch.png"
POLICIES = ("idle", "adaptive", "window 5 ms")
STYLE = {"idle": ("o", "-"), "adaptive": ("s", "--"), "window 5 ms": ("^", ":")}


def _rows(openloop: Path, sim: Path) -> list[tuple[str, list[dict[str, Any]]]]:
    """(row title, points) for each source found; the HTTP run is required."""
    doc = json.loads(openloop.read_text())
    settings, capacity = doc["settings"], doc["capacity"]["req_per_s"]
    rows = []
    if sim.is_file():
        sim_doc = json.loads(sim.read_text())
        sim_capacity = sim_doc["settings"]["capacity_items_per_s"]
        rows.append(
            (
                f"simulated (manual clock, no HTTP): 100% = {sim_capacity:,.0f} req/s",
                sim_doc["points"],
            )
        )
    rows.append(
        (
            f"HTTP, servekit bench --rate: 100% = {capacity:,.0f} req/s measured;"
            f" medians of {settings['rounds']} x {settings['seconds_per_run']:g} s",
            doc["points"],
        )
    )
    return rows


def plot(openloop: Path, sim: Path, out: Path) -> None:
    """Draw the figure from the JSON files into ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _rows(openloop, sim)
    figure, axes = plt.subplots(len(rows), 2, figsize=(11, 3.6 * len(rows)), squeeze=False)
    for (title, points), pair in zip(rows, axes, strict=True):
        for axis, key, name in ((pair[0], "p50_ms", "p50"), (pair[1], "p99_ms", "p99")):
            for policy in POLICIES:
                mine = sorted((p for p in points if p["policy"] == policy), key=lambda p: p["load"])
                marker, line = STYLE[policy]
                axis.plot(
                    [100 * p["load"] for p in mine],
                    [p[key] for p in mine],
                    marker=marker,
                    linestyle=line,
                    label=policy,
                )
            axis.set_title(f"{name}: {title}", fontsize=9)
            axis.set_xlabel("load (% of capacity)")
            axis.set_ylabel(f"{name} latency (ms)")
            axis.set_xticks([25, 50, 75, 90])
            axis.set_ylim(bottom=0)
            axis.grid(True, alpha=0.3)
        pair[0].legend(fontsize=8)
    figure.suptitle(
        "Dispatch policies under Poisson arrivals; model: sleep(2 ms + 0.05 ms x batch),"
        " max batch 32",
        fontsize=10,
    )
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--openloop", type=Path, default=RESULTS_DIR / "openloop.json")
    parser.add_argument("--sim", type=Path, default=RESULTS_DIR / "sim_dispatch.json")
    parser.add_argument("--out", type=Path, default=OUT, help="where the PNG goes")
    args = parser.parse_args()
    plot(args.openloop, args.sim, args.out)
    print(f"plot: {args.out}")
