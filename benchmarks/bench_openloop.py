"""Dispatch policies under an open loop over HTTP: Poisson arrivals at 25/50/75/90% of the
server's measured capacity, for ``--dispatch idle``, ``--dispatch adaptive`` and a fixed
5 ms window (``--idle-batch-size 32 --max-latency-ms 5``).

``bench_http.py``'s model (``sleep(2 ms + 0.05 ms x batch)``, max batch 32) and request (v2
JSON, one FP32 [1, 16] row). The three servers run at once, each in its own process; only the
one under test gets traffic. 100% is measured first: ``servekit bench`` closed loop with 64
in flight against the idle-dispatch server, the median of 3 runs of 1.5 s (the model alone
would allow 8,889 req/s; on a small machine the HTTP path and the load tester, which share
the cores, stop below). Then, each round, every load and every policy in turn (the order
rotating), ``servekit bench`` in this process sends Poisson arrivals at that rate (the same
seed for the three policies, so they see the same arrival times) on at most 256
connections; latency counts from each request's due time. Medians over the rounds of
p50/p99, answered req/s, mean batch and the cores used (tester, server, anything else);
errors summed.

    python benchmarks/bench_openloop.py [--quick] [--rounds N] [--seconds S]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_http
from _common import log, machine, source_fingerprint, table, verdict
from bench_dispatch import peak_rss_mb, servers

from servekit.bench import Plan, Result, run

POLICIES: dict[str, list[str]] = {
    "idle": ["--dispatch", "idle"],
    "adaptive": ["--dispatch", "adaptive"],
    "window 5 ms": ["--dispatch", "idle", "--idle-batch-size", "32", "--max-latency-ms", "5"],
}
WINDOW = "window 5 ms"
LOADS = (0.25, 0.5, 0.75, 0.9)
CAPACITY_CONCURRENCY = 64
#: The open loop's connections: enough for every request in flight below saturation; beyond,
#: due requests wait in the tester (their latency still counts from when they were due)
#: instead of each opening a connection, which costs both processes CPU just when they have
#: none to spare.
MAX_CONNECTIONS = 256
#: Cores busy outside the tester and the servers, above which a run was disturbed.
OTHER_CORES = 0.25
MEASURES = (
    "p50_ms",
    "p99_ms",
    "req_per_s",
    "mean_batch",
    "tester_cores",
    "server_cores",
    "other_cores",
)
#: "No worse" allows this much above the other policy's figure: the run-to-run noise of a
#: percentile from a few thousand requests on a shared machine.
TOLERANCE = 0.05


def _command(policy: str, port: int) -> list[str]:
    return [*bench_http._server_commands(port)["servekit"], *POLICIES[policy]]


def _closed(base: str, seconds: float) -> Result:
    plan = Plan(concurrency=CAPACITY_CONCURRENCY, duration=seconds)
    return run(base, bench_http.MODEL_NAME, body=bench_http.request_body(), plan=plan)


def _busy_cpu_seconds() -> float:
    """CPU seconds the machine's cores have spent busy so far (``/proc/stat``; idle, iowait
    and the guest share already counted in user time left out)."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def _cpu(pids: list[int]) -> list[float]:
    """CPU seconds so far of each process, then of the whole machine."""
    return [*(bench_http.process_cpu_seconds(pid) for pid in pids), _busy_cpu_seconds()]


def _open(
    base: str, pid: int, rate: float, seconds: float, seed: int, servers: list[int]
) -> dict[str, Any]:
    """One open-loop run at ``rate`` against the server ``pid``: its percentiles,
    throughput, errors, mean batch, and the cores used by the tester, that server, and
    anything else (``servers`` are all of ours; kernel network work lands in "other" too)."""
    pids = [os.getpid(), pid, *servers]
    before, cpu_before = bench_http._batch_stats("servekit", base), _cpu(pids)
    began = time.perf_counter()
    plan = Plan(
        rate=rate, duration=seconds, seed=seed, timeout=5.0, max_connections=MAX_CONNECTIONS
    )
    result = run(base, bench_http.MODEL_NAME, body=bench_http.request_body(), plan=plan)
    elapsed = time.perf_counter() - began
    cpu = [b - a for a, b in zip(cpu_before, _cpu(pids), strict=True)]
    after = bench_http._batch_stats("servekit", base)
    batches = after.get("batches", 0.0) - before.get("batches", 0.0)
    items = after.get("items", 0.0) - before.get("items", 0.0)
    return {
        "rate": rate,
        "sent": result.sent,
        "ok": result.ok,
        "req_per_s": result.throughput,
        "p50_ms": result.latency_ms["p50"],
        "p99_ms": result.latency_ms["p99"],
        "max_ms": result.latency_ms["max"],
        "service_p50_ms": result.service_latency_ms["p50"],
        "service_p99_ms": result.service_latency_ms["p99"],
        "late_sends": result.late_sends,
        "max_send_lag_ms": result.max_send_lag_ms,
        "errors": result.failed,
        "errors_by_kind": result.errors,
        "mean_batch": items / batches if batches else float("nan"),
        "tester_cores": cpu[0] / elapsed,
        "server_cores": cpu[1] / elapsed,
        "other_cores": (cpu[-1] - cpu[0] - sum(cpu[2:-1])) / elapsed,
    }


