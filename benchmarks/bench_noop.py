"""Per-request overhead: a no-op model over v2 JSON, servekit vs the bare ASGI floor, by wrk.

The model returns its rows, so everything measured is the server's own work per request:
HTTP, JSON parse and encode, the batcher and the hand-off to the model. Sides, each its own
process on a free 127.0.0.1 port, measured in turn (the order rotates each round) at 64
connections; medians over the rounds:

- ``floor``: raw ASGI under the same uvicorn settings: orjson + numpy decode, ``predict``
  called directly, orjson encode (what the wire itself costs in Python);
- ``auto b1`` / ``auto b32``: ``servekit serve`` with ``max_batch_size`` 1 (batching off)
  and 32, default settings: ``inline = auto`` moves this model, which takes microseconds,
  from its worker thread onto the event loop after its first 100 batches;
- ``thread b1`` / ``thread b32``: the same with ``--inline off`` (``predict`` stays in the
  model's worker thread: the cost of the thread hop).

Targets (issue 11), for the default sides: with batching off ≥ 25% of the floor's req/s; with
max batch 32 ≥ 50%.

    python benchmarks/bench_noop.py [--quick] [--rounds N] [--seconds S]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import numpy as np
import orjson

import servekit

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_http
from _common import BENCH_DIR, log, machine, table, verdict
from bench_dispatch import servers

MODEL_NAME = "noop"
INFER_PATH = f"/v2/models/{MODEL_NAME}/infer"
CONNECTIONS = 64
SIDES = ("floor", "auto b1", "auto b32", "thread b1", "thread b32")
TARGETS = {"b1": 0.25, "b32": 0.50}


class NoopModel(servekit.Model):
    """Returns its rows: rows of 16 FP32 in, the same rows out."""

    name = MODEL_NAME
    inputs = [{"name": "input-0", "datatype": "FP32", "shape": [-1, 16]}]
    outputs = [{"name": "output-0", "datatype": "FP32", "shape": [-1, 16]}]

    def predict(self, batch: list[Any]) -> list[Any]:
        return batch


# ---------------------------------------------------------------------------- the floor
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
_HEADERS = [(b"content-type", b"application/json")]


async def floor_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Raw ASGI: decode the v2 request, call the no-op model, encode the v2 response."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["path"] != INFER_PATH:
        await _send(send, 200 if scope["path"] == "/v2/health/ready" else 404, b"{}")
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    request = orjson.loads(body)
    tensor = request["inputs"][0]
    rows = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
    out = np.stack(list(rows))
    await _send(send, 200, bench_http.v2_response(MODEL_NAME, request, out))


async def _send(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": body})


# ---------------------------------------------------------------------------- the driver
def _command(side: str, port: int) -> list[str]:
    host = ["--host", "127.0.0.1", "--port", str(port)]
    if side == "floor":
        return [
            sys.executable,
            "-m",
            "uvicorn",
            "--app-dir",
            str(BENCH_DIR),
            "bench_noop:floor_app",
            *host,
            *bench_http.UVICORN_FLAGS,
            "--no-access-log",
        ]
    mode, size = side.split()
    return [
        sys.executable,
        "-m",
        "servekit",
        "serve",
        f"{Path(__file__).resolve()}:NoopModel",
        *host,
        "--max-batch-size",
        size.removeprefix("b"),
        "--log-level",
        "warning",
        *(["--inline", "off"] if mode == "thread" else []),
    ]


def _measure(base: str, pid: int, seconds: float) -> dict[str, Any]:
    cpu_before = bench_http.process_cpu_seconds(pid)
    result = bench_http.run_wrk(base, CONNECTIONS, seconds, INFER_PATH)
    cpu = bench_http.process_cpu_seconds(pid) - cpu_before
    result["server_cpu_us_per_req"] = 1e6 * cpu / max(result["requests"], 1)
    return result


def main(
    quick: bool = False, rounds: int | None = None, seconds: float | None = None
) -> dict[str, Any]:
    """Every side, rotating, ``rounds`` times; medians and the targets."""
    bench_http.wrk_binary()
    rounds = rounds or (1 if quick else 3)
    seconds = seconds or (3.0 if quick else 6.0)
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
    commands = {side: functools.partial(_command, side) for side in SIDES}
    with servers(commands, INFER_PATH) as started:
        for base, _ in started.values():
            bench_http.run_wrk(base, CONNECTIONS, 1.0, INFER_PATH)  # warm-up
        for r in range(rounds):
            shift = r % len(SIDES)
            for side in SIDES[shift:] + SIDES[:shift]:
                base, pid = started[side]
                result = _measure(base, pid, seconds)
                runs[side].append(result)
                log(
                    f"noop {side} round {r + 1}: {result['req_per_s']:,.0f} req/s"
                    f" p50 {result['p50_ms']:.2f} ms cpu {result['server_cpu_us_per_req']:.0f}"
                    f" us/req errors {result['non200'] + result['socket_errors']}"
                )
    return _report(runs, rounds, seconds, quick)


def _median(results: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in results))


def _report(
    runs: dict[str, list[dict[str, Any]]], rounds: int, seconds: float, quick: bool
) -> dict[str, Any]:
    floor = _median(runs["floor"], "req_per_s")
    rows = []
    for side in SIDES:
        rps = _median(runs[side], "req_per_s")
        errors = sum(r["non200"] + r["socket_errors"] for r in runs[side])
        rows.append(
            [
                side,
                round(rps),
                f"{rps / floor:.2f}",
                round(_median(runs[side], "p50_ms"), 2),
                round(_median(runs[side], "p99_ms"), 2),
                round(_median(runs[side], "server_cpu_us_per_req")),
                errors,
            ]
        )
    checks = []
    for side in SIDES[1:3]:
        target = TARGETS[side.split()[1]]
        ratio = _median(runs[side], "req_per_s") / floor
        checks.append([side, f"≥ {target:.2f}", f"{ratio:.2f}", verdict(ratio >= target)])
    result = {
        "benchmark": "noop",
        "machine": machine(),
        "settings": {"rounds": rounds, "seconds": seconds, "connections": CONNECTIONS},
        "quick": quick,
        "tables": [
            table(
                f"No-op model over v2 JSON at c={CONNECTIONS} (medians of {rounds})",
                ["side", "req/s", "x floor", "p50 ms", "p99 ms", "cpu µs/req", "errors"],
                rows,
            ),
            table(
                "Targets (req/s as a share of the floor's)", ["side", "target", "got", ""], checks
            ),
        ],
        "runs": runs,
    }
    return result


def _parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round of 3 s")
    parser.add_argument("--rounds", type=int, help="rounds (default 3)")
    parser.add_argument("--seconds", type=float, help="seconds per measurement (default 6)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = _parse_args()
    from _common import print_and_save

    print_and_save("noop", main(args.quick, args.rounds, args.seconds))
