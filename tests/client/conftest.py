"""Real servekit doors on loopback ports for the client tests: no fake servers.

``door`` is one ``servekit.server.App`` (token ``tok``, the TCP door on a free port) serving:

- ``echo`` (EAS string format): the body back; ``slow``: the same after ``SLOW_SECONDS``;
- ``tf`` / ``torch`` (EAS TensorFlow / PyTorch formats): ``doubled`` = 2·x, ``total`` = Σx /
  ``[x + 1, x * 10]``;
- ``scale`` (v2): ``scaled`` = 2·x per row; ``total`` (TCP): the sum of a list;
- ``boom``: ``predict`` raises, counting its calls in ``Boom.calls``;
- ``jam``: one item at a time, one queued at most (``max_queue_size=1``), ``predict`` waits
  for ``Jam.gate``, so a test can fill its queue and see 429;
- ``wide`` (v2): batches of up to 256 rows formed over 200 ms, sizes kept in ``Wide.sizes``
  (the first batch after they are cleared takes ``Wide.first_batch_seconds``);
- ``warming``: ``load`` waits for ``Warming.gate``, which this module's server never opens
  before teardown: always 503.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

import servekit
from servekit.client import TooManyRequests
from servekit.server import App
from support.servers import LiveServer

TOKEN = "tok"
SLOW_SECONDS = 1.0


class Echo(servekit.Model):
    name = "echo"

    def predict(self, batch: list[Any]) -> list[Any]:
        return list(batch)


class Slow(servekit.Model):
    name = "slow"

    def predict(self, batch: list[Any]) -> list[Any]:
        time.sleep(SLOW_SECONDS)
        return list(batch)


class Tf(servekit.Model):
    name = "tf"
    eas_format = "tensorflow"

    def predict(self, batch: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        return [
            {"doubled": feeds["x"] * 2, "total": np.array([feeds["x"].sum()])} for feeds in batch
        ]


class Torch(servekit.Model):
    name = "torch"
    eas_format = "pytorch"

    def predict(self, batch: list[list[np.ndarray]]) -> list[list[np.ndarray]]:
        return [[feeds[0] + 1, feeds[0] * 10] for feeds in batch]


class Scale(servekit.Model):
    name = "scale"
    version = "1"

    def predict(self, batch: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        return [{"scaled": row * 2} for row in batch]


class Total(servekit.Model):
    name = "total"

    def predict(self, batch: list[Any]) -> list[Any]:
        return [sum(item) if isinstance(item, list) else item for item in batch]


class Boom(servekit.Model):
    name = "boom"
    calls = 0

    def predict(self, batch: list[Any]) -> list[Any]:
        type(self).calls += 1
        raise RuntimeError("the model broke")


class Jam(servekit.Model):
    name = "jam"
    max_batch_size = 1
    max_queue_size = 1
    gate = threading.Event()
    entered = threading.Event()

    def predict(self, batch: list[Any]) -> list[Any]:
        type(self).entered.set()
        type(self).gate.wait(30)
        return list(batch)


class Wide(servekit.Model):
    name = "wide"
    max_batch_size = 256
    max_latency_ms = 200
    sizes: list[int] = []
    #: Seconds the first batch after ``sizes`` is cleared takes: what arrives meanwhile queues.
    first_batch_seconds = 0.0

    def predict(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        if not type(self).sizes:
            time.sleep(type(self).first_batch_seconds)
        type(self).sizes.append(len(batch))
        return [row + 1 for row in batch]


class Warming(servekit.Model):
    name = "warming"
    gate = threading.Event()

    def load(self) -> None:
        type(self).gate.wait(60)

    def predict(self, batch: list[Any]) -> list[Any]:
        return list(batch)


def models() -> list[servekit.Model]:
    return [Echo(), Slow(), Tf(), Torch(), Scale(), Total(), Boom(), Jam(), Wide(), Warming()]


def wait_ready(url: str, names: list[str], timeout: float = 20.0) -> None:
    """Poll the v2 ready route of each model until it answers 200."""
    deadline = time.monotonic() + timeout
    with servekit.Client(url, token=TOKEN) as client:
        for name in names:
            while not client.ready(name):
                assert time.monotonic() < deadline, f"model {name!r} did not get ready"
                time.sleep(0.01)


class Door:
    """A running App: ``url`` (HTTP), ``tcp_port``, ``port``."""

    def __init__(self, app: App, live: LiveServer) -> None:
        self.app = app
        self.live = live
        self.url = live.url
        self.port = live.port
        assert app.tcp_port is not None
        self.tcp_port: int = app.tcp_port


@pytest.fixture(scope="module")
def door() -> Iterator[Door]:
    Jam.gate.set()
    Warming.gate.clear()
    app = App(models(), token=TOKEN, tcp_port=0)
    live = LiveServer(app).start()
    ready = ["echo", "slow", "tf", "torch", "scale", "total", "boom", "jam", "wide"]
    wait_ready(live.url, ready)
    yield Door(app, live)
    Warming.gate.set()
    Jam.gate.set()
    live.stop()


@pytest.fixture
def start_door() -> Iterator[Callable[..., Door]]:
    """``start_door(models, **uvicorn_config)``: a fresh App on its own port for one test."""
    running: list[LiveServer] = []

    def start(served: list[servekit.Model], **config: Any) -> Door:
        app = App(served, token=TOKEN, tcp_port=0)
        live = LiveServer(app, **config).start()
        running.append(live)
        deadline = time.monotonic() + 10
        while app.tcp_port == 0:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        return Door(app, live)

    yield start
    for live in running:
        live.stop()


@pytest.fixture
def jammed(door: Door) -> Iterator[None]:
    """``jam``'s model is blocked for the test's duration (its queue can then fill up)."""
    Jam.entered.clear()
    Jam.gate.clear()
    yield
    Jam.gate.set()


def refusals_of_a_full_queue(send: Callable[[], object]) -> list[TooManyRequests]:
    """Call ``send`` from four threads while ``jam`` is blocked (``jammed``): one request runs,
    one waits in the queue, the others are refused. Returns the 429s, once ``jam`` is let go."""
    refusals: list[TooManyRequests] = []

    def run() -> None:
        try:
            send()
        except TooManyRequests as exc:
            refusals.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while len(refusals) < 2:
        assert time.monotonic() < deadline, "no 429 from a full queue"
        time.sleep(0.01)
    Jam.gate.set()
    for t in threads:
        t.join(10)
    return refusals


class closed_port:
    """A loopback port nothing listens on (bound, never listening, so nobody else gets it)."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return int(self.sock.getsockname()[1])

    def __exit__(self, *exc_info: object) -> None:
        self.sock.close()
