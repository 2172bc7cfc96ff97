"""Two replicas through EAS DIRECT mode vs one replica, from the same client.

A private ``redis-server`` on a free loopback port and two ``servekit serve`` replicas of
``Work`` (``sleep(2 ms + 0.05 ms x batch)``, max batch 32, string format) registered in it.
The client is servekit's ``PredictClient`` with 16 threads sending ``StringRequest``s for a
fixed time: once pointed at replica A alone (gateway mode), once in ``ENDPOINT_TYPE_DIRECT``
through A's discovery route (both replicas). Rounds alternate the order; medians of req/s;
each replica's own ``/metrics`` shows how DIRECT mode spread the requests. On a shared
2-core machine the point is that requests are spread, not a speed-up (the client and both
servers share the cores).

    python benchmarks/bench_discovery.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import servekit

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

HERE = Path(__file__).resolve().parent
THREADS = 16


class Work(servekit.Model):
    """Costs 2 ms per batch plus 0.05 ms per item; echoes each body."""

    name = "work"
    max_batch_size = 32

    def predict(self, batch: list[Any]) -> list[Any]:
        time.sleep(0.002 + 0.00005 * len(batch))
        return batch


@contextmanager
def _redis() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install -y redis-server)")
    port = _common.free_port()
    with tempfile.TemporaryDirectory() as directory:
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", directory],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while (
                subprocess.run(
                    ["redis-cli", "-p", str(port), "ping"], capture_output=True, check=False
                ).stdout.strip()
                != b"PONG"
            ):
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start")
                time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(10)


@contextmanager
def _replicas(redis_url: str, count: int) -> Iterator[list[str]]:
    procs, urls = [], []
    try:
        for _ in range(count):
            port = _common.free_port()
            command = [sys.executable, "-m", "servekit", "serve", f"{HERE}/bench_discovery.py:Work"]
            args = ["--port", str(port), "--log-level", "warning", "--discovery-url", redis_url]
            procs.append(
                subprocess.Popen(
                    [*command, *args],
                    cwd=HERE,
                    env=dict(os.environ),
                    stdout=subprocess.DEVNULL,  # the table stays readable
                )
            )
            urls.append(f"http://127.0.0.1:{port}")
        for url, proc in zip(urls, procs, strict=True):
            _common.wait_http_ok(url + "/v2/health/ready", 60, proc)
        _wait_listed(urls[0], count)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)


def _wait_listed(url: str, count: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with urllib.request.urlopen(url + "/api/v1/servicediscovery/upstreams/work") as resp:
            if resp.read().count(b'"ip"') == count:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{count} replicas not listed in time")


def _completed(url: str) -> int:
    with urllib.request.urlopen(url + "/metrics") as resp:
        text = resp.read().decode()
    found = re.search(r'^servekit_completed_total\{model="work"\} (\S+)$', text, re.M)
    return int(float(found.group(1))) if found else 0


def _run(url: str, direct: bool, seconds: float) -> dict[str, Any]:
    from servekit.client import ENDPOINT_TYPE_DIRECT, PredictClient, StringRequest

    client = PredictClient(url, "work")
    if direct:
        client.set_endpoint_type(ENDPOINT_TYPE_DIRECT)
    client.init()
    counts, errors, lock = [0], [0], threading.Lock()
    stop = time.monotonic() + seconds

    def loop(n: int) -> None:
        body, i = f"{n}".encode(), 0
        while time.monotonic() < stop:
            try:
                ok = client.predict(StringRequest(body)).response_data == body
            except Exception:  # counted, reported in the table
                ok = False
            with lock:
                counts[0] += ok
                errors[0] += not ok
            i += 1

    threads = [threading.Thread(target=loop, args=(n,)) for n in range(THREADS)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - start
    client.destroy()
    return {"req_s": counts[0] / elapsed, "ok": counts[0], "errors": errors[0]}


def main(quick: bool = False) -> dict[str, Any]:
    """One replica vs two through DIRECT mode, alternating rounds; a table and the JSON."""
    rounds, seconds = (1, 2.0) if quick else (5, 8.0)
    runs: dict[str, list[dict[str, Any]]] = {"one replica": [], "two replicas, DIRECT": []}
    with _redis() as redis_url, _replicas(redis_url, 2) as urls:
        for r in range(rounds):
            order = [False, True] if r % 2 == 0 else [True, False]
            for direct in order:
                before = [_completed(u) for u in urls]
                _common.log(f"round {r + 1}: {'DIRECT' if direct else 'one replica'}")
                result = _run(urls[0], direct, seconds)
                result["per_replica"] = [
                    _completed(u) - b for u, b in zip(urls, before, strict=True)
                ]
                runs["two replicas, DIRECT" if direct else "one replica"].append(result)
    rows = []
    for side, results in runs.items():
        spread = results[-1]["per_replica"]
        errors = sum(x["errors"] for x in results)
        rows.append([side, round(_common.median([x["req_s"] for x in results])), spread, errors])
    ratio = _common.median([x["req_s"] for x in runs["two replicas, DIRECT"]]) / max(
        1e-9, _common.median([x["req_s"] for x in runs["one replica"]])
    )
    result = {
        "settings": {
            "model": "sleep(2 ms + 0.05 ms x batch), max batch 32, string format",
            "client": f"servekit PredictClient, {THREADS} threads, StringRequest",
            "rounds": rounds,
            "seconds_per_run": seconds,
        },
        "machine": _common.machine(),
        "runs": runs,
        "ratio_two_over_one": ratio,
        "tables": [
            _common.table(
                "EAS DIRECT mode: two replicas vs one (same client)",
                ["side", "req/s (median)", "requests per replica (last run)", "errors"],
                rows,
            )
        ],
        "notes": [f"two replicas / one: {ratio:.2f}x (2 shared cores: spreading, not speed-up)"],
    }
    _common.write_json("discovery", result)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one short round")
    out = main(quick=parser.parse_args().quick)
    for spec in out["tables"]:
        print(_common.render_table(spec))
    for note in out["notes"]:
        print(note)
