"""What servekit's HTTP limits cost: uvicorn's httptools protocol vs ``LimitedHttpProtocol``.

The same minimal ASGI app (``bench_http.bare_app``: a 60-line batcher, the floor of
``bench_http.py``) is served by uvicorn twice, once with its own httptools protocol and once
with servekit's subclass enforcing head size, header count, head and body timeouts and the
connection cap (the defaults of ``servekit serve``). wrk drives each at 1 and 64 connections;
the sides alternate over rounds and the medians of req/s and server CPU per request are
reported. Needs ``wrk`` (``apt-get install -y wrk``).

    python benchmarks/bench_http_protocol.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import bench_http  # noqa: E402
from _common import RESULTS_DIR, free_port, render_table, table  # noqa: E402

SIDES = ("httptools", "limited")


def serve_app(side: str, port: int) -> None:
    """Run ``bench_http.bare_app`` under uvicorn with the ``side`` protocol (a child process)."""
    import uvicorn

    from servekit.server.http_protocol import http_protocol
    from servekit.settings import ServerSettings

    http: Any = "httptools" if side == "httptools" else http_protocol(ServerSettings())
    uvicorn.run(
        bench_http.bare_app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http=http,
        log_level="warning",
        access_log=False,
    )


def one_run(side: str, connections: int, seconds: float) -> dict[str, float]:
    port = free_port()
    command = [sys.executable, __file__, "--serve", side, "--port", str(port)]
    return bench_http.drive_server(command, port, connections, seconds)


def main(quick: bool = False) -> dict[str, Any]:
    rounds, seconds = (1, 3.0) if quick else (3, 6.0)
    runs: dict[int, dict[str, list[dict[str, float]]]] = {}
    for _ in range(rounds):
        for connections in (1, 64):
            for side in SIDES:
                result = one_run(side, connections, seconds)
                runs.setdefault(connections, {}).setdefault(side, []).append(result)
                print(f"[bench] http_protocol c={connections} {side}: {result}", flush=True)
    rows = []
    for connections, by_side in runs.items():
        med = {
            side: {k: statistics.median(r[k] for r in by_side[side]) for k in by_side[side][0]}
            for side in SIDES
        }
        plain, limited = med["httptools"], med["limited"]
        rows.append(
            [
                connections,
                round(plain["req_per_s"]),
                round(limited["req_per_s"]),
                round(limited["req_per_s"] / plain["req_per_s"], 3),
                round(plain["cpu_us_per_req"], 1),
                round(limited["cpu_us_per_req"], 1),
                round(limited["cpu_us_per_req"] - plain["cpu_us_per_req"], 1),
                f"{plain['errors']:g} / {limited['errors']:g}",
            ]
        )
    title = (
        f"bare ASGI app under uvicorn: httptools vs servekit's LimitedHttpProtocol"
        f" (median of {rounds} alternating rounds, {seconds:g} s each)"
    )
    columns = [
        "conns",
        "httptools req/s",
        "limited req/s",
        "limited/httptools",
        "httptools cpu us/req",
        "limited cpu us/req",
        "cost us/req",
        "errors",
    ]
    report = {"tables": [table(title, columns, rows)], "runs": runs}
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "http_protocol.json").write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--serve", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_app(args.serve, args.port)
    else:
        print(render_table(main(args.quick)["tables"][0]))
