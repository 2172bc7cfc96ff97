"""A served model's runtime (model + batcher + state) and the registry of models and versions."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
import time
from collections.abc import Coroutine, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from servekit.batching import Batcher, BatchPolicy, CancelToken, ThreadFuture
from servekit.errors import (
    BadRequest,
    Cancelled,
    DeadlineExceeded,
    Draining,
    ModelNotFound,
    ModelNotReady,
    ServekitError,
)
from servekit.events.engine import EngineEvents, engine_enabled, new_correlation_id
from servekit.events.request_log import RequestLog
from servekit.model import Model, batch_context
from servekit.server.metrics import INFER, ModelMetrics, mark_counted

if TYPE_CHECKING:
    from servekit.settings import ServerSettings

log = logging.getLogger("servekit.server")

LOADING, READY, FAILED, DRAINING, STOPPED = "loading", "ready", "failed", "draining", "stopped"
_PENDING_METRICS = 10_000  # batch metrics not yet taken by their requests (bounded)


def status_of(error: BaseException) -> int:
    """The HTTP status an outcome maps to: a servekit error's own, 499 cancelled, else 500."""
    if isinstance(error, ServekitError):
        return error.status
    if isinstance(error, asyncio.CancelledError):
        return Cancelled.status
    return 500


class ModelRuntime:
    """One model being served: its batcher, load state and load error if any.

    :meth:`infer` (and :meth:`infer_threadsafe` for callers in other threads) is the one way
    from any door into the batcher: it checks readiness, runs ``Model.validate``, applies the
    caller's deadline and cancels the work when the caller goes away. It is also where engine
    events and request logging attach (``observing``): a door passes its name (``door``) and
    the request's correlation id, and only when ``observing`` is true need it look one up.
    """

    def __init__(
        self,
        model: Model,
        policy: BatchPolicy,
        *,
        settings: ServerSettings | None = None,
        engine_events: bool | None = None,
    ) -> None:
        """``engine_events``: None reads ``SERVEKIT_EVENTS_ENGINE``; request logging follows
        ``settings.request_log`` (no settings: off)."""
        self.model = model
        self.policy = policy
        self.batcher = Batcher(model.run_batch, policy, name=model.full_name)
        self.state = LOADING
        self.load_error: str | None = None
        self.operations = model.operations()
        self._validates = type(model).validate is not Model.validate
        if engine_events is None:
            engine_events = engine_enabled()
        self.events = EngineEvents(model.full_name) if engine_events else None
        self.request_log = _request_log(model, settings)
        #: engine events or request logging are on: doors pass correlation ids
        self.observing = self.events is not None or self.request_log is not None
        #: Prometheus aggregates (``settings.metrics``; no settings: off)
        self.metrics = ModelMetrics(self) if settings is not None and settings.metrics else None
        self._watched = self.observing or self.metrics is not None
        self._batch_metrics: dict[int, tuple[Sequence[Any], dict[str, Any]]] = {}
        if self._watched:
            self.batcher.on_batch = self._on_batch

    def infer(
        self,
        items: Sequence[Any],
        *,
        request: Any = None,
        deadline: float | None = None,
        cancelled_by: asyncio.Future[Any] | None = None,
        door: str = "",
        correlation_id: str | None = None,
        element: int = -1,
    ) -> Coroutine[Any, Any, list[Any]]:
        """Run ``items`` through the model's batcher: ``await`` it for the results, in order.

        ``request`` is what ``Model.validate`` sees (the request as its door decoded it;
        default: the items) and what request logging records. ``deadline`` is on :meth:`now`'s
        clock: work still queued then fails with ``DeadlineExceeded`` (504). When
        ``cancelled_by`` completes (the client disconnected) work that has not run is dropped.
        The checks run at the call. Neither ``observing`` nor ``metrics``: the batcher's own
        coroutine is returned as is (one coroutine less per request); else a coroutine that
        reports the outcome (``door``, ``correlation_id`` — one is made when None and
        ``observing`` — and ``element``) to the metrics, events and request log.
        """
        if self._watched:
            return self._infer_observed(
                items, request, deadline, cancelled_by, door, correlation_id, element
            )
        self.check_ready()
        if self._validates:
            self._validate(items if request is None else request)
        if deadline is not None and deadline <= self.batcher.now():
            raise DeadlineExceeded("the request's timeout had already passed when it arrived")
        return self.batcher.run(items, deadline=deadline, cancelled_by=cancelled_by)

    def _infer_observed(
        self,
        items: Sequence[Any],
        request: Any,
        deadline: float | None,
        cancelled_by: asyncio.Future[Any] | None,
        door: str,
        corr_id: str | None,
        element: int,
    ) -> Coroutine[Any, Any, list[Any]]:
        started = time.perf_counter()
        if corr_id is None:
            corr_id = new_correlation_id() if self.observing else ""
        try:
            self.check_ready()
            if self._validates:
                self._validate(items if request is None else request)
            if deadline is not None and deadline <= self.batcher.now():
                raise DeadlineExceeded("the request's timeout had already passed when it arrived")
        except ServekitError as exc:
            self._finished(door, corr_id, element, started, exc.status, items, request, None, exc)
            raise
        work = self.batcher.run(items, deadline=deadline, cancelled_by=cancelled_by)
        if not self.observing:  # metrics alone: the lean watcher (a third fewer arguments)
            return self._timed(work, door, started)
        return self._watch(work, items, request, door, corr_id, element, started)

    async def _timed(
        self, work: Coroutine[Any, Any, list[Any]], door: str, started: float
    ) -> list[Any]:
        metrics = self.metrics
        assert metrics is not None
        try:
            results = await work
        except BaseException as exc:  # counted, then raised as it was
            metrics.request(door, INFER, status_of(exc), time.perf_counter() - started)
            mark_counted(exc)
            raise
        metrics.request(door, INFER, 200, time.perf_counter() - started)
        return results

    async def _watch(
        self,
        work: Coroutine[Any, Any, list[Any]],
        items: Sequence[Any],
        request: Any,
        door: str,
        corr_id: str,
        element: int,
        started: float,
    ) -> list[Any]:
        try:
            results = await work
        except BaseException as exc:  # reported, then raised as it was
            status = status_of(exc)
            self._finished(door, corr_id, element, started, status, items, request, None, exc)
            raise
        self._finished(door, corr_id, element, started, 200, items, request, results, None)
        return results

    def infer_threadsafe(
        self,
        items: Sequence[Any],
        *,
        request: Any = None,
        token: CancelToken | None = None,
    ) -> ThreadFuture:
        """:meth:`infer` for callers in other threads; cancel the future to drop the work.

        The caller waits on the future itself, so when ``observing`` it reports the outcome
        (errors raised here included) with :meth:`finished`.
        """
        self.check_ready()
        if self._validates:
            self._validate(items if request is None else request)
        return self.batcher.submit_threadsafe(items, token=token)

    def finished(
        self,
        door: str,
        correlation_id: str,
        element: int,
        started: float,
        status: int,
        items: Sequence[Any],
        *,
        request: Any = None,
        results: list[Any] | None = None,
        error: BaseException | None = None,
    ) -> None:
        """Report a request's outcome (``started``: ``time.perf_counter()`` at its arrival)
        as engine events and a request record; for doors that wait on their own (threads)."""
        if self._watched:
            self._finished(
                door, correlation_id, element, started, status, items, request, results, error
            )

    def _finished(
        self,
        door: str,
        corr_id: str,
        element: int,
        started: float,
        status: int,
        items: Sequence[Any],
        request: Any,
        results: list[Any] | None,
        error: BaseException | None,
    ) -> None:
        seconds = time.perf_counter() - started
        metrics = self.metrics
        if metrics is not None:
            metrics.request(door, INFER, status, seconds)
            if error is not None:
                mark_counted(error)
        events = self.events
        if events is not None:
            events.request(door, status, seconds, corr_id, element)
        log = self.request_log
        if log is not None:
            log.log(
                door=door,
                corr_id=corr_id,
                started=time.time() - seconds,
                seconds=seconds,
                status=status,
                inputs=items if request is None else request,
                outputs=results,
                error=error,
                metrics=self._metrics_of(items),
            )

    def _metrics_of(self, items: Sequence[Any]) -> dict[str, Any] | None:
        """The metrics the model set for this request: model-wide ones, then its batch's."""
        model_wide = getattr(self.model, "metrics", None)
        entry = self._batch_metrics.pop(id(items), None) if self._batch_metrics else None
        if entry is None or entry[0] is not items:
            return dict(model_wide) if model_wide else None
        return {**model_wide, **entry[1]} if model_wide else entry[1]

    def _on_batch(self, parts: list[Any], size: int, wait: float, took: float, ok: bool) -> None:
        """In the model thread after each batch: aggregate it, attach its metrics, emit events."""
        if self.metrics is not None:
            self.metrics.batch(size, wait, took)
        if not self.observing:
            return
        context = batch_context
        mine = context.model is self.model
        if self.request_log is not None and mine and context.metrics:
            pending = self._batch_metrics
            if len(pending) >= _PENDING_METRICS:  # requests gone before taking theirs
                pending.clear()
            for work, _, _ in parts:
                pending[id(work.items)] = (work.items, context.metrics)
        if self.events is not None:
            self.events.batch(size, wait, took, ok, context.preprocess if mine else None)

    def now(self) -> float:
        """The clock deadlines are measured on (monotonic seconds)."""
        return self.batcher.now()

    def _validate(self, request: Any) -> None:
        try:
            self.model.validate(request)
        except ServekitError:
            raise
        except (ValueError, TypeError, KeyError) as exc:
            raise BadRequest(f"model '{self.model.name}' rejected the request: {exc}") from exc

    @property
    def ready(self) -> bool:
        return self.state == READY

    def check_ready(self) -> None:
        """Raise the 503 that says why this model cannot take work now."""
        if self.state == READY:
            return
        name = self.model.full_name
        if self.state == LOADING:
            raise ModelNotReady(f"model '{name}' is still loading")
        if self.state == FAILED:
            raise ModelNotReady(f"model '{name}' failed to load: {self.load_error}")
        raise Draining(f"model '{name}' is shutting down")

    async def start(self) -> None:
        await self.batcher.start()

    async def load(self) -> None:
        """Run ``model.load()`` in a daemon thread; a failure is recorded and logged in full.

        Not the loop's executor: interpreter exit waits for executor threads, so a server told
        to stop mid-load would hang until the load ended. A daemon thread is abandoned instead.
        """
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def settle(error: BaseException | None) -> None:
            if done.done():
                return
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(error)

        def run() -> None:
            error: BaseException | None = None
            try:
                self.model.load()
            except Exception as exc:  # the model's failure, reported below
                error = exc
            except BaseException as exc:  # SystemExit in a thread would end it silently
                error = RuntimeError(f"load() raised {exc!r}")
            # a closed loop (RuntimeError): the server stopped while the model loaded
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, error)

        name = self.model.full_name
        started = time.monotonic()
        threading.Thread(target=run, name=f"servekit-load-{name}", daemon=True).start()
        try:
            await done
        except Exception as exc:  # any load failure is the model's state, shown at /ready
            self.state = FAILED
            self.load_error = f"{type(exc).__name__}: {exc}"
            took = time.monotonic() - started
            if self.metrics is not None:
                self.metrics.loaded(took, ok=False)
            log.error(
                "model %s failed to load after %.2f s: %s",
                name,
                took,
                self.load_error,
                exc_info=exc,
            )
            return
        took = time.monotonic() - started
        if self.metrics is not None:
            self.metrics.loaded(took, ok=True)
        if self.state == LOADING:
            self.state = READY
            log.info("model %s loaded in %.2f s: ready", name, took)

    async def stop(self, timeout: float) -> None:
        self.state = DRAINING
        await self.batcher.close(timeout)
        self.state = STOPPED
        if self.request_log is not None:
            self.request_log.flush()


