"""Job threads: at most ``max_jobs`` at once, each with its own context, folders and log;
START when it begins and exactly one END when it stops (succeeded, failed or cancelled)."""

from __future__ import annotations

import threading
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from servekit.errors import NotFound, QueueFull
from servekit.jobs import job as states
from servekit.jobs.context import Context, ContextKey
from servekit.jobs.job import KINDS, Job, JobCancelled
from servekit.jobs.logs import JobLog
from servekit.jobs.messages import Emitter, end_cancelled, end_failed, end_ok

__all__ = ["JobRunner", "TooManyJobs"]

Method = Callable[[Context], Any]


class TooManyJobs(QueueFull):
    """``max_jobs`` jobs are running: this one is refused (429)."""


class JobRunner:
    """Starts jobs in threads and keeps their records (finished ones up to ``keep_finished``)."""

    def __init__(
        self,
        emitter: Emitter,
        *,
        work_dir: Path,
        max_jobs: int,
        keep_finished: int = 1000,
    ) -> None:
        self.emitter = emitter
        self.work_dir = work_dir
        self.max_jobs = max_jobs
        self.keep_finished = keep_finished
        self._jobs: dict[str, Job] = {}
        self._running = 0
        self._lock = threading.Lock()

    def submit(self, req_type: int, params: dict[str, Any], method: Method) -> Job:
        """Start ``method`` on a new job's context in a thread; :class:`TooManyJobs` if full."""
        job_id = uuid.uuid4().hex[:16]
        job = Job(job_id, req_type, params, self.work_dir / "jobs" / job_id)
        with self._lock:
            if self._running >= self.max_jobs:
                raise TooManyJobs(
                    f"{self._running} jobs are running, the most this service runs at once"
                    f" (SERVEKIT_JOBS_MAX_JOBS={self.max_jobs}); retry when one has ended",
                    retry_after=5.0,
                )
            self._running += 1
            self._jobs[job_id] = job
            self._forget_old()
        thread = threading.Thread(
            target=self._run, args=(job, method), name=f"servekit-job-{job_id}", daemon=True
        )
        thread.start()
        return job

    def get(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(f"no job {job_id!r} (finished jobs are kept up to keep_finished)")
        return job

    def cancel(self, job_id: str) -> Job:
        """Ask the job to stop: its context's progress calls raise :class:`JobCancelled`."""
        job = self.get(job_id)
        job.cancel()
        return job

    def jobs(self) -> list[Job]:
        return list(self._jobs.values())

    @property
    def running(self) -> int:
        return self._running

    def _forget_old(self) -> None:
        finished = [j.id for j in self._jobs.values() if j.finished]
        for job_id in finished[: max(0, len(finished) - self.keep_finished)]:
            del self._jobs[job_id]

    def _run(self, job: Job, method: Method) -> None:
        log = JobLog(job.log_file, job.id)
        with job.lock:
            job.state, job.started = states.RUNNING, time.time()
        end: dict[str, Any] | None = None
        ctx: Context | None = None
        try:
            self.emitter.start(job.id, job.req_type)
            log.info("job %s (%s) started", job.id, KINDS[job.req_type])
            job.output_dir.mkdir(parents=True, exist_ok=True)
            job.tmp_dir.mkdir(parents=True, exist_ok=True)
            folders = {
                ContextKey.KEY_OUTPUT_DIR: str(job.output_dir),
                ContextKey.KEY_TMP_DIR: str(job.tmp_dir),
            }
            ctx = Context(job.params, folders=folders, emitter=self.emitter, job=job, log=log)
            method(ctx)
            if job.cancelled:
                raise JobCancelled(f"job {job.id} was cancelled")
        except JobCancelled:
            job.finish(states.CANCELLED, "cancelled on request")
            log.info("job %s cancelled", job.id)
            end = end_cancelled(job.id)
        except BaseException as exc:  # the user's failure ends this job, never the service
            trace = traceback.format_exc()
            job.finish(states.FAILED, f"{type(exc).__name__}: {exc}")
            log.error("job %s failed: %s\n%s", job.id, job.error, trace.rstrip())
            end = end_failed(self.emitter.instance_id, exc, trace)
        else:
            job.model_path = _last_model(job, ctx)
            job.finish(states.SUCCEEDED)
            log.info("job %s succeeded (model: %s)", job.id, job.model_path)
            end = end_ok(job.req_type, job.model_path)
        finally:
            if end is None:  # finishing itself failed: still exactly one END
                error = RuntimeError(f"job {job.id} could not be finished")
                job.finish(states.FAILED, str(error))
                end = end_failed(self.emitter.instance_id, error, traceback.format_exc())
            self.emitter.end(job.id, end)
            log.close()
            with self._lock:
                self._running -= 1


def _last_model(job: Job, ctx: Context | None) -> str | None:
    """The last model file named by ``ctx.model_file`` that exists, else the newest
    ``model_*`` file in the job's output folder."""
    if ctx is not None and ctx.last_model_file and Path(ctx.last_model_file).exists():
        return ctx.last_model_file
    folder = Path(str(ctx.get(ContextKey.KEY_OUTPUT_DIR))) if ctx else job.output_dir
    if not folder.is_dir():
        return None
    models = sorted(folder.glob("model_*"), key=lambda p: (p.stat().st_mtime, p.name))
    return str(models[-1]) if models else None
