"""The load tester's own ceiling: ``servekit bench`` vs ``wrk`` against the same server.

One ``servekit serve`` process (a no-op model, max batch 64, so the server is as fast as it
gets) on a free 127.0.0.1 port; both testers POST the same v2 JSON infer request (one FP32
[1, 16] row) with 64 connections in flight (closed loop), ``wrk -t1`` and
``servekit bench -c 64`` (one process, one event loop), alternating for 3 rounds of 8 s
(``--quick``: 1 round of 3 s), medians. Reports req/s, p50/p99, the tester's CPU per
request (its rusage) and servekit bench's req/s over wrk's against the target (>= 0.70).

    python benchmarks/bench_loadtester.py [--quick]

Needs ``wrk`` (``apt-get install -y wrk``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import servekit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BENCH_DIR, free_port, log, machine, median, table, verdict, wait_http_ok
from bench_http import request_body, run_wrk, wrk_binary

MODEL_NAME = "sleep"  # the name bench_http's wrk script and body use
CONNECTIONS = 64
TARGET_RATIO = 0.70


class NoopModel(servekit.Model):
    """Returns its rows at once: the server costs only its HTTP and batching work."""

    name = MODEL_NAME
    max_batch_size = 64
    inputs = [{"name": "input-0", "datatype": "FP32", "shape": [-1, 16]}]
    outputs = [{"name": "output-0", "datatype": "FP32", "shape": [-1, 16]}]

    def predict(self, batch: list[Any]) -> list[Any]:
        return batch


@contextlib.contextmanager
def _server() -> Iterator[str]:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "servekit",
        "serve",
        f"{Path(__file__).resolve()}:NoopModel",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    proc = subprocess.Popen(command, cwd=BENCH_DIR.parent, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http_ok(base + "/v2/health/ready", timeout=30.0, proc=proc)
        yield base
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_servekit_bench(base: str, seconds: float) -> dict[str, Any]:
    """One ``servekit bench`` run in its own process; its JSON figures and CPU time."""
    with tempfile.TemporaryDirectory() as tmp:
        body, out = Path(tmp) / "body.json", Path(tmp) / "out.json"
        body.write_bytes(request_body())
        command = [
            sys.executable,
            "-m",
            "servekit",
            "bench",
            base,
            "--model",
            MODEL_NAME,
            "--input",
            str(body),
            "-c",
            str(CONNECTIONS),
            "-d",
            f"{seconds:g}",
            "-q",
            "--json",
            str(out),
        ]
        before = _children_cpu()
        done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
        cpu = _children_cpu() - before
        if done.returncode != 0:
            raise RuntimeError(f"servekit bench failed ({done.returncode}): {done.stderr}")
        doc = json.loads(out.read_text())
    return {
        "requests": doc["sent"],
        "req_per_s": doc["throughput"],
        "p50_ms": doc["latency_ms"]["p50"],
        "p99_ms": doc["latency_ms"]["p99"],
        "errors": doc["failed"],
        "cpu_us_per_req": 1e6 * cpu / max(doc["sent"], 1),
    }


def run_wrk_side(base: str, seconds: float) -> dict[str, Any]:
    before = _children_cpu()
    raw = run_wrk(base, CONNECTIONS, seconds)
    cpu = _children_cpu() - before
    return {
        "requests": raw["requests"],
        "req_per_s": raw["req_per_s"],
        "p50_ms": raw["p50_ms"],
        "p99_ms": raw["p99_ms"],
        "errors": raw["non200"] + raw["socket_errors"],
        "cpu_us_per_req": 1e6 * cpu / max(raw["requests"], 1),
    }


def main(quick: bool = False) -> dict[str, Any]:
    """Alternate wrk and servekit bench against one server; medians and the ratio."""
    wrk_binary()
    seconds, rounds = (3.0, 1) if quick else (8.0, 3)
    runs: dict[str, list[dict[str, Any]]] = {"wrk": [], "servekit bench": []}
    with _server() as base:
        run_wrk(base, CONNECTIONS, 1.0)  # warm-up
        for index in range(rounds):
            order = ["wrk", "servekit bench"] if index % 2 == 0 else ["servekit bench", "wrk"]
            for side in order:
                fn = run_wrk_side if side == "wrk" else run_servekit_bench
                result = fn(base, seconds)
                runs[side].append(result)
                log(
                    f"loadtester {side} round {index + 1}: {result['req_per_s']:,.0f} req/s"
                    f" p50 {result['p50_ms']:.2f} ms p99 {result['p99_ms']:.2f} ms"
                    f" cpu {result['cpu_us_per_req']:.0f} us/req errors {result['errors']}"
                )
    medians = {
        side: {k: median([r[k] for r in rs]) for k in rs[0] if k != "requests"}
        for side, rs in runs.items()
    }
    ratio = medians["servekit bench"]["req_per_s"] / medians["wrk"]["req_per_s"]
    rows = [
        [side, m["req_per_s"], m["p50_ms"], m["p99_ms"], m["cpu_us_per_req"], m["errors"]]
        for side, m in medians.items()
    ]
    columns = ["tester", "req/s", "p50 ms", "p99 ms", "tester CPU us/req", "errors"]
    title = f"load tester ceiling: {CONNECTIONS} connections, no-op model, medians of {rounds}"
    notes = [
        f"servekit bench / wrk req/s = {ratio:.2f} (target >= {TARGET_RATIO}):"
        f" {verdict(ratio >= TARGET_RATIO)}",
        "both testers drive the same `servekit serve` process; on a 2-core machine the"
        " tester and the server share the cores, so a tester using more CPU leaves the"
        " server less",
    ]
    return {
        "tables": [table(title, columns, rows)],
        "notes": notes,
        "ratio": ratio,
        "target_ratio": TARGET_RATIO,
        "medians": medians,
        "runs": runs,
        "settings": {"connections": CONNECTIONS, "seconds": seconds, "rounds": rounds},
        "machine": machine(),
    }


if __name__ == "__main__":
    from _common import render_table, write_json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    result = main(quick=parser.parse_args().quick)
    for spec in result["tables"]:
        print(render_table(spec))
    print("\n".join(result["notes"]))
    write_json("loadtester", result)
