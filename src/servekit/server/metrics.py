"""Prometheus metrics, read from the batchers' counters at scrape time (nothing on the hot path)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from servekit.server.runtime import ModelRuntime

_COUNTERS = {
    "requests": "Submissions received",
    "items": "Items (rows) received",
    "batches": "Batches run",
    "completed": "Submissions answered with results",
    "failed": "Submissions failed by the model",
    "refused": "Submissions refused (queue full, too large, draining)",
    "timed_out": "Submissions whose deadline passed before the model ran them",
    "cancelled": "Submissions cancelled by their caller",
}


class _BatcherCollector(Collector):
    def __init__(self, runtimes: Iterable[ModelRuntime]) -> None:
        self.runtimes = list(runtimes)

    def collect(self) -> Iterator[Metric]:
        for key, doc in _COUNTERS.items():
            family = CounterMetricFamily(f"servekit_{key}", doc, labels=["model"])
            for rt in self.runtimes:
                family.add_metric([rt.model.full_name], getattr(rt.batcher.stats, key))
            yield family
        seconds = {
            "queue_wait_seconds": "Total seconds items waited in the queue",
            "predict_seconds": "Total seconds spent in predict",
        }
        for key, doc in seconds.items():
            family = CounterMetricFamily(f"servekit_{key}", doc, labels=["model"])
            for rt in self.runtimes:
                family.add_metric([rt.model.full_name], getattr(rt.batcher.stats, key))
            yield family
        queued = GaugeMetricFamily("servekit_queued_items", "Items waiting now", labels=["model"])
        ready = GaugeMetricFamily(
            "servekit_model_ready", "1 if the model is ready", labels=["model"]
        )
        for rt in self.runtimes:
            queued.add_metric([rt.model.full_name], rt.batcher.queued_items)
            ready.add_metric([rt.model.full_name], 1.0 if rt.ready else 0.0)
        yield queued
        yield ready


def metrics_registry(runtimes: Iterable[ModelRuntime]) -> CollectorRegistry:
    """A Prometheus registry reading these models' batcher counters when collected."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_BatcherCollector(runtimes))
    return registry


def render_metrics(runtimes: Iterable[ModelRuntime]) -> tuple[bytes, bytes]:
    """The Prometheus text exposition for these models, and its content type."""
    return generate_latest(metrics_registry(runtimes)), CONTENT_TYPE_LATEST.encode()
