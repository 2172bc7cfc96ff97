"""A client that goes away while its request is queued: its items never reach the model."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

import servekit


def one_row(value: float) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "datatype": "FP64", "shape": [1], "data": [value]}]}


class Recorder(servekit.Model):
    """Records every row it is given; each batch waits for the gate."""

    name = "recorder"

    def __init__(self, gate: Any) -> None:
        super().__init__()
        self.gate = gate
        self.seen: list[float] = []

    def predict(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        self.seen.extend(float(row) for row in batch)
        self.gate.block()
        return batch


def test_raw_socket_closed_while_queued_cancels_the_item(serve, gate, wait_until):
    model = Recorder(gate)
    live = serve([model])
    client = live.client()
    batcher = live.runtime("recorder").batcher
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(client.post, "/v2/models/recorder/infer", json=one_row(1))
        gate.wait_entered()
        body = orjson.dumps(one_row(666))
        sock = socket.create_connection(("127.0.0.1", live.port), timeout=5)
        with sock:
            sock.sendall(
                b"POST /v2/models/recorder/infer HTTP/1.1\r\nHost: test\r\n"
                b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (len(body), body)
            )
            wait_until(lambda: batcher.queued_items == 1, "the raw request is queued")
        wait_until(lambda: batcher.stats.cancelled == 1, "the server noticed the disconnect")
        assert batcher.queued_items == 0
        gate.open()
        assert running.result(10).json()["outputs"][0]["data"] == [1.0]
    after = client.post("/v2/models/recorder/infer", json=one_row(2))
    assert after.json()["outputs"][0]["data"] == [2.0]
    assert model.seen == [1.0, 2.0]  # 666 never reached the model


def test_httpx_client_giving_up_cancels_the_queued_item(serve, gate, wait_until):
    model = Recorder(gate)
    live = serve([model])
    client = live.client()
    impatient = live.client(timeout=httpx.Timeout(10.0, read=0.3))
    batcher = live.runtime("recorder").batcher
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(client.post, "/v2/models/recorder/infer", json=one_row(1))
        gate.wait_entered()
        with pytest.raises(httpx.ReadTimeout):  # the gate is shut: no answer can come
            impatient.post("/v2/models/recorder/infer", json=one_row(666))
        impatient.close()  # drops the connection, as a client that gave up does
        wait_until(lambda: batcher.stats.cancelled == 1, "the server noticed the disconnect")
        gate.open()
        assert running.result(10).status_code == 200
    assert client.post("/v2/models/recorder/infer", json=one_row(2)).status_code == 200
    assert model.seen == [1.0, 2.0]