def main(
    quick: bool = False, rounds: int | None = None, seconds: float | None = None
) -> dict[str, Any]:
    """Capacity, then every load x policy, rotating, ``rounds`` times; medians and verdicts."""
    rounds = rounds or (1 if quick else 3)
    seconds = seconds or (2.0 if quick else 3.0)
    names = list(POLICIES)
    runs: dict[str, dict[float, list[dict[str, Any]]]] = {
        name: {load: [] for load in LOADS} for name in names
    }
    commands = {name: functools.partial(_command, name) for name in names}
    with servers(commands) as started:
        for base, _ in started.values():
            _closed(base, 1.0)  # warm-up (and teach adaptive the model's cost)
        tries = [_closed(started["idle"][0], 1.5) for _ in range(1 if quick else 3)]
        measured = sorted(tries, key=lambda t: t.throughput)[len(tries) // 2]
        full = measured.throughput
        pids = [pid for _, pid in started.values()]
        log(f"openloop: capacity {full:,.0f} req/s (idle dispatch, closed loop c=64)")
        for r in range(rounds):
            for i, load in enumerate(LOADS):
                shift = (r + i) % len(names)
                for name in names[shift:] + names[:shift]:
                    base, pid = started[name]
                    point = _open(base, pid, load * full, seconds, 1000 * r + i, pids)
                    log(
                        f"openloop {load:.0%} {name} round {r + 1}:"
                        f" p50 {point['p50_ms']:.2f} p99 {point['p99_ms']:.2f} ms,"
                        f" {point['req_per_s']:,.0f} req/s, batch {point['mean_batch']:.1f},"
                        f" errors {point['errors']}; cores: tester {point['tester_cores']:.2f}"
                        f" server {point['server_cores']:.2f} other {point['other_cores']:.2f}"
                    )
                    runs[name][load].append(point)
        rss = {name: peak_rss_mb(pid) for name, (_, pid) in started.items()}
    capacity = {
        "req_per_s": measured.throughput,
        "concurrency": CAPACITY_CONCURRENCY,
        "p50_ms": measured.latency_ms["p50"],
        "p99_ms": measured.latency_ms["p99"],
        "errors": measured.failed,
        "tries_req_per_s": [t.throughput for t in tries],
    }
    return _report(runs, capacity, rss, rounds, seconds, quick)


def _medians(results: list[dict[str, Any]]) -> dict[str, float]:
    return {m: statistics.median(r[m] for r in results) for m in MEASURES}


def _verdicts(runs: dict[str, dict[float, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """Per load and percentile: adaptive vs the window and idle, idle vs the window.

    ``no worse``: the median within ``TOLERANCE`` of the other's; ``noise``: above it, but
    some round of this policy did as well as some round of the other; ``worse``: every
    round above every round of the other (and the median beyond the tolerance).
    """
    checks = []
    for load in LOADS:
        for key in ("p50_ms", "p99_ms"):
            for mine, other in (("adaptive", WINDOW), ("adaptive", "idle"), ("idle", WINDOW)):
                a = [r[key] for r in runs[mine][load]]
                b = [r[key] for r in runs[other][load]]
                ratio = statistics.median(a) / statistics.median(b)
                if ratio <= 1.0 + TOLERANCE:
                    result = "no worse"
                else:
                    result = "noise" if min(a) <= max(b) else "worse"
                checks.append(
                    {
                        "load": load,
                        "measure": key,
                        "policy": mine,
                        "against": other,
                        "ratio": ratio,
                        "result": result,
                    }
                )
    return checks


def _late_share(results: list[dict[str, Any]]) -> float:
    sent = sum(r["sent"] for r in results)
    return 100.0 * sum(r["late_sends"] for r in results) / sent if sent else 0.0


def _report(
    runs: dict[str, dict[float, list[dict[str, Any]]]],
    capacity: dict[str, Any],
    rss: dict[str, float],
    rounds: int,
    seconds: float,
    quick: bool,
) -> dict[str, Any]:
    full = capacity["req_per_s"]
    medians = {name: {load: _medians(rs) for load, rs in by.items()} for name, by in runs.items()}
    points, rows = [], []
    for load in LOADS:
        for name in POLICIES:
            m, rs = medians[name][load], runs[name][load]
            errors = sum(r["errors"] for r in rs)
            late = _late_share(rs)
            points.append({"load": load, "policy": name, "rate": load * full, **m})
            points[-1].update(errors=errors, late_pct=late)
            rows.append(
                [
                    f"{load:.0%}",
                    load * full,
                    name,
                    m["p50_ms"],
                    m["p99_ms"],
                    m["req_per_s"],
                    m["mean_batch"],
                    ", ".join(f"{r['p99_ms']:.1f}" for r in rs),
                    late,
                    errors,
                    f"{m['server_cores']:.2f} / {m['tester_cores']:.2f} / {m['other_cores']:.2f}",
                ]
            )
    checks = _verdicts(runs)
    return {
        "benchmark": "openloop",
        "machine": machine(),
        "servekit_source_sha256": source_fingerprint(),
        "quick": quick,
        "settings": {
            "rounds": rounds,
            "seconds_per_run": seconds,
            "loads": list(LOADS),
            "policies": POLICIES,
            "tolerance": TOLERANCE,
            "max_connections": MAX_CONNECTIONS,
            "load_tester": "servekit bench (open loop, in the benchmark's process)",
            "tester_window_summaries": False,
        },
        "capacity": capacity,
        "runs": {name: {str(load): rs for load, rs in by.items()} for name, by in runs.items()},
        "points": points,
        "verdicts": checks,
        "peak_rss_mb": rss,
        "tables": [
            table(
                f"Open loop (Poisson) over HTTP, sleep(2 ms + 0.05 ms x batch) model, max batch"
                f" 32; 100% = {full:,.0f} req/s (closed loop, c={CAPACITY_CONCURRENCY});"
                f" {seconds:g} s per run, medians of {rounds} rotating rounds",
                [
                    "load",
                    "rate",
                    "policy",
                    "p50 ms",
                    "p99 ms",
                    "req/s",
                    "batch",
                    "p99 per round",
                    "late %",
                    "errors",
                    "cores: server / tester / other",
                ],
                rows,
            )
        ],
        "notes": _notes(checks, runs),
    }


def _notes(
    checks: list[dict[str, Any]], runs: dict[str, dict[float, list[dict[str, Any]]]]
) -> list[str]:
    notes = []
    for load in LOADS:
        parts = [
            f"{c['policy']}/{c['against']} {c['measure'][:3]} {c['ratio']:.2f}"
            + ("" if c["result"] == "no worse" else f" ({c['result']})")
            for c in checks
            if c["load"] == load
        ]
        notes.append(f"{load:.0%}: " + ", ".join(parts))
    late = [max(_late_share(runs[name][load]) for name in POLICIES) for load in LOADS]
    notes.append(
        "sends more than 2 ms behind schedule (the tester itself lagging), worst policy: "
        + ", ".join(f"{load:.0%} {pct:.1f}%" for load, pct in zip(LOADS, late, strict=True))
    )
    other = max(r["other_cores"] for by in runs.values() for rs in by.values() for r in rs)
    notes.append(
        f"WARNING: other work on the machine took up to {other:.2f} cores during a run: these"
        " figures are not the policies' own; run again on an idle machine"
        if other > OTHER_CORES
        else f"no other work seen on the machine (at most {other:.2f} cores outside this run's"
        " processes, kernel network work included)"
    )
    target = [c for c in checks if c["policy"] == "adaptive"]
    label = {"no worse": "", "noise": " (noise)", "worse": " (worse)"}
    beyond = [
        f"{c['load']:.0%} {c['measure'][:3]} vs {c['against']}{label[c['result']]}"
        for c in target
        if c["result"] != "no worse"
    ]
    results = {c["result"] for c in target}
    outcome = verdict("worse" not in results) if "noise" not in results else "not shown"
    notes.append(
        f"target: adaptive's p50 and p99 no worse than the 5 ms window's and idle's at every"
        f" load (medians within {TOLERANCE:.0%}; 'noise': beyond it but the rounds overlap):"
        f" {outcome}" + (f"; beyond {TOLERANCE:.0%}: {'; '.join(beyond)}" if beyond else "")
    )
    return notes


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round of 2 s per point")
    parser.add_argument("--rounds", type=int, help="rounds (default 3; --quick 1)")
    parser.add_argument("--seconds", type=float, help="seconds per run (default 3; --quick 2)")
    args = parser.parse_args()
    from _common import print_and_save

    print_and_save("openloop", main(args.quick, args.rounds, args.seconds))
