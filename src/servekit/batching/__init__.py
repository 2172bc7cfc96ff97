"""Dynamic batching: one asyncio batcher that every door (HTTP, TCP, queue, threads) uses."""

from servekit.batching.batcher import Batcher, Handler
from servekit.batching.policy import BatchPolicy
from servekit.batching.stats import BatcherStats
from servekit.batching.work import CancelToken, Work

__all__ = ["BatchPolicy", "Batcher", "BatcherStats", "CancelToken", "Handler", "Work"]
