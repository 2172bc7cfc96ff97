"""v2 over gRPC vs the v2 REST route, on one server in one run, with the published clients.

One ``servekit serve --grpc-port`` process (identity model, ``IdentityModel`` below, max batch
64) on free 127.0.0.1 ports. The gRPC side is ``tritonclient.grpc`` (``ModelInfer``, tensors in
``raw_input_contents``); the REST side is ``tritonclient.http`` with binary tensors (the binary
tensor extension: the closest REST twin of raw contents). Each thread has its own client and
sends one request at a time, numpy in -> numpy out (``InferInput`` + ``set_data_from_numpy`` +
``infer`` + ``as_numpy``), at 1 and 8 threads; payloads FP32 1x16 and 64x1024. The sides
alternate per case and round (A B, then B A); medians over rounds are reported. The clients
run in this process, so their CPU counts in what is measured (as it does for users). The
last answer of every timed run is compared with its input.

    python benchmarks/bench_grpc.py [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

import servekit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BENCH_DIR, free_port, log, machine, median, percentile, table, wait_http_ok

MODEL_NAME = "identity"
MAX_BATCH = 64
SHAPES: tuple[tuple[int, int], ...] = ((1, 16), (64, 1024))
THREADS = (1, 8)
SIDES = ("grpc", "rest")
Caller = Callable[[], np.ndarray]


class IdentityModel(servekit.Model):
    """Returns its input rows: FP32 [n, k] in, the same [n, k] out."""

    name = MODEL_NAME
    max_batch_size = MAX_BATCH

    def predict(self, batch: list[Any]) -> list[Any]:
        return batch


@contextlib.contextmanager
def _serve() -> Iterator[tuple[int, int]]:
    """``servekit serve`` with HTTP and gRPC doors; yields ``(http port, grpc port)``."""
    port, grpc_port = free_port(), free_port()
    command = [
        sys.executable,
        "-m",
        "servekit",
        "serve",
        f"{Path(__file__).resolve()}:IdentityModel",
        "--port",
        str(port),
        "--grpc-port",
        str(grpc_port),
        "--max-batch-size",
        str(MAX_BATCH),
        "--log-level",
        "warning",
        "--no-events-engine",
    ]
    proc = subprocess.Popen(command, cwd=BENCH_DIR.parent, stdout=subprocess.DEVNULL)
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/v2/models/{MODEL_NAME}/ready", 30.0, proc)
        yield port, grpc_port
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _caller(side: str, port: int, grpc_port: int, array: np.ndarray) -> Callable[[], np.ndarray]:
    """One client of ``side`` and a zero-argument round trip on it (tritonclient.http runs on
    gevent: make and use it in one thread)."""
    if side == "grpc":
        import tritonclient.grpc as client_lib

        client: Any = client_lib.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    else:
        import tritonclient.http as client_lib  # type: ignore[no-redef]

        client = client_lib.InferenceServerClient(f"127.0.0.1:{port}")

    def call() -> np.ndarray:
        tensor = client_lib.InferInput("input-0", list(array.shape), "FP32")
        if side == "grpc":
            tensor.set_data_from_numpy(array)
            out = client_lib.InferRequestedOutput("output-0")
        else:
            tensor.set_data_from_numpy(array, binary_data=True)
            out = client_lib.InferRequestedOutput("output-0", binary_data=True)
        return client.infer(MODEL_NAME, [tensor], outputs=[out]).as_numpy("output-0")

    return call


def run_once(makers: list[Callable[[], Caller]], seconds: float) -> dict[str, Any]:
    """Each maker's caller in its own thread (made there), back to back for ``seconds``."""
    latencies: list[list[float]] = [[] for _ in makers]
    last: list[np.ndarray | None] = [None] * len(makers)
    start = threading.Barrier(len(makers) + 1)
    stop_at = [float("inf")]  # set once every thread is ready

    def loop(index: int) -> None:
        call, mine = makers[index](), latencies[index]
        call()  # connected before the clock starts
        start.wait()
        while True:
            began = time.perf_counter()
            if began >= stop_at[0]:
                return
            last[index] = call()
            mine.append(time.perf_counter() - began)

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(len(makers))]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    stop_at[0] = began + seconds
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    every = sorted(x for per in latencies for x in per)
    return {
        "requests": len(every),
        "req_per_s": len(every) / elapsed,
        "p50_ms": percentile(every, 50) * 1e3,
        "p99_ms": percentile(every, 99) * 1e3,
        "last": last,
    }


def main(quick: bool = False) -> dict[str, Any]:
    """Both sides on every case, interleaved; a table of medians."""
    rounds, seconds = (1, 0.5) if quick else (3, 3.0)
    runs: dict[str, list[dict[str, Any]]] = {}
    with _serve() as (port, grpc_port):
        for shape in SHAPES:
            array = np.random.default_rng(0).random(shape, dtype=np.float32)
            for threads in THREADS:
                callers = {
                    side: [
                        functools.partial(_caller, side, port, grpc_port, array)
                        for _ in range(threads)
                    ]
                    for side in SIDES
                }
                for side in SIDES:
                    run_once(callers[side], min(0.2, seconds))  # warm-up
                for round_ in range(rounds):
                    order = SIDES if round_ % 2 == 0 else SIDES[::-1]
                    for side in order:
                        result = run_once(callers[side], seconds)
                        for got in result.pop("last"):
                            assert got is not None and np.array_equal(got, array), side
                        key = f"{side} {shape[0]}x{shape[1]} t{threads}"
                        runs.setdefault(key, []).append(result)
                        log(f"{key}: {result['req_per_s']:.0f} req/s")
    rows = []
    summary: dict[str, Any] = {}
    for shape in SHAPES:
        for threads in THREADS:
            case = f"{shape[0]}x{shape[1]} t{threads}"
            stats = {
                side: {
                    k: median([r[k] for r in runs[f"{side} {case}"]])
                    for k in ("req_per_s", "p50_ms", "p99_ms")
                }
                for side in SIDES
            }
            ratio = stats["grpc"]["req_per_s"] / stats["rest"]["req_per_s"]
            summary[case] = {**stats, "grpc_over_rest": ratio}
            for side in SIDES:
                s = stats[side]
                rows.append(
                    [
                        case,
                        side,
                        round(s["req_per_s"]),
                        round(s["p50_ms"], 2),
                        round(s["p99_ms"], 2),
                    ]
                )
            rows.append([case, "grpc / rest", round(ratio, 2), "", ""])
    return {
        "name": "grpc",
        "machine": machine(),
        "settings": {
            "model": "identity, servekit serve --grpc-port, max batch 64, engine events off",
            "grpc": "tritonclient.grpc InferenceServerClient.infer (raw_input_contents)",
            "rest": "tritonclient.http InferenceServerClient.infer, binary_data=True",
            "threads": list(THREADS),
            "rounds": rounds,
            "seconds_per_run": seconds,
            "quick": quick,
        },
        "runs": runs,
        "summary": summary,
        "tables": [
            table(
                "v2 over gRPC vs v2 REST (tritonclient, one server)",
                ["case", "side", "req/s", "p50 ms", "p99 ms"],
                rows,
            )
        ],
        "notes": [
            "Clients run in the benchmark process: on 2 shared cores they compete with the"
            " server for CPU, so the ratio says more than the absolute figures."
        ],
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one short round")
    args = parser.parse_args()
    result = main(quick=args.quick)
    from _common import render_table, write_json

    for spec in result["tables"]:
        print(render_table(spec))
    for note in result["notes"]:
        print(note)
    print(write_json("grpc", result))
