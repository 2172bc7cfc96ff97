"""Asynchronous inference: put work in a model's queue, collect answers from its sink."""

from __future__ import annotations

import gc
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from servekit.client import QueueClient, TooManyRequests
from servekit.server import App
from servekit.server.async_inference import GROUP
from server.slow_models import Shout
from support.redis_server import RedisServer, free_port, wait_until
from support.servers import LiveServer

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


class GatedShout(Shout):
    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.gate.set()
        self.batch_sizes: list[int] = []

    def predict(self, batch: list[bytes]) -> list[object]:
        self.gate.wait(10)
        self.batch_sizes.append(len(batch))
        return super().predict(batch)


@pytest.fixture(params=["sqlite", "redis"])
def queue_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'queues'}"
    server: RedisServer = request.getfixturevalue("redis_server")
    return server.url.replace("/0", f"/{1 + hash(tmp_path) % 14}")


@pytest.fixture
def served(queue_url: str) -> Iterator[tuple[LiveServer, GatedShout]]:
    model = GatedShout()
    app = App([model], queue_url=queue_url, token="tok")
    live = LiveServer(app).start()
    live.call(app.wait_loaded())
    yield live, model
    model.gate.set()
    _close_open_clients()  # before the server stops: no connection for it to wait on
    live.stop()


_open_clients: list[QueueClient] = []


def _close_open_clients() -> None:
    while _open_clients:
        _open_clients.pop().close()


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    _close_open_clients()


def client_for(live: LiveServer, queue: str) -> QueueClient:
    client = QueueClient(f"127.0.0.1:{live.port}", queue)
    client.set_token("tok")
    client.init()
    _open_clients.append(client)
    return client


def collect(sink: QueueClient, request_id: str) -> tuple[bytes, dict[str, str]]:
    frames = sink.get(request_id=request_id, timeout="10s")
    assert frames, f"no answer for {request_id} in the sink"
    return frames[0].data, frames[0].tags


def test_put_then_get_the_answer_by_request_id(served: tuple[LiveServer, GatedShout]) -> None:
    live, _ = served
    inputs, sink = client_for(live, "shout"), client_for(live, "shout/sink")
    index, request_id = inputs.put(b"hello queue")
    assert index >= 1
    data, tags = collect(sink, request_id)
    assert data == b"HELLO QUEUE" and tags["status"] == "200"
    wait_until(lambda: inputs.attributes()["stream.length"] == "0", 10, "input committed")


def test_records_are_batched_and_a_bad_record_fails_alone(
    served: tuple[LiveServer, GatedShout],
) -> None:
    live, model = served
    model.gate.clear()
    inputs, sink = client_for(live, "shout"), client_for(live, "shout/sink")
    ids = [inputs.put(f"item {i}".encode())[1] for i in range(12)]
    bad_id = inputs.put(b"boom")[1]
    time.sleep(0.3)  # let the consumer take a window of records while the model is held
    model.gate.set()
    for i, request_id in enumerate(ids):
        data, tags = collect(sink, request_id)
        assert data == f"ITEM {i}".encode() and tags["status"] == "200"
    data, tags = collect(sink, bad_id)
    assert tags["status"] == "500" and b"boom record" in data
    assert max(model.batch_sizes) > 1


def test_v2_routes_keep_answering_synchronously(served: tuple[LiveServer, GatedShout]) -> None:
    live, _ = served
    reply = httpx.get(f"{live.url}/v2/models/shout", headers={"Authorization": "Bearer tok"})
    assert reply.status_code == 200 and reply.json()["name"] == "shout"
    assert httpx.post(f"{live.url}/api/predict/shout", content=b"x").status_code == 401


