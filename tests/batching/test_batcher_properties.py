"""Random interleavings of submits, deadlines, cancels and clock moves: one outcome each."""

from __future__ import annotations

import asyncio
import threading
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
        ),
        st.tuples(st.just("cancel"), st.integers(min_value=0, max_value=50)),
        st.tuples(st.just("advance"), st.floats(min_value=0.0, max_value=0.03)),
        st.tuples(st.just("release"), st.integers(min_value=1, max_value=3)),
    ),
    max_size=40,
)


class GatedModel:
    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []
        self.gate = threading.Semaphore(0)
        self.open = threading.Event()

    def __call__(self, items: list[tuple[int, int]]) -> list[Any]:
        self.seen.extend(items)
        while not self.open.is_set():
            if self.gate.acquire(timeout=0.01):
                break
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
    batcher = Batcher(model, policy, clock=clock)
    await batcher.start()
    loop = asyncio.get_running_loop()
    works: list[Work] = []
    notified: list[int] = []
    never_dispatched: set[int] = set()  # works dropped before any of their items ran
    for op in ops:
        kind = op[0]
        if kind == "submit":
            wid = len(works)
            items = [(wid, i) for i in range(op[1])]
            deadline = None if op[2] is None else clock.now() + op[2]
            future: asyncio.Future[list[Any]] = loop.create_future()
            future.add_done_callback(lambda _, wid=wid: notified.append(wid))
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
    seen = model.seen
    assert len(seen) == len(set(seen)), "no item reaches the model twice"
    for wid, work in enumerate(works):
        assert work.finished and work.waiter is not None and work.waiter.done()
        if work.error is None:
            assert work.results == [("ok", item) for item in work.items]
        else:
            assert isinstance(work.error, (Cancelled, DeadlineExceeded, QueueFull))
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
