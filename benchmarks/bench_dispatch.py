"""Dispatch policies over HTTP: ``servekit serve --dispatch idle`` vs ``--dispatch adaptive``
vs the bare ASGI floor, side by side, driven by wrk.

``bench_http.py``'s model (``sleep(2 ms + 0.05 ms x batch)``, max batch 32) and request (v2
JSON, one FP32 [1, 16] row); the three servers run at once, each in its own process, and are
measured in turn (the order rotates each round) at 1, 16 and 64 connections; medians over the
rounds of req/s, p50/p99, mean batch size and server CPU per request. Before the servers
stop, each one's peak RSS (``VmHWM`` of the process and any children, summed) is read and
checked for the servekit sides against 80 MB.

    python benchmarks/bench_dispatch.py [--quick] [--rounds N] [--seconds S]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import signal
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_http
from _common import BENCH_DIR, free_port, log, machine, table, verdict, wait_http_ok

SIDES = ("bare", "idle", "adaptive")
CONCURRENCY = (1, 16, 64)
MEASURES = ("req_per_s", "p50_ms", "p99_ms", "mean_batch", "server_cpu_us_per_req")
TARGET_PEAK_RSS_MB = 80.0


def _command(side: str, port: int) -> list[str]:
    commands = bench_http._server_commands(port)
    if side == "bare":
        return commands["bare"]
    return [*commands["servekit"], "--dispatch", side]


def peak_rss_mb(pid: int) -> float:
    """Peak resident set (``VmHWM``) of ``pid`` plus its descendants, in MB (10^6 bytes).

    The sum is an upper bound for a tree: the peaks need not coincide, and pages shared
    between processes count once per process. Linux only; read it before the process exits.
    """
    total_kib = 0
    for member in (pid, *_descendants(pid)):
        try:
            status = Path(f"/proc/{member}/status").read_text()
        except OSError:  # a child that exited meanwhile
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                total_kib += int(line.split()[1])
    return total_kib * 1024 / 1e6


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from each process's parent in ``/proc/<pid>/stat``)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found, pending = [], list(children.get(pid, []))
    while pending:
        child = pending.pop()
        found.append(child)
        pending.extend(children.get(child, []))
    return found


@contextlib.contextmanager
def servers(
    commands: Mapping[str, Callable[[int], list[str]]], path: str = bench_http.INFER_PATH
) -> Iterator[dict[str, tuple[str, int]]]:
    """Start one server per side (``commands[side](port)``), each checked with one request
    to ``path``; yield side -> (base URL, pid); stop them after."""
    procs: list[subprocess.Popen[bytes]] = []
    started: dict[str, tuple[str, int]] = {}
    try:
        for side, command in commands.items():
            port = free_port()
            proc = subprocess.Popen(command(port), cwd=BENCH_DIR.parent, stdout=subprocess.DEVNULL)
            procs.append(proc)
            base = f"http://127.0.0.1:{port}"
            wait_http_ok(base + "/v2/health/ready", timeout=30.0, proc=proc)
            bench_http._preflight(base, path)
            started[side] = (base, proc.pid)
        yield started
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main(
    quick: bool = False, rounds: int | None = None, seconds: float | None = None
) -> dict[str, Any]:
    """The three sides at each concurrency, rotating, ``rounds`` times; medians."""
    bench_http.wrk_binary()
    rounds = rounds or (1 if quick else 3)
    seconds = seconds or (3.0 if quick else 6.0)
    runs: dict[str, dict[int, list[dict[str, Any]]]] = {
        side: {c: [] for c in CONCURRENCY} for side in SIDES
    }
    commands = {side: functools.partial(_command, side) for side in SIDES}
    with servers(commands) as started:
        for base, _ in started.values():
            bench_http.run_wrk(base, 64, 2.0)  # warm-up (and teach adaptive the model's cost)
        for r in range(rounds):
            order = SIDES[r % 3 :] + SIDES[: r % 3]
            for connections in CONCURRENCY:
                for side in order:
                    base, pid = started[side]
                    bench_http.run_wrk(base, connections, 1.0)
                    side_name = "bare" if side == "bare" else "servekit"
                    result = bench_http._measure(side_name, base, pid, connections, seconds)
                    log(f"  ^ {side}, round {r + 1}")
                    runs[side][connections].append(result)
        rss = {side: peak_rss_mb(pid) for side, (_, pid) in started.items()}
    return _report(runs, rss, rounds, seconds, quick)


def _median(results: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in results))


def _report(
    runs: dict[str, dict[int, list[dict[str, Any]]]],
    rss: dict[str, float],
    rounds: int,
    seconds: float,
    quick: bool,
) -> dict[str, Any]:
    medians = {
        side: {c: {m: _median(runs[side][c], m) for m in MEASURES} for c in CONCURRENCY}
        for side in SIDES
    }
    rows = []
    for c in CONCURRENCY:
        for side in SIDES:
            m = medians[side][c]
            errors = sum(r["non200"] + r["socket_errors"] for r in runs[side][c])
            rows.append(
                [
                    c,
                    side,
                    m["req_per_s"],
                    100.0 * m["req_per_s"] / bench_http.IDEAL_RPS,
                    m["p50_ms"],
                    m["p99_ms"],
                    m["mean_batch"],
                    m["server_cpu_us_per_req"],
                    ", ".join(f"{r['req_per_s']:,.0f}" for r in runs[side][c]),
                    errors,
                    rss[side],
                ]
            )
    ratio = {
        c: medians["adaptive"][c]["req_per_s"] / medians["idle"][c]["req_per_s"]
        for c in CONCURRENCY
    }
    notes = [
        "adaptive / idle req/s: " + ", ".join(f"c={c} {ratio[c]:.2f}" for c in CONCURRENCY),
        f"ideal = {bench_http.IDEAL_RPS:,.0f} req/s (full batches of {bench_http.MAX_BATCH})",
        *(
            f"peak RSS {side} {rss[side]:.1f} MB (process tree, VmHWM) <="
            f" {TARGET_PEAK_RSS_MB:g} MB: {verdict(rss[side] <= TARGET_PEAK_RSS_MB)}"
            for side in SIDES
            if side != "bare"
        ),
    ]
    return {
        "benchmark": "dispatch",
        "machine": machine(),
        "quick": quick,
        "settings": {"rounds": rounds, "seconds_per_run": seconds, "wrk_threads": 1},
        "runs": {side: {str(c): rs for c, rs in by_c.items()} for side, by_c in runs.items()},
        "medians": {side: {str(c): m for c, m in by_c.items()} for side, by_c in medians.items()},
        "adaptive_over_idle": {str(c): v for c, v in ratio.items()},
        "peak_rss_mb": rss,
        "peak_rss_target_mb": TARGET_PEAK_RSS_MB,
        "tables": [
            table(
                f"Dispatch policies, sleep(2 ms + 0.05 ms x batch) model, max batch 32, wrk -t1,"
                f" {seconds:g} s per run, medians of {rounds} rotating rounds",
                [
                    "conns",
                    "side",
                    "req/s",
                    "% ideal",
                    "p50 ms",
                    "p99 ms",
                    "batch",
                    "cpu us/req",
                    "req/s per round",
                    "errors",
                    "peak RSS MB",
                ],
                rows,
            )
        ],
        "notes": notes,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--seconds", type=float)
    args = parser.parse_args()
    from _common import print_and_save

    print_and_save("dispatch", main(args.quick, args.rounds, args.seconds))
