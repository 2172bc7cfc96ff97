"""Adaptive dispatch: the cost model, the hold rule, and the batcher driven by a manual clock."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Coroutine
from typing import Any

from servekit.batching import Batcher, BatchPolicy
from servekit.batching.adaptive import BINS, AdaptiveDispatch, CostModel
from servekit.batching.policy import Dispatch
from servekit.clock import ManualClock

WAIT = 5.0  # real-time bound on every wait, so a broken batcher fails instead of hanging
# powers of two keep the manual clock's arithmetic exact
FIXED = 1 / 512  # ~2 ms per batch
PER_ITEM = 1 / 65536  # ~15 us per item
GAP = 1 / 16384  # ~61 us between two returning clients


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


async def settle() -> None:
    """Let the event loop run every callback that is ready."""
    for _ in range(10):
        await asyncio.sleep(0)


def cost(n: int) -> float:
    return FIXED + PER_ITEM * n


# ---------------------------------------------------------------------------- cost model
def test_cost_model_converges_on_fixed_plus_per_item_from_batch_timings() -> None:
    rng = random.Random(7)
    model = CostModel()
    for i in range(400):
        n = rng.randint(1, 32)
        seconds = 0.002 + 0.00005 * n + rng.gauss(0, 0.00002)
        if i % 50 == 49:
            seconds *= 10  # a GC pause or a preempted thread now and then
        model.observe(n, seconds)
    assert abs(model.fixed - 0.002) < 0.0001
    assert abs(model.per_item - 0.00005) < 0.000005
    assert abs(model.predict(32) - 0.0036) < 0.0001


def test_cost_model_of_one_batch_size_puts_the_cost_in_the_fixed_part() -> None:
    model = CostModel()
    for _ in range(10):
        model.observe(1, 0.003)
    assert model.ready
    assert (round(model.fixed, 9), model.per_item) == (0.003, 0.0)


def test_cost_model_is_not_ready_before_its_warm_up() -> None:
    model = CostModel(warmup=4)
    for _ in range(3):
        model.observe(8, 0.002)
    assert not model.ready
    model.observe(8, 0.002)
    assert model.ready


# ---------------------------------------------------------------------------- hold rule
def learnt(expected: float) -> AdaptiveDispatch:
    """A rule that learnt ``t(n) = FIXED + PER_ITEM·n`` and ``expected`` items per window."""
    rule = AdaptiveDispatch(smoothing=1.0, shape_smoothing=1.0)
    for n in (1, 8, 16, 32):
        rule.cost.observe(n, cost(n))
    rule.instance_free(0.0, 8, None, 0, 0)  # opens the first window
    rule.bins[0] = round(expected)  # as the batcher counts them: they came at once
    rule.instance_free(0.0, 8, None, round(expected), 0)
    return rule


def test_hold_rule_waits_for_a_steady_rate_of_arrivals_until_the_expected_count() -> None:
    rule = learnt(expected=8)  # λ·a = 8: items every a/8
    gap = rule.cost.fixed / 8
    for k in range(1, 8):
        now = k * gap
        due = rule.hold_until(now, k, now, latest=1.0)
        assert due is not None and now < due <= now + rule.cost.fixed / k
    assert rule.hold_until(8 * gap, 8, 8 * gap, latest=1.0) is None  # all came: go


def test_hold_rule_never_waits_past_max_latency_or_the_window() -> None:
    rule = learnt(expected=16)
    assert rule.hold_until(0.0001, 1, 0.0001, latest=0.0005) == 0.0005
    assert rule.hold_until(0.0005, 1, 0.0001, latest=0.0005) is None
    assert rule.hold_until(rule.window_end, 1, rule.window_end, latest=1.0) is None


def test_hold_rule_goes_at_once_when_arrivals_stop() -> None:
    rule = learnt(expected=16)
    last = 0.0001
    due = rule.hold_until(last, 4, last, latest=1.0)
    assert due == last + rule.cost.fixed / 4  # one more is worth waiting a/q for, no longer
    assert rule.hold_until(due, 4, last, latest=1.0) is None


def steady(queued: int) -> AdaptiveDispatch:
    """A rule that learnt open-loop arrivals: 8 per window, spread evenly (λ·a = 8)."""
    rule = AdaptiveDispatch(smoothing=1.0, shape_smoothing=1.0)
    for n in (1, 8, 16, 32):
        rule.cost.observe(n, cost(n))
    rule.instance_free(0.0, 8, None, 0, 0)
    rule.bins[:BINS] = [1] * BINS
    rule.instance_free(0.0, 8, None, queued + 8, queued)
    return rule


def test_hold_rule_serves_a_steady_open_loop_stream_at_once() -> None:
    # arrivals spread evenly over the window are no burst: waiting for them would buy
    # throughput that is not needed below saturation, at the price of latency
    for queued in (1, 4, 8):
        assert steady(queued).hold_until(0.0, queued, -1.0, latest=1.0) is None
    assert learnt(expected=8).hold_until(0.0, 1, -1.0, latest=1.0) is not None  # a burst


def test_hold_rule_goes_at_once_when_the_burst_comes_late_in_the_window() -> None:
    # the answered come back only after a/2 (a server slow to turn them around): running
    # what is queued now lets the next batch form meanwhile, which beats waiting
    rule = AdaptiveDispatch(smoothing=1.0, shape_smoothing=1.0)
    for n in (1, 8, 16, 32):
        rule.cost.observe(n, cost(n))
    rule.instance_free(0.0, 8, None, 0, 0)
    rule.bins[4:6] = [4, 4]
    rule.instance_free(0.0, 8, None, 16, 8)
    assert rule.hold_until(0.0, 8, -1.0, latest=1.0) is None


def test_hold_rule_goes_at_once_with_nothing_learnt() -> None:
    rule = AdaptiveDispatch()
    assert rule.hold_until(0.0, 1, 0.0, latest=1.0) is None


# ---------------------------------------------------------------------------- the batcher
class Gated:
    """A handler that records each batch and the clock when it started; blocks until released."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.batches: list[list[Any]] = []
        self.started: list[float] = []
        self.entered = threading.Semaphore(0)
        self.release = threading.Semaphore(0)

    def __call__(self, items: list[Any]) -> list[Any]:
        self.batches.append(list(items))
        self.started.append(self.clock.now())
        self.entered.release()
        if not self.release.acquire(timeout=WAIT):
            raise RuntimeError("test gate never opened")
        return list(items)


