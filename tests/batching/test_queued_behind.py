"""A full batch may wait in the worker's queue while the model is busy: one per instance."""

from __future__ import annotations

import asyncio

import pytest

from servekit.batching import Batcher, BatchPolicy
from servekit.clock import ManualClock
from servekit.errors import DeadlineExceeded, QueueFull

from .test_batcher import Recorder, run, settle


def test_a_full_batch_waits_behind_the_running_one_and_only_one() -> None:
    async def main() -> None:
        recorder = Recorder(gated=True)
        batcher = Batcher(recorder, BatchPolicy(max_batch_size=2), clock=ManualClock())
        await batcher.start()
        first = asyncio.ensure_future(batcher.run([0]))
        await recorder.wait_entered()  # the model is busy with [0]
        rest = [asyncio.ensure_future(batcher.run([i])) for i in range(1, 6)]
        await settle()
        # [1, 2] is full: it waits in the worker's queue; [3, 4] is full too, but only one
        # batch per instance may wait there, and [5] is not full
        assert batcher.stats.batches == 2
        assert batcher.queued_items == 5  # [1, 2] still waits, behind [0]; [3, 4, 5] queued
        for _ in range(4):
            recorder.release.release()
        assert await first == [0]
        assert [await r for r in rest] == [[10], [20], [30], [40], [50]]
        assert recorder.batches == [[0], [1, 2], [3, 4], [5]]
        await batcher.close()

    run(main())


def test_a_part_batch_still_waits_for_the_model_to_be_free() -> None:
    async def main() -> None:
        recorder = Recorder(gated=True)
        batcher = Batcher(recorder, BatchPolicy(max_batch_size=4), clock=ManualClock())
        await batcher.start()
        first = asyncio.ensure_future(batcher.run([0]))
        await recorder.wait_entered()
        more = [asyncio.ensure_future(batcher.run([i])) for i in range(1, 4)]
        await settle()
        assert batcher.stats.batches == 1 and batcher.queued_items == 3  # it may still grow
        recorder.release.release()
        recorder.release.release()
        assert await first == [0]
        assert [await m for m in more] == [[10], [20], [30]]
        assert recorder.batches == [[0], [1, 2, 3]]
        await batcher.close()

    run(main())


def test_a_batch_queued_behind_still_counts_against_the_queue_size() -> None:
    """max_queue_size bounds what waits: a full batch queued behind the running one waits."""

    async def main() -> None:
        recorder = Recorder(gated=True)
        policy = BatchPolicy(max_batch_size=1, max_queue_size=1)
        batcher = Batcher(recorder, policy, clock=ManualClock())
        await batcher.start()
        first = asyncio.ensure_future(batcher.run([0]))
        await recorder.wait_entered()
        second = asyncio.ensure_future(batcher.run([1]))  # queued behind [0]: waits
        await settle()
        assert batcher.stats.batches == 2
        with pytest.raises(QueueFull):
            await batcher.run([2])
        recorder.release.release()
        assert await first == [0]
        await recorder.wait_entered()  # [1] runs: nothing waits, so room again
        third = asyncio.ensure_future(batcher.run([3]))
        recorder.release.release()
        recorder.release.release()
        assert await second == [10] and await third == [30]
        await batcher.close()

    run(main())


def test_items_with_a_deadline_stay_queued_where_they_can_time_out() -> None:
    async def main() -> None:
        clock = ManualClock()
        recorder = Recorder(gated=True)
        batcher = Batcher(recorder, BatchPolicy(max_batch_size=1), clock=clock)
        await batcher.start()
        first = asyncio.ensure_future(batcher.run([0]))
        await recorder.wait_entered()
        late = asyncio.ensure_future(batcher.run([1], deadline=clock.now() + 1.0))
        await settle()
        assert batcher.stats.batches == 1  # not queued behind: it may still time out
        clock.advance(2.0)
        with pytest.raises(DeadlineExceeded):
            await late
        recorder.release.release()
        assert await first == [0]
        assert recorder.batches == [[0]]
        await batcher.close()

    run(main())


def test_a_cancelled_submission_queued_behind_never_reaches_the_model() -> None:
    async def main() -> None:
        recorder = Recorder(gated=True)
        batcher = Batcher(recorder, BatchPolicy(max_batch_size=2), clock=ManualClock())
        await batcher.start()
        first = asyncio.ensure_future(batcher.run([0]))
        await recorder.wait_entered()
        kept = asyncio.ensure_future(batcher.run([1]))
        doomed = batcher.submit([2])  # [1, 2] is full: queued behind [0]
        await settle()
        assert batcher.stats.batches == 2
        doomed.cancel()
        await settle()
        recorder.release.release()
        recorder.release.release()
        assert await first == [0] and await kept == [10]
        assert recorder.batches == [[0], [1]]  # the cancelled item was left out
        await batcher.close()

    run(main())


def test_work_arriving_while_the_model_is_busy_does_not_wake_the_dispatcher() -> None:
    """One wake-up per batch, not one per request: the finishing batch dispatches the rest;
    only a deadline earlier than the dispatcher's timer needs it to look again."""

    async def main() -> None:
        clock = ManualClock()
        recorder = Recorder(gated=True)
        batcher = Batcher(recorder, BatchPolicy(max_batch_size=32), clock=clock)
        await batcher.start()
        first = asyncio.ensure_future(batcher.run([0]))
        await recorder.wait_entered()
        await settle()
        wakes: list[None] = []
        wake = batcher._wake

        def counted() -> None:
            wakes.append(None)
            wake()

        batcher._wake = counted  # type: ignore[method-assign]
        rest = [asyncio.ensure_future(batcher.run([i])) for i in range(1, 11)]
        await settle()
        assert wakes == []
        timed = asyncio.ensure_future(batcher.run([11], deadline=clock.now() + 60))
        await settle()
        assert len(wakes) == 1  # the dispatcher arms a timer for the deadline
        recorder.release.release()
        recorder.release.release()
        assert await first == [0]
        assert [await r for r in rest] == [[10 * i] for i in range(1, 11)]
        assert await timed == [110]
        assert recorder.batches == [[0], list(range(1, 12))]
        await batcher.close()

    run(main())


def test_a_shared_disconnect_signal_keeps_no_callback_of_finished_work() -> None:
    """One connection's signal serves all its requests: each leaves nothing behind on it."""

    async def main() -> None:
        batcher = Batcher(Recorder(), BatchPolicy(), clock=ManualClock())
        await batcher.start()
        connection_lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for i in range(100):
            assert await batcher.run([i], cancelled_by=connection_lost) == [10 * i]
        assert not connection_lost._callbacks  # type: ignore[attr-defined]
        await batcher.close()

    run(main())
