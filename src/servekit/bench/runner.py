"""One load test from Python: prepare the request, run the loop, add up the result."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from servekit.bench.bodies import prepare
from servekit.bench.loop import Engine, Plan, Tick
from servekit.bench.record import Result


def run(
    url: str,
    model: str | None = None,
    *,
    protocol: str = "v2",
    body: bytes | None = None,
    plan: Plan | None = None,
    token: str = "",
    on_tick: Tick | None = None,
) -> Result:
    """Load ``url`` as ``plan`` says (default: 8 in flight for 10 s); ``BenchError`` if the
    run cannot start (bad input, server unreachable)."""
    plan = plan or Plan(concurrency=8)
    plan.check()
    request = prepare(url, model, protocol, body, token=token, timeout=plan.timeout)
    engine = Engine([request], plan, on_tick=on_tick)
    _run_loop(engine.run)
    mode = {"concurrency": plan.concurrency, "rate": plan.rate}
    return Result.build(engine.recorder, engine.elapsed, url=request.url, protocol=protocol, **mode)


def _run_loop(main: Callable[[], Any]) -> Any:
    """Run ``main()`` on a fresh uvloop event loop (asyncio's own where uvloop is missing)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - Windows
        return asyncio.run(main())
    return uvloop.run(main())
