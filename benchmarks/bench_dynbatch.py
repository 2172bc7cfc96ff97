"""In-process dynamic batching: servekit vs a minimal thread batcher and pyraisdk 0.5.6.

A no-op model (``predict`` returns its items) behind each side's batcher; 20 threads call
``predict_one`` in a loop. The sides: servekit's ``DynamicBatchModel``; ``MinimalBatcher``
below, the floor (one worker thread, a deque under one ``Condition``, one ``Event`` per call);
and the published ``DynamicBatchModel`` of pyraisdk 0.5.6. Each runs in its own subprocess
(no shared GIL): servekit and minimal in this interpreter, pyraisdk in
``benchmarks/.venv-pyraisdk`` (created on first run). The order rotates each round and the
medians over rounds are reported, with servekit/minimal (target >= 0.9) and
servekit/pyraisdk (target >= 1.5) items/s from the same run.

    python benchmarks/bench_dynbatch.py [--quick] [--rounds N] [--profile]

Module level imports the standard library only: the pyraisdk venv runs this file as a worker.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import venv
from collections import deque
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    BENCH_DIR,
    log,
    machine,
    median,
    percentile,
    table,
    verdict,
)

PYRAISDK_VERSION = "0.5.6"
VENV_DIR = BENCH_DIR / ".venv-pyraisdk"
MARKER = "DYNBATCH_RESULT "
SIDES = ("servekit", "minimal", "pyraisdk")
#: servekit's items/s over each other side's, at least (issue 11)
TARGETS = {"minimal": 0.9, "pyraisdk": 1.5}
#: rounds of the comparison; ``None``: 1 with ``--quick``, else 5 (``--rounds`` sets it)
ROUNDS: int | None = None


# ---------------------------------------------------------------------------- worker side
class _Counter:
    """Counts batches the model saw (mean batch size, identical for every side)."""

    def __init__(self) -> None:
        self.batches = 0
        self.items = 0

    def predict(self, items: list[Any]) -> list[Any]:
        self.batches += 1
        self.items += len(items)
        return items


_Pending = tuple[Any, threading.Event, list[Any], float]  # item, its caller's Event, slot, since


class MinimalBatcher:
    """The floor: one worker thread, a deque under one Condition, one Event per call.

    Dispatch as servekit's ``"idle"`` policy: when the worker is free it takes up to
    ``max_batch`` queued items if there are at least ``idle`` of them, else once the oldest
    has waited ``interval`` seconds. A call that times out leaves its item queued (no cancel).
    """

    def __init__(self, model: _Counter, max_batch: int, idle: int, interval: float) -> None:
        self._predict = model.predict
        self._max_batch, self._idle, self._interval = max_batch, idle, interval
        self._pending: deque[_Pending] = deque()
        self._ready = threading.Condition()
        self._closed = False
        self._worker = threading.Thread(target=self._serve, name="minimal-batcher", daemon=True)
        self._worker.start()

    def predict_one(self, item: Any, timeout: float | None = 1.0) -> Any:
        done = threading.Event()
        slot: list[Any] = []
        with self._ready:
            self._pending.append((item, done, slot, time.monotonic()))
            self._ready.notify()
        if not done.wait(timeout):
            raise TimeoutError(f"no result within {timeout} s")
        result, failed = slot
        if failed:
            raise result
        return result

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify()
        self._worker.join()

    def _next_batch(self) -> list[_Pending]:
        """Block until a batch is due; empty once closed and drained."""
        pending = self._pending
        with self._ready:
            while len(pending) < self._idle and not self._closed:
                wait = pending[0][3] + self._interval - time.monotonic() if pending else None
                if wait is not None and wait <= 0:
                    break
                self._ready.wait(wait)
            return [pending.popleft() for _ in range(min(len(pending), self._max_batch))]

    def _serve(self) -> None:
        while batch := self._next_batch():
            failed = False
            try:
                results = self._predict([entry[0] for entry in batch])
                if len(results) != len(batch):
                    raise ValueError(f"{len(results)} results for {len(batch)} items")
            except Exception as exc:  # every caller of the batch gets the model's error
                results, failed = [exc] * len(batch), True
            for (_, done, slot, _), result in zip(batch, results, strict=True):
                slot += (result, failed)
                done.set()


def _make_model(side: str, max_batch: int, idle: int, interval: float) -> tuple[Any, _Counter]:
    counter = _Counter()
    if side == "minimal":
        return MinimalBatcher(counter, max_batch, idle, interval), counter
    if side == "servekit":
        from servekit.dynbatch import BaseModel, DynamicBatchModel

        class ServekitNoop(BaseModel):
            def predict(self, items: list[Any]) -> list[Any]:
                return counter.predict(items)

        model = DynamicBatchModel(
            ServekitNoop(),
            max_batch_size=max_batch,
            idle_batch_size=idle,
            max_batch_interval=interval,
        )
        return model, counter
    os.environ["PYRAISDK_MAX_BATCH_SIZE"] = str(max_batch)
    os.environ["PYRAISDK_IDLE_BATCH_SIZE"] = str(idle)
    os.environ["PYRAISDK_MAX_BATCH_INTERVAL"] = str(interval)
    from pyraisdk.dynbatch import BaseModel as PBaseModel
    from pyraisdk.dynbatch import DynamicBatchModel as PDynamicBatchModel

    class PyraisdkNoop(PBaseModel):
        def predict(self, items: list[Any]) -> list[Any]:
            return counter.predict(items)

    return PDynamicBatchModel(PyraisdkNoop()), counter


def run_worker(
    side: str,
    threads: int,
    warmup: float,
    duration: float,
    max_batch: int,
    idle: int,
    interval: float,
    profile_to: str | None = None,
) -> dict[str, Any]:
    """Drive one side for ``warmup + duration`` seconds; measure only ``duration``.

    With ``profile_to``, py-spy records this process (GIL holders) over the measured window.
    """
    model, counter = _make_model(side, max_batch, idle, interval)
    recording = threading.Event()
    stop = threading.Event()
    per_thread: list[list[float]] = [[] for _ in range(threads)]
    errors = [0] * threads

    def call_loop(index: int) -> None:
        latencies = per_thread[index]
        predict_one = model.predict_one
        clock = time.perf_counter
        i = index * 1_000_000_000
        while not stop.is_set():
            started = clock()
            try:
                result = predict_one(i)
            except Exception:  # a timeout or error is counted, not fatal to the benchmark
                errors[index] += 1
                continue
            elapsed = clock() - started
            if result != i:
                errors[index] += 1
            if recording.is_set():
                latencies.append(elapsed)
            i += 1

    workers = [threading.Thread(target=call_loop, args=(n,), daemon=True) for n in range(threads)]
    for worker in workers:
        worker.start()
    time.sleep(warmup)
    spy = None
    if profile_to:
        from _profile import record_command

        spy = subprocess.Popen(
            record_command(profile_to, os.getpid(), duration),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.3)  # let it attach
    batches0, items0 = counter.batches, counter.items
    recording.set()
    began = time.perf_counter()
    cpu_began = time.process_time()
    time.sleep(duration)
    recording.clear()
    measured = time.perf_counter() - began
    cpu = time.process_time() - cpu_began
    batches = counter.batches - batches0
    batch_items = counter.items - items0
    if spy is not None:
        spy.wait(timeout=duration + 30)
    stop.set()
    for worker in workers:
        worker.join(timeout=5.0)
    model.close()
    latencies = sorted(x for lats in per_thread for x in lats)
    return {
        "side": side,
        "calls": len(latencies),
        "seconds": measured,
        "items_per_s": len(latencies) / measured,
        "p50_ms": 1e3 * percentile(latencies, 50),
        "p99_ms": 1e3 * percentile(latencies, 99),
        "mean_batch": batch_items / batches if batches else 0.0,
        "cpu_us_per_item": 1e6 * cpu / len(latencies) if latencies else 0.0,
        "errors": sum(errors),
    }


# ---------------------------------------------------------------------------- driver side
def _venv_python() -> Path:
    return VENV_DIR / "bin" / "python"


def ensure_pyraisdk_venv() -> Path:
    """The benchmark's own venv with ``pyraisdk==0.5.6``; created on first use, then reused."""
    python = _venv_python()
    check = [str(python), "-c", "import importlib.metadata as m; print(m.version('pyraisdk'))"]
    if python.exists():
        out = subprocess.run(check, capture_output=True, text=True, check=False)
        if out.returncode == 0 and out.stdout.strip() == PYRAISDK_VERSION:
            return python
    log(f"creating {VENV_DIR} with pyraisdk=={PYRAISDK_VERSION} (first run only)")
    venv.EnvBuilder(with_pip=True, clear=True).create(VENV_DIR)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    done = subprocess.run(
        [*pip, f"pyraisdk=={PYRAISDK_VERSION}"], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"pip install pyraisdk=={PYRAISDK_VERSION} failed:\n{tail}")
    return python


