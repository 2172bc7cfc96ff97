"""Latency against load for the dispatch policies, simulated and over HTTP.

Reads ``results/openloop.json`` (``bench_openloop.py``: the real server under
``servekit bench --rate``) and, if present, ``results/sim_dispatch.json`` (``sim_dispatch.py``:
the real batcher on a manual clock), and draws p50 and p99 latency against the load (% of
capacity) for idle dispatch, adaptive dispatch and a fixed 5 ms window: one row per source,
one column per percentile; the HTTP points carry the range over the rounds, and a load at
which the load tester fell behind its schedule is marked. Writes ``docs/img/dispatch.png``
(the docs' Batching page shows it). Measures nothing itself.

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
LATE_PCT = 5.0  # a load where the tester sent more than this share late is marked
LOG_TICKS = [2, 5, 10, 20, 50, 100, 200, 500, 1000]


def _rows(openloop: Path, sim: Path) -> list[dict[str, Any]]:
    """One row per source found (simulated first); the HTTP run is required."""
    doc = json.loads(openloop.read_text())
    settings = doc["settings"]
    rows = []
    if sim.is_file():
        sim_doc = json.loads(sim.read_text())
        rows.append(
            {
                "name": "simulated",
                "title": "simulated: the batcher on a manual clock, no HTTP;"
                f" 100% = {sim_doc['settings']['capacity_items_per_s']:,.0f} req/s",
                "points": sim_doc["points"],
                "log": False,
            }
        )
    rows.append(
        {
            "name": "HTTP",
            "title": f"HTTP: servekit bench --rate; 100% = {doc['capacity']['req_per_s']:,.0f}"
            f" req/s measured; medians (bars: range) of {settings['rounds']} rounds"
            f" x {settings['seconds_per_run']:g} s",
            "points": doc["points"],
            "runs": doc["runs"],
            "log": True,
        }
    )
    return rows


def _draw(axis: Any, row: dict[str, Any], key: str) -> None:
    for policy in POLICIES:
        mine = sorted((p for p in row["points"] if p["policy"] == policy), key=lambda p: p["load"])
        x = [100 * p["load"] for p in mine]
        y = [p[key] for p in mine]
        marker, line = STYLE[policy]
        if "runs" in row:
            rounds = [[r[key] for r in row["runs"][policy][str(p["load"])]] for p in mine]
            spread = [
                [v - min(rs) for v, rs in zip(y, rounds, strict=True)],
                [max(rs) - v for v, rs in zip(y, rounds, strict=True)],
            ]
            axis.errorbar(x, y, yerr=spread, marker=marker, linestyle=line, capsize=3, label=policy)
        else:
            axis.plot(x, y, marker=marker, linestyle=line, label=policy)
    for load in _late_loads(row):
        axis.axvspan(100 * load - 4, 100 * load + 4, color="grey", alpha=0.15)


def _late_loads(row: dict[str, Any]) -> dict[float, float]:
    """Loads at which some policy's run had more than ``LATE_PCT`` of its sends late."""
    late: dict[float, float] = {}
    for p in row["points"]:
        if p.get("late_pct", 0.0) > LATE_PCT:
            late[p["load"]] = max(late.get(p["load"], 0.0), p["late_pct"])
    return late


def plot(openloop: Path, sim: Path, out: Path) -> None:
    """Draw the figure from the JSON files into ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

    rows = _rows(openloop, sim)
    figure = plt.figure(figsize=(11, 4.2 * len(rows)), layout="constrained")
    for row, sub in zip(rows, figure.subfigures(len(rows), 1, squeeze=False)[:, 0], strict=True):
        late = _late_loads(row)
        note = "".join(
            f"\ngrey: at {100 * load:.0f}% the load tester itself fell behind (> 2 ms)"
            f" on up to {pct:.0f}% of its sends"
            for load, pct in late.items()
        )
        sub.suptitle(row["title"] + note, fontsize=9)
        pair = sub.subplots(1, 2)
        for axis, key, name in ((pair[0], "p50_ms", "p50"), (pair[1], "p99_ms", "p99")):
            _draw(axis, row, key)
            axis.set_title(f"{name}, {row['name']}", fontsize=10)
            axis.set_xlabel("load (% of capacity)")
            axis.set_ylabel(f"{name} latency (ms{', log scale' if row['log'] else ''})")
            axis.set_xticks([25, 50, 75, 90])
            if row["log"]:
                axis.set_yscale("log")
                axis.yaxis.set_major_locator(FixedLocator(LOG_TICKS))
                axis.yaxis.set_major_formatter(ScalarFormatter())
                axis.yaxis.set_minor_formatter(NullFormatter())
            else:
                axis.set_ylim(bottom=0)
            axis.grid(True, which="both", alpha=0.3)
        pair[0].legend(fontsize=8, loc="best")
    figure.suptitle(
        "Dispatch policies under Poisson arrivals; model: sleep(2 ms + 0.05 ms x batch),"
        " max batch 32",
        fontsize=11,
    )
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
