"""Thread API for dynamic batching, compatible with pyraisdk's ``dynbatch``.

A thin facade over :class:`servekit.batching.Batcher`: the batcher runs on an event loop in
a background thread; any number of caller threads submit items and block for their results.
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from servekit.batching import CancelToken
from servekit.errors import Cancelled, DeadlineExceeded, Draining
from servekit.events.engine import new_correlation_id
from servekit.model import Model
from servekit.server.runtime import READY, ModelRuntime, status_of
from servekit.settings import BatchSettings, InvalidSetting, set_in_env

__all__ = [
    "BaseModel",
    "DynamicBatchModel",
    "PredictCancelledError",
    "PredictTimeoutError",
    "RequestCorrelation",
]


THREAD = "thread"  # the door name in engine events


class PredictTimeoutError(DeadlineExceeded):
    """The result did not arrive within ``timeout`` seconds."""


class PredictCancelledError(Cancelled):
    """The caller's cancellation token was set before the item ran."""


class BaseModel(ABC):
    """What :class:`DynamicBatchModel` batches for: ``predict`` gets a list, returns a list."""

    @abstractmethod
    def predict(self, items: list[Any]) -> list[Any]:
        """One result per input item, in order."""

    def preprocess(self, items: list[Any]) -> list[Any]:
        """Runs on each batch just before ``predict`` (in the model thread)."""
        return items


class _Adapter(Model):
    """A pyraisdk ``BaseModel`` as a ``servekit.Model``: preprocess and predict per batch."""

    def __init__(self, model: BaseModel) -> None:
        super().__init__(name=type(model).__name__)
        self.model = model

    def predict(self, batch: list[Any]) -> list[Any]:
        return self.model.predict(self.model.preprocess(batch))

    def run_batch(self, batch: list[Any]) -> list[Any]:
        # pyraisdk's hooks are per batch: no per-item preprocess/postprocess to isolate
        return self.model.predict(self.model.preprocess(batch))


@dataclass
class RequestCorrelation:
    """pyraisdk's request correlation: the caller's correlation id and element index."""

    CorrelationId: str  # pyraisdk's field names
    Element: int


# Older names, read after the arguments and each setting's own SERVEKIT_* variable, first
# set one wins: (setting, variable, type, factor to the setting's unit).
_COMPAT_ENV: tuple[tuple[str, str, type[int] | type[float], float], ...] = (
    ("max_batch_size", "PYRAISDK_MAX_BATCH_SIZE", int, 1),
    ("idle_batch_size", "PYRAISDK_IDLE_BATCH_SIZE", int, 1),
    ("max_latency_ms", "SERVEKIT_MAX_BATCH_INTERVAL", float, 1000.0),  # seconds (DESIGN.md)
    ("max_latency_ms", "PYRAISDK_MAX_BATCH_INTERVAL", float, 1000.0),  # seconds (pyraisdk)
)


