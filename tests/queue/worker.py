"""A consumer process for the fault tests (run as a script; killed with SIGKILL by them).

worker.py pipeline sqlite <dir> <input> <sink> [--delay S]
    consume <input>: put each record into <sink> under its request id, then commit it;
    print "done <index>" per record and "drained" once <input> is empty, then exit.
worker.py hold redis <url> <queue> --uid U --window N --lease S
    take N records, print "held <index>" for each, then wait forever without committing.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from servekit.queue import QueueService, SqliteBackend
from servekit.queue.backend import Backend
from servekit.queue.redis_backend import RedisBackend


def backend(kind: str, where: str, name: str) -> Backend:
    if kind == "sqlite":
        return SqliteBackend(Path(where) / f"{name}.db", poll_interval=0.02)
    return RedisBackend(name, where, poll_interval=0.02)


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def pipeline(args: argparse.Namespace) -> None:
    source = QueueService(backend(args.kind, args.where, args.queue), name=args.queue)
    sink = QueueService(backend(args.kind, args.where, args.sink), name=args.sink)
    async with source, sink, source.watch(window=args.window, uid="worker") as sub:
        while True:
            try:
                record = await asyncio.wait_for(sub.__anext__(), 0.5)
            except asyncio.TimeoutError:
                if (await source.attributes())["stream.length"] == "0":
                    say("drained")
                    return
                continue
            await sink.put(record.data.upper(), record.tags, request_id=record.request_id)
            await asyncio.sleep(args.delay)  # the model's time: a kill lands mid-work
            await sub.commit([record.index])
            say(f"done {record.index}")


async def hold(args: argparse.Namespace) -> None:
    queue = QueueService(
        backend(args.kind, args.where, args.queue), name=args.queue, lease=args.lease
    )
    async with queue, queue.watch(window=args.window, uid=args.uid) as sub:
        for _ in range(args.window):
            record = await sub.__anext__()
            say(f"held {record.index}")
        await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["pipeline", "hold"])
    parser.add_argument("kind", choices=["sqlite", "redis"])
    parser.add_argument("where")
    parser.add_argument("queue")
    parser.add_argument("sink", nargs="?")
    parser.add_argument("--uid", default="worker")
    parser.add_argument("--window", type=int, default=4)
    parser.add_argument("--lease", type=float, default=1.0)
    parser.add_argument("--delay", type=float, default=0.002)
    args = parser.parse_args()
    asyncio.run(pipeline(args) if args.mode == "pipeline" else hold(args))


if __name__ == "__main__":
    main()
