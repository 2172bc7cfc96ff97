"""The load loops: closed (N requests always in flight) and open (Poisson arrivals at R/s).

Closed loop: each of N connections sends its next request the moment an answer arrives, so
a slow server slows the sender down (what ``wrk`` does). Open loop: requests are due at
Poisson arrival times whatever the server does; a due request takes an idle connection, opens
a new one (up to ``max_connections``) or waits for one, and its latency counts from when it
was *due*, so queueing is not hidden (no coordinated omission). Sends that went out more
than 2 ms after their due time are counted as behind schedule.

Everything runs on one event loop, answers arrive as callbacks (no task per request).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from servekit.bench._conn import Connection, Failure, connect
from servekit.bench._errors import BenchError
from servekit.bench.bodies import Request
from servekit.bench.record import Recorder

MAX_DURATION_S = 24 * 3600.0
MAX_CONCURRENCY = 10_000
RECONNECT_PAUSE_S = 0.05  # after a failed connect, so a dead server is not hammered in a spin
TICK_S = 0.25


@dataclass(frozen=True)
class Plan:
    """How hard and how long: ``concurrency`` (closed loop) or ``rate`` (open loop)."""

    concurrency: int | None = None
    rate: float | None = None
    duration: float = 10.0
    max_requests: int | None = None
    timeout: float = 10.0
    max_connections: int = 1000  # open loop: connections it may open
    seed: int | None = None

    def check(self) -> None:
        """Raise ``BenchError`` naming the first setting out of bounds."""
        if (self.concurrency is None) == (self.rate is None):
            raise BenchError("give exactly one of --concurrency N (closed loop) or --rate R")
        if self.concurrency is not None and not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise BenchError(f"--concurrency must be 1..{MAX_CONCURRENCY}, got {self.concurrency}")
        if self.rate is not None and not 0 < self.rate <= 1e6:
            raise BenchError(f"--rate must be > 0 and at most 1,000,000 req/s, got {self.rate:g}")
        if not 0 < self.duration <= MAX_DURATION_S:
            raise BenchError(f"--duration must be > 0 and at most {MAX_DURATION_S:g} s")
        if self.max_requests is not None and self.max_requests < 1:
            raise BenchError(f"--requests must be at least 1, got {self.max_requests}")
        if self.timeout <= 0:
            raise BenchError(f"--timeout must be > 0, got {self.timeout:g}")
        if not 1 <= self.max_connections <= MAX_CONCURRENCY:
            raise BenchError(f"--max-connections must be 1..{MAX_CONCURRENCY}")


Tick = Callable[[Recorder, float], None]


class Engine:
    """Runs one plan against prepared requests (sent in turn); ``run()`` returns the counts."""

    def __init__(
        self,
        requests: Sequence[Request],
        plan: Plan,
        *,
        keep_bodies: bool = False,
        on_tick: Tick | None = None,
    ) -> None:
        plan.check()
        if not requests:
            raise BenchError("nothing to send: no requests")
        self.requests = list(requests)
        self.wires = [r.wire for r in self.requests]
        self.plan = plan
        self.keep_bodies = keep_bodies
        self.bodies: dict[int, tuple[int, bytes]] = {}  # index -> (status, body), if kept
        self.on_tick = on_tick
        self.recorder = Recorder(time.perf_counter())
        self.elapsed = 0.0
        self._limit = plan.max_requests if plan.max_requests is not None else 1 << 62
        self._next_index = 0
        self._stop_at = 0.0
        self._stopping = False
        self._conns: set[Connection] = set()
        self._idle: list[Connection] = []
        self._backlog: deque[tuple[int, float]] = deque()
        self._opening = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._done: asyncio.Event | None = None

    # ------------------------------------------------------------------ running
    async def run(self) -> Recorder:
        """Connect, load for the plan's duration (or request cap), wait for the stragglers."""
        self._done = asyncio.Event()
        warm = self.plan.concurrency or min(self.plan.max_connections, 8)
        await self._open_first(warm)
        start = time.perf_counter()
        self.recorder = Recorder(start)
        self._stop_at = start + self.plan.duration
        ticker = asyncio.create_task(self._tick())
        try:
            if self.plan.rate is not None:
                await self._open_loop(self.plan.rate, start)
            else:
                for conn in list(self._idle):
                    self._idle.remove(conn)
                    self._next(conn)
            self._check_done()
            wait = max(self._stop_at - time.perf_counter(), 0.0) + self.plan.timeout + 1.0
            with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                await asyncio.wait_for(self._done.wait(), wait)
        finally:
            self._stopping = True
            ticker.cancel()
            for task in list(self._tasks):
                task.cancel()
            now = time.perf_counter()
            for conn in list(self._conns):
                if conn.busy:
                    conn.fail(Failure("unanswered at the end"))
                conn.close()
            self.recorder.finish(now)
            self.elapsed = now - start
        return self.recorder

    async def _open_first(self, count: int) -> None:
        """The first connections, before the clock starts; none at all is a ``BenchError``."""
        r = self.requests[0]
        results = await asyncio.gather(
            *(
                connect(r.host, r.port, self, self.plan.timeout, self.keep_bodies)
                for _ in range(count)
            ),
            return_exceptions=True,
        )
        failures = [x for x in results if isinstance(x, Failure)]
        for item in results:
            if isinstance(item, BaseException) and not isinstance(item, Failure):
                raise item
        if len(failures) == count:
            raise BenchError(f"cannot reach {r.url}: {failures[0]}")
        for item in results:
            if isinstance(item, Connection):
                self._conns.add(item)
                self._idle.append(item)
        for _ in failures:  # the closed loop keeps N connections: retry the missing ones
            if self.plan.concurrency is not None:
                self._spawn(self._reconnect())

    # ------------------------------------------------------------------ the closed loop
    def _next(self, conn: Connection) -> None:
        """``conn`` is free: send the next request, or (open loop) serve the backlog."""
        now = time.perf_counter()
        if self._backlog:
            index, intended = self._backlog.popleft()
            self._send(conn, index, intended, now)
        elif self.plan.rate is None and not self._over(now):
            self._send(conn, self._take(), now, now)
        else:
            self._idle.append(conn)
            self._check_done()

    def _over(self, now: float) -> bool:
        if self._stopping or now >= self._stop_at or self._next_index >= self._limit:
            self._stopping = self._stopping or now >= self._stop_at
            return True
        return False

    def _take(self) -> int:
        index = self._next_index
        self._next_index += 1
        return index

    def _send(self, conn: Connection, index: int, intended: float, now: float) -> None:
        self.recorder.sending(intended, now)
        conn.send(self.wires[index % len(self.wires)], index, intended, now)

    # ------------------------------------------------------------------ the open loop
    async def _open_loop(self, rate: float, start: float) -> None:
        """Due times from a Poisson process; each due request goes out as soon as it can."""
        rng = random.Random(self.plan.seed)
        due = start
        while due < self._stop_at and self._next_index < self._limit:
            if self._stopping:  # a late wake-up (a busy machine): the run has ended
                break
            now = time.perf_counter()
            if due > now:
                await asyncio.sleep(due - now)
                continue
            self._dispatch(self._take(), due, now)
            due += rng.expovariate(rate)

    def _dispatch(self, index: int, due: float, now: float) -> None:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                self._send(conn, index, due, now)
                return
            self._conns.discard(conn)  # the server closed it while idle
        self._backlog.append((index, due))
        if len(self._conns) + self._opening < self.plan.max_connections:
            self._spawn(self._reconnect())

    # ------------------------------------------------------------------ connections
    async def _reconnect(self) -> None:
        """Open one connection and put it to work; a failure is charged to a request."""
        r = self.requests[0]
        self._opening += 1
        try:
            conn = await connect(r.host, r.port, self, self.plan.timeout, self.keep_bodies)
        except Failure as failure:
            self._opening -= 1
            self._charge_unsent(failure)
            await asyncio.sleep(RECONNECT_PAUSE_S)
            closed_loop = self.plan.concurrency is not None
            if self._backlog or (closed_loop and not self._over(time.perf_counter())):
                self._spawn(self._reconnect())
            self._check_done()
            return
        self._opening -= 1
        self._conns.add(conn)
        self._next(conn)

    def _charge_unsent(self, failure: Failure) -> None:
        now = time.perf_counter()
        if self._backlog:
            self._backlog.popleft()
        elif self.plan.rate is None and not self._over(now):
            self._take()
        else:
            return
        self.recorder.failed_unsent(failure.kind, now)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ Sink (callbacks)
    def answered(self, conn: Connection, status: int, body: bytes) -> None:
        now = time.perf_counter()
        self.recorder.answered(status, conn.intended, conn.sent_at, now)
        if self.keep_bodies:
            self.bodies[conn.index] = (status, body)
        if conn.closed:  # the server asked to close: replace the connection
            self._conns.discard(conn)
            self._replace()
        else:
            self._next(conn)

    def failed(self, conn: Connection, failure: Failure) -> None:
        self.recorder.failed(failure.kind, time.perf_counter())
        if self.keep_bodies:
            self.bodies[conn.index] = (0, str(failure).encode())
        self._conns.discard(conn)
        if not self._stopping:
            self._replace()
        self._check_done()

    def _replace(self) -> None:
        now = time.perf_counter()
        if self._backlog or (self.plan.concurrency is not None and not self._over(now)):
            self._spawn(self._reconnect())
        self._check_done()

    def _check_done(self) -> None:
        """Set ``done`` once nothing is due, in flight, waiting or connecting."""
        if self._done is None or self._done.is_set():
            return
        if (
            self._over(time.perf_counter())
            and not self._backlog
            and self._opening == 0
            and not any(c.busy for c in self._conns)
        ):
            self._done.set()

    async def _tick(self) -> None:
        """Every 0.25 s: time out stuck requests, report progress."""
        while True:
            await asyncio.sleep(TICK_S)
            now = time.perf_counter()
            for conn in list(self._conns):
                if conn.busy and now - conn.sent_at > self.plan.timeout:
                    conn.fail(Failure("timeout", f"no answer within {self.plan.timeout:g} s"))
            if now >= self._stop_at:
                self._stopping = True
                self._check_done()
            if self.on_tick is not None:
                self.on_tick(self.recorder, now)
