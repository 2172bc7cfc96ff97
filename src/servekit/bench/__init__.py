"""``servekit bench``: an HTTP load tester for servekit (and any v2 / EAS / Virtex server).

Closed loop (``Plan(concurrency=N)``) or open loop with Poisson arrivals
(``Plan(rate=R)``, latency counted from each request's due time); HDR-histogram
percentiles; ``HttpLoadTest`` keeps Virtex's name and arguments.
"""

from __future__ import annotations

from servekit.bench._errors import BenchError
from servekit.bench.loop import Plan
from servekit.bench.record import Result
from servekit.bench.runner import run
from servekit.bench.virtex import HttpLoadTest, LoadTestMetrics

__all__ = ["BenchError", "HttpLoadTest", "LoadTestMetrics", "Plan", "Result", "run"]
