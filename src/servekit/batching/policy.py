"""What the batcher consumes: a validated :class:`servekit.settings.BatchSettings`, in seconds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Dispatch = Literal["adaptive", "idle"]
Inline = Literal["auto", "on", "off"]


@dataclass(frozen=True)
class BatchPolicy:
    """When the batcher dispatches, and how much it holds (latency in seconds).

    Build it with ``BatchSettings(...).policy()``: that is where settings are read from
    arguments and ``SERVEKIT_*`` variables and checked, with messages in the user's units.

    - ``max_batch_size``: most items (rows) in one ``predict`` call.
    - ``max_latency``: seconds the oldest queued item may wait for a batch to fill.
    - ``idle_batch_size``: when a model instance is free and every queued item fits in one
      batch, dispatch at once if there are at least this many items.
    - ``max_queue_size``: most items waiting; beyond it new work is refused (HTTP 429).
    - ``instances``: batches that may run at once (model replicas / executor threads).
    - ``dispatch``: ``"idle"`` sends what is queued as soon as an instance is free;
      ``"adaptive"`` may hold a free instance while more items are expected soon enough to
      pay for the wait (learnt online; see ``servekit.batching.adaptive``), within
      ``max_latency``.
    - ``inline``: where a plain (not ``async def``) handler runs: ``"off"`` in worker
      threads, ``"on"`` on the event loop (no thread hop; the loop serves nothing else
      meanwhile), ``"auto"`` in a worker thread until it proves to take microseconds, then on
      the loop (see ``servekit.batching.inline``); ``True``/``False`` mean on/off.
    """

    max_batch_size: int = 32
    max_latency: float = 0.005
    idle_batch_size: int = 1
    max_queue_size: int = 4096
    instances: int = 1
    dispatch: Dispatch = "idle"
    inline: Inline | bool = "auto"
