"""One bad submission never fails its neighbours: batch keys and re-running failed batches."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np
import pytest

from servekit.batching import Batcher, BatchPolicy
from servekit.batching.keys import BatchKey, shape_key
from servekit.clock import ManualClock
from servekit.errors import BadRequest, Cancelled, ModelError

WAIT = 5.0


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


class Model:
    """Records each batch; the first batch waits until released so the rest can queue."""

    def __init__(self, fn: Callable[[list[Any]], list[Any]]) -> None:
        self.fn = fn
        self.batches: list[list[Any]] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, items: list[Any]) -> list[Any]:
        self.batches.append(list(items))
        if not self.entered.is_set():
            self.entered.set()
            if not self.release.wait(WAIT):
                raise RuntimeError("test gate never opened")
        return self.fn(items)

    async def wait_entered(self) -> None:
        assert await asyncio.to_thread(self.entered.wait, WAIT), "no batch started"


def unlucky(items: list[Any]) -> list[Any]:
    """Raises on the whole batch if any item is 13."""
    if 13 in items:
        raise ValueError("unlucky 13")
    return [x * 10 for x in items]


def stacked(items: list[np.ndarray]) -> list[Any]:
    return [float(row.sum()) for row in np.stack(items)]


async def started(
    model: Model, first_item: Any = 0, key: BatchKey | None = None, **policy: Any
) -> tuple[Batcher, asyncio.Future[list[Any]]]:
    """A batcher whose only instance is busy with ``first_item``: what is submitted queues."""
    batcher = Batcher(model, BatchPolicy(**policy), clock=ManualClock(), batch_key=key)
    await batcher.start()
    first = batcher.submit([first_item])
    await model.wait_entered()
    return batcher, first


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def outcome(future: asyncio.Future[list[Any]]) -> Any:
    return await asyncio.wait_for(asyncio.shield(future), WAIT)


# ---------------------------------------------------------------------------- batch keys
def test_arrays_of_different_shapes_never_share_a_batch() -> None:
    async def scenario() -> None:
        model = Model(stacked)
        batcher, first = await started(model, np.zeros(1), shape_key, max_batch_size=8)
        rows = [np.ones(3), np.ones(2), np.full(3, 2.0), np.full(2, 2.0)]
        works = [batcher.submit([row]) for row in rows]
        model.release.set()
        await outcome(first)
        assert [await outcome(w) for w in works] == [[3.0], [2.0], [6.0], [4.0]]
        assert [[r.shape for r in b] for b in model.batches[1:]] == [[(3,), (3,)], [(2,), (2,)]]
        await batcher.close()

    run(scenario())


def test_the_oldest_item_goes_first_across_keys() -> None:
    async def scenario() -> None:
        model = Model(lambda items: [len(s) for s in items])
        batcher, first = await started(model, "x", len, max_batch_size=2)
        words = ["b1", "a", "b2", "c", "b3"]  # keys: 2, 1, 2, 1, 2
        works = [batcher.submit([w]) for w in words]
        model.release.set()
        await outcome(first)
        assert [await outcome(w) for w in works] == [[2], [1], [2], [1], [2]]
        assert model.batches[1:] == [["b1", "b2"], ["a", "c"], ["b3"]]
        await batcher.close()

    run(scenario())


def test_a_submission_of_mixed_shapes_is_split_by_key_and_reassembled_in_order() -> None:
    async def scenario() -> None:
        model = Model(stacked)
        batcher, first = await started(model, np.zeros(1), shape_key, max_batch_size=8)
        work = batcher.submit([np.ones(3), np.ones(2), np.full(3, 2.0), np.ones(3, np.int64)])
        model.release.set()
        await outcome(first)
        assert await outcome(work) == [3.0, 2.0, 6.0, 3.0]
        shapes = [[(r.shape, r.dtype.kind) for r in b] for b in model.batches[1:]]
        assert shapes == [[((3,), "f"), ((3,), "f")], [((2,), "f")], [((3,), "i")]]
        assert batcher.stats.completed == 2 and batcher.queued_items == 0
        await batcher.close()

    run(scenario())


def test_no_batch_key_lets_every_item_share_a_batch() -> None:
    async def scenario() -> None:
        model = Model(lambda items: [len(x) for x in items])
        batcher, first = await started(model, np.zeros(1), max_batch_size=8)
        works = [batcher.submit([np.ones(n)]) for n in (3, 2, 1)]
        model.release.set()
        await outcome(first)
        assert [await outcome(w) for w in works] == [[3], [2], [1]]
        assert len(model.batches[1]) == 3
        await batcher.close()

    run(scenario())


def test_cancelled_items_of_other_keys_are_dropped_as_the_dispatch_looks_past_them() -> None:
    async def scenario() -> None:
        model = Model(lambda items: [len(s) for s in items])
        batcher, first = await started(model, "x", len, max_batch_size=4)
        token = threading.Event()
        a, bb, c = batcher.submit(["a"]), batcher.submit(["bb"]), batcher.submit(["c"])
        dropped = batcher.submit(["dd"], token=token)
        token.set()
        model.release.set()
        assert [await outcome(w) for w in (first, a, bb, c)] == [[1], [1], [2], [1]]
        with pytest.raises(Cancelled, match="cancellation token"):
            await outcome(dropped)
        assert model.batches[1:] == [["a", "c"], ["bb"]] and batcher.queued_items == 0
        await batcher.close()

    run(scenario())


# ---------------------------------------------------------------------------- isolation
def test_a_failing_batch_of_one_submission_is_not_rerun() -> None:
    async def scenario() -> None:
        model = Model(unlucky)
        batcher, first = await started(model, max_batch_size=8)
        bad = batcher.submit([2, 13])
        model.release.set()
        await outcome(first)
        with pytest.raises(ValueError, match="unlucky 13"):
            await outcome(bad)
        assert model.batches[1:] == [[2, 13]]
        assert (batcher.stats.failed, batcher.stats.isolation_reruns) == (1, 0)
        await batcher.close()

    run(scenario())


def test_when_every_submission_fails_alone_each_gets_its_own_error_once() -> None:
    async def scenario() -> None:
        def broken(items: list[Any]) -> list[Any]:
            raise RuntimeError(f"broken on {items}")

        model = Model(broken)
        batcher, first = await started(model, max_batch_size=8)
        works = [batcher.submit([i, i + 1]) for i in (1, 3, 5)]
        model.release.set()
        with pytest.raises(RuntimeError):
            await outcome(first)
        for i, work in zip((1, 3, 5), works, strict=True):
            with pytest.raises(RuntimeError, match=rf"broken on \[{i}, {i + 1}\]"):
                await outcome(work)
        assert model.batches[1:] == [[1, 2, 3, 4, 5, 6], [1, 2], [3, 4], [5, 6]]  # once each
        stats = batcher.stats
        assert (stats.failed, stats.completed, stats.isolation_reruns) == (4, 0, 1)
        await batcher.close()

    run(scenario())


def test_a_submission_cancelled_while_its_batch_ran_is_not_rerun() -> None:
    async def scenario() -> None:
        in_second, end_second = threading.Event(), threading.Event()

        def fn(items: list[Any]) -> list[Any]:
            if items == [13, 2]:
                in_second.set()
                end_second.wait(WAIT)
            return unlucky(items)

        model = Model(fn)
        batcher, first = await started(model, max_batch_size=8)
        bad, good = batcher.submit([13]), batcher.submit([2])
        model.release.set()
        assert await outcome(first) == [0]
        assert await asyncio.to_thread(in_second.wait, WAIT)
        bad.cancel()  # its items are in the running batch: too late to drop them
        await settle()
        end_second.set()
        assert await outcome(good) == [20]
        assert model.batches[1:] == [[13, 2], [2]]  # the cancelled one was not re-run
        with pytest.raises(asyncio.CancelledError):
            await bad
        stats = batcher.stats
        assert stats.completed + stats.failed + stats.cancelled == 3
        await batcher.close()

    run(scenario())


def test_a_rerun_returning_the_wrong_count_fails_that_submission_alone() -> None:
    async def scenario() -> None:
        def fussy(items: list[Any]) -> list[Any]:
            if len(items) > 1 and 13 in items:
                raise RuntimeError("cannot do 13 in company")
            return [] if items == [13] else [x * 10 for x in items]

        model = Model(fussy)
        batcher, first = await started(model, max_batch_size=8)
        good, bad = batcher.submit([1]), batcher.submit([13])
        model.release.set()
        await outcome(first)
        assert await outcome(good) == [10]
        with pytest.raises(ModelError, match="returned 0 results for 1 items"):
            await outcome(bad)
        await batcher.close()

    run(scenario())


def test_thread_callers_in_a_failed_batch_get_their_own_outcome() -> None:
    async def scenario() -> None:
        model = Model(unlucky)
        batcher, first = await started(model, max_batch_size=16)

        def submit_all() -> list[Any]:
            futures = [batcher.submit_threadsafe([i]) for i in range(10, 16)]
            model.release.set()
            answers: list[Any] = []
            for future in futures:
                try:
                    answers.append(future.result(WAIT))
                except ValueError as exc:
                    answers.append(str(exc))
            return answers

        answers = await asyncio.to_thread(submit_all)
        assert answers == [[100], [110], [120], "unlucky 13", [140], [150]]
        await outcome(first)
        await batcher.close()
        stats = batcher.stats
        assert (stats.completed, stats.failed) == (6, 1)
        assert stats.requests == 7 and stats.isolation_reruns == 1

    run(scenario())


def test_a_rerun_that_outlives_close_is_answered_with_draining() -> None:
    async def scenario() -> None:
        release_rerun = threading.Event()

        def slow_alone(items: list[Any]) -> list[Any]:
            if items == [0]:
                return items
            if len(items) > 1:
                raise RuntimeError("not together")
            release_rerun.wait(WAIT)
            return items

        model = Model(slow_alone)
        batcher, first = await started(model, max_batch_size=8)
        works = [batcher.submit([1]), batcher.submit([2])]
        model.release.set()
        await outcome(first)
        await batcher.close(timeout=0.05)
        for work in works:
            with pytest.raises(Exception, match="shut down before this work ran"):
                await outcome(work)
        release_rerun.set()
        assert batcher.stats.failed == 2

    run(scenario())


def test_gone_placeholder_is_never_an_answer() -> None:
    """The slots of a finished submission hold an error, not a result, should one slip by."""
    from servekit.batching.batcher import _GONE

    assert isinstance(_GONE, Cancelled)


def test_a_batch_key_that_cannot_read_an_item_refuses_that_request_alone() -> None:
    async def scenario() -> None:
        model = Model(lambda items: [x["v"] for x in items])
        batcher, first = await started(
            model, {"k": 0, "v": 0}, lambda item: item["k"], max_batch_size=8
        )
        good, bad = batcher.submit([{"k": 1, "v": 1}]), batcher.submit([{"v": 2}])
        with pytest.raises(BadRequest, match="batch_key rejected an item: 'k'"):
            await outcome(bad)
        model.release.set()
        assert await outcome(good) == [1]
        await outcome(first)
        await batcher.close()
        assert (batcher.stats.refused, batcher.queued_items) == (1, 0)

    run(scenario())
