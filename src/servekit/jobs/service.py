"""A jobs service: the pipelines (loaded once), the job runner, online inference through the
one runtime call, and the platform messages. The HTTP and TCP doors only translate."""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Mapping, Sequence
from typing import Any

from servekit import events
from servekit.errors import BadRequest
from servekit.events import EventBus
from servekit.jobs.config import JobConfig
from servekit.jobs.context import Context, ContextKey
from servekit.jobs.job import KINDS, Job
from servekit.jobs.logs import JobLog, log
from servekit.jobs.messages import Emitter, Publish, end_failed
from servekit.jobs.pipeline import INFERENCE, Entrance, entrances
from servekit.jobs.runner import JobRunner, Method
from servekit.model import Model
from servekit.server.runtime import ModelRuntime
from servekit.settings import EventSettings, with_overrides

__all__ = ["JobsService", "PipelineLoadError"]


class PipelineLoadError(RuntimeError):
    """A pipeline's ``__init__`` raised; the service does not start."""


class _InferenceModel(Model):
    """The ``@inference()`` method as a servekit model: one request's parameters per item."""

    batch_rows = False

    def __init__(self, service: JobsService) -> None:
        super().__init__(name="inference")
        self.service = service

    def predict(self, batch: list[Any]) -> list[Any]:
        return [self.service.run_inference(params) for params in batch]


class JobsService:
    """Serves ``pipelines`` (classes decorated with ``@pipeline()``) with ``config``.

    Messages go to ``publish(topic, value)`` if given, else to a bus on ``config.events_url``
    (``kafka://$BOOTSTRAP_SERVERS``) if set, else to the process's event bus.
    """

    def __init__(
        self, pipelines: Sequence[type], config: JobConfig, *, publish: Publish | None = None
    ) -> None:
        self.config = config
        self.entrances: dict[int, Entrance] = entrances(pipelines, config.task_type)
        self.bus: EventBus | None = None
        if publish is None:
            publish = self._publisher()
        self.emitter = Emitter(
            publish,
            instance_id=config.instance_id,
            status_topic=config.topic_status,
            result_topic=config.topic_result,
        )
        self.runner = JobRunner(
            self.emitter,
            work_dir=config.work_dir,
            max_jobs=config.max_jobs,
            keep_finished=config.keep_finished,
        )
        self.instances: dict[type, Any] = {}
        self.runtime: ModelRuntime | None = None
        if INFERENCE in self.entrances:
            model = _InferenceModel(self)
            self.runtime = ModelRuntime(model, model.batch_policy())

    def _publisher(self) -> Publish:
        if self.config.events_url is None:
            return events.publish
        settings = with_overrides(EventSettings, None, {})
        self.bus = EventBus(
            self.config.events_url.split(),
            buffer_size=settings.buffer_size,
            spool_dir=settings.spool_dir,
            spool_max_bytes=settings.spool_max_bytes,
            exit_flush_timeout=settings.exit_flush_timeout,
        )
        bus = self.bus
        # one key for every message: a partitioned topic keeps them in one order
        instance = self.config.instance_id or "servekit-jobs"

        def publish(topic: str, value: Mapping[str, Any]) -> None:
            bus.publish(topic, value, key=instance)

        return publish

    # ------------------------------------------------------------------ lifecycle
    def load(self) -> None:
        """Create each pipeline with a context of the environment (its ``__init__(ctx)``).

        A failure is published as an END with status 300 (as dubhe-sdk does) and raised.
        """
        tmp = self.config.work_dir / "tmp"
        output = self.config.work_dir / "output"
        folders = {ContextKey.KEY_TMP_DIR: str(tmp), ContextKey.KEY_OUTPUT_DIR: str(output)}
        for entrance in self.entrances.values():
            cls = entrance.cls
            if cls in self.instances:
                continue
            try:
                tmp.mkdir(parents=True, exist_ok=True)
                self.instances[cls] = cls(Context(folders=folders, log=JobLog(None)))
            except Exception as exc:
                trace = traceback.format_exc()
                log.error("pipeline %s failed to load:\n%s", cls.__name__, trace.rstrip())
                self.emitter.end(None, end_failed(self.config.instance_id, exc, trace))
                raise PipelineLoadError(f"{cls.__name__}(ctx) raised {exc!r}") from exc
        served = ", ".join(f"{k} {KINDS[k]}" for k in sorted(self.entrances))
        log.info("pipelines loaded; req_type served: %s", served)

    async def start(self) -> None:
        """Start the inference runtime (the pipelines must be loaded)."""
        if not self.instances:
            await asyncio.to_thread(self.load)
        if self.runtime is not None:
            await self.runtime.start()
            await self.runtime.load()

    def announce_ready(self) -> None:
        """READY: the door listens."""
        self.emitter.ready()
        log.info("model is ready")

    async def stop(self, timeout: float = 30.0) -> None:
        if self.runtime is not None:
            await self.runtime.stop(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what the service's own bus holds (bounded), then close it."""
        if self.bus is not None:
            self.bus.close(timeout)
        else:
            events.flush(timeout)

    # ------------------------------------------------------------------ requests
    def check_instance(self, params: Mapping[str, Any]) -> None:
        """On the platform, a request must name this instance (dubhe's check)."""
        if not self.config.on_platform:
            return
        given = params.get("instance_id")
        if given != self.config.instance_id:
            raise BadRequest(
                f"param error: instance_id [{given}] of request different from ENV INSTANCE_ID"
                f" [{self.config.instance_id}]!"
            )

    def method(self, req_type: int) -> Method:
        entrance = self.entrances.get(req_type)
        if entrance is None:
            served = ", ".join(f"{k} ({KINDS[k]})" for k in sorted(self.entrances))
            name = KINDS.get(req_type, "unknown")
            raise BadRequest(
                f"req_type {req_type} ({name}) is not served here: no @{name}() method"
                f" (served: {served})"
            )
        bound: Method = getattr(self.instances[entrance.cls], entrance.method)
        return bound

    def submit(self, req_type: int, params: dict[str, Any]) -> Job:
        """Start a training (1) or evaluation (2) job."""
        if req_type not in (1, 2):
            raise BadRequest(f"req_type {req_type} is not a job (1 train, 2 predict)")
        return self.runner.submit(req_type, params, self.method(req_type))

    async def infer(
        self, params: dict[str, Any], *, cancelled_by: asyncio.Future[Any] | None = None
    ) -> Any:
        """Online inference through the inference runtime (batched with other requests)."""
        self.method(INFERENCE)
        assert self.runtime is not None
        (result,) = await self.runtime.infer(
            [params], request=params, cancelled_by=cancelled_by, door="jobs"
        )
        return result

    def run_inference(self, params: Mapping[str, Any]) -> Any:
        """One inference request on its own context (in the runtime's model thread)."""
        method = self.method(INFERENCE)
        ctx = Context(params, folders=self._service_folders(), log=JobLog(None))
        try:
            return method(ctx)
        except Exception as exc:  # this request's error, not its neighbours'
            return exc

    def _service_folders(self) -> dict[str, str]:
        return {
            ContextKey.KEY_TMP_DIR: str(self.config.work_dir / "tmp"),
            ContextKey.KEY_OUTPUT_DIR: str(self.config.work_dir / "output"),
        }
