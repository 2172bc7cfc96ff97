"""The queue semantics, proved once against every backend (the ``make_queue`` fixture)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from servekit.errors import BadRequest, NotFound, PayloadTooLarge, QueueFull
from servekit.queue import QueueService, Record, Subscription


async def take(sub: Subscription, n: int, timeout: float = 5.0) -> list[Record]:
    """The next ``n`` records of a subscription, failing if they do not come in time."""
    return [await asyncio.wait_for(sub.__anext__(), timeout) for _ in range(n)]


async def nothing_within(sub: Subscription, seconds: float) -> bool:
    """True if the subscription yields nothing for ``seconds`` (a bounded negative check)."""
    try:
        await asyncio.wait_for(sub.__anext__(), seconds)
    except asyncio.TimeoutError:
        return True
    return False


async def put_many(q: QueueService, n: int, prefix: str = "r") -> list[int]:
    return [(await q.put(f"{prefix}{i}".encode()))[0] for i in range(n)]


def test_put_returns_increasing_indexes_and_distinct_request_ids(
    make_queue: Any, arun: Any
) -> None:
    async def scenario() -> None:
        async with make_queue() as q:
            results = [await q.put(b"x") for _ in range(5)]
            indexes = [i for i, _ in results]
            assert indexes == sorted(indexes) and len(set(indexes)) == 5
            assert indexes[0] >= 1
            assert len({rid for _, rid in results}) == 5

    arun(scenario())


def test_put_keeps_data_tags_and_a_given_request_id(make_queue: Any, arun: Any) -> None:
    async def scenario() -> None:
        async with make_queue() as q:
            index, rid = await q.put(b"\x00\xffbinary", {"k": "v", "ü": "ß"}, request_id="abc")
            assert rid == "abc"
            (record,) = await q.get(index=index, auto_delete=False)
            assert record == Record(index, b"\x00\xffbinary", {"k": "v", "ü": "ß"}, "abc")

    arun(scenario())


def test_get_returns_records_from_index_and_deletes_them(make_queue: Any, arun: Any) -> None:
    async def scenario() -> None:
        async with make_queue() as q:
            idx = await put_many(q, 5)
            got = await q.get(index=idx[1], length=3)
            assert [r.index for r in got] == idx[1:4]
            assert [r.data for r in got] == [b"r1", b"r2", b"r3"]
            rest = await q.get(index=0, length=10, auto_delete=False)
            assert [r.index for r in rest] == [idx[0], idx[4]]

    arun(scenario())


def test_get_without_auto_delete_leaves_records(make_queue: Any, arun: Any) -> None:
    async def scenario() -> None:
        async with make_queue() as q:
            idx = await put_many(q, 2)
            for _ in range(2):
                got = await q.get(index=0, length=5, auto_delete=False)
                assert [r.index for r in got] == idx

    arun(scenario())


def test_concurrent_auto_deleting_gets_return_each_record_once(make_queue: Any, arun: Any) -> None:
    async def scenario() -> None:
        async with make_queue() as q:
            idx = await put_many(q, 40)
            batches = await asyncio.gather(
                *(q.get(index=0, length=5, timeout=0.2) for _ in range(20))
            )
            seen = [r.index for batch in batches for r in batch]
            assert sorted(seen) == idx

    arun(scenario())


def test_get_waits_for_a_record_put_later(make_queue: Any, arun: Any) -> None:
    async def scenario() -> None:
        async with make_queue() as q:
            waiting = asyncio.create_task(q.get(index=0, timeout=5))
            await asyncio.sleep(0)  # let the getter start waiting
            index, _ = await q.put(b"late")
            got = await waiting
            assert [(r.index, r.data) for r in got] == [(index, b"late")]

    arun(scenario())


def test_get_on_an_empty_queue_returns_nothing_after_timeout(make_queue: Any, arun: Any) -> None:
    async def scenario() -> None:
        async with make_queue() as q:
            loop = asyncio.get_running_loop()
            started = loop.time()
            assert await q.get(index=0, timeout=0.2) == []
            assert 0.15 <= loop.time() - started < 2

    arun(scenario())


def test_get_by_request_id_finds_that_record_only(make_queue: Any, arun: Any) -> None:
    async def scenario() -> None:
        async with make_queue() as q:
            await put_many(q, 3)
            index, rid = await q.put(b"wanted")
            await put_many(q, 2)
            got = await q.get(request_id=rid)
            assert [(r.index, r.data, r.request_id) for r in got] == [(index, b"wanted", rid)]
            assert await q.get(request_id=rid, timeout=0) == []

    arun(scenario())


def test_get_by_request_id_waits_for_the_result(make_queue: Any, arun: Any) -> None:
    async def scenario() -> None:
        async with make_queue() as q:
            waiting = asyncio.create_task(q.get(request_id="job-7", timeout=5))
            await q.put(b"other")
            await asyncio.sleep(0)
            await q.put(b"result", request_id="job-7")
            (record,) = await waiting
            assert record.data == b"result"

    arun(scenario())


def test_get_filters_by_tags(make_queue: Any, arun: Any) -> None:
    async def scenario() -> None:
        async with make_queue() as q:
            for i in range(600):  # more than one scan chunk
                await q.put(str(i).encode(), {"parity": str(i % 2), "n": str(i)})
            got = await q.get(index=0, length=3, tags={"parity": "1"}, auto_delete=False)
            assert [r.data for r in got] == [b"1", b"3", b"5"]
            got = await q.get(index=0, tags={"n": "599", "parity": "1"}, auto_delete=False)
            assert [r.data for r in got] == [b"599"]
            assert await q.get(index=0, tags={"parity": "2"}, timeout=0) == []

    arun(scenario(), timeout=60)


def test_get_refuses_a_bad_length(make_queue: Any, arun: Any) -> None:
    async def scenario() -> None:
        async with make_queue() as q:
            with pytest.raises(BadRequest):
                await q.get(length=0)

    arun(scenario())


def test_attributes_count_total_current_and_last_entry(make_queue: Any, arun: Any) -> None:
    async def scenario() -> None:
        async with make_queue() as q:
            empty = await q.attributes()
            assert empty["stream.length"] == "0"
            assert "stream.lastEntry" not in empty
            idx = await put_many(q, 4)
            await q.delete([idx[0]])
            attrs = await q.attributes()
            assert attrs["stream.length"] == "3"
            assert attrs["stream.entriesAdded"] == "4"
            assert attrs["stream.lastEntry"] == str(idx[-1])
            assert attrs["stream.firstEntry"] == str(idx[1])
            assert attrs["meta.name"] == q.name

    arun(scenario())


def test_truncate_drops_records_before_index(make_queue: Any, arun: Any) -> None:
    async def scenario() -> None:
        async with make_queue() as q:
            idx = await put_many(q, 6)
            assert await q.truncate(idx[3]) == 3
            left = await q.get(index=0, length=10, auto_delete=False)
            assert [r.index for r in left] == idx[3:]
            last = int((await q.attributes())["stream.lastEntry"])
            await q.truncate(last + 1)
            assert (await q.attributes())["stream.length"] == "0"

    arun(scenario())


def test_delete_removes_records_from_queue_and_groups(make_queue: Any, arun: Any) -> None:
    async def scenario() -> None:
        async with make_queue() as q:
            idx = await put_many(q, 3)
            async with q.watch(window=3, uid="c") as sub:
                held = await take(sub, 3)
                assert [r.index for r in held] == idx
                assert await q.delete([idx[0], idx[2], 10_000]) == [idx[0], idx[2]]
                assert await q.delete([idx[0]]) == []
                assert await sub.commit([idx[0]]) == []
                assert await sub.commit([idx[1]]) == [idx[1]]
            assert (await q.attributes())["stream.length"] == "0"

    arun(scenario())


def test_search_tells_holder_pending_and_wait_count(make_queue: Any, arun: Any) -> None:
    async def scenario() -> None:
        async with make_queue() as q:
            idx = await put_many(q, 5)
            async with q.watch(window=2, uid="alice", gid="g") as sub:
                await take(sub, 2)
                held = await q.search(idx[1], gid="g")
                assert held.as_eas() == {"ConsumerId": "alice", "IsPending": True, "WaitCount": 0}
                waiting = await q.search(idx[4], gid="g")
                assert (waiting.consumer, waiting.pending, waiting.wait_count) == ("", False, 2)
                other_group = await q.search(idx[4], gid="nobody-yet")
                assert other_group.wait_count == 4
                with pytest.raises(NotFound):
                    await q.search(idx[-1] + 100, gid="g")

    arun(scenario())


def test_consumer_never_holds_more_than_window(make_queue: Any, arun: Any) -> None:
    async def scenario() -> None:
        async with make_queue() as q:
            idx = await put_many(q, 10)
            async with q.watch(window=3, uid="c") as sub:
                first = await take(sub, 3)
                assert [r.index for r in first] == idx[:3]
                assert await nothing_within(sub, 0.3)
                await sub.commit([first[0].index])
                (fourth,) = await take(sub, 1)
                assert fourth.index == idx[3]
                assert await nothing_within(sub, 0.2)

    arun(scenario())


def test_commit_removes_a_record_and_commits_it_once(make_queue: Any, arun: Any) -> None:
    async def scenario() -> None:
        async with make_queue() as q:
            idx = await put_many(q, 2)
            async with q.watch(window=5) as sub:
                await take(sub, 2)
                assert await q.commit(idx, gid=sub.gid) == idx
                assert await q.commit(idx, gid=sub.gid) == []
            assert (await q.attributes())["stream.length"] == "0"

    arun(scenario())


def test_commit_of_a_record_not_delivered_to_the_group_does_nothing(
    make_queue: Any, arun: Any
) -> None:
    async def scenario() -> None:
        async with make_queue() as q:
            idx = await put_many(q, 1)
            assert await q.commit(idx, gid="g") == []
            assert (await q.attributes())["stream.length"] == "1"

    arun(scenario())


def test_auto_commit_commits_a_record_when_the_next_is_asked_for(
    make_queue: Any, arun: Any
) -> None:
    async def scenario() -> None:
        async with make_queue() as q:
            idx = await put_many(q, 4)
            async with q.watch(window=2, auto_commit=True) as sub:
                got = await take(sub, 4)
                assert [r.index for r in got] == idx
                # the last one is not done until the consumer asks again
                assert (await q.search(idx[3], gid=sub.gid)).pending
            assert (await q.attributes())["stream.length"] == "1"
            async with q.watch(window=2, auto_commit=True) as sub:
                assert [r.index for r in await take(sub, 1)] == idx[3:]
                assert await nothing_within(sub, 0.1)
            assert (await q.attributes())["stream.length"] == "0"

    arun(scenario())


def test_every_group_sees_every_record(make_queue: Any, arun: Any) -> None:
    async def scenario() -> None:
        async with make_queue() as q:
            idx = await put_many(q, 4)
            async with q.watch(window=10, gid="a") as a, q.watch(window=10, gid="b") as b:
                got_a = await take(a, 4)
                got_b = await take(b, 4)
                assert [r.index for r in got_a] == [r.index for r in got_b] == idx
                await a.commit(idx)
                # committed by group a only: still there for group b
                assert (await q.attributes())["stream.length"] == "4"
                await b.commit(idx)
            assert (await q.attributes())["stream.length"] == "0"

    arun(scenario())


def test_consumers_of_one_group_share_the_records(make_queue: Any, arun: Any) -> None:
    async def scenario() -> None:
        async with make_queue() as q:
            idx = await put_many(q, 4)
            async with q.watch(window=2, uid="c1") as c1, q.watch(window=2, uid="c2") as c2:
                got1 = await take(c1, 2)
                got2 = await take(c2, 2)
                assert sorted(r.index for r in got1 + got2) == idx
                assert await nothing_within(c1, 0.1)

    arun(scenario())


def test_new_group_starts_at_the_given_index(make_queue: Any, arun: Any) -> None:
    async def scenario() -> None:
        async with make_queue() as q:
            idx = await put_many(q, 5)
            async with q.watch(index=idx[3], window=5, gid="late") as sub:
                got = await take(sub, 2)
                assert [r.index for r in got] == idx[3:]
                assert await nothing_within(sub, 0.1)

    arun(scenario())


def test_watcher_gets_records_put_after_it_started(make_queue: Any, arun: Any) -> None:
    async def scenario() -> None:
        async with make_queue() as q, q.watch(window=1, auto_commit=True) as sub:
            pending = asyncio.create_task(take(sub, 3))
            await asyncio.sleep(0)
            idx = await put_many(q, 3)
            assert [r.index for r in await pending] == idx

    arun(scenario())


def test_closed_consumer_records_go_to_another_consumer(make_queue: Any, arun: Any) -> None:
    async def scenario() -> None:
        async with make_queue() as q:
            idx = await put_many(q, 3)
            leaving = q.watch(window=2, uid="leaving")
            held = await take(leaving, 2)
            await leaving.close()
            async with q.watch(window=5, uid="staying") as staying:
                got = await take(staying, 3)
                assert sorted(r.index for r in got) == idx
                assert {r.index for r in held} <= {r.index for r in got}

    arun(scenario())


def test_killed_consumer_records_are_redelivered_none_lost_none_committed_twice(
    make_queue: Any, arun: Any
) -> None:
    async def scenario() -> None:
        async with make_queue() as q:
            idx = await put_many(q, 20)
            victim = q.watch(window=5, uid="victim")
            doomed = await take(victim, 5)
            committed = await victim.commit([doomed[0].index])
            await victim.abort()  # dies: no commit, no hand-back, the lease lapses

            committed_by: dict[int, list[str]] = {}
            for i in committed:
                committed_by.setdefault(i, []).append("victim")

            survivors = [q.watch(window=3, uid=uid) for uid in ("s1", "s2")]

            async def consume(sub: Subscription) -> None:
                async for record in sub:  # ends when the last commit closes everybody
                    for i in await sub.commit([record.index]):
                        committed_by.setdefault(i, []).append(sub.uid)
                    if len(committed_by) == len(idx):
                        for other in survivors:
                            await other.close()

            await asyncio.gather(*(consume(sub) for sub in survivors))
            assert sorted(committed_by) == idx, "a record was lost"
            assert all(len(who) == 1 for who in committed_by.values()), committed_by
            assert {who[0] for i, who in committed_by.items() if i in idx[1:5]} <= {"s1", "s2"}
            assert (await q.attributes())["stream.length"] == "0"

    arun(scenario())


def test_reconnected_consumer_gets_its_held_records_again(make_queue: Any, arun: Any) -> None:
    async def scenario() -> None:
        async with make_queue() as q:
            idx = await put_many(q, 3)
            first = q.watch(window=2, uid="same")
            await take(first, 2)
            await first.abort()  # connection dropped, lease still running
            async with q.watch(window=2, uid="same") as again:
                got = await take(again, 2)
                assert [r.index for r in got] == idx[:2]
                await again.commit(idx[:2])
                assert [r.index for r in await take(again, 1)] == idx[2:]

    arun(scenario())


def test_new_session_of_a_consumer_supersedes_the_old_one(make_queue: Any, arun: Any) -> None:
    async def scenario() -> None:
        async with make_queue() as q:
            await put_many(q, 1)
            old = q.watch(window=1, uid="dup")
            await take(old, 1)
            async with q.watch(window=1, uid="dup") as new:
                await take(new, 1)
                with pytest.raises(StopAsyncIteration):
                    await asyncio.wait_for(old.__anext__(), 5)
                assert old.superseded

    arun(scenario())


def test_full_queue_refuses_puts_with_queue_full(make_queue: Any, arun: Any) -> None:
    async def scenario() -> None:
        async with make_queue(max_length=3) as q:
            await put_many(q, 3)
            with pytest.raises(QueueFull) as err:
                await q.put(b"one too many")
            assert err.value.status == 429
            assert (await q.attributes())["stream.length"] == "3"
            await q.get(index=0)
            await q.put(b"room again")

    arun(scenario())


def test_concurrent_puts_on_a_nearly_full_queue_fill_it_exactly(make_queue: Any, arun: Any) -> None:
    async def scenario() -> None:
        async with make_queue(max_length=5) as q:
            await put_many(q, 2)
            results = await asyncio.gather(
                *(q.put(b"racer") for _ in range(10)), return_exceptions=True
            )
            assert sum(isinstance(r, tuple) for r in results) == 3
            assert all(isinstance(r, (tuple, QueueFull)) for r in results)
            assert (await q.attributes())["stream.length"] == "5"

    arun(scenario())


def test_concurrent_commits_of_one_record_commit_it_once(make_queue: Any, arun: Any) -> None:
    async def scenario() -> None:
        async with make_queue() as q:
            idx = await put_many(q, 3)
            async with q.watch(window=3) as sub:
                await take(sub, 3)
                results = await asyncio.gather(*(sub.commit(idx) for _ in range(5)))
                assert sorted(i for r in results for i in r) == idx

    arun(scenario())


def test_oversized_record_is_refused(make_queue: Any, arun: Any) -> None:
    async def scenario() -> None:
        async with make_queue(max_payload_bytes=10) as q:
            with pytest.raises(PayloadTooLarge):
                await q.put(b"x" * 11)

    arun(scenario())


def test_watch_refuses_a_bad_window(make_queue: Any) -> None:
    q = make_queue()
    with pytest.raises(BadRequest):
        q.watch(window=0)
