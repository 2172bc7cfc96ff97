"""Dispatch policies in simulated time: the real ``Batcher`` on a ``ManualClock``.

Open-loop Poisson arrivals at 25/50/75/90% of capacity against a model costing
``2 ms + 0.05 ms x batch`` (max batch 32), for three policies: ``idle`` dispatch, ``adaptive``
dispatch and a fixed 5 ms window (``idle_batch_size = 32``, ``max_latency_ms = 5``). Each
batch "runs" for its cost on the manual clock, so the figures are the policies' own (no
HTTP, no CPU contention): p50/p99 and mean latency (submission to the batch's end). Prints
the table and writes ``results/sim_dispatch.json`` (``plot_dispatch.py`` draws it).

    python benchmarks/sim_dispatch.py [--items N]

Not run by ``run.py`` (it measures no timing of this machine): about 10 s of CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import threading
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import render_table, table, write_json

from servekit.batching import Batcher, BatchPolicy
from servekit.clock import ManualClock

FIXED, PER_ITEM, MAX_BATCH = 0.002, 0.00005, 32
CAPACITY = MAX_BATCH / (FIXED + PER_ITEM * MAX_BATCH)
POLICIES: dict[str, dict[str, Any]] = {
    "idle": {"dispatch": "idle"},
    "adaptive": {"dispatch": "adaptive"},
    "window 5 ms": {"dispatch": "idle", "idle_batch_size": MAX_BATCH, "max_latency": 0.005},
}
STEP = 0.00005  # the clock moves at most this far at once, so held batches meet their timers


class _Model:
    """Records each batch and the simulated time it started; blocks until released."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.batches: list[list[int]] = []
        self.started: list[float] = []
        self.entered = threading.Semaphore(0)
        self.release = threading.Semaphore(0)

    def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        self.started.append(self.clock.now())
        self.entered.release()
        self.release.acquire(timeout=30)
        return items


async def _settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def simulate(policy: dict[str, Any], load: float, items: int, seed: int = 1) -> list[float]:
    """Latencies (seconds) of ``items`` Poisson arrivals at ``load`` x capacity."""
    clock = ManualClock()
    model = _Model(clock)
    batcher = Batcher(model, BatchPolicy(max_batch_size=MAX_BATCH, **policy), clock=clock)
    await batcher.start()
    rng = random.Random(seed)
    arrivals, t = [], 0.0
    for _ in range(items):
        t += rng.expovariate(load * CAPACITY)
        arrivals.append(t)
    futures: dict[int, asyncio.Future[list[Any]]] = {}
    latency: dict[int, float] = {}
    running: tuple[float, list[int]] | None = None
    seen = sent = 0

    async def started() -> tuple[float, list[int]] | None:
        nonlocal seen
        await _settle()
        if batcher.stats.batches > seen:
            await asyncio.to_thread(model.entered.acquire, True, 30)
            seen += 1
            batch = model.batches[-1]
            return model.started[-1] + FIXED + PER_ITEM * len(batch), batch
        return None

    while len(latency) < items:
        if running is None:
            running = await started()
        target = clock.now() + STEP
        if sent < items:
            target = min(target, arrivals[sent])
        if running is not None:
            target = min(target, running[0])
        clock.advance(max(0.0, target - clock.now()))
        await _settle()
        if running is not None and clock.now() >= running[0]:
            end, batch = running
            running = None
            model.release.release()
            for i in batch:
                await asyncio.wait_for(futures[i], 30)
                latency[i] = end - arrivals[i]
        while sent < items and arrivals[sent] <= clock.now():
            futures[sent] = batcher.submit([sent])
            sent += 1
            if running is None:
                running = await started()
    model.release.release(1000)
    await batcher.close()
    warm = items // 5  # the first fifth teaches adaptive dispatch; not counted
    return [latency[i] for i in range(warm, items)]


LOADS = (0.25, 0.5, 0.75, 0.9)


def main(items: int = 3000) -> dict[str, Any]:
    """Every policy at every load; the table and one point per (load, policy)."""
    points = []
    for load in LOADS:
        for name, policy in POLICIES.items():
            got = sorted(asyncio.run(simulate(policy, load, items)))
            points.append(
                {
                    "load": load,
                    "policy": name,
                    "rate": load * CAPACITY,
                    "p50_ms": 1e3 * got[len(got) // 2],
                    "p99_ms": 1e3 * got[int(len(got) * 0.99)],
                    "mean_ms": 1e3 * statistics.mean(got),
                }
            )
    rows = [
        [f"{p['load']:.0%}", p["policy"], p["p50_ms"], p["p99_ms"], p["mean_ms"]] for p in points
    ]
    return {
        "benchmark": "sim_dispatch",
        "settings": {
            "items_per_run": items,
            "counted": items - items // 5,
            "fixed_cost_s": FIXED,
            "per_item_cost_s": PER_ITEM,
            "max_batch_size": MAX_BATCH,
            "capacity_items_per_s": CAPACITY,
        },
        "points": points,
        "tables": [
            table(
                f"Simulated open loop (Poisson), cost 2 ms + 0.05 ms x batch, max batch 32,"
                f" capacity {CAPACITY:,.0f} items/s, {items} items per run",
                ["load", "policy", "p50 ms", "p99 ms", "mean ms"],
                rows,
            )
        ],
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=3000)
    out = main(parser.parse_args().items)
    for spec in out["tables"]:
        print(render_table(spec))
    print(write_json("sim_dispatch", out))
