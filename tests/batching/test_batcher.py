"""The Batcher's guarantees, driven with a manual clock so timing tests are exact."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from servekit.batching import Batcher, BatchPolicy
from servekit.clock import ManualClock
from servekit.errors import (
    Cancelled,
    DeadlineExceeded,
    Draining,
    ModelError,
    PayloadTooLarge,
    QueueFull,
)

WAIT = 5.0  # real-time bound on every wait, so a broken batcher fails instead of hanging


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


async def settle() -> None:
    """Let the event loop run every callback that is ready."""
    for _ in range(10):
        await asyncio.sleep(0)


class Recorder:
    """A handler that records each batch; optionally blocks until released."""

    def __init__(self, fn: Callable[[Any], Any] = lambda x: x * 10, gated: bool = False) -> None:
        self.fn = fn
        self.batches: list[list[Any]] = []
        self.gated = gated
        self.entered = threading.Semaphore(0)
        self.release = threading.Semaphore(0)

    def __call__(self, items: list[Any]) -> list[Any]:
        self.batches.append(list(items))
        self.entered.release()
        if self.gated and not self.release.acquire(timeout=WAIT):
            raise RuntimeError("test gate never opened")
        return [self.fn(x) for x in items]

    async def wait_entered(self) -> None:
        assert await asyncio.to_thread(self.entered.acquire, True, WAIT), "no batch started"

    @property
    def seen(self) -> list[Any]:
        return [x for batch in self.batches for x in batch]


async def started(handler: Any, clock: ManualClock | None = None, **policy: Any) -> Batcher:
    batcher = Batcher(handler, BatchPolicy(**policy), clock=clock or ManualClock())
    await batcher.start()
    return batcher


def submit(
    batcher: Batcher, items: list[Any], deadline: float | None = None
) -> asyncio.Future[list[Any]]:
    return batcher.submit(items, deadline=deadline)


async def outcome(future: asyncio.Future[list[Any]]) -> Any:
    return await asyncio.wait_for(asyncio.shield(future), WAIT)


def test_items_from_concurrent_callers_merge_into_one_batch() -> None:
    async def scenario() -> None:
        model = Recorder(gated=True)
        batcher = await started(model, max_batch_size=8)
        first = submit(batcher, [0])
        await model.wait_entered()  # the first item runs alone; the rest queue meanwhile
        works = [submit(batcher, [i]) for i in range(1, 6)]
        model.release.release(2)
        assert await outcome(first) == [0]
        assert [await outcome(w) for w in works] == [[10], [20], [30], [40], [50]]
        assert model.batches == [[0], [1, 2, 3, 4, 5]]
        await batcher.close()

    run(scenario())


def test_waits_max_latency_for_the_oldest_item_then_dispatches() -> None:
    async def scenario() -> None:
        clock = ManualClock()
        model = Recorder()
        # powers of two keep the clock arithmetic exact
        batcher = await started(
            model, clock, max_batch_size=4, idle_batch_size=4, max_latency=1 / 64
        )
        work = submit(batcher, [1])
        clock.advance(1 / 256)
        submit(batcher, [2])
        clock.advance(1 / 64 - 1 / 256 - 1 / 1024)
        await settle()
        assert model.batches == []  # just under max_latency after the oldest item: waiting
        clock.advance(1 / 1024)
        assert await outcome(work) == [10]
        assert model.batches == [[1, 2]]
        await batcher.close()

    run(scenario())


def test_dispatches_at_once_when_max_batch_size_is_reached() -> None:
    async def scenario() -> None:
        model = Recorder()
        batcher = await started(model, max_batch_size=3, idle_batch_size=3, max_latency=60)
        works = [submit(batcher, [i]) for i in range(3)]
        assert [await outcome(w) for w in works] == [[0], [10], [20]]  # clock never moved
        assert model.batches == [[0, 1, 2]]
        await batcher.close()

    run(scenario())


def test_idle_batch_size_dispatches_without_waiting_when_a_model_instance_is_free() -> None:
    async def scenario() -> None:
        model = Recorder()
        batcher = await started(model, max_batch_size=8, idle_batch_size=2, max_latency=60)
        lone = submit(batcher, [1])
        await settle()
        assert model.batches == []  # below idle_batch_size: waits for company or latency
        pair = submit(batcher, [2])
        assert await outcome(lone) == [10] and await outcome(pair) == [20]
        assert model.batches == [[1, 2]]
        await batcher.close()

    run(scenario())


def test_instances_run_batches_at_the_same_time() -> None:
    async def scenario() -> None:
        model = Recorder(gated=True)
        batcher = await started(model, max_batch_size=1, instances=2)
        a, b = submit(batcher, [1]), submit(batcher, [2])
        await model.wait_entered()
        await model.wait_entered()  # both batches are inside predict together
        model.release.release(2)
        assert await outcome(a) == [10] and await outcome(b) == [20]
        await batcher.close()

    run(scenario())


def test_request_larger_than_max_batch_size_is_split_and_reassembled_in_order() -> None:
    async def scenario() -> None:
        model = Recorder()
        batcher = await started(model, max_batch_size=4)
        work = submit(batcher, list(range(10)))
        assert await outcome(work) == [i * 10 for i in range(10)]
        assert [len(b) for b in model.batches] == [4, 4, 2]
        await batcher.close()

    run(scenario())


def test_predict_raising_fails_only_the_request_that_made_it_raise() -> None:
    async def scenario() -> None:
        def fn(x: int) -> int:
            if x == 13:
                raise ValueError("unlucky")
            return x

        model = Recorder(fn, gated=True)
        batcher = await started(model, max_batch_size=2)
        first = submit(batcher, [1])
        await model.wait_entered()
        bad, neighbour, later = submit(batcher, [13]), submit(batcher, [2]), submit(batcher, [3])
        model.release.release(5)
        assert await outcome(first) == [1]
        with pytest.raises(ValueError, match="unlucky"):
            await outcome(bad)
        assert await outcome(neighbour) == [2]  # shared the failing batch, then re-ran alone
        assert await outcome(later) == [3]  # the dispatcher kept going
        assert model.batches == [[1], [13, 2], [13], [2], [3]]
        assert (batcher.stats.failed, batcher.stats.isolation_reruns) == (1, 1)
        await batcher.close()

    run(scenario())


def test_an_exception_instance_as_output_fails_that_item_alone() -> None:
    async def scenario() -> None:
        def fn(x: int) -> Any:
            return KeyError(f"no such thing: {x}") if x < 0 else x

        model = Recorder(fn, gated=True)
        batcher = await started(model, max_batch_size=8)
        first = submit(batcher, [0])
        await model.wait_entered()
        good, bad, other = submit(batcher, [1]), submit(batcher, [-1]), submit(batcher, [2])
        model.release.release(2)
        await outcome(first)
        assert await outcome(good) == [1] and await outcome(other) == [2]
        with pytest.raises(KeyError, match="no such thing: -1"):
            await outcome(bad)
        assert model.batches[1] == [1, -1, 2]  # they really shared a batch
        await batcher.close()

    run(scenario())


def test_wrong_number_of_outputs_is_a_clear_model_error() -> None:
    async def scenario() -> None:
        batcher = await started(lambda items: items[:-1], max_batch_size=4)
        with pytest.raises(ModelError, match="returned 1 results for a batch of 2 items"):
            await outcome(submit(batcher, [1, 2]))
        await batcher.close()

    run(scenario())


def test_full_queue_refuses_new_work_at_once_with_retry_after() -> None:
    async def scenario() -> None:
        model = Recorder(gated=True)
        batcher = await started(model, max_batch_size=1, max_queue_size=3)
        running = submit(batcher, [0])
        await model.wait_entered()
        queued = [submit(batcher, [1, 2]), submit(batcher, [3])]  # 3 items queued: full
        refused = submit(batcher, [4])
        with pytest.raises(QueueFull, match="queue is full") as info:
            await outcome(refused)
        assert info.value.status == 429 and info.value.headers()["retry-after"] == "1"
        with pytest.raises(PayloadTooLarge, match="at most 3"):
            await outcome(submit(batcher, [1, 2, 3, 4]))
        model.release.release(10)
        assert await outcome(running) == [0]
        assert [await outcome(w) for w in queued] == [[10, 20], [30]]
        assert batcher.stats.refused == 2
        await batcher.close()

    run(scenario())


def test_expired_item_is_removed_before_it_reaches_the_model() -> None:
    async def scenario() -> None:
        clock = ManualClock()
        model = Recorder(gated=True)
        batcher = await started(model, clock, max_batch_size=4)
        blocker = submit(batcher, [0])
        await model.wait_entered()
        doomed = submit(batcher, [1], deadline=clock.now() + 0.050)
        patient = submit(batcher, [2], deadline=clock.now() + 10)
        clock.advance(0.049)
        await settle()
        assert not doomed.done()
        clock.advance(0.001)
        with pytest.raises(DeadlineExceeded, match="did not run it"):
            await outcome(doomed)  # answered at its deadline, while the model is still busy
        model.release.release(2)
        assert await outcome(blocker) == [0] and await outcome(patient) == [20]
        assert 1 not in model.seen
        assert batcher.stats.timed_out == 1
        await batcher.close()

    run(scenario())


def test_cancelled_item_never_reaches_the_model() -> None:
    async def scenario() -> None:
        model = Recorder(gated=True)
        batcher = await started(model, max_batch_size=4)
        blocker = submit(batcher, [0])
        await model.wait_entered()
        disconnected = asyncio.get_running_loop().create_future()
        gone = asyncio.create_task(batcher.run([1], cancelled_by=disconnected))
        kept = submit(batcher, [2])
        await settle()
        disconnected.set_result(None)
        with pytest.raises(Cancelled, match="disconnected"):
            await asyncio.wait_for(gone, WAIT)
        model.release.release(2)
        assert await outcome(blocker) == [0] and await outcome(kept) == [20]
        assert model.seen == [0, 2]
        assert batcher.stats.cancelled == 1 and batcher.queued_items == 0
        await batcher.close()

    run(scenario())


def test_awaiting_task_cancelled_cancels_its_work() -> None:
    async def scenario() -> None:
        model = Recorder(gated=True)
        batcher = await started(model, max_batch_size=4)
        blocker = submit(batcher, [0])
        await model.wait_entered()
        task = asyncio.create_task(batcher.run([7]))
        await settle()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        model.release.release(2)
        await outcome(blocker)
        await batcher.close()
        assert 7 not in model.seen

    run(scenario())


def test_cancellation_token_set_before_dispatch_drops_the_item() -> None:
    async def scenario() -> None:
        model = Recorder(gated=True)
        batcher = await started(model, max_batch_size=4)
        blocker = submit(batcher, [0])
        await model.wait_entered()
        token = threading.Event()
        work = batcher.submit([5], token=token)
        token.set()
        model.release.release(2)
        with pytest.raises(Cancelled, match="cancellation token"):
            await outcome(work)
        await outcome(blocker)
        assert 5 not in model.seen
        await batcher.close()

    run(scenario())


def test_close_finishes_queued_work_before_stopping() -> None:
    async def scenario() -> None:
        clock = ManualClock()
        model = Recorder()
        # a huge latency window: only draining can dispatch these items
        batcher = await started(model, clock, max_batch_size=8, idle_batch_size=8, max_latency=3600)
        works = [submit(batcher, [i]) for i in range(3)]
        await batcher.close(timeout=WAIT)
        assert [w.result() for w in works] == [[0], [10], [20]]
        with pytest.raises(Draining, match="shutting down"):
            await outcome(submit(batcher, [9]))

    run(scenario())


def test_close_timeout_fails_unfinished_work_clearly_instead_of_losing_it() -> None:
    async def scenario() -> None:
        model = Recorder(gated=True)
        batcher = await started(model, max_batch_size=1)
        running, queued = submit(batcher, [1]), submit(batcher, [2])
        await model.wait_entered()
        await batcher.close(timeout=0.05)
        for work in (running, queued):
            with pytest.raises(Draining, match="shut down before this work ran"):
                await outcome(work)
        model.release.release(5)

    run(scenario())


def test_thread_submissions_reach_the_same_batcher() -> None:
    async def scenario() -> None:
        model = Recorder()
        batcher = await started(model, max_batch_size=16)

        def submit_all() -> list[Any]:
            futures = [batcher.submit_threadsafe([i]) for i in range(40)]
            return [f.result(WAIT) for f in futures]

        assert await asyncio.to_thread(submit_all) == [[i * 10] for i in range(40)]
        await batcher.close()

    run(scenario())


def test_stats_count_batches_sizes_and_outcomes() -> None:
    async def scenario() -> None:
        model = Recorder()
        batcher = await started(model, max_batch_size=4)
        await outcome(submit(batcher, [1, 2, 3, 4, 5]))
        stats = batcher.stats.snapshot()
        assert stats["requests"] == 1 and stats["items"] == 5 and stats["completed"] == 1
        assert stats["batches"] == 2 and stats["batch_sizes"] == {1: 1, 4: 1}
        await batcher.close()

    run(scenario())
