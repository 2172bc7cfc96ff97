"""Logging a model's failures without flooding the log.

A client that keeps sending rows the model cannot take makes the same error again and again;
a traceback each time wrote megabytes a second. :class:`FailureLog` logs the first failure of
a kind (same exception type and message) with its traceback, counts the repeats, and logs one
summary line per kind per ``period`` while they go on. At most ``burst`` tracebacks per
``period`` are logged, so errors whose message changes with each input are counted too.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

_MARK = "_servekit_reported"
_SHOWN = 300  # characters of a message shown in a summary line


def reported(error: BaseException) -> bool:
    """True once a :class:`FailureLog` has logged or counted ``error`` (log it no more)."""
    return getattr(error, _MARK, False) is True


class _Kind:
    __slots__ = ("count", "shown", "since")

    def __init__(self, since: float, shown: bool) -> None:
        self.since = since  # start of this kind's current period
        self.count = 0  # failures not logged one by one in this period
        self.shown = shown  # its traceback was logged


class FailureLog:
    """Rate-limited log of one model's failures; called from one thread (the batcher's loop)."""

    def __init__(
        self,
        logger: logging.Logger,
        model: str,
        clock: Callable[[], float],
        *,
        period: float = 10.0,
        burst: int = 5,
        max_kinds: int = 100,
    ) -> None:
        self.logger = logger
        self.model = model
        self.period = period
        self.burst = burst
        self.max_kinds = max_kinds
        self._clock = clock
        self._kinds: dict[tuple[type[BaseException], str], _Kind] = {}
        self._burst_since = float("-inf")
        self._tracebacks = 0  # logged since _burst_since

    def report(self, error: BaseException) -> None:
        """Log ``error`` with its traceback if it is the first of its kind, else count it."""
        with contextlib.suppress(AttributeError, TypeError):
            setattr(error, _MARK, True)
        now = self._clock()
        key = (type(error), str(error))
        kind = self._kinds.get(key)
        if kind is not None:
            kind.count += 1
            return
        if len(self._kinds) >= self.max_kinds:
            oldest = next(iter(self._kinds))
            self._summarise(oldest, self._kinds.pop(oldest), now)
        if now - self._burst_since >= self.period:
            self._burst_since, self._tracebacks = now, 0
        shown = self._tracebacks < self.burst
        kind = self._kinds[key] = _Kind(now, shown)
        if shown:
            self._tracebacks += 1
            self.logger.error(
                "model %s failed: %s (repeats in the next %g s are counted, not logged)",
                self.model,
                _describe(error),
                self.period,
                exc_info=error,
            )
        else:
            kind.count = 1

    def next_due(self) -> float | None:
        """When the next summary is due (on the clock given), or None if nothing is counted."""
        return min((k.since + self.period for k in self._kinds.values()), default=None)

    def flush(self, *, everything: bool = False) -> None:
        """Log a summary for each kind whose period is over (``everything``: for all kinds).

        A kind with no repeats in its last period is forgotten: its next failure is logged
        with a traceback again.
        """
        now = self._clock()
        for key, kind in list(self._kinds.items()):
            if everything or now - kind.since >= self.period:
                if kind.count:
                    self._summarise(key, kind, now)
                    kind.since, kind.count, kind.shown = now, 0, True
                else:
                    del self._kinds[key]

    def _summarise(self, key: tuple[type[BaseException], str], kind: _Kind, now: float) -> None:
        if not kind.count:
            return
        exc_type, message = key
        self.logger.error(
            "model %s: %d %sfailure%s like %s: %s in the last %.1f s",
            self.model,
            kind.count,
            "more " if kind.shown else "",
            "" if kind.count == 1 else "s",
            exc_type.__name__,
            _shorten(message),
            now - kind.since,
        )


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {_shorten(str(error))}"


def _shorten(message: str) -> str:
    return message if len(message) <= _SHOWN else message[:_SHOWN] + "…"
