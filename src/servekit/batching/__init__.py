"""Dynamic batching: one asyncio batcher that every door (HTTP, TCP, queue, threads) uses."""

from servekit.batching._work import CancelToken, ThreadFuture
from servekit.batching.batcher import Batcher, Handler
from servekit.batching.policy import BatchPolicy
from servekit.batching.stats import BatcherStats

__all__ = ["BatchPolicy", "Batcher", "BatcherStats", "CancelToken", "Handler", "ThreadFuture"]
