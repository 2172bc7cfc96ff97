"""``inline = "auto"``: move a model that proves cheap onto the event loop, and back if not.

A plain ``predict`` starts in its worker thread. The hand-off to that thread and back costs
more than a model that takes microseconds, so once ``WARMUP_BATCHES`` batches in a row each
took at most ``CHEAP_SECONDS``, and would take at most ``LOOP_MAX_SECONDS`` at
``max_batch_size`` items (scaled linearly, which overstates a cost that is mostly fixed), the
batcher runs it on the loop instead. A batch that then takes longer than ``LOOP_MAX_SECONDS``
sends the model back to its thread for good: the loop was held up once, never again; so
does a batch that fails there (the model may keep state bound to its thread).
"""

from __future__ import annotations

import logging

log = logging.getLogger("servekit.batching")

#: Consecutive cheap batches on the thread before a model moves to the loop.
WARMUP_BATCHES = 100
#: Most seconds one batch may take on the thread to count as cheap.
CHEAP_SECONDS = 0.0002
#: Most seconds a batch may take on the loop (and may be expected to take at full size).
LOOP_MAX_SECONDS = 0.001


class InlineJudge:
    """Watches a plain model's batch times and says when it moves between thread and loop."""

    def __init__(self, name: str, max_batch_size: int) -> None:
        self.name = name
        self.max_batch_size = max_batch_size
        self.on_loop = False
        self.settled = False  # back on its thread for good
        self._cheap = 0

    def failed(self, error: BaseException | None) -> None:
        """A batch failed: on the loop, that sends the model back to its thread for good
        (state bound to the thread it was made on, such as a SQLite connection, fails
        elsewhere); on the thread, the warm-up starts again."""
        if self.settled:
            return
        if self.on_loop:
            self.on_loop, self.settled = False, True
            log.warning(
                "model %s: a batch failed on the event loop (%s); predict runs in its worker"
                " thread from now on (set inline = 'off' to keep it there from the start)",
                self.name,
                type(error).__name__ if error is not None else "no output",
            )
        self._cheap = 0

    def observe(self, seconds: float, size: int) -> None:
        """One finished batch of ``size`` items that took ``seconds``."""
        if self.settled or size <= 0:
            return
        if self.on_loop:
            if seconds > LOOP_MAX_SECONDS:
                self.on_loop, self.settled = False, True
                log.info(
                    "model %s: a batch of %d took %.2f ms on the event loop; predict runs in"
                    " its worker thread from now on",
                    self.name,
                    size,
                    seconds * 1e3,
                )
            return
        full_size = seconds * self.max_batch_size / size
        if seconds <= CHEAP_SECONDS and full_size <= LOOP_MAX_SECONDS:
            self._cheap += 1
            if self._cheap >= WARMUP_BATCHES:
                self.on_loop = True
                log.info(
                    "model %s: predict takes microseconds (%.0f µs for %d items); it runs on"
                    " the event loop from now on (inline = 'auto')",
                    self.name,
                    seconds * 1e6,
                    size,
                )
        else:
            self._cheap = 0
