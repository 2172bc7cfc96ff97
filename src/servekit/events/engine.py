"""Engine events: what the runtime and the batcher did, as pyraisdk-style structured events.

Keys (``Code`` is a string, as pyraisdk's; ``Numeric`` in the unit given):

=============================  ===================  =======================================
key                            Code                 Numeric
=============================  ===================  =======================================
``servekit_RequestDuration``   HTTP status          seconds from the runtime call to the outcome
``servekit_Refused``           429, 413 or 503      seconds (the request was not queued)
``servekit_Timeout``           504                  seconds
``servekit_Cancelled``         499                  seconds
``servekit_BatchSize``         ``""``               items in the batch
``servekit_QueueWait``         ``""``               mean seconds the batch's items waited
``servekit_PredictDuration``   200 or 500           seconds of the model's batch call
``servekit_PreprocessDuration``  ``""``             seconds of ``preprocess`` over the batch
=============================  ===================  =======================================

Per-request events carry the request's correlation id and element and ``Detail`` =
``"<door> <model>"``; per-batch events carry no correlation id (a batch serves many requests)
and ``Detail`` = the model. They go to the structured stream of :mod:`servekit.events.records`.
"""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Mapping
from typing import Any

from servekit.events.records import emit_structured

__all__ = [
    "BATCH_SIZE",
    "CANCELLED",
    "PREDICT_DURATION",
    "PREPROCESS_DURATION",
    "QUEUE_WAIT",
    "REFUSED",
    "REQUEST_DURATION",
    "TIMEOUT",
    "EngineEvents",
    "apply_settings",
    "engine_enabled",
    "new_correlation_id",
]

REQUEST_DURATION = "servekit_RequestDuration"
REFUSED = "servekit_Refused"
TIMEOUT = "servekit_Timeout"
CANCELLED = "servekit_Cancelled"
BATCH_SIZE = "servekit_BatchSize"
QUEUE_WAIT = "servekit_QueueWait"
PREDICT_DURATION = "servekit_PredictDuration"
PREPROCESS_DURATION = "servekit_PreprocessDuration"

#: the second event a request's status adds to its RequestDuration
OUTCOME_KEYS = {429: REFUSED, 413: REFUSED, 503: REFUSED, 504: TIMEOUT, 499: CANCELLED}
_CODES = {status: str(status) for status in (200, 400, 404, 413, 429, 499, 500, 503, 504)}


def code_of(status: int) -> str:
    """``status`` as the string pyraisdk's ``Code`` holds."""
    return _CODES.get(status) or str(status)


class EngineEvents:
    """The engine events of one model (its name is in every ``Detail``)."""

    __slots__ = ("_details", "model")

    def __init__(self, model: str) -> None:
        self.model = model
        self._details: dict[str, str] = {}

    def detail(self, door: str) -> str:
        """``"<door> <model>"`` (the model alone for a caller that names no door), made once."""
        detail = self._details.get(door)
        if detail is None:
            detail = self._details[door] = f"{door} {self.model}" if door else self.model
        return detail

    def request(self, door: str, status: int, seconds: float, corr_id: str, elem: int) -> None:
        """One request's outcome: RequestDuration, plus Refused/Timeout/Cancelled if so."""
        detail = self.detail(door)
        code = _CODES.get(status) or str(status)
        emit_structured(REQUEST_DURATION, code, seconds, detail, corr_id, elem)
        if status != 200:
            key = OUTCOME_KEYS.get(status)
            if key is not None:
                emit_structured(key, code, seconds, detail, corr_id, elem)

    def batch(
        self, size: int, wait: float, predict: float, ok: bool, preprocess: float | None
    ) -> None:
        """One batch: its size, mean queue wait, predict (and preprocess) durations."""
        model = self.model
        emit_structured(BATCH_SIZE, "", size, model)
        emit_structured(QUEUE_WAIT, "", wait, model)
        emit_structured(PREDICT_DURATION, "200" if ok else "500", predict, model)
        if preprocess is not None:
            emit_structured(PREPROCESS_DURATION, "", preprocess, model)


# Correlation ids made here: "<process tag>-<counter>", unique per process and cheap (no uuid4
# per request); the tag is new in a forked child.
_tag = ""
_counter = itertools.count(1)


def _new_tag() -> None:
    global _tag, _counter
    _tag = f"{os.getpid():x}{secrets.token_hex(3)}"
    _counter = itertools.count(1)


_new_tag()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_tag)


def new_correlation_id() -> str:
    """A correlation id for a request that came without one."""
    return f"{_tag}-{next(_counter)}"


def engine_enabled() -> bool:
    """Whether engine events are on by default (``SERVEKIT_EVENTS_ENGINE``, default true)."""
    return apply_settings({})


def apply_settings(events: Mapping[str, Any]) -> bool:
    """Apply ``events_*`` overrides (``EventSettings`` field → value) to the process's bus and
    return whether engine events are on (``engine``, else ``SERVEKIT_EVENTS_ENGINE``)."""
    from servekit.settings import EventSettings

    settings = EventSettings(**events)
    if any(name != "engine" for name in events):
        import servekit.events

        servekit.events.configure(**{k: v for k, v in events.items() if k != "engine"})
    return settings.engine
