"""Adaptive dispatch: learn what a batch costs and what arrives, and hold a free model only
while waiting pays.

With a linear cost ``t(n) = a + b·n``, running the ``q`` queued items now gives
``q / t(q)`` items per second; waiting ``w`` for ``k`` more gives
``(q + k) / (w + t(q + k))``, which is higher iff ``k·a > q·w``: ``k`` more items are worth
waiting for iff they come within ``k·a / q`` (for Poisson arrivals at rate ``λ``: iff
``q < λ·a``). Arrivals are not Poisson when clients wait for their answers: they come back
in a burst shortly after a batch ends. So what is learnt, per *window* of length ``a``
after an instance becomes free (EWMA over windows), is when items arrive in it (the arrival
curve ``K(w)``, in eighths of ``a``) and how many are queued by its end. A window may hold
only if some ``w`` pays, ``K(w)·a > q·w`` with the ``q`` queued when it opens, and the items
come in a burst that is over early (90% within ``a/2``): dispatching at once instead lets the
next batch form while this one runs, so waiting must beat that too. Clients that the server
turns around quickly qualify; steady open-loop arrivals (``K(w) = λ·w``) never do (for them
a wait buys throughput not needed below saturation, at the price of latency), nor do
clients the server takes longer than ``a/2`` to answer and hear from again. Then the free
instance holds while fewer are queued than expected by the window's end and they keep coming
in time to pay for the wait. A lone closed-loop client expects one item, its own, so it
never waits.
"""

from __future__ import annotations

import math

_INF = math.inf
BINS = 8  # the window's arrival curve is learnt in this many steps
EARLY = BINS // 2  # a burst worth a hold is over within this many eighths of the window


class CostModel:
    """``t(n) ≈ fixed + per_item·n`` by exponentially weighted least squares over batches.

    Each observation clips to the prediction ± four mean absolute residuals (after warm-up),
    so a few outliers (a GC pause, a preempted thread) barely move the fit.
    """

    __slots__ = (
        "_decay",
        "_s0",
        "_sn",
        "_snn",
        "_snt",
        "_spread",
        "_st",
        "count",
        "fixed",
        "per_item",
        "warmup",
    )

    def __init__(self, memory: float = 32.0, warmup: int = 4) -> None:
        """``memory``: batches the fit mostly remembers; ``warmup``: batches before ``ready``."""
        self._decay = 1.0 - 1.0 / memory
        self._s0 = self._sn = self._snn = self._st = self._snt = 0.0
        self._spread = 0.0
        self.count = 0
        self.warmup = warmup
        self.fixed = 0.0  # seconds per batch
        self.per_item = 0.0  # seconds per item

    @property
    def ready(self) -> bool:
        return self.count >= self.warmup

    def predict(self, n: int) -> float:
        return self.fixed + self.per_item * n

    def observe(self, n: int, seconds: float) -> None:
        """One batch of ``n`` items took ``seconds``."""
        if n <= 0 or not seconds >= 0.0:  # also refuses NaN
            return
        if self.count >= self.warmup:
            expected = self.predict(n)
            limit = max(4.0 * self._spread, 0.1 * expected)
            residual = min(abs(seconds - expected), limit)
            self._spread += 0.1 * (residual - self._spread)
            seconds = min(max(seconds, expected - limit), expected + limit)
        d = self._decay
        self._s0 = d * self._s0 + 1.0
        self._sn = d * self._sn + n
        self._snn = d * self._snn + n * n
        self._st = d * self._st + seconds
        self._snt = d * self._snt + n * seconds
        self.count += 1
        self._solve()

    def _solve(self) -> None:
        s0, sn, snn, st, snt = self._s0, self._sn, self._snn, self._st, self._snt
        det = s0 * snn - sn * sn
        # sizes varied enough to tell the slope from the intercept; else keep the slope
        # learnt before (0 at first)
        varied = det > 1e-3 * s0 * snn
        per_item = max((s0 * snt - sn * st) / det if varied else self.per_item, 0.0)
        fixed = (st - per_item * sn) / s0
        if fixed < 0.0:
            fixed, per_item = 0.0, st / sn
        self.fixed, self.per_item = fixed, per_item