def correlation_id(headers: Sequence[tuple[bytes, bytes]], fallback: Any = None) -> str | None:
    """The ``Correlation-Id`` header of an ASGI request, else ``fallback`` (e.g. the v2
    request ``id``) as text, else None (the runtime then makes one)."""
    for name, value in headers:
        if name == b"correlation-id":
            return value.decode("latin-1")
    return None if fallback is None else str(fallback)


def _request_log(model: Model, settings: ServerSettings | None) -> RequestLog | None:
    if settings is None or settings.request_log == "off":
        return None
    return RequestLog(
        str(model.name),
        model.version,
        mode=settings.request_log,
        topic=settings.request_log_topic,
        sample=settings.request_log_sample,
        batch=settings.request_log_batch,
    )


def _version_key(version: str | None) -> tuple[Any, ...]:
    parts = re.split(r"(\d+)", version or "")
    return tuple(int(p) if p.isdigit() else p for p in parts)


class ModelRegistry:
    """Models by name and version; a name without a version means its newest version."""

    def __init__(self) -> None:
        self._by_name: dict[str, dict[str | None, ModelRuntime]] = {}

    def add(self, runtime: ModelRuntime) -> None:
        model = runtime.model
        versions = self._by_name.setdefault(str(model.name), {})
        if model.version in versions:
            raise ValueError(f"model '{model.full_name}' is registered twice")
        versions[model.version] = runtime

    def __iter__(self) -> Iterator[ModelRuntime]:
        for versions in self._by_name.values():
            yield from versions.values()

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_name.values())

    def versions(self, name: str) -> list[str]:
        return sorted((v for v in self._by_name.get(name, {}) if v), key=_version_key)

    def get(self, name: str, version: str | None = None) -> ModelRuntime:
        versions = self._by_name.get(name)
        if not versions:
            known = ", ".join(sorted(self._by_name)) or "none"
            raise ModelNotFound(f"unknown model '{name}' (served models: {known})")
        if version is None:
            if None in versions:
                return versions[None]
            return versions[max(versions, key=_version_key)]
        runtime = versions.get(version)
        if runtime is None:
            known = ", ".join(self.versions(name)) or "none"
            raise ModelNotFound(f"model '{name}' has no version '{version}' (versions: {known})")
        return runtime
