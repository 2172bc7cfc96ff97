"""Queue service (issue 4): throughput and latency per backend, SQLite and Redis, loopback only.

    python benchmarks/bench_queue.py [--quick] [--profile] [--backends sqlite redis]

With 1 KiB records, for each backend:

* **put/s** into a ``QueueService`` in this process, with 16 concurrent producers and with
  one sequential producer;
* **watch + commit/s** (each record committed on its own, window 64) with 1 and with 4
  consumers of one group;
* **door put -> push latency**: the EAS queue door (``QueueDoor`` on uvicorn in a thread),
  a record POSTed over HTTP and received over a WebSocket watch, one record in flight;
* **asynchronous inference end to end** at light load: ``servekit serve bench_queue.py:Echo
  --queue --queue-url <backend>`` as a subprocess; one record at a time,
  ``QueueClient.put`` into ``echo`` then ``QueueClient.get(request_id=…, timeout="5s")`` from
  ``echo/sink``; every answer is checked against the record sent. Alternating with it in
  blocks of 25, a synchronous ``POST /v2/models/echo/infer`` (JSON, one BYTES element of the
  same 1 KiB) on the same server, as the reference.

Throughput phases run ``rounds`` times, the backends alternating; the table shows medians
(every round is in the JSON). CPU per record is this process's (``process_time``: the
asyncio side, plus SQLite's worker thread) and, for Redis, the ``redis-server``'s; the notes
give the share of each phase's wall time the event-loop thread was on CPU (``thread_time``).
Redis runs as a private ``redis-server`` on a free loopback port (``--save ''
--appendonly yes --appendfsync everysec``, in a temporary directory). Every phase is bounded
in count and in time; every process started here is stopped. ``--profile`` also records
this process with ``py-spy --gil`` during one extra put + consume pass per backend.
Prints one table; writes ``benchmarks/results/queue.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import servekit
from servekit.queue import QueueService, SqliteBackend
from servekit.queue.backend import Backend
from servekit.server.queue_door import QueueDoor

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    BENCH_DIR,
    free_port,
    log,
    machine,
    median,
    percentile,
    render_table,
    table,
    verdict,
    wait_http_ok,
    write_json,
)

MODEL = "echo"
PUT_TARGET = 5_000  # records/s, SQLite
CONSUME_TARGET = 2_000  # records/s consumed and committed, SQLite
REDIS_FACTOR = 2.0  # Redis at least this many times SQLite
BLOCK = 25  # latency: asynchronous and v2 records alternate in blocks of this many


class Echo(servekit.Model):
    """String protocol: answers each record (or v2 BYTES element) with itself."""

    name = MODEL
    eas_format = "string"
    inputs = [{"name": "input-0", "datatype": "BYTES", "shape": [-1]}]
    outputs = [{"name": "output-0", "datatype": "BYTES", "shape": [-1]}]

    def predict(self, batch: list[Any]) -> list[Any]:
        return list(batch)


@dataclasses.dataclass
class Settings:
    records: int = 10_000
    payload: int = 1024
    producers: int = 16
    window: int = 64
    rounds: int = 3
    latency_samples: int = 200
    warmup: int = 20
    limit: float = 30.0  # seconds per phase, at most
    backends: tuple[str, ...] = ("sqlite", "redis")

    @classmethod
    def quick(cls) -> Settings:
        return cls(records=2_000, rounds=1, latency_samples=50, warmup=10, limit=10.0)


# ---------------------------------------------------------------------------- processes
class Redis:
    """A private redis-server for the run."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--dir",
                str(directory),
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with code {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(8).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)

    def cpu_seconds(self) -> float:
        """CPU (user + system) redis-server has used so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def version() -> str:
        out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True)
        return out.stdout.split()[2].removeprefix("v=") if out.returncode == 0 else "?"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def serve_queue(queue_url: str) -> Iterator[str]:
    """``servekit serve bench_queue.py:Echo --queue`` on a free port; yield ``host:port``."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "servekit",
        "serve",
        f"{Path(__file__).resolve()}:Echo",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--queue",
        "--queue-url",
        queue_url,
        "--log-level",
        "warning",
    ]
    proc = subprocess.Popen(command, cwd=BENCH_DIR.parent, stdout=subprocess.DEVNULL)
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/v2/models/{MODEL}/ready", 30.0, proc)
        yield f"127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# ---------------------------------------------------------------------------- throughput
