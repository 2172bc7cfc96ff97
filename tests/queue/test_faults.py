"""Faults with real processes: consumers and servers killed with SIGKILL, Redis restarted."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from servekit.queue import QueueService, SqliteBackend
from servekit.queue.redis_backend import RedisBackend


def sqlite_queue(directory: Path, name: str) -> QueueService:
    return QueueService(SqliteBackend(directory / f"{name}.db"), name=name)


async def request_ids(q: QueueService) -> dict[str, bytes]:
    """request id -> data of every record in the queue (without removing anything)."""
    records = await q.get(index=0, length=10_000, timeout=0, auto_delete=False)
    return {r.request_id: r.data for r in records}


def test_sqlite_worker_killed_mid_work_and_restarted_loses_nothing(
    tmp_path: Path, spawn: Any, arun: Any
) -> None:
    total = 150

    async def fill() -> dict[str, bytes]:
        async with sqlite_queue(tmp_path, "in") as source:
            puts = [await source.put(f"job {i}".encode()) for i in range(total)]
        return {rid: f"job {i}".encode() for i, (_, rid) in enumerate(puts)}

    async def snapshot() -> tuple[dict[str, bytes], dict[str, bytes]]:
        async with sqlite_queue(tmp_path, "in") as source, sqlite_queue(tmp_path, "sink") as sink:
            return await request_ids(source), await request_ids(sink)

    sent = arun(fill())
    worker = spawn("pipeline", "sqlite", str(tmp_path), "in", "sink", "--delay", "0.005")
    worker.expect(30, "done")
    worker.kill()

    waiting, finished = arun(snapshot())
    assert set(waiting) | set(finished) == set(sent), "a record vanished with the killed worker"
    assert 30 <= len(finished) < total
    assert all(finished[rid] == sent[rid].upper() for rid in finished)

    again = spawn("pipeline", "sqlite", str(tmp_path), "in", "sink")
    again.expect(1, "drained", timeout=60)
    assert again.wait(10) == 0

    waiting, finished = arun(snapshot())
    assert waiting == {}
    assert finished == {rid: data.upper() for rid, data in sent.items()}


def test_killed_consumer_process_records_go_to_another_consumer(
    redis_server: Any, spawn: Any, arun: Any
) -> None:
    name = f"killed-consumer-{id(spawn)}"

    def queue() -> QueueService:
        return QueueService(RedisBackend(name, redis_server.url, poll_interval=0.02), name=name)

    async def fill() -> list[int]:
        async with queue() as q:
            return [(await q.put(f"r{i}".encode()))[0] for i in range(10)]

    async def drain() -> dict[int, int]:
        commits: dict[int, int] = {}
        async with queue() as q, q.watch(window=10, uid="survivor") as sub:
            while len(commits) < 10:
                record = await asyncio.wait_for(sub.__anext__(), 10)
                for i in await sub.commit([record.index]):
                    commits[i] = commits.get(i, 0) + 1
            assert (await q.attributes())["stream.length"] == "0"
        return commits

    indexes = arun(fill())
    victim = spawn("hold", "redis", redis_server.url, name, "--uid", "victim", "--window", "4")
    held = victim.expect(4, "held")
    victim.kill()
    commits = arun(drain())
    assert sorted(commits) == indexes
    assert set(commits.values()) == {1}
    assert {int(line.split()[1]) for line in held} <= set(commits)


def test_redis_killed_and_restarted_with_aof_keeps_the_queue(own_redis: Any, arun: Any) -> None:
    def queue() -> QueueService:
        return QueueService(RedisBackend("durable", own_redis.url), name="durable", lease=30)

    async def before() -> tuple[list[int], int]:
        async with queue() as q:
            idx = [(await q.put(f"r{i}".encode(), {"i": str(i)}))[0] for i in range(5)]
            sub = q.watch(window=2, uid="holder", gid="g")
            got = [await sub.__anext__() for _ in range(2)]
            await sub.commit([got[0].index])
            await sub.abort()
            return idx, got[1].index

    async def after(idx: list[int], held: int) -> None:
        async with queue() as q:
            attrs = await q.attributes()
            assert attrs["stream.length"] == "4"
            assert attrs["stream.lastEntry"] == str(idx[-1])
            records = await q.get(index=0, length=10, timeout=0, auto_delete=False)
            assert [(r.index, r.data, r.tags) for r in records] == [
                (i, f"r{n}".encode(), {"i": str(n)}) for n, i in enumerate(idx) if n != 0
            ]
            position = await q.search(held, gid="g")
            assert (position.consumer, position.pending) == ("holder", True)
            new_index, _ = await q.put(b"after restart")
            assert new_index == idx[-1] + 1

    idx, held = arun(before())
    own_redis.kill()
    own_redis.start()
    arun(after(idx, held))


def test_door_answers_503_while_redis_is_down_and_recovers(
    own_redis: Any, door_on_port: Any
) -> None:
    import httpx

    queue = QueueService(RedisBackend("outage", own_redis.url), name="outage")
    base = door_on_port({"svc": queue}).url + "/api/predict/svc"
    assert httpx.post(base, content=b"before").status_code == 200
    own_redis.kill()
    down = httpx.post(base, content=b"during")
    assert down.status_code == 503 and "unreachable" in down.json()["error"]
    own_redis.start()
    assert httpx.post(base, content=b"after").status_code == 200
    attrs = httpx.get(base, params={"_attrs_": "true"}).json()
    assert attrs["stream.length"] == "2"
