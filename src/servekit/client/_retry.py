"""``Retry``: the one retry policy every servekit client uses.

Only what is safe to resend is retried:

- ``ConnectError`` whose request never left this machine (``sent`` False), and, for
  idempotent requests (GET, HEAD), a connection that broke after sending;
- 503 (not ready, draining) and 429 (queue full): after ``Retry-After`` when the server
  sent one, else after the backoff.

Never a timeout (the server may still be working), a protocol error, a 500 (the model
raised: running it again runs it again) or any other 4xx. Waits grow exponentially with
jitter and stop at ``max_backoff``; ``attempts`` bounds the tries and ``budget`` the seconds
spent waiting between them.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from servekit.client._errors import (
    ClientError,
    ConnectError,
    ServiceUnavailable,
    TooManyRequests,
)

__all__ = ["Retry"]

T = TypeVar("T")


@dataclass
class Retry:
    """How many times to try a request, and how long to wait in between.

    ``attempts`` counts every try (at least one; ``None``: no limit, for subscriptions that
    reconnect until closed). Before try ``k`` (k >= 2) the wait is
    ``min(max_backoff, backoff * 2**(k-2))`` times a random factor in [0.5, 1), or the
    server's ``Retry-After`` (plus up to ``backoff`` of jitter). A wait that would take the
    total past ``budget`` seconds is not taken: the last error is raised instead. ``sleep``,
    ``async_sleep`` and ``rand`` may be replaced, e.g. by tests.
    """

    attempts: int | None = 5
    backoff: float = 0.05
    max_backoff: float = 2.0
    budget: float | None = 30.0
    sleep: Callable[[float], None] = time.sleep
    async_sleep: Callable[[float], Awaitable[None]] | None = None  # None: asyncio.sleep
    rand: Callable[[], float] = random.random

    def delay(self, attempt: int) -> float:
        """The backoff before try number ``attempt + 1`` (``attempt`` >= 1)."""
        ceiling = min(self.max_backoff, self.backoff * 2.0 ** (attempt - 1))
        return ceiling * (0.5 + self.rand() / 2)

    def wait_after(
        self, error: ClientError, attempt: int, waited: float = 0.0, *, idempotent: bool = False
    ) -> float | None:
        """Seconds to wait before trying again after ``error`` on try ``attempt``; None: give up.

        ``waited`` is what the earlier retries of this request already waited.
        """
        if self.attempts is not None and attempt >= max(1, self.attempts):
            return None
        if not retryable(error, idempotent=idempotent):
            return None
        pause = self.delay(attempt)
        if isinstance(error, (TooManyRequests, ServiceUnavailable)):
            asked = error.retry_after
            if asked is not None:
                pause = asked + self.backoff * self.rand()
        if self.budget is not None and waited + pause > self.budget:
            return None
        return pause

    def call(self, once: Callable[[], T], *, idempotent: bool = False) -> T:
        """Call ``once`` until it returns; retry what is safe, else raise the error."""
        attempt, waited = 1, 0.0
        while True:
            try:
                return once()
            except ClientError as exc:
                pause = self.wait_after(exc, attempt, waited, idempotent=idempotent)
                if pause is None:
                    raise
            self.sleep(pause)
            attempt, waited = attempt + 1, waited + pause

    async def acall(self, once: Callable[[], Awaitable[T]], *, idempotent: bool = False) -> T:
        """The asyncio twin of :meth:`call`."""
        import asyncio  # here, so that blocking clients never import asyncio

        sleep = self.async_sleep or asyncio.sleep
        attempt, waited = 1, 0.0
        while True:
            try:
                return await once()
            except ClientError as exc:
                pause = self.wait_after(exc, attempt, waited, idempotent=idempotent)
                if pause is None:
                    raise
            await sleep(pause)
            attempt, waited = attempt + 1, waited + pause


def retryable(error: ClientError, *, idempotent: bool = False) -> bool:
    """Whether resending after ``error`` is safe and may help."""
    if isinstance(error, ConnectError):
        return idempotent or not error.sent
    return isinstance(error, (TooManyRequests, ServiceUnavailable))