def test_server_killed_mid_batch_loses_no_record(tmp_path: Path) -> None:
    """SIGKILL the server while it works; after a restart every record gets answered."""
    port = free_port()
    queues = f"sqlite://{tmp_path / 'queues'}"
    command = [
        sys.executable, "-m", "servekit", "serve", "tests/server/slow_models.py:Shout",
        "--port", str(port), "--queue", "--queue-url", queues, "--max-batch-size", "4",
        "--log-level", "warning",
    ]  # fmt: skip
    env = {**os.environ, "SHOUT_DELAY_S": "0.05"}

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
        wait_until(lambda: _ready(port, proc), 30, "servekit serve --queue ready")
        return proc

    proc = start()
    endpoint = f"127.0.0.1:{port}"
    inputs, sink = QueueClient(endpoint, "shout"), QueueClient(endpoint, "shout/sink")
    inputs.init()
    sink.init()
    _open_clients.extend([inputs, sink])
    ids = [inputs.put(f"record {i}".encode())[1] for i in range(40)]
    wait_until(lambda: int(sink.attributes()["stream.length"]) >= 4, 20, "some answers")
    proc.send_signal(signal.SIGKILL)  # mid-work: records taken but not yet answered
    proc.wait(10)
    proc = start()
    try:
        answers = {}
        for i, request_id in enumerate(ids):
            frames = sink.get(request_id=request_id, timeout="20s")
            assert frames, f"record {i} ({request_id}) was lost"
            answers[request_id] = frames[0].data
        assert answers == {rid: f"RECORD {i}".encode() for i, rid in enumerate(ids)}
    finally:
        proc.terminate()
        proc.wait(15)


def _ready(port: int, proc: subprocess.Popen[bytes]) -> bool:
    assert proc.poll() is None, "servekit serve exited early"
    try:
        return httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture
def bounded(queue_url: str) -> Iterator[tuple[LiveServer, GatedShout]]:
    """A queue-mode server whose input and sink queues hold at most 5 records each."""
    model = GatedShout()
    app = App([model], queue_url=queue_url, token="tok", queue_max_length=5)
    live = LiveServer(app).start()
    live.call(app.wait_loaded())
    yield live, model
    model.gate.set()
    _close_open_clients()  # before the server stops: no connection for it to wait on
    live.stop()


def length(queue: QueueClient) -> int:
    return int(queue.attributes()["stream.length"])


def test_a_full_sink_holds_input_back_until_it_is_drained(
    bounded: tuple[LiveServer, GatedShout], caplog: pytest.LogCaptureFixture
) -> None:
    live, _ = bounded
    inputs, sink = client_for(live, "shout"), client_for(live, "shout/sink")
    inputs.set_retry_count(0)
    first = [inputs.put(f"first {i}".encode())[1] for i in range(5)]
    wait_until(lambda: length(sink) == 5 and length(inputs) == 0, 10, "sink full")
    second = [inputs.put(f"second {i}".encode())[1] for i in range(5)]
    time.sleep(0.5)  # the consumer must leave these in the input queue: the sink has no room
    assert length(sink) == 5 and length(inputs) == 5
    with pytest.raises(TooManyRequests):
        inputs.put(b"one too many")
    for i, request_id in enumerate(first):  # drain the sink: the held-back input flows again
        data, tags = collect(sink, request_id)
        assert data == f"FIRST {i}".encode() and tags["status"] == "200"
    for i, request_id in enumerate(second):
        data, tags = collect(sink, request_id)
        assert data == f"SECOND {i}".encode() and tags["status"] == "200"
    wait_until(lambda: length(inputs) == 0, 10, "input committed")
    inputs.put(b"room again")
    gc.collect()
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


def test_answers_that_finish_while_the_consumer_waits_for_room_count_as_gone(
    bounded: tuple[LiveServer, GatedShout],
) -> None:
    """The consumer takes 5 records and waits for room while all 5 are still being answered;
    once they are stored and drained, the next input must flow (a count of answers in flight
    taken when the wait began would keep it waiting forever)."""
    live, model = bounded
    inputs, sink = client_for(live, "shout"), client_for(live, "shout/sink")
    model.gate.clear()
    first = [inputs.put(f"first {i}".encode())[1] for i in range(5)]
    wait_until(lambda: _pending(inputs) == 5, 10, "all five taken while the model is held")
    model.gate.set()
    wait_until(lambda: length(sink) == 5 and length(inputs) == 0, 10, "five answers stored")
    later = inputs.put(b"later")[1]
    for i, request_id in enumerate(first):
        data, _ = collect(sink, request_id)
        assert data == f"FIRST {i}".encode()
    data, tags = collect(sink, later)
    assert data == b"LATER" and tags["status"] == "200"