class ClosedLoop:
    """``clients`` callers that each send one item and send again after their answer, one
    every ``GAP`` (as a server answers and reads them in turn); each batch runs ``cost(n)``.

    An event simulation on the manual clock: the clock moves to the next send, the running
    batch's end, or ``GAP / 4`` on, whichever is first, so held batches reach their timers.
    """

    def __init__(self, dispatch: Dispatch, clients: int, **policy: Any) -> None:
        self.clock = ManualClock()
        self.model = Gated(self.clock)
        self.batcher = Batcher(
            self.model, BatchPolicy(dispatch=dispatch, **policy), clock=self.clock
        )
        self.clients = clients
        self.futures: dict[int, asyncio.Future[list[Any]]] = {}
        self.sent: dict[int, float] = {}  # client -> when its current item was submitted
        self.sends: list[tuple[float, int]] = []  # (when, client), in order
        self.running: tuple[float, list[Any]] | None = None  # (ends at, batch)
        self.freed = 0.0  # when the instance was last free again
        self.finished = 0
        self.sizes: list[int] = []
        self.held: list[float] = []  # per batch: dispatch time - max(oldest item's, freed)
        self.after_last: list[float] = []  # per batch: dispatch time - newest item's
        self.oldest: list[float] = []  # per batch: when its oldest item was sent

    async def close(self) -> None:
        self.model.release.release(1000)  # let a batch that started last finish
        await self.batcher.close()

    async def settle(self) -> None:
        """Run the loop; when a batch was dispatched, wait for it to start (real time)."""
        await settle()
        if self.running is None and self.batcher.stats.batches > len(self.sizes):
            ok = await asyncio.to_thread(self.model.entered.acquire, True, WAIT)
            assert ok, "no batch started"
            batch, started = self.model.batches[-1], self.model.started[-1]
            sent = [self.sent[c] for c in batch]
            self.sizes.append(len(batch))
            self.held.append(started - max(min(sent), self.freed))
            self.after_last.append(started - max(sent))
            self.oldest.append(min(sent))
            self.running = (started + cost(len(batch)), batch)

    def send(self, client: int) -> None:
        self.sent[client] = self.clock.now()
        self.futures[client] = self.batcher.submit([client])

    async def go(self, rounds: int, cohorts: int = 2) -> list[int]:
        """The first ``clients // cohorts`` send at once, the rest ``GAP`` apart after them."""
        await self.batcher.start()
        for client in range(self.clients):
            self.sends.append((GAP * max(0, client - self.clients // cohorts + 1), client))
        while self.finished < rounds:
            while self.sends and self.sends[0][0] <= self.clock.now():
                self.send(self.sends.pop(0)[1])
                await self.settle()
            await self.settle()
            target = self.clock.now() + GAP / 4
            if self.sends:
                target = min(target, self.sends[0][0])
            if self.running is not None:
                target = min(target, self.running[0])
            self.clock.advance(target - self.clock.now())
            await self.settle()
            if self.running is not None and self.clock.now() >= self.running[0]:
                await self.finish_batch()
        return self.sizes[:rounds]

    async def finish_batch(self) -> None:
        assert self.running is not None
        batch = self.running[1]
        self.running = None
        self.finished += 1
        self.freed = self.clock.now()
        self.model.release.release()
        for client in batch:
            assert await asyncio.wait_for(self.futures[client], WAIT) == [client]
        last = max([self.clock.now()] + [when for when, _ in self.sends])
        for i, client in enumerate(batch):  # the answered come back one by one
            self.sends.append((last + GAP * (i + 1), client))
        await self.settle()


def test_closed_loop_cohorts_alternate_under_idle_dispatch() -> None:
    async def scenario() -> list[int]:
        loop = ClosedLoop("idle", clients=8, max_batch_size=32)
        sizes = await loop.go(rounds=20)
        await loop.close()
        return sizes

    # the c=16 problem in small: the first caller went alone, the rest queued behind
    # it, and the two cohorts never merge
    assert run(scenario())[-10:] == [1, 7] * 5


def test_adaptive_dispatch_merges_closed_loop_cohorts_into_one_batch() -> None:
    async def scenario() -> ClosedLoop:
        loop = ClosedLoop("adaptive", clients=8, max_batch_size=32)
        await loop.go(rounds=24)
        await loop.close()
        return loop

    loop = run(scenario())
    assert loop.sizes[-8:] == [8] * 8
    # it waited for the expected arrivals, and not a tick longer: each left when its 8th came
    assert loop.after_last[-8:] == [0.0] * 8
    assert loop.held[-8:] == [7 * GAP] * 8
    rule = loop.batcher.adaptive
    assert rule is not None and abs(rule.expected - 8) < 0.5
    assert (round(rule.cost.fixed / FIXED, 6), round(rule.cost.per_item / PER_ITEM, 6)) == (1, 1)


def test_adaptive_dispatch_sends_a_lone_client_at_once() -> None:
    async def scenario() -> ClosedLoop:
        loop = ClosedLoop("adaptive", clients=1, max_batch_size=32)
        await loop.go(rounds=20, cohorts=1)
        await loop.close()
        return loop

    loop = run(scenario())
    assert loop.held == [0.0] * len(loop.held)  # never held, learnt or not
    assert loop.batcher.adaptive is not None and loop.batcher.adaptive.cost.ready


async def taught(model: Gated, clock: ManualClock, expected: float, **policy: Any) -> Batcher:
    """A started adaptive batcher that learnt ``cost`` and ``expected`` items per window,
    right after a batch ended (its window open)."""
    batcher = Batcher(model, BatchPolicy(dispatch="adaptive", **policy), clock=clock)
    rule = batcher.adaptive
    assert rule is not None
    for n in (1, 8, 16, 32):
        rule.cost.observe(n, cost(n))
    rule.expected, rule.curve[0] = expected, expected
    await batcher.start()
    first = batcher.submit([0])  # no window open yet: it goes at once
    assert await asyncio.to_thread(model.entered.acquire, True, WAIT)
    clock.advance(cost(1))
    model.release.release()
    assert await asyncio.wait_for(first, WAIT) == [0]
    await settle()
    return batcher


def test_adaptive_dispatch_never_holds_longer_than_max_latency() -> None:
    async def scenario() -> None:
        clock = ManualClock()
        model = Gated(clock)
        batcher = await taught(model, clock, expected=8, max_latency=3 * GAP)
        for i in range(1, 8):  # 8 are expected, one every GAP
            clock.advance(GAP)
            batcher.submit([i])
            await settle()
            if batcher.stats.batches == 2:
                break  # dispatched: the clock stays put until the handler has read it
        assert await asyncio.to_thread(model.entered.acquire, True, WAIT)
        assert model.batches[-1] == [1, 2, 3, 4]  # the oldest, 1, waited its 3 GAP: go
        assert model.started[-1] == cost(1) + 4 * GAP
        await close(batcher, model)

    run(scenario())


def test_adaptive_dispatch_sends_a_full_batch_at_once() -> None:
    async def scenario() -> None:
        clock = ManualClock()
        model = Gated(clock)
        batcher = await taught(model, clock, expected=16, max_batch_size=4)
        for i in range(1, 5):
            clock.advance(GAP)
            batcher.submit([i])
            await settle()
        assert await asyncio.to_thread(model.entered.acquire, True, WAIT)
        assert model.batches[-1] == [1, 2, 3, 4]  # 16 expected, but a batch holds 4
        assert model.started[-1] == cost(1) + 4 * GAP  # the clock never moved past the 4th
        await close(batcher, model)

    run(scenario())


async def close(batcher: Batcher, model: Gated) -> None:
    model.release.release(1000)
    await batcher.close()
