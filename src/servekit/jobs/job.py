"""One job's record: its state, progress, last metrics, times, error, folders; and how it
is cancelled (cooperatively: the job sees it through its context)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["KINDS", "Job", "JobCancelled"]

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = (
    "queued",
    "running",
    "succeeded",
    "failed",
    "cancelled",
)
FINISHED = frozenset({SUCCEEDED, FAILED, CANCELLED})
KINDS = {1: "train", 2: "predict", 3: "inference"}


class JobCancelled(BaseException):
    """Raised in a job's thread by its context once the job is cancelled.

    A ``BaseException`` (like ``KeyboardInterrupt``), so ``except Exception`` in the user's
    training loop does not swallow it.
    """


@dataclass
class Job:
    """A training (``req_type`` 1) or evaluation (2) job."""

    id: str
    req_type: int
    params: dict[str, Any]
    folder: Path
    state: str = QUEUED
    progress: float | None = None
    epoch: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    started: float | None = None
    ended: float | None = None
    error: str | None = None
    model_path: str | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def output_dir(self) -> Path:
        return self.folder / "output"

    @property
    def tmp_dir(self) -> Path:
        return self.folder / "tmp"

    @property
    def log_file(self) -> Path:
        return self.folder / "job.log"

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def cancel(self) -> bool:
        """Ask the job to stop; ``False`` if it had already finished."""
        with self.lock:
            if self.finished:
                return False
            self.cancel_event.set()
            return True

    def record_progress(
        self, progress: float, epoch: int | None, metrics: dict[str, Any] | None
    ) -> None:
        with self.lock:
            self.progress = progress
            if epoch is not None:
                self.epoch = epoch
            if metrics is not None:
                self.metrics = metrics

    def finish(self, state: str, error: str | None = None) -> None:
        with self.lock:
            self.state = state
            self.error = error
            self.ended = time.time()

    def to_dict(self) -> dict[str, Any]:
        """The job as ``GET /jobs/{id}`` shows it (times in Unix seconds)."""
        with self.lock:
            return {
                "job_id": self.id,
                "kind": KINDS.get(self.req_type, str(self.req_type)),
                "req_type": self.req_type,
                "state": self.state,
                "cancel_requested": self.cancel_event.is_set(),
                "progress": self.progress,
                "epoch": self.epoch,
                "metrics": dict(self.metrics),
                "created": self.created,
                "started": self.started,
                "ended": self.ended,
                "error": self.error,
                "model_path": self.model_path,
                "output_dir": str(self.output_dir),
                "tmp_dir": str(self.tmp_dir),
                "log_file": str(self.log_file),
            }
