"""``HttpLoadTest``: Virtex's load-test client, on servekit's load loop.

``HttpLoadTest().run(url, messages, requests_per_second=R)`` posts every message once to a
Virtex-style ``http_server`` at about ``R`` requests per second (open loop, Poisson arrivals)
and returns ``(responses, metrics)``: the answers in the order of ``messages`` and a
``LoadTestMetrics`` (``metrics.dict()``), as Virtex does.
"""

from __future__ import annotations

import builtins
import warnings
from dataclasses import asdict, dataclass
from typing import Any

from servekit.bench._errors import BenchError
from servekit.bench.bodies import parse_url, request
from servekit.bench.loop import Engine, Plan
from servekit.bench.record import summary_ms
from servekit.bench.runner import _run_loop
from servekit.errors import BadRequest
from servekit.messages import HttpMessage

VIRTEX_MAX_RPS = 3500  # what Virtex's own tester warned about; servekit's goes well beyond


@dataclass
class LoadTestMetrics:
    """Virtex's metrics (same names; times in seconds), plus latency percentiles and errors.

    ``server_mean_latency_seconds`` is the measured mean latency (Virtex approximated it by
    duration / requests); latencies count from each request's due time.
    """

    num_requests: int
    num_data: int
    test_duration_seconds: float
    client_requests_per_second: float
    server_requests_per_second: float
    server_data_per_second: float
    server_mean_latency_seconds: float
    latency_p50: float
    latency_p90: float
    latency_p99: float
    latency_p999: float
    latency_max: float
    num_errors: int

    def dict(self) -> builtins.dict[str, Any]:
        return asdict(self)

    @classmethod
    def build_from_dict(cls, metrics_dict: builtins.dict[str, Any]) -> LoadTestMetrics:
        return cls(**metrics_dict)


class HttpLoadTest:
    """Virtex's ``HttpLoadTest``: one process, one event loop, ``run()`` blocks until done."""

    def __init__(self, timeout: float = 30.0, max_connections: int = 1000) -> None:
        self.timeout = timeout
        self.max_connections = max_connections

    def run(
        self,
        url: str,
        messages: list[HttpMessage],
        requests_per_second: float = VIRTEX_MAX_RPS,
    ) -> tuple[list[HttpMessage], LoadTestMetrics]:
        """Post each message once at ``requests_per_second``; (responses, metrics).

        A request that failed gets ``HttpMessage(data=[], status=…, error=…)`` in its place.
        """
        if not messages:
            raise BenchError("HttpLoadTest.run needs at least one message")
        if requests_per_second > VIRTEX_MAX_RPS:
            warnings.warn(
                f"{requests_per_second:g} req/s asked; Virtex's tester topped out near"
                f" {VIRTEX_MAX_RPS}: check the late sends in the metrics",
                stacklevel=2,
            )
        origin = parse_url(url)
        requests = [request(origin, "", "virtex", m.to_bytes()) for m in messages]
        count = len(messages)
        plan = Plan(
            rate=float(requests_per_second),
            duration=2.0 * count / requests_per_second + 1.0,
            max_requests=count,
            timeout=self.timeout,
            max_connections=self.max_connections,
        )
        engine = Engine(requests, plan, keep_bodies=True)
        _run_loop(engine.run)
        responses = [_response(engine.bodies.get(i)) for i in range(count)]
        return responses, _metrics(engine, messages, float(requests_per_second))


def _response(outcome: tuple[int, bytes] | None) -> HttpMessage:
    if outcome is None:
        return HttpMessage(data=[], status=0, error="not sent")
    status, body = outcome
    if status == 200:
        try:
            return HttpMessage.from_bytes(body)
        except BadRequest as exc:
            return HttpMessage(data=[], status=status, error=str(exc))
    return HttpMessage(data=[], status=status, error=body.decode("utf-8", "replace"))


def _metrics(engine: Engine, messages: list[HttpMessage], rate: float) -> LoadTestMetrics:
    recorder, elapsed = engine.recorder, max(engine.elapsed, 1e-9)
    latency = summary_ms(recorder.latency)
    num_data = sum(len(m.data) for m in messages)
    return LoadTestMetrics(
        num_requests=recorder.sent,
        num_data=num_data,
        test_duration_seconds=round(elapsed, 5),
        client_requests_per_second=rate,
        server_requests_per_second=round(recorder.ok / elapsed, 1),
        server_data_per_second=round(num_data * recorder.ok / len(messages) / elapsed, 1),
        server_mean_latency_seconds=latency["mean"] / 1e3,
        latency_p50=latency["p50"] / 1e3,
        latency_p90=latency["p90"] / 1e3,
        latency_p99=latency["p99"] / 1e3,
        latency_p999=latency["p99.9"] / 1e3,
        latency_max=latency["max"] / 1e3,
        num_errors=recorder.failures,
    )
