"""Queue service throughput and latency, per backend, on loopback only.

    python benchmarks/bench_queue.py [--records 5000] [--backends sqlite redis]

Measures, with 1 KiB records:
  * put/s with 16 concurrent producers and with one sequential producer;
  * watch + commit/s (each record committed on its own) with 1 and with 4 consumers of a group;
  * put -> push latency through the EAS door (HTTP POST in, WebSocket out) at light load.
Redis runs as a private ``redis-server`` (AOF on, fsync every second) on a free loopback
port. Every phase is bounded in count and in time. Prints a table; writes JSON to
``benchmarks/results/queue.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from servekit.queue import QueueService, SqliteBackend
from servekit.queue.backend import Backend
from servekit.queue.door import QueueDoor

RESULTS = Path(__file__).with_name("results") / "queue.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(8).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)

    def version(self) -> str:
        out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True)
        return out.stdout.split()[2].removeprefix("v=") if out.returncode == 0 else "?"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


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
        name = f"bench-{self.count}-{os.getpid()}"
        return QueueService(self.backend(name), name=name)


async def bounded(work: Awaitable[Any], seconds: float) -> bool:
    """Run ``work``; False if it had to be stopped at ``seconds``."""
    try:
        await asyncio.wait_for(work, seconds)
    except asyncio.TimeoutError:
        return False
    return True


async def put_rate(q: QueueService, n: int, producers: int, payload: bytes, limit: float) -> dict:
    done = 0

    async def producer(count: int) -> None:
        nonlocal done
        for _ in range(count):
            await q.put(payload)
            done += 1

    share = [n // producers + (1 if i < n % producers else 0) for i in range(producers)]
    started = time.perf_counter()
    finished = await bounded(asyncio.gather(*(producer(c) for c in share)), limit)
    seconds = time.perf_counter() - started
    return {
        "records": done,
        "seconds": round(seconds, 3),
        "per_second": round(done / seconds),
        "complete": finished,
    }


async def consume_rate(q: QueueService, n: int, consumers: int, window: int, limit: float) -> dict:
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

    started = time.perf_counter()
    finished = await bounded(asyncio.gather(*(consumer(s) for s in subs)), limit)
    seconds = time.perf_counter() - started
    for sub in subs:
        await sub.close()
    return {
        "records": done,
        "seconds": round(seconds, 3),
        "per_second": round(done / seconds),
        "complete": finished,
    }


def door_latency(make: Callable[[], QueueService], samples: int, payload: bytes) -> dict:
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
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    base = f"http://127.0.0.1:{port}/api/predict/svc"
    url = f"ws://127.0.0.1:{port}/api/predict/svc?_watch_=true&_window_=1&_auto_commit_=true"
    latencies = []
    try:
        with httpx.Client() as http, connect(url, max_size=None) as ws:
            for _ in range(samples + 10):
                started = time.perf_counter()
                http.post(base, content=payload).raise_for_status()
                ws.recv(timeout=10)
                latencies.append(time.perf_counter() - started)
    finally:
        server.should_exit = True
        thread.join(15)
    measured = sorted(latencies[10:])  # the first ones warm connections and caches up
    return {
        "samples": len(measured),
        "p50_ms": round(statistics.median(measured) * 1000, 2),
        "p99_ms": round(measured[max(0, int(len(measured) * 0.99) - 1)] * 1000, 2),
    }


async def run_backend(b: Backends, args: argparse.Namespace, payload: bytes) -> dict:
    out: dict[str, Any] = {}
    async with b.queue() as q:
        out["put_concurrent"] = await put_rate(q, args.records, args.producers, payload, args.limit)
        out["consume_1"] = await consume_rate(q, args.records, 1, args.window, args.limit)
    async with b.queue() as q:
        out["put_sequential"] = await put_rate(q, args.records // 2, 1, payload, args.limit)
    async with b.queue() as q:
        await put_rate(q, args.records, args.producers, payload, args.limit)
        out["consume_4"] = await consume_rate(q, args.records, 4, args.window, args.limit)
    return out


def table(results: dict[str, dict]) -> str:
    rows = [
        ("put/s, 16 producers", "put_concurrent", "per_second"),
        ("put/s, 1 producer", "put_sequential", "per_second"),
        ("watch+commit/s, 1 consumer", "consume_1", "per_second"),
        ("watch+commit/s, 4 consumers", "consume_4", "per_second"),
        ("door put->push p50 (ms)", "door_latency", "p50_ms"),
        ("door put->push p99 (ms)", "door_latency", "p99_ms"),
    ]
    kinds = list(results)
    lines = [f"{'':32}" + "".join(f"{k:>12}" for k in kinds)]
    for label, phase, key in rows:
        cells = "".join(f"{results[k].get(phase, {}).get(key, '-')!s:>12}" for k in kinds)
        lines.append(f"{label:32}{cells}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--payload", type=int, default=1024)
    parser.add_argument("--producers", type=int, default=16)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--latency-samples", type=int, default=200)
    parser.add_argument("--limit", type=float, default=60.0, help="seconds per phase, at most")
    parser.add_argument("--backends", nargs="+", default=["sqlite", "redis"])
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args()
    payload = os.urandom(args.payload)

    workdir = Path(tempfile.mkdtemp(prefix="servekit-bench-"))
    redis = None
    if "redis" in args.backends:
        if shutil.which("redis-server") is None:
            sys.exit(
                "redis-server not found (apt-get install redis-server), or pass --backends sqlite"
            )
        (workdir / "redis").mkdir()
        redis = Redis(workdir / "redis")
    results: dict[str, dict] = {}
    try:
        for kind in args.backends:
            b = Backends(kind, workdir, redis)
            results[kind] = asyncio.run(run_backend(b, args, payload))
            results[kind]["door_latency"] = door_latency(b.queue, args.latency_samples, payload)
    finally:
        if redis is not None:
            redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    print(table(results))
    report = {
        "benchmark": "queue",
        "command": " ".join(["python benchmarks/bench_queue.py", *sys.argv[1:]]),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            "redis": redis.version() if redis is not None else None,
        },
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "results": results,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
