"""Prometheus metrics: plain-Python aggregates on the hot path, families built at scrape time.

A request adds one bucket count and one sum to its model's :class:`ModelMetrics` (under a lock
no other thread holds for long); a batch does the same for its size, queue wait and predict
time. Nothing calls ``prometheus_client`` until ``/metrics`` is scraped: the collector turns
the aggregates (and the batchers' own counters) into families then.

With ``--workers N`` every worker writes its aggregates to a shared folder once a second
(:func:`share_across_workers`) and a scrape adds the other workers' files to its own live
numbers, so one scrape shows the sum over every worker whichever worker answers. A worker
that died keeps its counters and histograms in the sum (they never go down); its gauges are
dropped. See ``docs/metrics.md`` for every family.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import weakref
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from servekit.server.runtime import ModelRuntime

log = logging.getLogger("servekit.server")

#: Upper bounds (seconds) of the latency buckets: 100 µs … 60 s, sub-millisecond resolved.
SECONDS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
           1.0, 2.5, 5.0, 10.0, 30.0, 60.0)  # fmt: skip
#: Upper bounds (items) of the batch size buckets.
ITEMS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
#: Seconds between two writes of a worker's aggregates to the shared folder.
SHARE_INTERVAL = 1.0
#: The route label of every request that reached a model: the one runtime call.
INFER = "infer"
#: The door label of requests the HTTP kit answered before any model saw them.
HTTP = "http"
_COUNTED = "_servekit_metrics_counted"  # set on an error the runtime already counted

Labels = tuple[str, ...]
Snapshot = dict[str, dict[Labels, Any]]  # family → labels → number, or histogram counts + sum

_BATCHER_COUNTERS = {
    "requests": "Submissions received",
    "items": "Items (rows) received",
    "batches": "Batches run",
    "completed": "Submissions answered with results",
    "failed": "Submissions failed by the model",
    "refused": "Submissions refused (queue full, too large, draining)",
    "timed_out": "Submissions whose deadline passed before the model ran them",
    "cancelled": "Submissions cancelled by their caller",
    "queue_wait_seconds": "Total seconds items waited in the queue",
    "predict_seconds": "Total seconds spent in predict",
}
_REQUEST_LABELS = ("model", "door", "route", "status")
_HISTOGRAMS: dict[str, tuple[str, tuple[str, ...], tuple[float, ...]]] = {
    "servekit_request_duration_seconds": (
        "Seconds from a request's arrival to its answer, by door, route and status code",
        _REQUEST_LABELS,
        SECONDS,
    ),
    "servekit_batch_queue_wait_seconds": (
        "Mean seconds a batch's items waited in the queue, one observation per batch",
        ("model",),
        SECONDS,
    ),
    "servekit_batch_predict_seconds": (
        "Seconds a batch spent in predict (with pre- and postprocess)",
        ("model",),
        SECONDS,
    ),
    "servekit_batch_size": ("Items per batch", ("model",), tuple(float(n) for n in ITEMS)),
}
#: Gauges and how the workers' values combine: sum, or min / max over live workers.
_GAUGES: dict[str, tuple[str, str]] = {
    "servekit_queued_items": ("Items waiting now", "sum"),
    "servekit_model_ready": ("1 if the model is ready (in every worker)", "min"),
    "servekit_inflight_batches": ("Batches in predict now", "sum"),
    "servekit_model_load_seconds": ("Seconds the model's load() took (slowest worker)", "max"),
}
_OTHER_COUNTERS = {
    "servekit_model_load_failures": "Times the model's load() failed",
    "servekit_responses": "Requests answered, by door and status code (499: the caller left)",
}


class Histogram:
    """Bucket counts (not cumulative) then the sum, in one list: ``observe`` is two adds."""

    __slots__ = ("bounds", "values")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.values: list[float] = [0] * (len(bounds) + 2)

    def observe(self, value: float) -> None:
        values = self.values
        values[bisect_left(self.bounds, value)] += 1
        values[-1] += value


class RequestMetrics:
    """Request latency histograms by ``(door, route, status)``.

    :meth:`request` takes no lock: a runtime's requests end on its event loop's thread, the
    only writer (a lock would be a tenth of its cost). Readers copy (:meth:`copy`): at worst
    a scrape sees a count without its sum for one scrape.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()  # for the batch aggregates, written by model threads
        self.requests: dict[tuple[str, str, int], list[float]] = {}

    def request(self, door: str, route: str, status: int, seconds: float) -> None:
        values = self.requests.get((door, route, status))
        if values is None:
            values = self.requests[door, route, status] = [0] * (len(SECONDS) + 2)
        values[bisect_left(SECONDS, seconds)] += 1
        values[-1] += seconds

    def copy(self) -> dict[tuple[str, str, int], list[float]]:
        return {key: list(values) for key, values in dict(self.requests).items()}