class Backends:
    """Fresh, empty queues on one backend."""

    def __init__(self, kind: str, workdir: Path, redis: Redis | None) -> None:
        self.kind = kind
        self.workdir = workdir
        self.redis = redis
        self.count = 0

    def backend(self, name: str) -> Backend:
        if self.kind == "sqlite":
            return SqliteBackend(self.workdir / f"{name}.db")
        from servekit.queue.redis_backend import RedisBackend

        assert self.redis is not None
        return RedisBackend(name, self.redis.url)

    def queue(self) -> QueueService:
        self.count += 1
        name = f"bench-{self.kind}-{self.count}-{os.getpid()}"
        return QueueService(self.backend(name), name=name)

    def store_cpu(self) -> float | None:
        """CPU used so far by the store's own process (None: SQLite is in this process)."""
        return self.redis.cpu_seconds() if self.kind == "redis" and self.redis else None


async def bounded(work: Awaitable[Any], seconds: float) -> bool:
    """Run ``work``; False if it had to be stopped at ``seconds``."""
    try:
        await asyncio.wait_for(work, seconds)
    except asyncio.TimeoutError:
        return False
    return True


def _since(now: float | None, then: float | None) -> float | None:
    return None if now is None or then is None else now - then


class Clocks:
    """Wall time, CPU of this process, of its event-loop thread and of the store's process."""

    def __init__(self, b: Backends) -> None:
        self.b = b
        self.wall, self.cpu, self.loop = (
            time.perf_counter(),
            time.process_time(),
            time.thread_time(),
        )
        self.store = b.store_cpu()

    def rate(self, done: int, finished: bool) -> dict:
        seconds = time.perf_counter() - self.wall
        loop = time.thread_time() - self.loop
        cpu = time.process_time() - self.cpu
        store = _since(self.b.store_cpu(), self.store)
        figures = _rate(done, seconds, cpu, store, finished)
        figures["loop_busy"] = round(loop / seconds, 3) if seconds > 0 else None
        return figures


def _rate(done: int, seconds: float, cpu: float, store_cpu: float | None, finished: bool) -> dict:
    return {
        "records": done,
        "seconds": round(seconds, 3),
        "per_second": round(done / seconds) if seconds > 0 else 0,
        "cpu_us_per_record": round(1e6 * cpu / done, 1) if done else None,
        "store_cpu_us_per_record": (
            round(1e6 * store_cpu / done, 1) if done and store_cpu is not None else None
        ),
        "complete": finished,
    }


