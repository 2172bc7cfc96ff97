"""Random interleavings of submits, deadlines, cancels and clock moves: one outcome each.

Items carry a batch key (a submission may mix keys) and some submissions are poisoned: the
model raises on any batch holding one of their items. Batches never mix keys, and only the
poisoned submissions get the model's error.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servekit.batching import Batcher, BatchPolicy
from servekit.batching._work import Work  # the property needs to see inside each submission
from servekit.clock import ManualClock
from servekit.errors import Cancelled, DeadlineExceeded, QueueFull

WAIT = 5.0

operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("submit"),
            st.integers(min_value=1, max_value=6),
            st.one_of(st.none(), st.floats(min_value=0.0, max_value=0.05)),
            st.one_of(st.none(), st.integers(min_value=0, max_value=1)),  # None: mixed keys
            st.booleans(),  # poisoned
        ),
        st.tuples(st.just("cancel"), st.integers(min_value=0, max_value=50)),
        st.tuples(st.just("advance"), st.floats(min_value=0.0, max_value=0.03)),
        st.tuples(st.just("release"), st.integers(min_value=1, max_value=3)),
    ),
    max_size=40,
)


Item = tuple[int, int, int, bool]  # submission, index, batch key, poisoned


class Poisoned(Exception):
    pass


class GatedModel:
    def __init__(self) -> None:
        self.calls: list[tuple[list[Item], bool]] = []  # items, raised
        self.gate = threading.Semaphore(0)
        self.open = threading.Event()

    def __call__(self, items: list[Item]) -> list[Any]:
        while not self.open.is_set():
            if self.gate.acquire(timeout=0.01):
                break
        bad = sorted({item[0] for item in items if item[3]})
        self.calls.append((list(items), bool(bad)))
        if bad:
            raise Poisoned(f"poisoned by {bad}")
        return [("ok", item) for item in items]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def scenario(ops: list[tuple[Any, ...]], max_batch: int, instances: int) -> None:
    clock = ManualClock()
    model = GatedModel()
    policy = BatchPolicy(
        max_batch_size=max_batch,
        max_latency=0.01,
        idle_batch_size=1,
        max_queue_size=12,
        instances=instances,
    )
    batcher = Batcher(model, policy, clock=clock, batch_key=lambda item: item[2])
    await batcher.start()
    loop = asyncio.get_running_loop()
    works: list[Work] = []
    notified: list[int] = []

    def record(wid: int, _: object) -> None:
        notified.append(wid)

    never_dispatched: set[int] = set()  # works dropped before any of their items ran
    for op in ops:
        kind = op[0]
        if kind == "submit":
            wid = len(works)
            key, poisoned = op[3], op[4]
            items = [(wid, i, i % 2 if key is None else key, poisoned) for i in range(op[1])]
            deadline = None if op[2] is None else clock.now() + op[2]
            future: asyncio.Future[list[Any]] = loop.create_future()
            future.add_done_callback(functools.partial(record, wid))
            work = Work(items, future, deadline=deadline)
            works.append(work)
            batcher._submit(work)
        elif kind == "cancel" and works:
            work = works[op[1] % len(works)]
            if not work.finished and work.queued == len(work.items):
                never_dispatched.add(works.index(work))
            batcher._cancel(work, "the test cancelled")
        elif kind == "advance":
            target = clock.now() + op[1]
            for wid, work in enumerate(works):
                expiring = work.deadline is not None and work.deadline <= target
                if expiring and not work.finished and work.queued == len(work.items):
                    never_dispatched.add(wid)
            clock.advance(op[1])
        elif kind == "release":
            model.gate.release(op[1])
        await settle()
    model.open.set()
    await asyncio.wait_for(batcher.close(timeout=WAIT), WAIT + 1)
    await settle()  # future callbacks run on the next loop iterations

    assert sorted(notified) == list(range(len(works))), "every work notified exactly once"
    seen = [item for items, _ in model.calls for item in items]
    answered = [item for items, raised in model.calls if not raised for item in items]
    assert len(answered) == len(set(answered)), "no item gets two results from the model"
    assert max(Counter(seen).values(), default=0) <= 2, "an item re-runs at most once"
    for items, _ in model.calls:
        assert len({item[2] for item in items}) == 1, f"a batch mixed keys: {items}"
    for wid, work in enumerate(works):
        assert work.finished and work.waiter is not None and work.waiter.done()
        work.waiter.exception()  # retrieved: asyncio need not report it
        if work.error is None:
            assert work.results == [("ok", item) for item in work.items]
        elif isinstance(work.error, Poisoned):
            assert work.items[0][3], f"work {wid} failed for a neighbour: {work.error}"
            assert f"{wid}" in str(work.error)
        else:
            assert isinstance(work.error, (Cancelled, DeadlineExceeded, QueueFull))
        if work.items[0][3] and any(item[0] == wid for item in answered):
            raise AssertionError(f"poisoned work {wid} got results")
        if wid in never_dispatched:
            assert not any(item[0] == wid for item in seen), f"dropped work {wid} reached model"
    stats = batcher.stats
    assert (
        stats.completed + stats.failed + stats.refused + stats.timed_out + stats.cancelled
        == len(works)
    )
    assert batcher.queued_items == 0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=operations,
    max_batch=st.integers(min_value=1, max_value=5),
    instances=st.integers(min_value=1, max_value=2),
)
def test_every_submission_gets_exactly_one_outcome(
    ops: list[tuple[Any, ...]], max_batch: int, instances: int
) -> None:
    asyncio.run(scenario(ops, max_batch, instances))
