"""A large JSON body is parsed off the event loop: while it is decoded, a small request on the
same server is answered quickly."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import orjson

import servekit

PING = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1], "data": [1]}]}


class Whole(servekit.Model):
    """The whole request is one item; answers its element count."""

    name = "whole"
    batch_rows = False

    def predict(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        return [np.int64(item.size) for item in batch]


class Ping(servekit.Model):
    name = "ping"

    def predict(self, batch: list[Any]) -> list[Any]:
        return batch


def big_body(elements: int) -> bytes:
    """Small integers for FP32: the slowest JSON to decode per byte (about 2 bytes each)."""
    data = np.random.default_rng(0).integers(0, 10, elements).reshape(-1, 100)
    spec = {"name": "x", "datatype": "FP32", "shape": list(data.shape), "data": data.ravel()}
    return orjson.dumps({"inputs": [spec]}, option=orjson.OPT_SERIALIZE_NUMPY)


def test_small_request_is_answered_while_a_large_body_is_parsed(serve):
    live = serve([Whole(), Ping()])
    body = big_body(25_000_000)  # about 48 MiB
    big_client, small_client = live.client(timeout=120), live.client()
    assert small_client.post("/v2/models/ping/infer", json=PING).status_code == 200
    done = threading.Event()
    latencies: list[float] = []

    def send_big() -> tuple[int, float]:
        started = time.perf_counter()
        try:
            response = big_client.post("/v2/models/whole/infer", content=body)
        finally:
            done.set()
        return response.status_code, time.perf_counter() - started

    with ThreadPoolExecutor(1) as pool:
        big = pool.submit(send_big)
        while not done.is_set():
            started = time.perf_counter()
            response = small_client.post("/v2/models/ping/infer", json=PING)
            assert response.status_code == 200, response.text
            latencies.append(time.perf_counter() - started)
            time.sleep(0.02)
        status, big_seconds = big.result()
    assert status == 200
    worst = max(latencies)
    # One orjson.loads call still holds the GIL (about a third of the parse); the rest, and
    # the loop, interleave. Before, the loop stalled for the whole parse.
    assert big_seconds > 1.0, f"the large body took only {big_seconds:.2f} s; make it larger"
    assert worst < max(1.0, 0.6 * big_seconds), (worst, big_seconds, len(latencies))