def _settings(**given: float | None) -> BatchSettings:
    """Arguments, then ``SERVEKIT_*``, then ``SERVEKIT_MAX_BATCH_INTERVAL``, then ``PYRAISDK_*``."""
    explicit: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    sources: list[str] = []
    for name, env, kind, factor in _COMPAT_ENV:
        raw = os.environ.get(env, "")
        if raw == "" or name in explicit or set_in_env(BatchSettings, name):
            continue
        try:
            explicit[name] = kind(raw) * factor
        except ValueError:
            raise InvalidSetting(
                f"invalid setting: environment variable {env}={raw!r} is not a {kind.__name__}"
            ) from None
        sources.append(f"{env}={raw!r}")
    try:
        return BatchSettings(**explicit)
    except InvalidSetting as exc:
        raise InvalidSetting(
            f"{exc} (read from {', '.join(sources)})" if sources else str(exc)
        ) from None


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class DynamicBatchModel:
    """Batch ``model.predict`` across threads; thread-safe.

    Each setting comes from its argument, else its ``SERVEKIT_*`` variable
    (``SERVEKIT_MAX_BATCH_SIZE``, ``SERVEKIT_IDLE_BATCH_SIZE``, ``SERVEKIT_MAX_LATENCY_MS`` or
    ``SERVEKIT_MAX_BATCH_INTERVAL`` in seconds, ...), else pyraisdk's ``PYRAISDK_MAX_BATCH_SIZE``,
    ``PYRAISDK_IDLE_BATCH_SIZE``, ``PYRAISDK_MAX_BATCH_INTERVAL`` (seconds), else the defaults
    of :class:`servekit.settings.BatchSettings`. ``max_batch_interval`` is in seconds.
    """

    def __init__(
        self,
        model: BaseModel,
        max_batch_size: int | None = None,
        idle_batch_size: int | None = None,
        max_batch_interval: float | None = None,
        *,
        max_queue_size: int | None = None,
        instances: int | None = None,
    ) -> None:
        self.model = model
        self.settings = _settings(
            max_batch_size=max_batch_size,
            idle_batch_size=idle_batch_size,
            max_latency_ms=None if max_batch_interval is None else max_batch_interval * 1000.0,
            max_queue_size=max_queue_size,
            instances=instances,
        )
        self.policy = self.settings.policy()
        self.max_batch_size = self.settings.max_batch_size
        self.idle_batch_size = self.settings.idle_batch_size
        self.max_batch_interval = self.settings.max_latency
        self._runtime = ModelRuntime(_Adapter(model), self.policy)
        self._runtime.state = READY  # a BaseModel is ready once constructed
        self._batcher = self._runtime.batcher
        self._closed = False
        self._loop = _new_loop()
        started = threading.Event()
        self._thread = threading.Thread(
            target=self._serve_loop, args=(started,), name="servekit-dynbatch", daemon=True
        )
        self._thread.start()
        started.wait()

    def _serve_loop(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._batcher.start())
        started.set()
        self._loop.run_forever()
        self._loop.close()

    @property
    def stats(self) -> dict[str, object]:
        """Batch sizes, waits and outcome counts so far."""
        return self._batcher.stats.snapshot()

    def predict(
        self,
        items: Sequence[Any],
        timeout: float | None = 1.0,
        raise_timeout: bool = True,
        cancellation_token: CancelToken | None = None,
        req_corr: RequestCorrelation | None = None,
    ) -> list[Any]:
        """Results for ``items`` in order; they may be split over several batches.

        On timeout raise :class:`PredictTimeoutError`, or with ``raise_timeout=False`` return
        ``None`` for each item. A set ``cancellation_token`` (e.g. ``threading.Event``) drops
        items that have not run yet and raises :class:`PredictCancelledError`. ``req_corr``
        (pyraisdk's request correlation) gives the engine events' correlation id and element.
        """
        if timeout is not None and (math.isnan(timeout) or timeout < 0):
            raise ValueError(f"timeout must be None or a number of seconds >= 0, got {timeout!r}")
        if self._closed:
            raise Draining("DynamicBatchModel is closed")
        if self._runtime.observing:
            return self._observed(items, timeout, raise_timeout, cancellation_token, req_corr)
        return self._predict(items, timeout, raise_timeout, cancellation_token)

    def _observed(
        self,
        items: Sequence[Any],
        timeout: float | None,
        raise_timeout: bool,
        token: CancelToken | None,
        req_corr: RequestCorrelation | None,
    ) -> list[Any]:
        """:meth:`_predict`, its outcome reported as engine events (door ``thread``)."""
        started = time.perf_counter()
        corr, elem = ("", -1) if req_corr is None else (req_corr.CorrelationId, req_corr.Element)
        corr = corr or new_correlation_id()
        runtime = self._runtime
        try:
            results = self._predict(items, timeout, True, token)
        except PredictTimeoutError as exc:
            runtime.finished(THREAD, corr, elem, started, exc.status, items, error=exc)
            if raise_timeout:
                raise
            return [None] * len(items)
        except Exception as exc:  # reported, then raised as it was
            runtime.finished(THREAD, corr, elem, started, status_of(exc), items, error=exc)
            raise
        if runtime.request_log is not None:
            # a call that succeeded is counted by its batch's events (BatchSize, QueueWait,
            # PredictDuration), as pyraisdk's dynbatch reports: an event per call would cost
            # the thread API a quarter of its throughput
            runtime.finished(THREAD, corr, elem, started, 200, items, results=results)
        return results

    def _predict(
        self,
        items: Sequence[Any],
        timeout: float | None,
        raise_timeout: bool,
        cancellation_token: CancelToken | None,
    ) -> list[Any]:
        future = self._runtime.infer_threadsafe(items, token=cancellation_token)
        try:
            try:
                return future.result(timeout)
            except TimeoutError:
                if future.cancel():  # still waiting: dropped before the model sees it
                    return self._timed_out(len(items), timeout, raise_timeout)
                return future.result()  # finished as the wait ended (or the model raised)
        except DeadlineExceeded:
            return self._timed_out(len(items), timeout, raise_timeout)
        except Cancelled as error:
            if isinstance(error, PredictCancelledError):
                raise
            raise PredictCancelledError(error.message) from error

    @staticmethod
    def _timed_out(count: int, timeout: float | None, raise_timeout: bool) -> list[Any]:
        if raise_timeout:
            raise PredictTimeoutError(f"no result within {timeout} s")
        return [None] * count

    def predict_one(
        self,
        item: Any,
        timeout: float | None = 1.0,
        raise_timeout: bool = True,
        cancellation_token: CancelToken | None = None,
        req_corr: RequestCorrelation | None = None,
    ) -> Any:
        """Like :meth:`predict` for a single item."""
        return self.predict([item], timeout, raise_timeout, cancellation_token, req_corr)[0]

    def close(self, timeout: float | None = 30.0) -> None:
        """Finish queued work (up to ``timeout`` seconds), then stop the background thread."""
        if self._closed:
            return
        self._closed = True
        future = asyncio.run_coroutine_threadsafe(self._batcher.close(timeout), self._loop)
        future.result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()

    def __enter__(self) -> DynamicBatchModel:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