class _LockedRequestMetrics(RequestMetrics):
    """For requests that end on several event loops' threads (one process, several apps)."""

    def request(self, door: str, route: str, status: int, seconds: float) -> None:
        with self.lock:
            super().request(door, route, status, seconds)


class ModelMetrics(RequestMetrics):
    """One served model's aggregates: its requests, its batches and its load."""

    def __init__(self, runtime: ModelRuntime) -> None:
        super().__init__()
        self.wait = Histogram(SECONDS)
        self.predict = Histogram(SECONDS)
        self.size = Histogram(tuple(float(n) for n in ITEMS))
        self.batches_done = 0  # batches the hook saw; the batcher counts those dispatched
        self.load_seconds = 0.0
        self.load_failures = 0
        _RUNTIMES.add(runtime)

    def batch(self, size: int, wait: float, seconds: float) -> None:
        """After a batch ran (in its model thread)."""
        with self.lock:
            self.size.observe(size)
            self.wait.observe(wait)
            self.predict.observe(seconds)
            self.batches_done += 1

    def loaded(self, seconds: float, ok: bool) -> None:
        self.load_seconds = seconds
        if not ok:
            self.load_failures += 1


#: Requests answered by the HTTP kit before any model saw them (no route, 401, 404 unknown
#: model, 400 malformed body, 413): model "" (a path's name is any string a client sends).
UNROUTED: RequestMetrics = _LockedRequestMetrics()
_RUNTIMES: weakref.WeakSet[ModelRuntime] = weakref.WeakSet()


def mark_counted(error: BaseException) -> None:
    """The runtime counted this error's request: the HTTP kit must not count it again."""
    setattr(error, _COUNTED, True)


def count_unrouted(error: BaseException, status: int, route: str, started: float) -> None:
    """Count an error answer of the HTTP kit unless a model's runtime counted it already."""
    if not getattr(error, _COUNTED, False):
        UNROUTED.request(HTTP, route, status, time.perf_counter() - started)


# ---------------------------------------------------------------------- snapshots
def snapshot(runtimes: Iterable[ModelRuntime]) -> Snapshot:
    """This process's numbers for these models (and the unrouted requests), by family."""
    snap: Snapshot = {}

    def put(family: str, labels: Labels, value: Any) -> None:
        snap.setdefault(family, {})[labels] = value

    for (door, route, status), values in UNROUTED.copy().items():
        put("servekit_request_duration_seconds", ("", door, route, str(status)), values)
    for rt in runtimes:
        name = rt.model.full_name
        stats = rt.batcher.stats
        for key in _BATCHER_COUNTERS:
            put(f"servekit_{key}", (name,), getattr(stats, key))
        put("servekit_queued_items", (name,), rt.batcher.queued_items)
        put("servekit_model_ready", (name,), 1 if rt.ready else 0)
        metrics = rt.metrics
        if metrics is None:
            continue
        for (door, route, status), values in metrics.copy().items():
            put("servekit_request_duration_seconds", (name, door, route, str(status)), values)
        with metrics.lock:
            put("servekit_batch_queue_wait_seconds", (name,), list(metrics.wait.values))
            put("servekit_batch_predict_seconds", (name,), list(metrics.predict.values))
            put("servekit_batch_size", (name,), list(metrics.size.values))
            done = metrics.batches_done
        running = stats.batches - done - rt.batcher.batches_behind  # not those still waiting
        put("servekit_inflight_batches", (name,), max(running, 0))
        put("servekit_model_load_seconds", (name,), metrics.load_seconds)
        put("servekit_model_load_failures", (name,), metrics.load_failures)
    return snap


def merge(into: Snapshot, other: Snapshot, *, gauges: bool = True) -> None:
    """Add ``other``'s counters and histograms to ``into``; gauges by their family's rule."""
    for family, series in other.items():
        mode = _GAUGES[family][1] if family in _GAUGES else "sum"
        if family in _GAUGES and not gauges:
            continue
        mine = into.setdefault(family, {})
        for labels, value in series.items():
            old = mine.get(labels)
            if old is None:
                mine[labels] = value
            elif isinstance(value, list):
                mine[labels] = [a + b for a, b in zip(old, value, strict=True)]
            elif mode == "min":
                mine[labels] = min(old, value)
            elif mode == "max":
                mine[labels] = max(old, value)
            else:
                mine[labels] = old + value