def _run_side(
    side: str, python: Path, settings: dict[str, Any], profile_to: Path | None = None
) -> dict[str, Any]:
    flags = {
        "--worker": side,
        "--threads": settings["threads"],
        "--warmup": settings["warmup_s"],
        "--duration": settings["duration_s"],
        "--max-batch": settings["max_batch_size"],
        "--idle": settings["idle_batch_size"],
        "--interval": settings["max_batch_interval_s"],
    }
    args = [str(part) for pair in flags.items() for part in pair]
    if profile_to is not None:
        args += ["--profile-to", str(profile_to)]
    command = [str(python), str(Path(__file__).resolve()), *args]
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # the pyraisdk venv must not see servekit, nor vice versa
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, check=False, timeout=120
    )
    for line in done.stdout.splitlines():
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER) :])  # type: ignore[no-any-return]
    tail = "\n".join(done.stderr.strip().splitlines()[-15:])
    raise RuntimeError(f"{side} worker failed (exit {done.returncode}):\n{tail}")


def _compare(pythons: dict[str, Path], settings: dict[str, Any], rounds: int) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
    for n in range(rounds):
        for side in SIDES[n % len(SIDES) :] + SIDES[: n % len(SIDES)]:  # rotate who goes first
            result = _run_side(side, pythons[side], settings)
            runs[side].append(result)
            log(
                f"dynbatch idle={settings['idle_batch_size']} round {n + 1}/{rounds} {side}:"
                f" {result['items_per_s']:,.0f} items/s p50 {result['p50_ms']:.3f} ms"
                f" p99 {result['p99_ms']:.3f} ms batch {result['mean_batch']:.1f}"
                f" cpu {result['cpu_us_per_item']:.1f} us/item"
            )
    summary = {
        side: {
            key: median([r[key] for r in runs[side]])
            for key in ("items_per_s", "p50_ms", "p99_ms", "mean_batch", "cpu_us_per_item")
        }
        | {
            "errors": sum(r["errors"] for r in runs[side]),
            "items_per_s_min": min(r["items_per_s"] for r in runs[side]),
            "items_per_s_max": max(r["items_per_s"] for r in runs[side]),
        }
        for side in SIDES
    }
    sk, pr = summary["servekit"], summary["pyraisdk"]
    ratios = {
        other: sk["items_per_s"] / summary[other]["items_per_s"]
        if summary[other]["items_per_s"]
        else float("nan")
        for other in TARGETS
    }
    return {
        "settings": dict(settings),
        "rounds": runs,
        "median": summary,
        "servekit_items_per_s_over": ratios,
        "targets": {f"servekit_over_{other}_ge": target for other, target in TARGETS.items()},
        "target_met": {
            f"servekit_over_{other}_ge_{target}": ratios[other] >= target
            for other, target in TARGETS.items()
        }
        | {
            "p50_not_higher_than_pyraisdk": sk["p50_ms"] <= pr["p50_ms"],
            "p99_not_higher_than_pyraisdk": sk["p99_ms"] <= pr["p99_ms"],
        },
    }


