"""The Batcher: the one place that queues, groups, times out, cancels and dispatches work.

Callers submit a list of items; the batcher merges items from many callers into batches of
at most ``max_batch_size`` and runs ``handler(batch) -> results`` in its own worker threads,
so the event loop keeps forming the next batch while one runs; an ``async def`` handler runs
on the event loop instead, with no thread hop, and so does a plain one with ``policy.inline``
"on", or "auto" (the default) once it proved to take microseconds (``batching.inline``):
while it runs, the loop serves nothing else. Every
submission gets exactly one outcome: its results in order, or one error.

One bad request never fails its neighbours: items whose batch keys differ (by default, arrays
of different shapes) never share a batch, and when ``handler`` raises on a batch holding
several submissions, each submission is re-run alone, once, so only the one that makes it
raise gets the error.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import inspect
import itertools
import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, cast

from servekit.batching._work import CancelToken, ThreadFuture, Work
from servekit.batching.adaptive import AdaptiveDispatch
from servekit.batching.failures import FailureLog
from servekit.batching.inline import InlineJudge
from servekit.batching.keys import BatchKey, shape_key
from servekit.batching.policy import BatchPolicy
from servekit.batching.stats import BatcherStats
from servekit.clock import Clock, LoopClock, TimerHandle
from servekit.errors import (
    BadRequest,
    Cancelled,
    DeadlineExceeded,
    Draining,
    ModelError,
    PayloadTooLarge,
    QueueFull,
    ServekitError,
)

log = logging.getLogger("servekit.batching")

Handler = Callable[[list[Any]], Sequence[Any]] | Callable[[list[Any]], Awaitable[Sequence[Any]]]
"""One result (or an ``Exception`` instance) per item, in order; a plain function runs in a
worker thread, an ``async def`` one on the event loop."""

BatchHook = Callable[[list[tuple[Work, int, int]], int, float, float, bool], None]
"""``on_batch(parts, size, mean_wait, predict_seconds, ok)``: in the worker thread, after each
batch ran and before its results are handed over; ``parts`` are ``(work, start, end)``."""

_Part = tuple[Work, int, int]
_SyncHandler = Callable[[list[Any]], Sequence[Any]]
_AsyncHandler = Callable[[list[Any]], Awaitable[Sequence[Any]]]
_MAX_SKIPPED = 256  # chunks of other keys one dispatch looks past for items of its key
_LOOP_PASS_SECONDS = 0.002  # an inline model's batches run back to back for up to this long
_UNSET: Any = object()
_GONE = Cancelled("the submission had an outcome before its batch was re-run")


class Batcher:
    """Dynamic batcher in front of a ``handler``; see the module docstring."""

    def __init__(
        self,
        handler: Handler,
        policy: BatchPolicy | None = None,
        *,
        name: str = "model",
        clock: Clock | None = None,
        batch_key: BatchKey | None = shape_key,
    ) -> None:
        """``batch_key(item)``: only items with equal keys share a batch (None: any may)."""
        self.handler = handler
        self.policy = policy or BatchPolicy()
        self.name = name
        self.stats = BatcherStats()
        self.batch_key = batch_key
        self._clock = clock
        self._loop: asyncio.AbstractEventLoop | None = None
        # [work, start, end, key] chunks, oldest first; a submission whose items have
        # different keys is one chunk per run of equal keys
        self._queue: deque[list[Any]] = deque()
        self._queued = 0  # items waiting in live chunks
        self._intake: deque[Work] = deque()  # submissions from other threads
        self._deadlines: list[tuple[float, int, Work]] = []
        self._seq = itertools.count()
        self._running = 0
        # batch id -> (parts, when it was dispatched on the batcher's clock)
        self._inflight: dict[int, tuple[list[_Part], float]] = {}
        self._batch_ids = itertools.count()
        self._jobs: queue.SimpleQueue[tuple[int, list[Any], list[_Part], float] | None] = (
            queue.SimpleQueue()
        )
        # batches the worker threads ran, waiting for the loop; one wake-up posted at a time
        self._finished: deque[
            tuple[int, Sequence[Any] | None, BaseException | None, float, int, BaseException | None]
        ] = deque()
        self._finish_posted = False
        # sizes of the batches queued behind running ones (they still count as waiting)
        self._behind: deque[int] = deque()
        self._behind_items = 0
        self._threads: list[threading.Thread] = []
        self._wakeup: asyncio.Future[None] | None = None
        self._sleeping = False
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._thread_cancel = self._on_thread_cancel  # one bound method for every submission
        self._failures = FailureLog(log, name, self.now)
        self._failure_timer: TimerHandle | None = None
        #: per-batch observer (engine events, request-log metrics); None: nothing is called
        self.on_batch: BatchHook | None = None
        #: ``async def`` handler: batches run as tasks on the loop, no worker threads
        self.awaited = inspect.iscoroutinefunction(handler)
        #: batches run on the event loop now (``async def`` handler, ``policy.inline`` "on",
        #: or "auto" once the model proved cheap)
        mode = self.policy.inline
        self.inline = self.awaited or mode is True or mode == "on"
        auto = mode == "auto" and not self.inline and self.policy.instances == 1
        self._judge = InlineJudge(name, self.policy.max_batch_size) if auto else None
        self._batch_tasks: set[asyncio.Task[None]] = set()
        #: while an inline pass runs: the batches dispatched meanwhile, which it runs next
        self._loop_pass: list[tuple[int, list[Any], list[_Part], float]] | None = None
        #: the learnt cost and arrivals of ``dispatch = "adaptive"`` (None: "idle")
        self.adaptive = AdaptiveDispatch() if self.policy.dispatch == "adaptive" else None
        self._window_end = -math.inf  # items admitted before it count as window arrivals
        self._window_start = 0.0
        self._bins = self.adaptive.bins if self.adaptive is not None else []
        self._bin_scale = 0.0
        self._window_count = 0
        self._last_arrival = -math.inf
        self._sleep_until: float | None = None  # the dispatch loop's timer, while it sleeps

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Bind to the running loop and start the dispatcher and worker threads."""
        if self._task is not None:
            return
        self._loop = asyncio.get_running_loop()
        if self._clock is None:
            self._clock = LoopClock(self._loop)
        for i in range(0 if self.inline else self.policy.instances):
            thread = threading.Thread(
                target=self._worker, name=f"servekit-{self.name}-{i}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        self._task = self._loop.create_task(self._dispatch_loop(), name=f"batcher-{self.name}")

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def queued_items(self) -> int:
        """Items waiting: queued, or in a batch queued behind a running one."""
        return self._queued + self._behind_items

    @property
    def batches_behind(self) -> int:
        """Batches dispatched to a worker but still waiting behind a running one."""
        return len(self._behind)

    async def close(self, timeout: float | None = 30.0) -> None:
        """Stop taking work, finish what is queued, then stop; after ``timeout`` fail the rest."""
        self._drain_intake()  # submitted before close(): queued, so it is finished, not refused
        self._closing = True
        self._wake()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except (asyncio.TimeoutError, TimeoutError):
                self._task.cancel()
        # whatever is left (work that outlived the timeout, late submissions) fails clearly
        self._fail_everything(Draining(f"model '{self.name}' shut down before this work ran"))
        if self._failure_timer is not None:
            self._failure_timer.cancel()
        self._summarise_failures(everything=True)  # repeats still counted get their line
        for _ in self._threads:
            self._jobs.put(None)
        self._threads.clear()

    # ------------------------------------------------------------------ submitting
    async def run(
        self,
        items: Sequence[Any],
        *,
        deadline: float | None = None,
        cancelled_by: asyncio.Future[Any] | None = None,
    ) -> list[Any]:
        """Submit from the event loop and wait for the results (in order).

        ``deadline`` is on :meth:`now`'s clock; when ``cancelled_by`` completes (e.g. a task
        that waits for the client to disconnect) the items are dropped if they have not run.
        Cancelling the awaiting task cancels the work the same way.
        """
        loop = self._loop or asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        work = Work(items, future, deadline=deadline)
        watcher = None
        if cancelled_by is not None:
            watcher = functools.partial(self._on_disconnect, work)
            cancelled_by.add_done_callback(watcher)
        self._submit(work)
        try:
            return await future
        except asyncio.CancelledError:
            self._cancel(work, "the caller cancelled")
            raise
        finally:
            # a connection's signal outlives its requests: leave no callback behind on it
            if watcher is not None:
                cancelled_by.remove_done_callback(watcher)  # type: ignore[union-attr]

    def submit(
        self,
        items: Sequence[Any],
        *,
        deadline: float | None = None,
        token: CancelToken | None = None,
    ) -> asyncio.Future[list[Any]]:
        """Submit from the event loop; cancelling the returned future cancels the work."""
        loop = self._loop or asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        work = Work(items, future, deadline=deadline, token=token)
        future.add_done_callback(functools.partial(self._on_abandoned, work))
        self._submit(work)
        return future

    def submit_threadsafe(
        self, items: Sequence[Any], *, token: CancelToken | None = None
    ) -> ThreadFuture:
        """Submit from any thread; ``cancel()`` on the returned future drops the work.

        The result is handed to the caller by whichever thread finishes the work first
        (usually the model's worker thread, without a trip through the event loop).
        """
        work = ThreadFuture(items, self._thread_cancel, token=token)
        self._intake.append(work)
        if self._sleeping and self._loop is not None:
            self._sleeping = False  # one wake-up is enough for every thread racing here
            self._loop.call_soon_threadsafe(self._wake)
        return work

    def _submit(self, work: Work) -> None:
        self._admit(work)
        if work.queued and self._running >= self.policy.instances and not self._closing:
            # Every instance is busy: the next batch to finish dispatches what waits, so the
            # dispatcher need not look now (one wake-up per batch, not one per request),
            # unless a full batch may queue behind, or this deadline precedes its timer.
            timer, deadline = self._sleep_until, work.deadline
            if (deadline is None or (timer is not None and timer <= deadline)) and not (
                self._may_queue_full_batch(self._queued)
            ):
                return
        if work.queued:
            # An idle model takes the work now, without a trip through the dispatcher task.
            dispatched = False
            wake_at = None
            if self._running < self.policy.instances and not self._intake:
                dispatched, wake_at = self._try_dispatch(self._clock.now())  # type: ignore[union-attr]
            # a held batch: the sleeping dispatcher's timer already looks again in time
            if not dispatched and (
                wake_at is None or self._sleep_until is None or wake_at < self._sleep_until
            ):
                self._wake()

    def _on_disconnect(self, work: Work, signal: asyncio.Future[Any]) -> None:
        if not work.finished and not signal.cancelled():
            self._cancel(work, "the client disconnected")

    def _on_abandoned(self, work: Work, future: asyncio.Future[list[Any]]) -> None:
        if future.cancelled():
            self._cancel(work, "the caller cancelled")

    def _on_thread_cancel(self, work: ThreadFuture) -> None:
        loop = self._loop
        if loop is not None:
            # a closed loop raises RuntimeError: then nothing is queued any more
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._abandon, work)

    def _abandon(self, work: Work) -> None:
        """A thread caller cancelled ``work`` (it holds the outcome): drop its items."""
        self._unqueue(work)
        self.stats.cancelled += 1

    def _unqueue(self, work: Work) -> None:
        self._queued -= work.queued
        work.queued = 0

    def _cancel(self, work: Work, reason: str) -> None:
        """Fail ``work`` with ``Cancelled`` unless it already has an outcome (loop thread)."""
        if not work.finished:
            self._fail(work, Cancelled(reason))

    def now(self) -> float:
        """The batcher's clock (monotonic seconds)."""
        return self._clock.now() if self._clock is not None else time.monotonic()

    # ------------------------------------------------------------------ loop side
    def _admit(self, work: Work) -> None:
        stats = self.stats
        stats.requests += 1
        n = len(work.items)
        stats.items += n
        if work.finished:  # cancelled while it waited in the intake: it has its outcome already
            return
        if self._closing:
            stats.refused += 1
            self._fail(work, Draining(f"model '{self.name}' is shutting down"), counted=True)
            return
        if n == 0:
            work.results = []
            self._complete(work)
            return
        limit = self.policy.max_queue_size
        if n > limit:
            stats.refused += 1
            self._fail(
                work,
                PayloadTooLarge(
                    f"request has {n} items but model '{self.name}' queues at most {limit}"
                ),
                counted=True,
            )
            return
        waiting = self._queued + self._behind_items  # a batch queued behind one still waits
        if waiting + n > limit:
            stats.refused += 1
            self._fail(
                work,
                QueueFull(
                    f"model '{self.name}' queue is full ({waiting} of {limit} items); retry later",
                    retry_after=1.0,
                ),
                counted=True,
            )
            return
        key: Hashable = None
        chunks: list[list[Any]] | None = None  # only for a submission of several keys
        key_of = self.batch_key
        if key_of is not None:
            try:
                if n == 1:
                    key = key_of(work.items[0])
                else:
                    chunks = _chunks(work, key_of)
            except Exception as exc:  # a custom key that cannot read an item: refuse it
                stats.refused += 1
                self._fail(work, BadRequest(f"batch_key rejected an item: {exc}"), counted=True)
                return
        now = self._clock.now()  # type: ignore[union-attr]
        work.enqueued_at = now
        work.queued = n
        self._queued += n
        self._last_arrival = now
        if now < self._window_end:
            self._window_count += n
            self._bins[int((now - self._window_start) * self._bin_scale)] += n
        if chunks is None:
            self._queue.append([work, 0, n, key])
        else:
            self._queue.extend(chunks)
        # Event-loop callers are answered at their deadline by the timer heap; thread callers
        # time out by themselves, and expired items are dropped at dispatch either way.
        if work.deadline is not None and work.waiter is not None:
            heapq.heappush(self._deadlines, (work.deadline, next(self._seq), work))

    def _drain_intake(self) -> None:
        intake = self._intake
        while intake:
            self._admit(intake.popleft())

    async def _dispatch_loop(self) -> None:
        while True:
            try:
                if self._intake:
                    self._drain_intake()
                now = self._clock.now()  # type: ignore[union-attr]
                if self._deadlines and self._deadlines[0][0] <= now:
                    self._expire(now)
                if self._closing and not self._queued and not self._running:
                    return
                dispatched, wake_at = self._try_dispatch(now)
                if dispatched:
                    continue
                next_deadline = self._next_deadline()
                if next_deadline is not None and (wake_at is None or next_deadline < wake_at):
                    wake_at = next_deadline
                await self._sleep(wake_at)
            except asyncio.CancelledError:
                raise
            except Exception:  # the dispatcher is a boundary: report and keep serving
                log.exception("batcher %s: unexpected error in dispatch loop", self.name)
                await asyncio.sleep(0.01)

    def _try_dispatch(self, now: float) -> tuple[bool, float | None]:
        """Dispatch a batch if the policy says so; else say when the oldest item is due."""
        policy = self.policy
        queued = self._queued
        if not queued:
            return False, None
        if self._running >= policy.instances and not self._may_queue_full_batch(queued):
            return False, None
        if not self._closing:
            if queued < policy.idle_batch_size:
                due = self._oldest_enqueued() + policy.max_latency
                if now < due:
                    return False, due
            elif self.adaptive is not None and queued < policy.max_batch_size:
                latest = self._oldest_enqueued() + policy.max_latency
                hold = self.adaptive.hold_until(now, queued, self._last_arrival, latest)
                if hold is not None:
                    return False, hold
        if not self._dispatch(now):
            self._recount()
        return True, None

    def _may_queue_full_batch(self, queued: int) -> bool:
        """Whether a full batch may wait in the worker threads' queue while every instance
        is busy (one per instance at most): waiting could not make it bigger, and a worker
        then starts it the moment it is free, without a round trip through the loop. Not
        while a queued item has a deadline: there it must stay where it can time out."""
        return (
            not self.inline
            and queued >= self.policy.max_batch_size
            and self._running < 2 * self.policy.instances
            and self._next_deadline() is None
        )

    async def _sleep(self, wake_at: float | None) -> None:
        # While every instance is busy, new thread submissions need not wake the loop: the
        # next finished batch does, and drains the intake then (one wake-up per batch).
        if self._running < self.policy.instances or self._closing:
            self._sleeping = True
            if self._intake:  # re-check after raising the flag: no lost wake-ups
                self._sleeping = False
                return
        loop = self._loop
        assert loop is not None
        self._wakeup = loop.create_future()
        timer: TimerHandle | None = None
        if wake_at is not None:
            timer = self._clock.call_at(wake_at, self._wake)  # type: ignore[union-attr]
            self._sleep_until = wake_at
        try:
            await self._wakeup
        finally:
            self._sleeping = False
            self._wakeup = None
            self._sleep_until = None
            if timer is not None:
                timer.cancel()

    def _wake(self) -> None:
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    def _oldest_enqueued(self) -> float:
        q = self._queue
        while q and q[0][0].finished:
            self._unqueue(q.popleft()[0])
        if not q:
            self._recount()
            return self.now()
        oldest: Work = q[0][0]
        return oldest.enqueued_at

    def _next_deadline(self) -> float | None:
        heap = self._deadlines
        while heap and (heap[0][2].finished or not heap[0][2].queued):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def _expire(self, now: float) -> None:
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            _, _, work = heapq.heappop(heap)
            if not work.finished and work.queued:
                self._fail(work, self._deadline_error())
        if len(heap) > 1024 and len(heap) > 4 * self._queued:
            self._deadlines = [e for e in heap if not e[2].finished and e[2].queued]
            heapq.heapify(self._deadlines)

    def _deadline_error(self) -> DeadlineExceeded:
        return DeadlineExceeded(
            f"deadline passed while waiting in model '{self.name}' queue; the model did not run it"
        )

    def _recount(self) -> None:
        """Repair the queued-item count if it ever disagrees with the queue (never spin)."""
        actual = sum(c[2] - c[1] for c in self._queue if not c[0].finished)
        if actual != self._queued:
            log.error(
                "batcher %s: queued count %d != %d; repaired", self.name, self._queued, actual
            )
            self._queued = actual

    def _dispatch(self, now: float) -> bool:
        """Send the oldest live chunk's key group (up to ``max_batch_size`` items) to a worker.

        Chunks of other keys stay queued in order for the next batches; at most
        ``_MAX_SKIPPED`` of them are looked past, so one dispatch costs a bounded scan.
        """
        q = self._queue
        capacity = self.policy.max_batch_size
        items: list[Any] = []
        parts: list[_Part] = []
        wait = 0.0
        key = _UNSET
        skipped: list[list[Any]] | None = None
        while capacity and q:
            chunk = q.popleft()
            work: Work = chunk[0]
            if work.finished:
                self._unqueue(work)
                continue
            if work.deadline is not None and work.deadline <= now:
                self._fail(work, self._deadline_error())
                continue
            if work.token is not None and work.token.is_set():
                self._fail(work, Cancelled("cancelled by its cancellation token"))
                continue
            if chunk[3] is not key:
                if key is _UNSET:
                    key = chunk[3]
                elif chunk[3] != key:
                    if skipped is None:
                        skipped = []
                    skipped.append(chunk)
                    if len(skipped) >= _MAX_SKIPPED:
                        break
                    continue
            start, end = chunk[1], chunk[2]
            if end - start <= capacity:
                take = end
            else:
                take = start + capacity
                chunk[1] = take
                q.appendleft(chunk)  # the rest of it goes first in the next batch
            count = take - start
            if count == len(work.items):
                items.extend(work.items)
            else:
                items.extend(work.items[start:take])
            parts.append((work, start, take))
            work.queued -= count
            self._queued -= count
            capacity -= count
            wait += (now - work.enqueued_at) * count
        if skipped is not None:
            q.extendleft(reversed(skipped))
        if not parts:
            return False
        stats = self.stats
        stats.batches += 1
        stats.batch_sizes[len(items)] += 1
        stats.queue_wait_seconds += wait
        batch_id = next(self._batch_ids)
        # a batch queued behind a running one (see _may_queue_full_batch) teaches adaptive
        # dispatch nothing: its time from dispatch to done includes the wait
        queued_behind = self._running >= self.policy.instances
        self._inflight[batch_id] = (parts, math.nan if queued_behind else now)
        if queued_behind:
            self._behind.append(len(items))
            self._behind_items += len(items)
        self._running += 1
        if self.awaited:
            task = self._loop.create_task(  # type: ignore[union-attr]
                self._run_inline(batch_id, items, parts, wait / len(items))
            )
            self._batch_tasks.add(task)
            task.add_done_callback(self._batch_tasks.discard)
        elif self._loop_pass is not None:  # a pass on the loop is running: it runs this next
            self._loop_pass.append((batch_id, items, parts, wait / len(items)))
        elif self.inline:
            self._loop.call_soon(  # type: ignore[union-attr]
                self._run_on_loop, batch_id, items, parts, wait / len(items)
            )
        else:
            self._jobs.put((batch_id, items, parts, wait / len(items)))
        return True

    def _worker(self) -> None:
        loop = self._loop
        assert loop is not None
        handler = cast(_SyncHandler, self.handler)
        while True:
            job = self._jobs.get()
            if job is None:
                return
            batch_id, items, parts, wait = job
            if any(work.finished for work, _, _ in parts):  # cancelled while it waited
                outputs, error, elapsed, isolated = self._run_live(handler, items, parts, wait)
            else:
                outputs, error, elapsed, isolated = self._run_sync(handler, items, parts, wait)
            early = 0 if error is not None else _deliver_to_threads(parts, outputs)  # type: ignore[arg-type]
            self._finished.append((batch_id, outputs, error, elapsed, early, isolated))
            if self._finish_posted:  # the loop has not taken the last one yet: it takes both
                continue
            self._finish_posted = True
            try:
                loop.call_soon_threadsafe(self._finish_posted_batches)
            except RuntimeError:  # loop closed: nobody is waiting any more
                return

    def _finish_posted_batches(self) -> None:
        """On the loop: finish every batch the workers have posted (one wake-up for all)."""
        self._finish_posted = False  # first: a batch posted from here on posts a new call
        finished = self._finished
        while finished:
            self._finish(*finished.popleft())

    def _run_sync(
        self, handler: _SyncHandler, items: list[Any], parts: list[_Part], wait: float
    ) -> tuple[Sequence[Any] | None, BaseException | None, float, BaseException | None]:
        """Run one batch of a plain handler: ``(outputs, error, seconds, isolated)``."""
        started = time.perf_counter()
        error: BaseException | None = None
        outputs: Sequence[Any] | None = None
        try:
            outputs = self._checked(handler(items), len(items))
        except Exception as exc:  # the model's error goes to the callers of this batch
            error = exc
        isolated: BaseException | None = None
        if error is not None and _several_works(parts):
            isolated, error = error, None
            outputs = self._isolate(items, parts)
        elapsed = time.perf_counter() - started
        if self.on_batch is not None:
            self._observe(parts, len(items), wait, elapsed, error is None and isolated is None)
        return outputs, error, elapsed, isolated

    def _run_live(
        self, handler: _SyncHandler, items: list[Any], parts: list[_Part], wait: float
    ) -> tuple[Sequence[Any] | None, BaseException | None, float, BaseException | None]:
        """:meth:`_run_sync` for the items whose submission has no outcome yet (one cancelled
        while its batch waited behind another never reaches the model); the others' slots
        hold a placeholder, never delivered."""
        kept_items: list[Any] = []
        kept_parts: list[_Part] = []
        slots: list[tuple[int, int]] = []
        offset = 0
        for part in parts:
            work, start, end = part
            if not work.finished:
                kept_items.extend(items[offset : offset + end - start])
                kept_parts.append(part)
                slots.append((offset, offset + end - start))
            offset += end - start
        full: list[Any] = [_GONE] * len(items)
        if not kept_items:
            return full, None, 0.0, None
        outputs, error, elapsed, isolated = self._run_sync(handler, kept_items, kept_parts, wait)
        if outputs is None:
            return None, error, elapsed, isolated
        taken = 0
        for lo, hi in slots:
            full[lo:hi] = outputs[taken : taken + hi - lo]
            taken += hi - lo
        return full, error, elapsed, isolated

    def _run_on_loop(
        self, batch_id: int, items: list[Any], parts: list[_Part], wait: float
    ) -> None:
        """A plain handler's batches with ``policy.inline``, run and finished on the loop.

        One loop callback runs this batch and then, while full batches are queued, the next
        ones (each dispatched as the last one finishes) for up to ``_LOOP_PASS_SECONDS``: one
        loop turn per batch would make the loop's own turn the cost of every small batch. A
        part-full batch waits for the loop's next turn, which may bring more items. The
        callers answered meanwhile resume once the pass ends.
        """
        handler = cast(_SyncHandler, self.handler)
        job: tuple[int, list[Any], list[_Part], float] | None = (batch_id, items, parts, wait)
        pending: list[tuple[int, list[Any], list[_Part], float]] = []
        full = self.policy.max_batch_size
        self._loop_pass = pending
        began = time.perf_counter()
        try:
            while job is not None:
                outputs, error, elapsed, isolated = self._run_sync(handler, *job[1:])
                self._finish(job[0], outputs, error, elapsed, 0, isolated)
                job = pending.pop(0) if pending else None
                if job is None or len(job[1]) < full:  # a part batch: more may come meanwhile
                    break
                if time.perf_counter() - began >= _LOOP_PASS_SECONDS:
                    break
        finally:
            self._loop_pass = None
        if job is not None:  # the pass ran out of time: the loop serves others, then this
            self._loop.call_soon(self._run_on_loop, *job)  # type: ignore[union-attr]

    def _checked(self, outputs: Any, count: int) -> Sequence[Any]:
        """``handler``'s return value as a sequence of ``count`` results, or a ``ModelError``."""
        if not isinstance(outputs, (list, tuple)):
            if not hasattr(outputs, "__iter__"):
                got = "None" if outputs is None else type(outputs).__name__
                raise ModelError(
                    f"model '{self.name}' predict returned {got}; it must return a"
                    f" list with one result per item ({count} here)"
                )
            outputs = list(outputs)
        if len(outputs) != count:
            raise ModelError(
                f"model '{self.name}' returned {len(outputs)} results for a batch of"
                f" {count} items; predict must return exactly one result per item"
            )
        return cast(Sequence[Any], outputs)

    async def _run_inline(
        self, batch_id: int, items: list[Any], parts: list[_Part], wait: float
    ) -> None:
        """An ``async def`` handler's batch, on the loop: the worker's steps, awaited."""
        handler = cast(_AsyncHandler, self.handler)
        started = time.perf_counter()
        error: BaseException | None = None
        outputs: Sequence[Any] | None = None
        try:
            outputs = self._checked(await handler(items), len(items))
        except Exception as exc:  # the model's error goes to the callers of this batch
            error = exc
        isolated: BaseException | None = None
        if error is not None and _several_works(parts):
            isolated, error = error, None
            outputs = await self._isolate_inline(items, parts)
        elapsed = time.perf_counter() - started
        if self.on_batch is not None:
            self._observe(parts, len(items), wait, elapsed, error is None and isolated is None)
        self._finish(batch_id, outputs, error, elapsed, 0, isolated)

    async def _isolate_inline(self, items: list[Any], parts: list[_Part]) -> list[Any]:
        """:meth:`_isolate` for an ``async def`` handler."""
        handler = cast(_AsyncHandler, self.handler)
        outputs: list[Any] = [_GONE] * len(items)
        for work, slots in _spans(parts).items():
            if work.finished:
                continue
            alone = [items[i] for lo, hi in slots for i in range(lo, hi)]
            results: list[Any] | BaseException
            try:
                results = list(self._checked(await handler(alone), len(alone)))
            except Exception as exc:  # this submission's own error
                results = exc
            _place(outputs, slots, results)
        return outputs

    def _observe(self, parts: list[_Part], size: int, wait: float, took: float, ok: bool) -> None:
        try:
            self.on_batch(parts, size, wait, took, ok)  # type: ignore[misc]
        except Exception:  # an observer's bug must not fail the batch
            log.exception("batcher %s: the per-batch observer failed", self.name)

    def _isolate(self, items: list[Any], parts: list[_Part]) -> list[Any]:
        """In the worker thread: re-run each submission's items of a failed batch alone.

        Returns the batch's outputs, in order; the slots of a submission whose re-run failed
        hold its error, so it alone fails. A submission that already has an outcome
        (cancelled, timed out) is not re-run.
        """
        outputs: list[Any] = [_GONE] * len(items)
        for work, slots in _spans(parts).items():
            if work.finished:
                continue
            alone = [items[i] for lo, hi in slots for i in range(lo, hi)]
            _place(outputs, slots, self._run_alone(alone))
        return outputs

    def _run_alone(self, items: list[Any]) -> list[Any] | BaseException:
        try:
            outputs = cast(_SyncHandler, self.handler)(items)
            if not isinstance(outputs, (list, tuple)):
                outputs = list(outputs)
        except Exception as exc:  # this submission's own error
            return exc
        if len(outputs) != len(items):
            return ModelError(
                f"model '{self.name}' returned {len(outputs)} results for {len(items)} items;"
                " predict must return exactly one result per item"
            )
        return list(outputs)

    def _finish(
        self,
        batch_id: int,
        outputs: Sequence[Any] | None,
        error: BaseException | None,
        elapsed: float,
        early: int = 0,
        isolated: BaseException | None = None,
    ) -> None:
        self._running -= 1
        if self._behind:  # the oldest batch queued behind a running one now runs
            self._behind_items -= self._behind.popleft()
        self.stats.predict_seconds += elapsed
        self.stats.completed += early
        parts, dispatched_at = self._inflight.pop(batch_id, ((), 0.0))
        if self._judge is not None and parts:
            if error is None and isolated is None:
                self._judge.observe(elapsed, sum(end - start for _, start, end in parts))
            else:  # a model that fails on the loop may need its thread (thread-bound state)
                self._judge.failed(error or isolated)
            self.inline = self._judge.on_loop
        now = self._clock.now()  # type: ignore[union-attr]
        if self.adaptive is not None and parts:
            # learn from whole successful batches only; the cost is dispatch to free again
            ok = error is None and isolated is None and not math.isnan(dispatched_at)
            seconds = now - dispatched_at if ok else None
            size = sum(end - start for _, start, end in parts)
            self._window_end = self.adaptive.instance_free(
                now, size, seconds, self._window_count, self._queued
            )
            self._window_start, self._bin_scale = now, self.adaptive.bin_scale
            self._window_count = self._queued  # the window sees these and what arrives
        if isolated is not None:
            self.stats.isolation_reruns += 1
            log.debug(
                "batcher %s: a batch of %d requests failed (%s: %s); re-ran each alone",
                self.name,
                len({id(p[0]) for p in parts}),
                type(isolated).__name__,
                isolated,
            )
        # Start the next batch before answering this one, so the model is not left idle
        # while this batch's callers encode and send their responses; on the loop it cannot
        # overlap with them, so the callers are answered first and the next batch follows
        # in the same pass (see _run_on_loop).
        on_loop = self.inline and not self.awaited
        if not on_loop:
            self._dispatch_next(now)
        if error is not None or outputs is None:
            error = error or ModelError(f"model '{self.name}' produced no output")
            self._report(error)
            for work, _, _ in parts:
                self._fail(work, error)
        else:
            offset = 0
            for work, start, end in parts:
                count = end - start
                if not work.finished:
                    self._deliver(work, start, end, outputs[offset : offset + count])
                offset += count
        if on_loop:
            self._dispatch_next(now)
        self._wake()

    def _dispatch_next(self, now: float) -> None:
        if self._intake:
            self._drain_intake()
        self._try_dispatch(now)

    def _deliver(self, work: Work, start: int, end: int, outputs: Sequence[Any]) -> None:
        for out in outputs:
            if isinstance(out, BaseException):
                self._fail(work, out)
                self._report(out)
                return
        if start == 0 and end == len(work.items):
            work.results = outputs if isinstance(outputs, list) else list(outputs)
        else:
            if work.results is None:
                work.results = [None] * len(work.items)
            work.results[start:end] = outputs
        work.remaining -= end - start
        if work.remaining == 0:
            self._complete(work)

    def _report(self, error: BaseException) -> None:
        """Log a model failure (a 5xx), rate-limited: see :class:`FailureLog`."""
        if isinstance(error, ServekitError) and error.status < 500:
            return
        self._failures.report(error)
        if self._failure_timer is None:
            due = self._failures.next_due()
            if due is not None and self._clock is not None:
                self._failure_timer = self._clock.call_at(due, self._summarise_failures)

    def _summarise_failures(self, *, everything: bool = False) -> None:
        self._failure_timer = None
        self._failures.flush(everything=everything)
        due = self._failures.next_due()
        if due is not None and not everything and self._clock is not None:
            self._failure_timer = self._clock.call_at(due, self._summarise_failures)

    def _complete(self, work: Work) -> None:
        if not work.claim():
            return
        self.stats.completed += 1
        work.notify()

    def _fail(self, work: Work, error: BaseException, *, counted: bool = False) -> None:
        if not work.claim():
            return
        self._unqueue(work)
        work.error = error
        if not counted:
            stats = self.stats
            if isinstance(error, DeadlineExceeded):
                stats.timed_out += 1
            elif isinstance(error, Cancelled):
                stats.cancelled += 1
            else:
                stats.failed += 1
        work.notify()

    def _fail_everything(self, error: BaseException) -> None:
        for chunk in self._queue:
            self._fail(chunk[0], error)
        self._queue.clear()
        for parts, _ in self._inflight.values():
            for work, _, _ in parts:
                self._fail(work, error)
        self._inflight.clear()
        self._behind.clear()
        self._behind_items = 0
        while self._intake:
            work = self._intake.popleft()
            self.stats.requests += 1
            self.stats.items += len(work.items)
            self._fail(work, error)


