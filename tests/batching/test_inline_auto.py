"""``inline = "auto"``: a plain model moves to the event loop once it proves cheap."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from servekit.batching import Batcher, BatchPolicy
from servekit.batching.inline import (
    CHEAP_SECONDS,
    LOOP_MAX_SECONDS,
    WARMUP_BATCHES,
    InlineJudge,
)


def test_the_judge_moves_a_cheap_model_after_its_warmup_and_back_for_good() -> None:
    judge = InlineJudge("m", max_batch_size=32)
    for _ in range(WARMUP_BATCHES - 1):
        judge.observe(CHEAP_SECONDS / 10, 1)
    assert not judge.on_loop
    judge.observe(CHEAP_SECONDS / 10, 1)
    assert judge.on_loop
    judge.observe(LOOP_MAX_SECONDS * 2, 1)  # one slow batch on the loop
    assert not judge.on_loop and judge.settled
    for _ in range(2 * WARMUP_BATCHES):
        judge.observe(CHEAP_SECONDS / 10, 1)
    assert not judge.on_loop  # never again


def test_the_judge_wants_consecutive_cheap_batches_that_stay_cheap_at_full_size() -> None:
    judge = InlineJudge("m", max_batch_size=32)
    for i in range(3 * WARMUP_BATCHES):
        judge.observe(CHEAP_SECONDS * (2 if i % 50 == 0 else 0.1), 1)  # a slow one now and then
    assert not judge.on_loop
    # 100 µs for one item would be 3.2 ms for 32: cheap now, too slow at full size
    for _ in range(2 * WARMUP_BATCHES):
        judge.observe(0.0001, 1)
    assert not judge.on_loop


class Where:
    """A handler recording on which thread each batch ran; ``delay`` seconds per batch."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.threads: list[int] = []

    def __call__(self, batch: list[Any]) -> list[Any]:
        self.threads.append(threading.get_ident())
        if self.delay:
            time.sleep(self.delay)
        return batch


async def one_at_a_time(batcher: Batcher, count: int) -> None:
    for i in range(count):
        assert await batcher.run([i]) == [i]


def test_a_cheap_model_runs_on_the_loop_after_its_warmup_and_leaves_it_when_slow() -> None:
    handler = Where()

    async def main() -> tuple[int, bool, bool]:
        batcher = Batcher(handler, BatchPolicy(max_batch_size=4))  # inline "auto"
        await batcher.start()
        loop_thread = threading.get_ident()
        await one_at_a_time(batcher, WARMUP_BATCHES + 20)
        moved = batcher.inline
        handler.delay = 2 * LOOP_MAX_SECONDS  # now it is slow: back to the thread
        await one_at_a_time(batcher, 2)
        handler.delay = 0.0
        await one_at_a_time(batcher, WARMUP_BATCHES + 20)
        stayed_off = not batcher.inline
        await batcher.close()
        return loop_thread, moved, stayed_off

    loop_thread, moved, stayed_off = asyncio.run(main())
    assert moved and stayed_off
    first = handler.threads[:WARMUP_BATCHES]
    assert loop_thread not in first  # the warm-up ran in the worker thread
    assert handler.threads[WARMUP_BATCHES + 5] == loop_thread  # then on the loop
    assert loop_thread not in handler.threads[-WARMUP_BATCHES:]  # and never again


def test_a_model_that_is_not_cheap_or_runs_several_instances_stays_on_its_threads() -> None:
    async def main(handler: Where, policy: BatchPolicy) -> bool:
        batcher = Batcher(handler, policy)
        await batcher.start()
        await one_at_a_time(batcher, WARMUP_BATCHES + 20)
        inline = batcher.inline
        await batcher.close()
        return inline

    assert not asyncio.run(main(Where(delay=2 * CHEAP_SECONDS), BatchPolicy()))
    assert not asyncio.run(main(Where(), BatchPolicy(instances=2)))
    assert not asyncio.run(main(Where(), BatchPolicy(inline="off")))


def test_a_batch_that_fails_on_the_loop_sends_the_model_back_to_its_thread() -> None:
    """State made in the worker thread (a SQLite connection, say) fails on the loop thread:
    after the first such failure the model runs in its thread again, and stays there."""
    made_in: list[int] = []

    def thread_bound(batch: list[Any]) -> list[Any]:
        if not made_in:
            made_in.append(threading.get_ident())
        if threading.get_ident() != made_in[0]:
            raise RuntimeError("objects created in a thread can only be used in that thread")
        return batch

    async def main() -> tuple[list[bool], bool]:
        batcher = Batcher(thread_bound, BatchPolicy(max_batch_size=4))
        await batcher.start()
        await one_at_a_time(batcher, WARMUP_BATCHES)  # on the thread: fine
        outcomes = []
        for i in range(5):
            try:
                outcomes.append(await batcher.run([i]) == [i])
            except RuntimeError:
                outcomes.append(False)
        inline = batcher.inline
        await batcher.close()
        return outcomes, inline

    outcomes, inline = asyncio.run(main())
    assert outcomes == [False, True, True, True, True]  # one failed batch, then back
    assert not inline