class AdaptiveDispatch:
    """The hold rule of ``dispatch = "adaptive"``: a :class:`CostModel` and the window.

    The batcher counts each item admitted before :attr:`window_end` in :attr:`bins`; after
    each batch it calls :meth:`instance_free` with the window that closes (the items queued
    when it opened plus those admitted in it); while an instance is free it asks
    :meth:`hold_until` whether to wait.
    """

    __slots__ = (
        "_holding",
        "_open",
        "bin_scale",
        "bins",
        "cost",
        "curve",
        "expected",
        "shape_smoothing",
        "smoothing",
        "window_end",
        "window_start",
    )

    def __init__(
        self,
        cost: CostModel | None = None,
        smoothing: float = 0.25,
        shape_smoothing: float = 0.1,
    ) -> None:
        """``smoothing``: EWMA weight of each window in :attr:`expected`; ``shape_smoothing``
        in :attr:`curve` (smaller: a noisy open-loop stream rarely looks like a burst)."""
        self.cost = cost or CostModel()
        self.shape_smoothing = shape_smoothing
        #: items queued within ``cost.fixed`` after an instance frees (EWMA)
        self.expected = 0.0
        self.smoothing = smoothing
        self.window_start = self.window_end = -_INF
        self._open = False
        #: arrivals in each eighth of the open window (the batcher counts them)
        self.bins = [0] * (BINS + 1)  # one spare slot for rounding at the window's end
        self.bin_scale = 0.0  # bins per second
        #: arrivals expected in each eighth of a window (EWMA over windows)
        self.curve = [0.0] * BINS
        self._holding = False

    @property
    def rate(self) -> float:
        """Items per second arriving in the window after a batch (λ; 0 until learnt)."""
        return sum(self.curve) / self.cost.fixed if self.cost.fixed > 0.0 else 0.0

    def instance_free(
        self, now: float, size: int, seconds: float | None, seen: int, queued: int
    ) -> float:
        """A batch of ``size`` items ended after ``seconds`` (None: failed, not learnt from);
        ``seen`` items were queued in the window that closes (its arrivals counted in
        :attr:`bins`), ``queued`` are now. Returns the new window's end."""
        if seconds is not None:
            self.cost.observe(size, seconds)
        bins, curve, alpha, shape = self.bins, self.curve, self.smoothing, self.shape_smoothing
        if self._open:
            self.expected += alpha * (seen - self.expected)
            for i in range(BINS):
                curve[i] += shape * (bins[i] - curve[i])
        bins[:] = [0] * (BINS + 1)
        fixed = self.cost.fixed
        self._open = self.cost.ready and fixed > 0.0
        self._holding = self._open and self._pays(queued)
        self.window_start = now
        self.window_end = now + fixed if self._open else -_INF
        self.bin_scale = BINS / fixed if self._open else 0.0
        return self.window_end

    def _pays(self, queued: int) -> bool:
        """Whether the window's arrivals are a burst that is over early (90% of them within
        ``a/2``) and the ``k`` expected within some ``w`` pay for waiting ``w`` with ``queued``
        items, by half an item: ``(k - ½)·a > q·w``.

        Dispatching now instead lets the next batch form while this one runs, so the model
        never idles; waiting pays against that only if the items come well within ``a``. A
        steady open-loop stream (spread over the whole window) never qualifies, nor do
        clients whose answers take the server longer than ``a/2`` to turn around.
        """
        curve = self.curve
        total, expected = sum(curve), 0.0
        if total <= 0.0:
            return False
        pays = False
        for i, count in enumerate(curve[:EARLY]):
            expected += count
            pays = pays or (expected - 0.5) * BINS > queued * (i + 1)  # w = (i + 1)·a / BINS
        return pays and expected >= 0.9 * total

    def hold_until(
        self, now: float, queued: int, last_arrival: float, latest: float
    ) -> float | None:
        """When to look again if a free instance should wait for more items; None: go now.

        ``queued`` items wait, the newest came at ``last_arrival``; ``latest`` is the oldest
        item's ``max_latency`` bound.
        """
        # A lone request at low load: no window open (nothing ran within `a`), or no more
        # expected in it (a closed-loop client that is the only one): go at once.
        more = self.expected - queued
        if not self._holding or now >= self.window_end or more < 0.5:
            return None
        fixed = self.cost.fixed
        if last_arrival > self.window_start:  # they are coming: one more is worth a / q
            due = last_arrival + fixed / queued
        else:  # the `more` expected are worth waiting for if they come within more·a / q
            due = self.window_start + more * fixed / queued
        until = min(self.window_end, due, latest)
        return until if now < until else None
