"""What engine events and request logging cost over HTTP (the fixed-cost benchmark).

``servekit serve bench_http.py:SleepModel`` (the model and request of ``bench_http.py``) is
driven by ``wrk -t1`` at 64 connections on four sides, which alternate over rounds:

* ``off``: ``SERVEKIT_EVENTS_ENGINE=false``, ``SERVEKIT_REQUEST_LOG=off`` (the reference);
* ``engine``: engine events on, to a JSON-lines file sink;
* ``log``: request logging of every request (``all``: a request and a response record each)
  to the file sink, engine events off;
* ``engine+log``: both.

Each side's server writes to its own file (``SERVEKIT_EVENTS_URL=file://…``), whose line count
is checked after the run (a side that wrote nothing did not measure what it claims). Reports
the medians of req/s and server CPU per request, and each side's req/s over ``off``'s
(targets: engine ≥ 0.97, log ≥ 0.95). Needs ``wrk`` (``apt-get install -y wrk``).

    python benchmarks/bench_events.py [--quick] [--rounds N] [--seconds S] [--connections C]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import bench_http  # noqa: E402
from _common import free_port, render_table, table, verdict, write_json  # noqa: E402

SIDES: dict[str, dict[str, str]] = {
    "off": {"SERVEKIT_EVENTS_ENGINE": "false", "SERVEKIT_REQUEST_LOG": "off"},
    "engine": {"SERVEKIT_EVENTS_ENGINE": "true", "SERVEKIT_REQUEST_LOG": "off"},
    "log": {"SERVEKIT_EVENTS_ENGINE": "false", "SERVEKIT_REQUEST_LOG": "all"},
    "engine+log": {"SERVEKIT_EVENTS_ENGINE": "true", "SERVEKIT_REQUEST_LOG": "all"},
}
TARGETS = {"engine": 0.97, "log": 0.95}  # req/s over off's at c=64 (issue 8)


def one_run(side: str, connections: int, seconds: float, folder: Path) -> dict[str, float]:
    """One server of ``side`` under wrk; the lines its file sink received are counted."""
    path = folder / f"{side}-{len(list(folder.iterdir()))}.jsonl"
    port = free_port()
    command = bench_http._server_commands(port)["servekit"]
    saved = dict(os.environ)
    os.environ.update(SIDES[side], SERVEKIT_EVENTS_URL=f"file://{path}")
    try:
        result = bench_http.drive_server(command, port, connections, seconds)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    lines = path.read_bytes().count(b"\n") if path.exists() else 0
    if side != "off" and lines == 0:
        raise RuntimeError(f"side {side!r} wrote no events to {path}: it measured nothing")
    result["event_lines"] = lines
    path.unlink(missing_ok=True)
    return result


def main(
    quick: bool = False,
    rounds: int | None = None,
    seconds: float | None = None,
    connections: int = 64,
) -> dict[str, Any]:
    rounds = rounds or (1 if quick else 5)
    seconds = seconds or (3.0 if quick else 8.0)
    runs: dict[str, list[dict[str, float]]] = {side: [] for side in SIDES}
    with tempfile.TemporaryDirectory(prefix="servekit-bench-events-") as tmp:
        for round_no in range(rounds):
            for side in SIDES:
                result = one_run(side, connections, seconds, Path(tmp))
                runs[side].append(result)
                print(f"[bench] events round {round_no + 1} {side}: {result}", flush=True)
    med = {
        side: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for side, rs in runs.items()
    }
    base = med["off"]
    rows = []
    checks = {}
    for side, m in med.items():
        ratio = m["req_per_s"] / base["req_per_s"] if base["req_per_s"] else 0.0
        target = TARGETS.get(side)
        if target is not None:
            checks[f"{side} req/s >= {target} x off"] = ratio >= target
        rows.append(
            [
                side,
                round(m["req_per_s"]),
                round(ratio, 3),
                round(m["cpu_us_per_req"], 1),
                round(m["cpu_us_per_req"] - base["cpu_us_per_req"], 1),
                round(m["event_lines"] / max(m["req_per_s"] * seconds, 1), 2),
                f"{m['errors']:g}",
                "" if target is None else verdict(ratio >= target),
            ]
        )
    title = (
        f"engine events and request logging over HTTP, c={connections}"
        f" (median of {rounds} alternating rounds, {seconds:g} s each)"
    )
    columns = [
        "side",
        "req/s",
        "vs off",
        "cpu us/req",
        "cost us/req",
        "lines/req",
        "errors",
        "target",
    ]
    notes = [
        "lines/req: lines in the side's file sink per request served in the measured window"
        " (engine: 1 per request + 3 per batch; log: 2 per request; the warm-up adds a few)",
        "targets (issue 8): engine events cost <= 3% of req/s, request logging of every"
        " request to the file sink <= 5%",
    ]
    report = {
        "tables": [table(title, columns, rows)],
        "notes": notes,
        "runs": runs,
        "checks": checks,
        "settings": {"rounds": rounds, "seconds": seconds, "connections": connections},
    }
    write_json("events", report)
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    report = main(args.quick, args.rounds, args.seconds, args.connections)
    print(render_table(report["tables"][0]))
    for note in report["notes"]:
        print(f"- {note}")
