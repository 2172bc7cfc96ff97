"""Over HTTP: ``servekit serve`` vs a bare ASGI app with a minimal batcher, driven by wrk.

The model costs ``sleep(2 ms + 0.05 ms x batch size)`` per call, max batch 32, so the ideal is
32 / 3.6 ms ≈ 8,889 req/s. Each server runs in its own process on a free 127.0.0.1 port
under the same uvicorn settings (uvloop, httptools, no access log, log level warning); wrk
(one thread) POSTs a v2 JSON infer request (one FP32 [1, 16] row) at concurrency 1, 16, 64.

    python benchmarks/bench_http.py [--quick] [--profile]

``servekit serve benchmarks/bench_http.py:SleepModel`` serves the model below; the bare
reference is ``bench_http:bare_app``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import orjson

import servekit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    BENCH_DIR,
    free_port,
    log,
    machine,
    table,
    verdict,
    wait_http_ok,
)

MAX_BATCH = 32
BASE_COST_S = 0.002
PER_ITEM_COST_S = 0.00005
IDEAL_RPS = MAX_BATCH / (BASE_COST_S + PER_ITEM_COST_S * MAX_BATCH)
CONCURRENCY = (1, 16, 64)
MODEL_NAME = "sleep"
INFER_PATH = f"/v2/models/{MODEL_NAME}/infer"
LUA_SCRIPT = BENCH_DIR / "v2_infer.lua"
TARGET_PCT_OF_IDEAL = 75.0
TARGET_P50_OVERHEAD_MS = 0.5
UVICORN_FLAGS = ["--loop", "uvloop", "--http", "httptools", "--log-level", "warning"]


def sleep_predict(batch: list[Any]) -> list[Any]:
    """The benchmark model: costs 2 ms + 0.05 ms per item, returns its inputs."""
    time.sleep(BASE_COST_S + PER_ITEM_COST_S * len(batch))
    return batch


class SleepModel(servekit.Model):
    """``sleep_predict`` as a servekit model (rows of 16 FP32 in, the same rows out)."""

    name = MODEL_NAME
    max_batch_size = MAX_BATCH
    inputs = [{"name": "input-0", "datatype": "FP32", "shape": [-1, 16]}]
    outputs = [{"name": "output-0", "datatype": "FP32", "shape": [-1, 16]}]

    def predict(self, batch: list[Any]) -> list[Any]:
        return sleep_predict(batch)


# ---------------------------------------------------------------------------- bare reference
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
_JSON_HEADERS = [(b"content-type", b"application/json")]


class BareApp:
    """The floor: raw ASGI, orjson + numpy decode, an asyncio queue and one model thread."""

    def __init__(self, max_batch_size: int = MAX_BATCH) -> None:
        self.max_batch_size = max_batch_size
        self.queue: asyncio.Queue[tuple[np.ndarray, asyncio.Future[Any]]] | None = None
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="bare-model")
        self.batches = 0
        self.items = 0
        self._task: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            path = scope["path"]
            if scope["method"] == "POST" and path == INFER_PATH:
                await self._infer(receive, send)
            elif path == "/v2/health/ready":
                await _send(send, 200, b'{"ready":true}')
            elif path == "/stats":
                await _send(send, 200, orjson.dumps({"batches": self.batches, "items": self.items}))
            else:
                await _send(send, 404, b'{"error":"not found"}')

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.queue = asyncio.Queue()
                self._task = asyncio.get_running_loop().create_task(self._batch_loop())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._task is not None:
                    self._task.cancel()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _infer(self, receive: Receive, send: Send) -> None:
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        try:
            request = orjson.loads(body)
            tensor = request["inputs"][0]
            rows = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, ValueError) as exc:
            await _send(send, 400, orjson.dumps({"error": str(exc)}))
            return
        assert self.queue is not None
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in range(len(rows))]
        for row, future in zip(rows, futures, strict=True):
            self.queue.put_nowait((row, future))
        out = np.stack([await future for future in futures])
        await _send(send, 200, v2_response(MODEL_NAME, request, out))

    async def _batch_loop(self) -> None:
        assert self.queue is not None
        queue = self.queue
        loop = asyncio.get_running_loop()
        while True:
            batch = [await queue.get()]
            while len(batch) < self.max_batch_size and not queue.empty():
                batch.append(queue.get_nowait())
            rows = [row for row, _ in batch]
            outputs = await loop.run_in_executor(self.executor, sleep_predict, rows)
            self.batches += 1
            self.items += len(batch)
            for (_, future), output in zip(batch, outputs, strict=True):
                if not future.done():
                    future.set_result(output)


def v2_response(model: str, request: dict[str, Any], out: np.ndarray) -> bytes:
    """The v2 JSON response of a bare floor: ``out`` as the one FP32 output."""
    response = {
        "model_name": model,
        "id": request.get("id", ""),
        "outputs": [
            {
                "name": "output-0",
                "datatype": "FP32",
                "shape": list(out.shape),
                "data": out.ravel().tolist(),
            }
        ],
    }
    return orjson.dumps(response)


async def _send(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": _JSON_HEADERS})
    await send({"type": "http.response.body", "body": body})


bare_app = BareApp()


# ---------------------------------------------------------------------------- driver
def _server_commands(port: int) -> dict[str, list[str]]:
    host = ["--host", "127.0.0.1", "--port", str(port)]
    return {
        "servekit": [
            sys.executable,
            "-m",
            "servekit",
            "serve",
            f"{Path(__file__).resolve()}:SleepModel",
            *host,
            "--max-batch-size",
            str(MAX_BATCH),
            "--log-level",
            "warning",
        ],
        "bare": [
            sys.executable,
            "-m",
            "uvicorn",
            "--app-dir",
            str(BENCH_DIR),
            "bench_http:bare_app",
            *host,
            *UVICORN_FLAGS,
            "--no-access-log",
        ],
    }


@contextlib.contextmanager
def _serve(side: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start one server on a free port; yield its base URL and process; stop it after."""
    port = free_port()
    command = _server_commands(port)[side]
    proc = subprocess.Popen(command, cwd=BENCH_DIR.parent, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http_ok(base + "/v2/health/ready", timeout=30.0, proc=proc)
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def drive_server(
    command: list[str], port: int, connections: int, seconds: float
) -> dict[str, float]:
    """Start ``command`` (a server on ``port``), warm it up, drive it with wrk for ``seconds``,
    stop it: req/s, the server's CPU per request (``/proc/<pid>/stat``) and error count."""
    proc = subprocess.Popen(command, cwd=BENCH_DIR.parent, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http_ok(base + "/v2/health/ready", timeout=30.0, proc=proc)
        run_wrk(base, connections, 1.0)  # warm-up
        before = process_cpu_seconds(proc.pid)
        result = run_wrk(base, connections, seconds)
        cpu = process_cpu_seconds(proc.pid) - before
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return {
        "req_per_s": result["req_per_s"],
        "cpu_us_per_req": 1e6 * cpu / max(result["requests"], 1),
        "errors": result["non200"] + result["socket_errors"],
    }


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def request_body() -> bytes:
    """One v2 JSON infer request: a single FP32 [1, 16] row."""
    row = [round(0.1 * i, 1) for i in range(16)]
    return orjson.dumps(
        {
            "id": "bench",
            "inputs": [{"name": "input-0", "shape": [1, 16], "datatype": "FP32", "data": row}],
        }
    )


def _preflight(base: str, path: str = INFER_PATH) -> None:
    """One request by hand: 200, and the row comes back."""
    req = urllib.request.Request(
        base + path, data=request_body(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        status, doc = resp.status, orjson.loads(resp.read())
    output = doc["outputs"][0]
    if status != 200 or output["shape"] != [1, 16] or len(output["data"]) != 16:
        raise RuntimeError(f"{base}{path} answered {status} {doc!r}")


def wrk_binary() -> str:
    """Path of wrk, or a clear error saying how to get it."""
    path = shutil.which("wrk")
    if path is None:
        raise RuntimeError(
            "wrk is not installed: install the Debian package with `apt-get install -y wrk`"
        )
    return path


def run_wrk(base: str, connections: int, seconds: float, path: str = INFER_PATH) -> dict[str, Any]:
    """One wrk run (one thread) POSTing ``request_body()`` to ``path``: requests, req/s,
    latency percentiles and error counts."""
    command = [
        wrk_binary(),
        "-t1",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--latency",
        "--timeout",
        "5s",
        "-s",
        str(LUA_SCRIPT),
        base,
    ]
    env = dict(os.environ, WRK_PATH=path, WRK_BODY=request_body().decode())
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, check=False, timeout=seconds + 30
    )
    for line in done.stdout.splitlines():
        if line.startswith("WRK_JSON "):
            raw = json.loads(line[len("WRK_JSON ") :])
            break
    else:
        raise RuntimeError(f"wrk failed (exit {done.returncode}): {done.stdout}{done.stderr}")
    errors = sum(raw[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts"))
    return {
        "connections": connections,
        "requests": raw["requests"],
        "req_per_s": raw["requests"] / (raw["duration_us"] / 1e6),
        "p50_ms": raw["p50_us"] / 1e3,
        "p90_ms": raw["p90_us"] / 1e3,
        "p99_ms": raw["p99_us"] / 1e3,
        "mean_ms": raw["mean_us"] / 1e3,
        "max_ms": raw["max_us"] / 1e3,
        "non200": raw["non200"],
        "socket_errors": errors,
        "raw": raw,
    }


def _batch_stats(side: str, base: str) -> dict[str, float]:
    """Batches and items the server ran (servekit: /metrics; bare: /stats)."""
    path = "/metrics" if side == "servekit" else "/stats"
    try:
        with urllib.request.urlopen(base + path, timeout=10) as resp:
            text = resp.read().decode()
    except OSError as exc:  # a wedged server must not hide the wrk figures
        log(f"http {side}: {base}{path} did not answer ({exc}); no batch stats")
        return {}
    if side == "bare":
        doc = json.loads(text)
        return {"batches": float(doc["batches"]), "items": float(doc["items"])}
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("servekit_") and "{" in line:
            name = line.split("{", 1)[0].removesuffix("_total")
            values[name.removeprefix("servekit_")] = float(line.rsplit(" ", 1)[1])
    return values


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measure(side: str, base: str, pid: int, connections: int, seconds: float) -> dict[str, Any]:
    """One wrk run, plus the server's mean batch size and CPU time per request during it."""
    before = _batch_stats(side, base)
    cpu_before = _cpu_seconds(pid)
    result = run_wrk(base, connections, seconds)
    cpu = _cpu_seconds(pid) - cpu_before
    after = _batch_stats(side, base)
    result["server_cpu_us_per_req"] = 1e6 * cpu / result["requests"] if result["requests"] else 0
    batches = after.get("batches", 0.0) - before.get("batches", 0.0)
    items = after.get("items", 0.0) - before.get("items", 0.0)
    result["mean_batch"] = items / batches if batches else float("nan")
    log(
        f"http {side} c={connections}: {result['req_per_s']:,.0f} req/s"
        f" p50 {result['p50_ms']:.2f} ms p99 {result['p99_ms']:.2f} ms"
        f" batch {result['mean_batch']:.1f} cpu {result['server_cpu_us_per_req']:.0f} us/req"
        f" non-200 {result['non200']}"
        f" socket errors {result['socket_errors']}"
    )
    return result


def measured_sleep_ms(seconds: float = BASE_COST_S + PER_ITEM_COST_S, n: int = 200) -> float:
    """Median wall time of ``time.sleep(seconds)`` here: what the model really costs."""
    taken = []
    for _ in range(n):
        began = time.perf_counter()
        time.sleep(seconds)
        taken.append(time.perf_counter() - began)
    return 1e3 * sorted(taken)[n // 2]


def main(quick: bool = False, profile: bool = False) -> dict[str, Any]:
    """servekit and bare at each concurrency, interleaved; a table and the target checks."""
    wrk_binary()
    seconds = 3.0 if quick else 10.0
    warmup = 1.0 if quick else 2.0
    runs: dict[str, dict[int, dict[str, Any]]] = {"servekit": {}, "bare": {}}
    profile_summary: dict[str, Any] | None = None
    with _serve("servekit") as (sk_base, sk_proc), _serve("bare") as (bare_base, bare_proc):
        servers = {"servekit": (sk_base, sk_proc.pid), "bare": (bare_base, bare_proc.pid)}
        for base, _ in servers.values():
            _preflight(base)
            run_wrk(base, 64, warmup)
        for connections in CONCURRENCY:
            for side, (base, pid) in servers.items():
                runs[side][connections] = _measure(side, base, pid, connections, seconds)
        if profile:
            profile_summary = _profile(sk_base, sk_proc.pid, seconds)
    return _report(runs, seconds, quick, profile_summary, measured_sleep_ms())


def _report(
    runs: dict[str, dict[int, dict[str, Any]]],
    seconds: float,
    quick: bool,
    profile_summary: dict[str, Any] | None,
    sleep_ms: float,
) -> dict[str, Any]:
    rows = []
    for connections in CONCURRENCY:
        sk, bare = runs["servekit"][connections], runs["bare"][connections]
        rows.append(
            [
                connections,
                sk["req_per_s"],
                bare["req_per_s"],
                sk["req_per_s"] / bare["req_per_s"],
                100.0 * sk["req_per_s"] / IDEAL_RPS,
                100.0 * bare["req_per_s"] / IDEAL_RPS,
                sk["p50_ms"],
                bare["p50_ms"],
                sk["p99_ms"],
                bare["p99_ms"],
                sk["mean_batch"],
                bare["mean_batch"],
                sk["server_cpu_us_per_req"],
                bare["server_cpu_us_per_req"],
                f"{sk['non200'] + sk['socket_errors']} / {bare['non200'] + bare['socket_errors']}",
            ]
        )
    sk64 = runs["servekit"][64]
    pct64 = 100.0 * sk64["req_per_s"] / IDEAL_RPS
    overhead = runs["servekit"][1]["p50_ms"] - 1e3 * BASE_COST_S
    bare_overhead = runs["bare"][1]["p50_ms"] - 1e3 * BASE_COST_S
    sk_errors = sum(r["non200"] + r["socket_errors"] for r in runs["servekit"].values())
    ok_ideal = pct64 >= TARGET_PCT_OF_IDEAL
    ok_p50 = overhead <= TARGET_P50_OVERHEAD_MS
    target_met = {
        "pct_of_ideal_at_c64_ge_75": ok_ideal,
        "p50_at_c1_minus_2ms_le_0.5ms": ok_p50,
        "no_errors": sk_errors == 0,
    }
    notes = [
        f"ideal = {MAX_BATCH} / ({1e3 * BASE_COST_S:g} ms + {MAX_BATCH} x"
        f" {1e3 * PER_ITEM_COST_S:g} ms) = {IDEAL_RPS:,.0f} req/s",
        f"servekit at c=64: {sk64['req_per_s']:,.0f} req/s = {pct64:.1f}% of ideal"
        f" (target >= {TARGET_PCT_OF_IDEAL:g}%: {verdict(ok_ideal)});"
        f" bare: {100.0 * runs['bare'][64]['req_per_s'] / IDEAL_RPS:.1f}%",
        f"servekit p50 at c=1 minus the model's 2 ms: {overhead:.3f} ms"
        f" (target <= {TARGET_P50_OVERHEAD_MS} ms: {verdict(ok_p50)});"
        f" bare: {bare_overhead:.3f} ms; time.sleep(2.05 ms) itself takes {sleep_ms:.3f} ms here",
        f"servekit non-200 responses + socket errors over all runs: {sk_errors}"
        f" ({verdict(sk_errors == 0)})",
    ]
    result: dict[str, Any] = {
        "benchmark": "http",
        "machine": machine(),
        "quick": quick,
        "settings": {
            "model": "sleep(2 ms + 0.05 ms x batch)",
            "max_batch_size": MAX_BATCH,
            "request": "v2 JSON, one FP32 [1,16] row",
            "wrk_threads": 1,
            "seconds_per_run": seconds,
            "concurrency": list(CONCURRENCY),
            "servekit_batching": "defaults besides max batch (idle batch 1, max latency 5 ms)",
        },
        "ideal_req_per_s": IDEAL_RPS,
        "runs": {side: {str(c): r for c, r in by_c.items()} for side, by_c in runs.items()},
        "servekit_pct_of_ideal_c64": pct64,
        "servekit_p50_c1_minus_model_ms": overhead,
        "bare_p50_c1_minus_model_ms": bare_overhead,
        "sleep_2_05ms_measured_ms": sleep_ms,
        "servekit_over_bare": {
            str(c): runs["servekit"][c]["req_per_s"] / runs["bare"][c]["req_per_s"]
            for c in CONCURRENCY
        },
        "target_met": target_met,
        "tables": [
            table(
                f"HTTP v2 JSON infer, sleep(2 ms + 0.05 ms x batch) model, max batch 32,"
                f" wrk -t1, {seconds:g} s per run (sk = servekit serve, bare = minimal ASGI app)",
                [
                    "conns",
                    "sk req/s",
                    "bare req/s",
                    "sk/bare",
                    "sk % ideal",
                    "bare % ideal",
                    "sk p50 ms",
                    "bare p50 ms",
                    "sk p99 ms",
                    "bare p99 ms",
                    "sk batch",
                    "bare batch",
                    "sk cpu us/req",
                    "bare cpu us/req",
                    "errors sk / bare",
                ],
                rows,
            )
        ],
        "notes": notes,
    }
    if profile_summary is not None:
        result["profile"] = profile_summary
    return result


def _profile(base: str, pid: int, seconds: float) -> dict[str, Any]:
    """py-spy (GIL holders) on the servekit server while wrk drives it at c=64."""
    from _profile import PROFILE_DIR, record_command, summarize

    PROFILE_DIR.mkdir(parents=True, exist_ok=True)
    raw = PROFILE_DIR / "http-servekit.txt"
    spy = subprocess.Popen(
        record_command(raw, pid, seconds), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    time.sleep(0.5)
    run_wrk(base, 64, seconds)
    spy.wait(timeout=seconds + 30)
    return summarize(raw)


def _parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 s runs instead of 10 s")
    parser.add_argument("--profile", action="store_true", help="also py-spy the servekit server")
    return parser.parse_args(argv)


if __name__ == "__main__":
    import run

    _parse_args()
    sys.exit(run.main(["--only", "http", *sys.argv[1:]]))
