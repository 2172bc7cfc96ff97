"""Counters the batcher keeps: cheap to update on the hot path, read as a snapshot."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class BatcherStats:
    """What happened to the work a batcher was given."""

    requests: int = 0
    items: int = 0
    batches: int = 0
    completed: int = 0
    failed: int = 0
    refused: int = 0
    timed_out: int = 0
    cancelled: int = 0
    #: failed batches of several submissions whose submissions were then re-run one by one
    isolation_reruns: int = 0
    queue_wait_seconds: float = 0.0
    predict_seconds: float = 0.0
    batch_sizes: Counter[int] = field(default_factory=Counter)

    @property
    def mean_batch_size(self) -> float:
        return (
            sum(s * n for s, n in self.batch_sizes.items()) / self.batches if self.batches else 0.0
        )

    def snapshot(self) -> dict[str, object]:
        """A plain dict, safe to serialise."""
        return {
            "requests": self.requests,
            "items": self.items,
            "batches": self.batches,
            "completed": self.completed,
            "failed": self.failed,
            "refused": self.refused,
            "timed_out": self.timed_out,
            "cancelled": self.cancelled,
            "isolation_reruns": self.isolation_reruns,
            "mean_batch_size": round(self.mean_batch_size, 3),
            "mean_queue_wait_ms": round(1e3 * self.queue_wait_seconds / self.items, 4)
            if self.items
            else 0.0,
            "mean_predict_ms": round(1e3 * self.predict_seconds / self.batches, 4)
            if self.batches
            else 0.0,
            "batch_sizes": dict(sorted(self.batch_sizes.items())),
        }