def _pending(queue: QueueClient) -> int:
    """Records of the consumer group handed out and not yet committed."""
    attrs = queue.attributes()
    groups = [v for k, v in attrs.items() if k.startswith("groups.list.") and GROUP in v]
    return int(groups[0].split("Pending: ")[1].split(",")[0]) if groups else 0


@pytest.fixture(params=["sqlite", "redis"])
def sink_fault(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[str, Callable[[], None], Callable[[], None]]]:
    """A queue URL, and how to make the sink's puts fail and how to end that, for real.

    SQLite: another connection holds the sink file's write lock, so a put fails with
    "database is locked" after the 5 s busy timeout (and then tries again). Redis: the server
    is killed and restarted after 3 s, longer than an answer's tries last, so the records go
    back to the queue and are delivered again.
    """
    if request.param == "sqlite":
        directory = tmp_path / "queues"
        holder: list[sqlite3.Connection] = []

        def lock() -> None:
            db = sqlite3.connect(directory / "shout%2Fsink.db", isolation_level=None)
            db.execute("BEGIN IMMEDIATE")
            holder.append(db)

        def unlock() -> None:
            holder.pop().execute("COMMIT")

        yield f"sqlite://{directory}", lock, unlock
        return
    server: RedisServer = request.getfixturevalue("own_redis")
    yield server.url, server.kill, server.start


def test_a_failing_sink_put_strands_no_record(
    sink_fault: tuple[str, Callable[[], None], Callable[[], None]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, break_sink, mend_sink = sink_fault
    model = GatedShout()
    app = App([model], queue_url=url, token="tok")
    live = LiveServer(app).start()
    try:
        live.call(app.wait_loaded())
        inputs, sink = client_for(live, "shout"), client_for(live, "shout/sink")
        model.gate.clear()
        ids = [inputs.put(f"record {i}".encode())[1] for i in range(3)]
        wait_until(lambda: _taken(live, 3), 10, "the consumer took the records")
        break_sink()
        model.gate.set()  # the answers are ready while the sink refuses them
        time.sleep(6 if "sqlite" in url else 3)
        mend_sink()
        for i, request_id in enumerate(ids):
            data, tags = collect(sink, request_id)
            assert data == f"RECORD {i}".encode() and tags["status"] == "200"
        wait_until(lambda: length(inputs) == 0, 10, "input committed")
    finally:
        model.gate.set()
        live.stop()
    gc.collect()
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


def _taken(live: LiveServer, count: int) -> bool:
    """Whether the server's consumer holds the first ``count`` records of the input queue."""
    watcher = QueueClient(f"127.0.0.1:{live.port}", "shout")
    watcher.set_token("tok")
    watcher.init(gid=GROUP)
    _open_clients.append(watcher)
    first = int(watcher.attributes().get("stream.firstEntry", "0"))
    return first > 0 and all(watcher.search(first + i)["IsPending"] for i in range(count))


class Repeat(Shout):
    """Answers ten times the record it got: an answer can outgrow the sink's payload limit."""

    def predict(self, batch: list[bytes]) -> list[object]:
        return [item * 10 for item in batch]


def test_an_answer_too_large_for_the_sink_is_answered_with_413(queue_url: str) -> None:
    app = App([Repeat()], queue_url=queue_url, token="tok", queue_max_payload_bytes=1000)
    live = LiveServer(app).start()
    try:
        live.call(app.wait_loaded())
        inputs, sink = client_for(live, "shout"), client_for(live, "shout/sink")
        small, large = inputs.put(b"x" * 10)[1], inputs.put(b"y" * 500)[1]
        data, tags = collect(sink, small)
        assert data == b"x" * 100 and tags["status"] == "200"
        data, tags = collect(sink, large)
        assert tags["status"] == "413"
        assert b"does not fit in sink 'shout/sink'" in data and b"1000" in data
        wait_until(lambda: length(inputs) == 0, 10, "input committed")
    finally:
        live.stop()