# ---------------------------------------------------------------------- workers
class _Sharing:
    """A worker's side of the shared folder: writes its own file, reads the others'."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.mine = folder / f"{os.getpid()}.json"

    def write(self) -> None:
        snap = snapshot(list(_RUNTIMES))
        rows = [[family, list(labels), value] for family, series in snap.items()
                for labels, value in series.items()]  # fmt: skip
        tmp = self.mine.with_suffix(".tmp")
        tmp.write_text(json.dumps(rows))
        os.replace(tmp, self.mine)

    def run(self) -> None:
        while True:
            time.sleep(SHARE_INTERVAL)
            try:
                self.write()
            except (OSError, RuntimeError) as exc:  # a dict resized mid-copy: next time
                log.warning("metrics: could not write %s: %s", self.mine, exc)

    def others(self) -> Iterator[tuple[Snapshot, bool]]:
        """The other workers' snapshots, each with whether that worker is alive."""
        for path in self.folder.glob("*.json"):
            if path == self.mine:
                continue
            try:
                rows = json.loads(path.read_text())
            except (OSError, ValueError):  # replaced or removed while read: skip this once
                continue
            snap: Snapshot = {}
            for family, labels, value in rows:
                snap.setdefault(family, {})[tuple(labels)] = value
            yield snap, not path.name.startswith("dead-")


_sharing: _Sharing | None = None


def share_across_workers(folder: str | os.PathLike[str]) -> None:
    """In a ``--workers`` child: publish this process's metrics to ``folder`` every second,
    and add the other workers' files to every scrape."""
    global _sharing
    _sharing = _Sharing(Path(folder))
    thread = threading.Thread(target=_sharing.run, name="servekit-metrics-share", daemon=True)
    thread.start()


def mark_dead(folder: str | os.PathLike[str], pid: int) -> None:
    """In the parent: a worker died; its counters stay in the sum, its gauges leave it."""
    path = Path(folder) / f"{pid}.json"
    if path.exists():
        os.replace(path, path.with_name(f"dead-{pid}-{time.time_ns()}.json"))


# ---------------------------------------------------------------------- exposition
def _families(snap: Snapshot) -> Iterator[Metric]:
    for key, doc in _BATCHER_COUNTERS.items():
        yield _simple(CounterMetricFamily, f"servekit_{key}", doc, ("model",), snap)
    for family, (doc, _) in _GAUGES.items():
        yield _simple(GaugeMetricFamily, family, doc, ("model",), snap)
    failures = "servekit_model_load_failures"
    yield _simple(CounterMetricFamily, failures, _OTHER_COUNTERS[failures], ("model",), snap)
    responses = CounterMetricFamily(
        "servekit_responses",
        _OTHER_COUNTERS["servekit_responses"],
        labels=["model", "door", "status"],
    )
    answered: dict[Labels, float] = {}
    requests = snap.get("servekit_request_duration_seconds", {})
    for (model, door, _, status), values in requests.items():
        answered[model, door, status] = answered.get((model, door, status), 0) + sum(values[:-1])
    for labels, count in sorted(answered.items()):
        responses.add_metric(list(labels), count)
    yield responses
    for family, (doc, labels, bounds) in _HISTOGRAMS.items():
        histogram = HistogramMetricFamily(family, doc, labels=list(labels))
        for values_labels, values in sorted(snap.get(family, {}).items()):
            cumulative, buckets = 0.0, []
            for bound, count in zip((*bounds, float("inf")), values[:-1], strict=True):
                cumulative += count
                buckets.append((_le(bound), cumulative))
            histogram.add_metric(list(values_labels), buckets, values[-1])
        yield histogram


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


def _simple(kind: Any, family: str, doc: str, labels: Labels, snap: Snapshot) -> Metric:
    metric = kind(family, doc, labels=list(labels))
    for values_labels, value in sorted(snap.get(family, {}).items()):
        metric.add_metric(list(values_labels), value)
    return metric  # type: ignore[no-any-return]


class _RuntimeCollector(Collector):
    def __init__(self, runtimes: Iterable[ModelRuntime]) -> None:
        self.runtimes = list(runtimes)

    def collect(self) -> Iterator[Metric]:
        snap = snapshot(self.runtimes)
        if _sharing is not None:
            for other, alive in _sharing.others():
                merge(snap, other, gauges=alive)
        yield from _families(snap)


def metrics_registry(runtimes: Iterable[ModelRuntime]) -> CollectorRegistry:
    """A Prometheus registry reading these models' metrics (every worker's) when collected."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_RuntimeCollector(runtimes))
    return registry


def render_metrics(runtimes: Iterable[ModelRuntime]) -> tuple[bytes, bytes]:
    """The Prometheus text exposition for these models, and its content type."""
    return generate_latest(metrics_registry(runtimes)), CONTENT_TYPE_LATEST.encode()
