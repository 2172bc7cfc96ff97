"""Client round trip: ``servekit.Client`` vs the published ``tritonclient.http``, side by side.

One ``servekit serve`` process (identity model, ``IdentityModel`` below, max batch 64) on a
free 127.0.0.1 port; both clients call it from this process, one thread, one request at a
time, so what differs between the sides is the client's own cost. Payloads: a float32 tensor
of 1x16 and one of 64x1024, each with JSON and with binary (Triton binary tensor extension)
encoding. A call is numpy in -> numpy out on both sides (tritonclient: ``InferInput`` +
``set_data_from_numpy`` + ``infer`` + ``as_numpy``; servekit: ``Client.infer``), requesting
the output explicitly on both sides so the two requests are the same. Warm-up first, then
rounds in which the sides alternate per case (A B, then B A); medians over rounds are
reported. The last response of every timed run is compared with its input.

    python benchmarks/bench_client.py [--quick] [--profile]

``--profile`` also records the servekit client with ``py-spy record --gil -f raw`` for each
case (``results/profiles/client-servekit-*.txt``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

import servekit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    BENCH_DIR,
    free_port,
    log,
    machine,
    median,
    percentile,
    table,
    verdict,
    wait_http_ok,
)

MODEL_NAME = "identity"
INPUT_NAME = "input-0"
OUTPUT_NAME = "output-0"
MAX_BATCH = 64
SHAPES: tuple[tuple[int, int], ...] = ((1, 16), (64, 1024))
ENCODINGS = ("json", "binary")
SIDES = ("servekit", "tritonclient")
TARGET_RATIO = 1.0  # servekit req/s over tritonclient req/s, at every size and encoding
STAT_KEYS = ("req_per_s", "p50_ms", "p99_ms", "mean_ms", "cpu_us_per_req")

Call = Callable[[], np.ndarray]


class IdentityModel(servekit.Model):
    """Returns its input rows: FP32 [n, k] in, the same [n, k] out."""

    name = MODEL_NAME
    max_batch_size = MAX_BATCH
    inputs = [{"name": INPUT_NAME, "datatype": "FP32", "shape": [-1, -1]}]
    outputs = [{"name": OUTPUT_NAME, "datatype": "FP32", "shape": [-1, -1]}]

    def predict(self, batch: list[Any]) -> list[Any]:
        return batch


# ---------------------------------------------------------------------------- server
@contextlib.contextmanager
def _serve() -> Iterator[tuple[str, int]]:
    """Start ``servekit serve`` on a free port; yield ``(base URL, port)``; stop it after."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "servekit",
        "serve",
        f"{Path(__file__).resolve()}:IdentityModel",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--max-batch-size",
        str(MAX_BATCH),
        "--log-level",
        "warning",
    ]
    proc = subprocess.Popen(command, cwd=BENCH_DIR.parent, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http_ok(f"{base}/v2/models/{MODEL_NAME}/ready", timeout=30.0, proc=proc)
        yield base, port
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# ---------------------------------------------------------------------------- clients
class Sides:
    """One servekit and one tritonclient client per encoding, kept open for the whole run."""

    def __init__(self, base: str, port: int) -> None:
        try:
            import tritonclient.http as triton_http
        except ImportError as exc:
            raise RuntimeError(
                "tritonclient is not installed: pip install 'tritonclient[http]'"
            ) from exc
        self._triton = triton_http
        self.servekit = {enc: servekit.Client(base, binary=enc == "binary") for enc in ENCODINGS}
        self.tritonclient = {
            enc: triton_http.InferenceServerClient(f"127.0.0.1:{port}") for enc in ENCODINGS
        }

    def call(self, side: str, encoding: str, array: np.ndarray) -> Call:
        """A zero-argument round trip: ``array`` in, the output tensor out."""
        binary = encoding == "binary"
        if side == "servekit":
            client = self.servekit[encoding]
            outputs = (OUTPUT_NAME,)

            def servekit_call() -> np.ndarray:
                return client.infer(MODEL_NAME, {INPUT_NAME: array}, outputs=outputs)[OUTPUT_NAME]

            return servekit_call
        http = self._triton
        triton = self.tritonclient[encoding]
        shape = list(array.shape)

        def triton_call() -> np.ndarray:
            tensor = http.InferInput(INPUT_NAME, shape, "FP32")
            tensor.set_data_from_numpy(array, binary_data=binary)
            wanted = http.InferRequestedOutput(OUTPUT_NAME, binary_data=binary)
            result = triton.infer(MODEL_NAME, [tensor], outputs=[wanted])
            return result.as_numpy(OUTPUT_NAME)  # type: ignore[no-any-return]

        return triton_call

    def close(self) -> None:
        for client in self.servekit.values():
            client.close()
        for triton in self.tritonclient.values():
            triton.close()


def _check(side: str, case: str, got: np.ndarray | None, want: np.ndarray) -> None:
    """The response must be the request's tensor: same dtype, shape and values."""
    if got is None or got.dtype != want.dtype or not np.array_equal(got, want):
        detail = "None" if got is None else f"{got.dtype} {list(got.shape)}"
        raise RuntimeError(
            f"{side} {case}: output differs from the input (got {detail},"
            f" sent {want.dtype} {list(want.shape)})"
        )


# ---------------------------------------------------------------------------- measuring
def timed_run(call: Call, seconds: float, min_requests: int) -> tuple[dict[str, Any], Any]:
    """Call sequentially for ``seconds`` (and at least ``min_requests`` times).

    Returns the run's figures and the last response (to be checked by the caller).
    """
    latencies: list[float] = []
    clock = time.perf_counter
    cpu_start = time.process_time()
    start = clock()
    deadline = start + seconds
    last: Any = None
    while True:
        began = clock()
        last = call()
        ended = clock()
        latencies.append(ended - began)
        if ended >= deadline and len(latencies) >= min_requests:
            break
    wall = clock() - start
    cpu = time.process_time() - cpu_start
    latencies.sort()
    n = len(latencies)
    figures = {
        "requests": n,
        "seconds": wall,
        "req_per_s": n / wall,
        "p50_ms": 1e3 * percentile(latencies, 50),
        "p99_ms": 1e3 * percentile(latencies, 99),
        "mean_ms": 1e3 * sum(latencies) / n,
        "max_ms": 1e3 * latencies[-1],
        "cpu_us_per_req": 1e6 * cpu / n,
    }
    return figures, last


def _case_name(shape: tuple[int, int], encoding: str) -> str:
    return f"{shape[0]}x{shape[1]} {encoding}"


def _cases() -> list[tuple[str, tuple[int, int], str]]:
    return [(_case_name(s, e), s, e) for s in SHAPES for e in ENCODINGS]


def _payload(shape: tuple[int, int], seed: int) -> np.ndarray:
    """A fresh float32 tensor per round, so a stale answer cannot pass the check."""
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


def measure(
    sides: Sides, rounds: int, seconds: float, warmup: float, min_requests: int
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Warm up every (case, side), then ``rounds`` rounds alternating the side that goes first."""
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        name: {side: [] for side in SIDES} for name, _, _ in _cases()
    }
    for name, shape, encoding in _cases():
        array = _payload(shape, seed=0)
        for side in SIDES:
            _check(side, name, sides.call(side, encoding, array)(), array)
            timed_run(sides.call(side, encoding, array), warmup, 1)
    for n in range(rounds):
        order = SIDES if n % 2 == 0 else SIDES[::-1]
        for index, (name, shape, encoding) in enumerate(_cases()):
            array = _payload(shape, seed=1 + n * 100 + index)
            for side in order:
                figures, last = timed_run(sides.call(side, encoding, array), seconds, min_requests)
                _check(side, name, last, array)
                figures["verified"] = True
                runs[name][side].append(figures)
                log(
                    f"client {name} round {n + 1}/{rounds} {side}:"
                    f" {figures['req_per_s']:,.0f} req/s p50 {figures['p50_ms']:.3f} ms"
                    f" p99 {figures['p99_ms']:.3f} ms cpu {figures['cpu_us_per_req']:.0f} us/req"
                    f" ({figures['requests']} requests)"
                )
    return runs


def summarize(runs: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    """Per case and side: the medians over rounds; per case: servekit/tritonclient ratios."""
    out: dict[str, Any] = {}
    for name, by_side in runs.items():
        med = {
            side: {key: median([r[key] for r in rs]) for key in STAT_KEYS}
            | {
                "requests": sum(r["requests"] for r in rs),
                "req_per_s_min": min(r["req_per_s"] for r in rs),
                "req_per_s_max": max(r["req_per_s"] for r in rs),
            }
            for side, rs in by_side.items()
        }
        per_round = [
            sk["req_per_s"] / tc["req_per_s"]
            for sk, tc in zip(by_side["servekit"], by_side["tritonclient"], strict=True)
        ]
        out[name] = {
            "median": med,
            "ratio_req_per_s": med["servekit"]["req_per_s"] / med["tritonclient"]["req_per_s"],
            "ratio_req_per_s_by_round": per_round,
        }
    return out


# ---------------------------------------------------------------------------- profiling
def _profile(sides: Sides, seconds: float) -> dict[str, dict[str, Any]]:
    """py-spy (GIL holders) on this process while the servekit client runs each case."""
    from _profile import PROFILE_DIR, have_py_spy
    from _profile import summarize as summarize_profile

    if not have_py_spy():
        raise RuntimeError("py-spy is not installed: pip install py-spy")
    PROFILE_DIR.mkdir(parents=True, exist_ok=True)
    summaries: dict[str, dict[str, Any]] = {}
    for name, shape, encoding in _cases():
        raw = PROFILE_DIR / f"client-servekit-{name.replace(' ', '-')}.txt"
        spy = subprocess.Popen(
            [
                "py-spy",
                "record",
                "--gil",
                "-f",
                "raw",
                "-r",
                "500",
                "-o",
                str(raw),
                "-p",
                str(os.getpid()),
                "-d",
                str(int(seconds)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)  # let py-spy attach
        array = _payload(shape, seed=999)
        _, last = timed_run(sides.call("servekit", encoding, array), seconds, 1)
        _check("servekit", name, last, array)
        spy.wait(timeout=seconds + 30)
        summaries[name] = summarize_profile(raw) if raw.exists() else {"raw": str(raw)}
    return summaries


# ---------------------------------------------------------------------------- report
def _versions() -> dict[str, str]:
    found = {}
    for dist in ("servekit", "tritonclient", "geventhttpclient", "numpy", "orjson"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = "not installed"
    return found


def main(quick: bool = False, profile: bool = False) -> dict[str, Any]:
    """Both clients on every case, interleaved; a table, the ratios and the target check."""
    rounds = 1 if quick else 5
    seconds = 0.5 if quick else 1.5
    warmup = 0.2 if quick else 0.5
    min_requests = 5 if quick else 10
    profiles: dict[str, dict[str, Any]] | None = None
    with _serve() as (base, port):
        sides = Sides(base, port)
        try:
            runs = measure(sides, rounds, seconds, warmup, min_requests)
            if profile:
                profiles = _profile(sides, 2.0 if quick else 4.0)
        finally:
            sides.close()
    settings = {
        "model": "identity (returns its input rows), servekit serve, max batch 64",
        "payloads": [f"float32 {s[0]}x{s[1]}" for s in SHAPES],
        "encodings": list(ENCODINGS),
        "rounds": rounds,
        "seconds_per_run": seconds,
        "warmup_s_per_case_and_side": warmup,
        "min_requests_per_run": min_requests,
        "threads": 1,
        "order": "per case, sides alternate which goes first from round to round",
        "servekit_call": "Client(url, binary=...).infer(model, {name: array}, outputs=[out])",
        "tritonclient_call": (
            "InferInput + set_data_from_numpy(binary_data=...) +"
            " InferRequestedOutput(binary_data=...) + infer + as_numpy"
        ),
        "verification": "last response of every timed run equals its input (dtype, shape, values)",
    }
    return report(runs, summarize(runs), settings, quick, profiles)


def report(
    runs: dict[str, dict[str, list[dict[str, Any]]]],
    summary: dict[str, Any],
    settings: dict[str, Any],
    quick: bool,
    profiles: dict[str, dict[str, Any]] | None,
) -> dict[str, Any]:
    """The result dict: table, notes, raw rounds, target checks."""
    rows = []
    for name, _, _ in _cases():
        sk = summary[name]["median"]["servekit"]
        tc = summary[name]["median"]["tritonclient"]
        by_round = summary[name]["ratio_req_per_s_by_round"]
        rows.append(
            [
                name,
                sk["req_per_s"],
                tc["req_per_s"],
                summary[name]["ratio_req_per_s"],
                f"{min(by_round):.2f}-{max(by_round):.2f}",
                sk["p50_ms"],
                tc["p50_ms"],
                sk["p99_ms"],
                tc["p99_ms"],
                sk["cpu_us_per_req"],
                tc["cpu_us_per_req"],
                f"{sk['requests']:,} / {tc['requests']:,}",
            ]
        )
    ratios = {name: summary[name]["ratio_req_per_s"] for name, _, _ in _cases()}
    target_met = {f"{name}: req/s ratio >= 1": r >= TARGET_RATIO for name, r in ratios.items()}
    lost = [name for name, ok in target_met.items() if not ok]
    worst = min(ratios, key=ratios.__getitem__)
    notes = [
        "servekit client at least as fast as tritonclient at every size and encoding"
        f" (median req/s ratio >= {TARGET_RATIO:g}): {verdict(not lost)};"
        f" lowest ratio {ratios[worst]:.2f} ({worst})",
        "p50/p99 and client CPU per request (this process: encode, HTTP, decode) are medians"
        " over rounds; the server and its CPU are the same for both sides",
    ]
    if lost and profiles is None:
        notes.append(
            "servekit lost somewhere: run `python benchmarks/bench_client.py --profile` for"
            " py-spy profiles of the servekit client"
        )
    n_rounds = settings["rounds"]
    result: dict[str, Any] = {
        "benchmark": "client",
        "machine": machine(),
        "versions": _versions(),
        "quick": quick,
        "settings": settings,
        "runs": runs,
        "summary": summary,
        "servekit_over_tritonclient_req_per_s": ratios,
        "target_met": target_met,
        "tables": [
            table(
                "v2 infer round trip, one thread, sequential, identity model on servekit serve;"
                f" median of {n_rounds} alternating round(s) of {settings['seconds_per_run']:g} s"
                " (sk = servekit.Client, tc = tritonclient.http)",
                [
                    "payload",
                    "sk req/s",
                    "tc req/s",
                    "sk/tc",
                    "sk/tc by round",
                    "sk p50 ms",
                    "tc p50 ms",
                    "sk p99 ms",
                    "tc p99 ms",
                    "sk cpu us/req",
                    "tc cpu us/req",
                    "requests sk / tc",
                ],
                rows,
            )
        ],
        "notes": notes,
    }
    if profiles is not None:
        result["profiles"] = profiles
        result["profile"] = profiles[worst]  # run.py prints this one
        notes.append(f"profile printed below: servekit client on {worst} (its lowest ratio)")
    return result


def _parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round of 0.5 s runs")
    parser.add_argument("--profile", action="store_true", help="also py-spy the servekit client")
    return parser.parse_args(argv)


if __name__ == "__main__":
    import run

    _parse_args()
    sys.exit(run.main(["--only", "client", *sys.argv[1:]]))