def _chunks(work: Work, key_of: BatchKey) -> list[list[Any]]:
    """A submission's queue chunks: one per run of items with equal keys (usually one)."""
    items = work.items
    chunks: list[list[Any]] = []
    start = 0
    key: Hashable = key_of(items[0])
    for i in range(1, len(items)):
        other = key_of(items[i])
        if other is not key and other != key:
            chunks.append([work, start, i, key])
            start, key = i, other
    chunks.append([work, start, len(items), key])
    return chunks


def _spans(parts: list[_Part]) -> dict[Work, list[tuple[int, int]]]:
    """Each submission's slots (``lo``, ``hi``) in a batch made of ``parts``."""
    spans: dict[Work, list[tuple[int, int]]] = {}
    offset = 0
    for work, start, end in parts:
        spans.setdefault(work, []).append((offset, offset + end - start))
        offset += end - start
    return spans


def _place(
    outputs: list[Any], slots: list[tuple[int, int]], results: list[Any] | BaseException
) -> None:
    """Put one submission's re-run results (or its error) in its slots of ``outputs``."""
    for lo, hi in slots:
        if isinstance(results, BaseException):
            outputs[lo:hi] = [results] * (hi - lo)
        else:
            outputs[lo:hi] = results[: hi - lo]
            results = results[hi - lo :]


def _several_works(parts: list[_Part]) -> bool:
    first = parts[0][0]
    return any(work is not first for work, _, _ in parts)


def _deliver_to_threads(parts: list[_Part], outputs: Sequence[Any]) -> int:
    """In the worker thread: hand results straight to thread callers' futures.

    Only for thread callers whose whole submission was in this batch and succeeded; the loop
    may be failing the same work at this moment (timeout, close), and :meth:`Work.claim`
    decides which of the two delivers. Saves a hop through the event loop on the thread
    API's hot path. Returns how many works were completed here.
    """
    delivered = 0
    offset = 0
    for work, start, end in parts:
        count = end - start
        if work.thread and start == 0 and end == len(work.items) and not work.finished:
            if count == 1:
                results = [outputs[offset]]
                failed = isinstance(results[0], BaseException)
            else:
                results = list(outputs[offset : offset + count])
                failed = any(isinstance(r, BaseException) for r in results)
            if not failed and work.claim():
                work.results = results
                work.notify()
                delivered += 1
        offset += count
    return delivered
