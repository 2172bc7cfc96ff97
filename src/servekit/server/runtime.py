"""A served model's runtime (model + batcher + state) and the registry of models and versions."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
import time
from collections.abc import Coroutine, Iterator, Sequence
from typing import Any

from servekit.batching import Batcher, BatchPolicy, CancelToken, ThreadFuture
from servekit.errors import (
    BadRequest,
    DeadlineExceeded,
    Draining,
    ModelNotFound,
    ModelNotReady,
    ServekitError,
)
from servekit.model import Model

log = logging.getLogger("servekit.server")

LOADING, READY, FAILED, DRAINING, STOPPED = "loading", "ready", "failed", "draining", "stopped"


class ModelRuntime:
    """One model being served: its batcher, load state and load error if any.

    :meth:`infer` (and :meth:`infer_threadsafe` for callers in other threads) is the one way
    from any door into the batcher: it checks readiness, runs ``Model.validate``, applies the
    caller's deadline and cancels the work when the caller goes away.
    """

    def __init__(self, model: Model, policy: BatchPolicy) -> None:
        self.model = model
        self.policy = policy
        self.batcher = Batcher(model.run_batch, policy, name=model.full_name)
        self.state = LOADING
        self.load_error: str | None = None
        self.operations = model.operations()
        self._validates = type(model).validate is not Model.validate

    def infer(
        self,
        items: Sequence[Any],
        *,
        request: Any = None,
        deadline: float | None = None,
        cancelled_by: asyncio.Future[Any] | None = None,
    ) -> Coroutine[Any, Any, list[Any]]:
        """Run ``items`` through the model's batcher: ``await`` it for the results, in order.

        ``request`` is what ``Model.validate`` sees (the request as its door decoded it;
        default: the items). ``deadline`` is on :meth:`now`'s clock: work still queued then
        fails with ``DeadlineExceeded`` (504). When ``cancelled_by`` completes (the client
        disconnected) work that has not run is dropped. The checks run at the call; the
        batcher's own coroutine is returned as is (one coroutine less per request).
        """
        self.check_ready()
        if self._validates:
            self._validate(items if request is None else request)
        if deadline is not None and deadline <= self.batcher.now():
            raise DeadlineExceeded("the request's timeout had already passed when it arrived")
        return self.batcher.run(items, deadline=deadline, cancelled_by=cancelled_by)

    def infer_threadsafe(
        self,
        items: Sequence[Any],
        *,
        request: Any = None,
        token: CancelToken | None = None,
    ) -> ThreadFuture:
        """:meth:`infer` for callers in other threads; cancel the future to drop the work."""
        self.check_ready()
        if self._validates:
            self._validate(items if request is None else request)
        return self.batcher.submit_threadsafe(items, token=token)

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
            log.error(
                "model %s failed to load after %.2f s: %s",
                name,
                took,
                self.load_error,
                exc_info=exc,
            )
            return
        if self.state == LOADING:
            self.state = READY
            log.info("model %s loaded in %.2f s: ready", name, time.monotonic() - started)

    async def stop(self, timeout: float) -> None:
        self.state = DRAINING
        await self.batcher.close(timeout)
        self.state = STOPPED


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