def _side_rows(comparisons: list[dict[str, Any]]) -> list[list[Any]]:
    rows = []
    for comp in comparisons:
        idle = comp["settings"]["idle_batch_size"]
        for side in SIDES:
            m = comp["median"][side]
            rows.append(
                [
                    f"{side} (idle {idle})",
                    m["items_per_s"],
                    f"{m['items_per_s_min'] / 1e3:,.0f}k-{m['items_per_s_max'] / 1e3:,.0f}k",
                    m["p50_ms"],
                    m["p99_ms"],
                    m["mean_batch"],
                    m["cpu_us_per_item"],
                    m["errors"],
                ]
            )
    return rows


def _target_rows(comparisons: list[dict[str, Any]]) -> list[list[Any]]:
    rows = []
    for comp in comparisons:
        met = comp["target_met"]
        for other, target in TARGETS.items():
            rows.append(
                [
                    f"idle {comp['settings']['idle_batch_size']}",
                    f"servekit / {other}",
                    comp["servekit_items_per_s_over"][other],
                    f">= {target}",
                    verdict(met[f"servekit_over_{other}_ge_{target}"]),
                ]
            )
    return rows


def _latency_notes(comparisons: list[dict[str, Any]]) -> list[str]:
    notes = []
    for comp in comparisons:
        met = comp["target_met"]
        sk, pr = comp["median"]["servekit"], comp["median"]["pyraisdk"]
        notes.append(
            f"idle {comp['settings']['idle_batch_size']}: servekit vs pyraisdk"
            f" p50 {sk['p50_ms']:.3f} vs {pr['p50_ms']:.3f} ms"
            f" (not higher: {verdict(met['p50_not_higher_than_pyraisdk'])});"
            f" p99 {sk['p99_ms']:.3f} vs {pr['p99_ms']:.3f} ms"
            f" (not higher: {verdict(met['p99_not_higher_than_pyraisdk'])})"
        )
    return notes