async def put_rate(
    b: Backends, q: QueueService, n: int, producers: int, payload: bytes, limit: float
) -> dict:
    done = 0

    async def producer(count: int) -> None:
        nonlocal done
        for _ in range(count):
            await q.put(payload)
            done += 1

    share = [n // producers + (1 if i < n % producers else 0) for i in range(producers)]
    clocks = Clocks(b)
    finished = await bounded(asyncio.gather(*(producer(c) for c in share)), limit)
    return clocks.rate(done, finished and done == n)


async def consume_rate(
    b: Backends, q: QueueService, n: int, consumers: int, window: int, limit: float
) -> dict:
    done = 0
    subs = [q.watch(window=window, uid=f"c{i}", gid="bench") for i in range(consumers)]

    async def consumer(sub: Any) -> None:
        nonlocal done
        async for record in sub:
            committed = await sub.commit([record.index])
            done += len(committed)
            if done >= n:  # the last one: stop everybody's iteration
                for other in subs:
                    await other.close()

    clocks = Clocks(b)
    finished = await bounded(asyncio.gather(*(consumer(s) for s in subs)), limit)
    figures = clocks.rate(done, finished and done >= n)
    for sub in subs:
        await sub.close()
    return figures


async def throughput(b: Backends, s: Settings, payload: bytes) -> dict:
    out: dict[str, Any] = {}
    async with b.queue() as q:
        out["put_concurrent"] = await put_rate(b, q, s.records, s.producers, payload, s.limit)
        out["consume_1"] = await consume_rate(b, q, s.records, 1, s.window, s.limit)
    async with b.queue() as q:
        out["put_sequential"] = await put_rate(b, q, s.records // 2, 1, payload, s.limit)
    async with b.queue() as q:
        await put_rate(b, q, s.records, s.producers, payload, s.limit)
        out["consume_4"] = await consume_rate(b, q, s.records, 4, s.window, s.limit)
    return out


# ---------------------------------------------------------------------------- latency
def _latency(seconds: list[float]) -> dict:
    ordered = sorted(seconds)
    if not ordered:
        return {"samples": 0}
    return {
        "samples": len(ordered),
        "p50_ms": round(1e3 * percentile(ordered, 50), 3),
        "p99_ms": round(1e3 * percentile(ordered, 99), 3),
        "mean_ms": round(1e3 * sum(ordered) / len(ordered), 3),
        "max_ms": round(1e3 * ordered[-1], 3),
    }


def door_latency(make: Callable[[], QueueService], s: Settings, payload: bytes) -> dict:
    """Put through HTTP, receive through the WebSocket watch; one record in flight at a time."""
    import httpx
    import uvicorn
    from websockets.sync.client import connect

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            QueueDoor({"svc": make()}),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="on",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            server.should_exit = True
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    base = f"http://127.0.0.1:{port}/api/predict/svc"
    url = f"ws://127.0.0.1:{port}/api/predict/svc?_watch_=true&_window_=1&_auto_commit_=true"
    latencies = []
    try:
        with httpx.Client() as http, connect(url, max_size=None) as ws:
            stop = time.monotonic() + s.limit
            for _ in range(s.warmup + s.latency_samples):
                started = time.perf_counter()
                http.post(base, content=payload).raise_for_status()
                ws.recv(timeout=10)
                latencies.append(time.perf_counter() - started)
                if time.monotonic() > stop:
                    break
    finally:
        server.should_exit = True
        thread.join(15)
    return _latency(latencies[s.warmup :])


def async_inference_latency(queue_url: str, s: Settings) -> dict:
    """Light load through ``servekit serve --queue``: one record at a time, v2 alongside.

    After warm-up, the two alternate in blocks of ``BLOCK`` records: a v2 request right after
    an asynchronous one would share the server with that record's trailing input commit.
    """
    import httpx

    from servekit.client import QueueClient

    count = s.warmup + s.latency_samples
    # 1 KiB of ASCII per record, different for every record, so a mixed-up answer shows
    payloads = [
        f"{i:08d}".encode() + os.urandom(s.payload).hex()[: s.payload - 8].encode()
        for i in range(count)
    ]
    e2e: list[float] = []
    put: list[float] = []
    sync: list[float] = []
    with serve_queue(queue_url) as endpoint:
        inputs, sink = QueueClient(endpoint, MODEL), QueueClient(endpoint, f"{MODEL}/sink")
        inputs.init(uid="bench-producer", gid="bench")
        sink.init(uid="bench-collector", gid="bench")
        infer_url = f"http://{endpoint}/v2/models/{MODEL}/infer"
        http = httpx.Client()

        def async_one(i: int, payload: bytes) -> tuple[float, float]:
            began = time.perf_counter()
            _, request_id = inputs.put(payload)
            was_put = time.perf_counter()
            frames = sink.get(request_id=request_id, timeout="5s")
            ended = time.perf_counter()
            if not frames or frames[0].data != payload:
                got = frames[0].data[:40] if frames else "nothing"
                raise RuntimeError(f"async record {i}: wrong answer from the sink: {got!r}")
            if frames[0].tags.get("status") != "200":
                raise RuntimeError(f"async record {i}: answered with tags {frames[0].tags}")
            return ended - began, was_put - began

        def sync_one(i: int, payload: bytes) -> float:
            text = payload.decode()
            tensor = {"name": "input-0", "shape": [1], "datatype": "BYTES", "data": [text]}
            began = time.perf_counter()
            reply = http.post(infer_url, json={"inputs": [tensor]})
            ended = time.perf_counter()
            reply.raise_for_status()
            if reply.json()["outputs"][0]["data"] != [text]:
                raise RuntimeError(f"v2 infer {i}: the answer is not the input")
            return ended - began

        try:
            for i, payload in enumerate(payloads[: s.warmup]):
                async_one(i, payload)
                sync_one(i, payload)
            stop = time.monotonic() + s.limit
            for first in range(s.warmup, count, BLOCK):
                block = list(enumerate(payloads))[first : first + BLOCK]
                for i, payload in block:
                    total, putting = async_one(i, payload)
                    e2e.append(total)
                    put.append(putting)
                sync.extend(sync_one(i, payload) for i, payload in block)
                if time.monotonic() > stop:
                    break
        finally:
            http.close()
            inputs.close()
            sink.close()
    return {
        "async_e2e": _latency(e2e),
        "async_put": _latency(put),
        "async_get": _latency([t - p for t, p in zip(e2e, put, strict=True)]),
        "v2_infer": _latency(sync),
        "verified": len(e2e),
    }


# ---------------------------------------------------------------------------- profile
def profile_backend(b: Backends, s: Settings, payload: bytes, seconds: int) -> dict:
    """py-spy (GIL holders) on this process while it repeats put (16 producers) + consume."""
    from _profile import PROFILE_DIR, record_command, summarize

    PROFILE_DIR.mkdir(parents=True, exist_ok=True)
    raw = PROFILE_DIR / f"queue-{b.kind}.txt"
    spy = subprocess.Popen(
        record_command(raw, os.getpid(), seconds),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)  # let py-spy attach

    async def work() -> None:
        stop = time.monotonic() + seconds
        while time.monotonic() < stop and spy.poll() is None:
            async with b.queue() as q:
                await put_rate(b, q, s.records, s.producers, payload, s.limit)
                await consume_rate(b, q, s.records, 1, s.window, s.limit)

    try:
        asyncio.run(work())
        spy.wait(timeout=seconds + 30)
    finally:
        if spy.poll() is None:
            spy.kill()
            spy.wait()
    return summarize(raw) if raw.exists() else {"raw": str(raw)}


# ---------------------------------------------------------------------------- report
ROWS: tuple[tuple[str, str, str], ...] = (
    ("put/s, 16 producers", "put_concurrent", "per_second"),
    ("put/s, 1 producer", "put_sequential", "per_second"),
    ("watch+commit/s, 1 consumer", "consume_1", "per_second"),
    ("watch+commit/s, 4 consumers", "consume_4", "per_second"),
    ("cpu us/record, put 16 (this process)", "put_concurrent", "cpu_us_per_record"),
    ("cpu us/record, put 16 (redis-server)", "put_concurrent", "store_cpu_us_per_record"),
    ("cpu us/record, consume 1 (this process)", "consume_1", "cpu_us_per_record"),
    ("cpu us/record, consume 1 (redis-server)", "consume_1", "store_cpu_us_per_record"),
    ("door put->push p50 ms", "door", "p50_ms"),
    ("door put->push p99 ms", "door", "p99_ms"),
    ("async inference put->get p50 ms", "async_e2e", "p50_ms"),
    ("async inference put->get p99 ms", "async_e2e", "p99_ms"),
    ("async inference put->get mean ms", "async_e2e", "mean_ms"),
    ("  of which put p50 ms", "async_put", "p50_ms"),
    ("  of which get p50 ms", "async_get", "p50_ms"),
    ("v2 infer (sync, same server) p50 ms", "v2_infer", "p50_ms"),
    ("v2 infer (sync, same server) p99 ms", "v2_infer", "p99_ms"),
    ("v2 infer (sync, same server) mean ms", "v2_infer", "mean_ms"),
)
THROUGHPUT = ("put_concurrent", "put_sequential", "consume_1", "consume_4")


def summarize_rounds(rounds: list[dict]) -> dict:
    """Median over rounds of each throughput figure, with the range of records/s."""
    out: dict[str, Any] = {}
    for phase in THROUGHPUT:
        runs = [r[phase] for r in rounds]
        merged: dict[str, Any] = {}
        for key in ("per_second", "cpu_us_per_record", "store_cpu_us_per_record", "loop_busy"):
            values = [r[key] for r in runs if r.get(key) is not None]
            merged[key] = round(median(values), 3 if key == "loop_busy" else 1) if values else None
        rates = [r["per_second"] for r in runs]
        merged["range"] = [min(rates), max(rates)]
        merged["complete"] = all(r["complete"] for r in runs)
        out[phase] = merged
    return out


def _value(figures: dict, phase: str, key: str) -> Any:
    value = figures.get(phase, {}).get(key)
    if value is None:
        return "-"
    if key == "per_second":
        return int(value)
    return float(value)


def report(results: dict[str, dict], s: Settings, quick: bool, redis_version: str | None) -> dict:
    kinds = list(results)
    columns = ["measure", *kinds]
    both = "sqlite" in results and "redis" in results
    if both:
        columns.append("redis / sqlite")
    rows = []
    for label, phase, key in ROWS:
        if "redis-server" in label and "redis" not in results:
            continue
        row = [label, *(_value(results[k], phase, key) for k in kinds)]
        if both:
            a, b = (_value(results[k], phase, key) for k in ("redis", "sqlite"))
            numbers = isinstance(a, (int, float)) and isinstance(b, (int, float)) and b
            ratio = f"{a / b:.2f}x" if numbers and "redis-server" not in label else ""
            row.append(ratio)
        rows.append(row)
    title = (
        f"Queue service, {s.payload} B records ({s.records:,} per throughput phase, median of"
        f" {s.rounds} round{'s' if s.rounds > 1 else ''}; latency over"
        f" {s.latency_samples} records after {s.warmup} warm-up)"
    )
    notes = []
    incomplete = [
        f"{k} {p}"
        for k in kinds
        for p in THROUGHPUT
        if not results[k].get(p, {}).get("complete", True)
    ]
    if incomplete:
        notes.append(f"stopped at the {s.limit:.0f} s limit: {', '.join(incomplete)}")
    if "sqlite" in results:
        sq = results["sqlite"]
        put16, put1 = sq["put_concurrent"]["per_second"], sq["put_sequential"]["per_second"]
        c1, c4 = sq["consume_1"]["per_second"], sq["consume_4"]["per_second"]
        notes.append(
            f"target SQLite put >= {PUT_TARGET:,}/s: {verdict(min(put16, put1) >= PUT_TARGET)}"
            f" ({put16:,.0f}/s with 16 producers, {put1:,.0f}/s with 1)"
        )
        notes.append(
            f"target SQLite consumed+committed >= {CONSUME_TARGET:,}/s:"
            f" {verdict(min(c1, c4) >= CONSUME_TARGET)}"
            f" ({c1:,.0f}/s with 1 consumer, {c4:,.0f}/s with 4)"
        )
    if both:
        ratios = {
            p: results["redis"][p]["per_second"] / results["sqlite"][p]["per_second"]
            for p in THROUGHPUT
        }
        notes.append(
            f"target Redis >= {REDIS_FACTOR:g}x SQLite: "
            f"{verdict(min(ratios.values()) >= REDIS_FACTOR)} ("
            + ", ".join(f"{p} {r:.2f}x" for p, r in ratios.items())
            + ")"
        )
    busy = [
        f"{k} {p} {100 * results[k][p]['loop_busy']:.0f}%"
        for k in kinds
        for p in THROUGHPUT
        if results[k].get(p, {}).get("loop_busy") is not None
    ]
    if busy:
        notes.append("event-loop thread on CPU, % of the phase's wall time: " + ", ".join(busy))
    for k in kinds:
        if "async_e2e" in results[k]:
            notes.append(
                f"{k}: {results[k]['verified']} async answers checked against their records"
            )
    info = machine()
    info["sqlite"] = sqlite3.sqlite_version
    info["redis"] = redis_version
    return {
        "benchmark": "queue",
        "command": "python benchmarks/bench_queue.py" + (" --quick" if quick else ""),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": info,
        "settings": dataclasses.asdict(s),
        "results": results,
        "tables": [table(title, columns, rows)],
        "notes": notes,
    }


# ---------------------------------------------------------------------------- main
def run(s: Settings, quick: bool = False, profile: bool = False) -> dict:
    payload = os.urandom(s.payload)
    redis: Redis | None = None
    redis_version = None
    rounds: dict[str, list[dict]] = {k: [] for k in s.backends}
    results: dict[str, dict] = {k: {} for k in s.backends}
    profiles: dict[str, dict] = {}
    workdir = Path(tempfile.mkdtemp(prefix="servekit-bench-queue-"))
    try:
        if "redis" in s.backends:
            if shutil.which("redis-server") is None:
                raise RuntimeError(
                    "redis-server not found (apt-get install redis-server); or --backends sqlite"
                )
            (workdir / "redis").mkdir()
            redis = Redis(workdir / "redis")
            redis_version = redis.version()
        backends = {k: Backends(k, workdir, redis) for k in s.backends}
        for i in range(s.rounds):
            for kind in s.backends if i % 2 == 0 else reversed(s.backends):
                log(f"queue: {kind} throughput, round {i + 1}/{s.rounds}")
                rounds[kind].append(asyncio.run(throughput(backends[kind], s, payload)))
        for kind in s.backends:
            results[kind].update(summarize_rounds(rounds[kind]))
            results[kind]["rounds"] = rounds[kind]
            log(f"queue: {kind} door latency")
            results[kind]["door"] = door_latency(backends[kind].queue, s, payload)
            url = redis.url if kind == "redis" and redis else f"sqlite://{workdir / 'served'}"
            log(f"queue: {kind} asynchronous inference through servekit serve --queue")
            results[kind].update(async_inference_latency(url, s))
        if profile:
            for kind in s.backends:
                log(f"queue: {kind} py-spy profile")
                profiles[kind] = profile_backend(backends[kind], s, payload, 2 if quick else 4)
    finally:
        if redis is not None:
            redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    out = report(results, s, quick, redis_version)
    if profiles:
        out["profiles"] = profiles
        out["profile"] = profiles.get("redis") or next(iter(profiles.values()))
    return out


def main(quick: bool = False, profile: bool = False) -> dict:
    """Entry point for ``run.py``: every phase on every backend; the report dict."""
    return run(Settings.quick() if quick else Settings(), quick, profile)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs, one round")
    parser.add_argument("--profile", action="store_true", help="py-spy this process too")
    parser.add_argument("--records", type=int, help="records per throughput phase")
    parser.add_argument("--rounds", type=int, help="throughput rounds (median reported)")
    parser.add_argument("--latency-samples", type=int, help="records timed per latency phase")
    parser.add_argument("--backends", nargs="+", choices=["sqlite", "redis"])
    args = parser.parse_args()
    s = Settings.quick() if args.quick else Settings()
    for key in ("records", "rounds", "latency_samples"):
        if getattr(args, key) is not None:
            setattr(s, key, getattr(args, key))
    if args.backends:
        s.backends = tuple(args.backends)
    result = run(s, args.quick, args.profile)
    result["command"] = " ".join(["python benchmarks/bench_queue.py", *sys.argv[1:]])
    for spec in result["tables"]:
        print(render_table(spec), end="\n\n")
    for note in result["notes"]:
        print(f"- {note}")
    if "profile" in result:
        from _profile import render

        for summary in result["profiles"].values():
            print(render(summary))
    print(f"\nwrote {write_json('queue', result).relative_to(BENCH_DIR.parent)}")


if __name__ == "__main__":
    cli()