def main(quick: bool = False, profile: bool = False) -> dict[str, Any]:
    """Run the comparison for idle batch sizes 1 and 8; return results with tables."""
    pythons = {
        "servekit": Path(sys.executable),
        "minimal": Path(sys.executable),
        "pyraisdk": ensure_pyraisdk_venv(),
    }
    rounds = ROUNDS or (1 if quick else 5)
    base = {
        "threads": 20,
        "warmup_s": 0.5 if quick else 1.0,
        "duration_s": 2.0 if quick else 3.0,
        "max_batch_size": 32,
        "max_batch_interval_s": 0.002,
        "predict_one_timeout_s": 1.0,
    }
    comparisons = [_compare(pythons, base | {"idle_batch_size": idle}, rounds) for idle in (1, 8)]
    result: dict[str, Any] = {
        "benchmark": "dynbatch",
        "machine": machine(),
        "quick": quick,
        "pyraisdk_version": PYRAISDK_VERSION,
        "comparisons": comparisons,
        "tables": [
            table(
                f"Thread batchers, no-op model, 20 threads x predict_one, max batch 32,"
                f" interval 2 ms (median of {rounds} round(s), sides in rotating order)",
                [
                    "side",
                    "items/s",
                    "range over rounds",
                    "p50 ms",
                    "p99 ms",
                    "mean batch",
                    "cpu us/item",
                    "errors",
                ],
                _side_rows(comparisons),
            ),
            table(
                "servekit's items/s over the other sides' (medians, same run)",
                ["idle batch", "ratio", "value", "target", "verdict"],
                _target_rows(comparisons),
            ),
        ],
        "notes": _latency_notes(comparisons),
    }
    if profile:
        from _profile import render

        for side in ("servekit", "minimal"):
            result[f"profile_{side}"] = _profile(side, pythons[side], base | {"idle_batch_size": 1})
        result["profile"] = result.pop("profile_servekit")  # the key run.py prints
        result["notes"].append(f"minimal side, for comparison: {render(result['profile_minimal'])}")
    return result


def _profile(side: str, python: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """py-spy (GIL holders only) over one run of ``side``; hot spots in its batcher's code."""
    from _profile import PROFILE_DIR, have_py_spy, summarize

    if not have_py_spy():
        raise RuntimeError("py-spy is not installed: `pip install py-spy` (needed for --profile)")
    PROFILE_DIR.mkdir(parents=True, exist_ok=True)
    raw = PROFILE_DIR / f"dynbatch-{side}.txt"
    _run_side(side, python, settings | {"duration_s": 5.0}, profile_to=raw)
    return summarize(raw, focus="servekit/" if side == "servekit" else "bench_dynbatch")


def _parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 short round instead of 5")
    parser.add_argument("--rounds", type=int, help="rounds (default 1 with --quick, else 5)")
    parser.add_argument("--profile", action="store_true", help="also py-spy servekit, minimal")
    parser.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=20, help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=float, default=1.0, help=argparse.SUPPRESS)
    parser.add_argument("--duration", type=float, default=4.0, help=argparse.SUPPRESS)
    parser.add_argument("--max-batch", type=int, default=32, help=argparse.SUPPRESS)
    parser.add_argument("--idle", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--interval", type=float, default=0.002, help=argparse.SUPPRESS)
    parser.add_argument("--profile-to", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    ARGS = _parse_args()
    if ARGS.worker:
        OUT = run_worker(
            ARGS.worker,
            ARGS.threads,
            ARGS.warmup,
            ARGS.duration,
            ARGS.max_batch,
            ARGS.idle,
            ARGS.interval,
            ARGS.profile_to,
        )
        print(MARKER + json.dumps(OUT), flush=True)
    else:
        import bench_dynbatch  # the module run.py will import: --rounds goes to its main()
        import run

        bench_dynbatch.ROUNDS = ARGS.rounds
        flags = [flag for flag, on in (("--quick", ARGS.quick), ("--profile", ARGS.profile)) if on]
        sys.exit(run.main(["--only", "dynbatch", *flags]))
