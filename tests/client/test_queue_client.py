"""servekit's own synchronous ``QueueClient`` against the door under uvicorn."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from servekit.client import (
    BadRequestError,
    NotFoundError,
    PredictException,
    QueueClient,
    TooManyRequests,
    UnauthorizedError,
)
from servekit.client.queue_client import Watcher
from servekit.errors import ServekitError


@pytest.fixture
def client() -> Iterator[Callable[..., QueueClient]]:
    """``client(server, name="svc", uid=None, token=..., gid=...)``; closed after the test."""
    made: list[QueueClient] = []

    def make(server: Any, name: str = "svc", uid: str | None = None, **kw: Any) -> QueueClient:
        c = QueueClient(server.endpoint, name)
        if "token" in kw:
            c.set_token(kw.pop("token"))
        c.init(uid=uid, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def collect(
    watcher: Watcher, count: int | None, sink: queue.Queue[Any], label: str = ""
) -> threading.Thread:
    """Run a watcher in a thread, putting each frame (or ``(label, frame)``) into ``sink``;
    stop after ``count`` frames."""

    def loop() -> None:
        for seen, frame in enumerate(watcher.run(), start=1):
            sink.put((label, frame) if label else frame)
            if seen == count:
                break

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def test_client_put_get_attributes_search_truncate_delete(serve_door: Any, client: Any) -> None:
    c = client(serve_door())
    index, rid = c.put("hello", tags={"k": "v"})
    assert isinstance(index, int) and rid
    (frame,) = c.get(index=index, auto_delete=False)
    assert (frame.data, frame.tags) == (b"hello", {"k": "v", "requestId": rid})
    assert [f.index for f in c.get(request_id=rid)] == [index]
    more = [c.put(b"x%d" % i)[0] for i in range(5)]
    attrs = c.attributes()
    assert attrs["stream.length"] == "5" and attrs["stream.lastEntry"] == str(more[-1])
    assert c.search(more[3]) == {"ConsumerId": "", "IsPending": False, "WaitCount": 3}
    assert c.delete([more[0], more[1]]) == "OK"
    assert c.delete(more[4]) == "OK"
    assert c.truncate(more[3]) == "OK"
    assert [f.index for f in c.get(length=10, auto_delete=False)] == [more[3]]
    assert c.get(index=more[-1] + 1, timeout="100ms") == []


def test_client_watch_with_commit_spreads_over_two_consumers(serve_door: Any, client: Any) -> None:
    server = serve_door()
    producer = client(server)
    indexes = [producer.put(f"r{i}".encode())[0] for i in range(6)]
    got: queue.Queue[Any] = queue.Queue()
    watchers = []
    for uid in ("c1", "c2"):
        c = client(server, uid=uid, gid="workers")
        w = c.watch(0, window=1)
        watchers.append(w)
        collect(w, None, got, uid)  # runs until closed: one that left would hand its record on
    # window 1 each: the first two records necessarily went to different consumers
    first_two = [got.get(timeout=10) for _ in range(2)]
    assert {uid for uid, _ in first_two} == {"c1", "c2"}
    received = [frame.index for _, frame in first_two]
    committer = client(server, gid="workers")
    committer.commit(received)
    for _ in range(4):
        _, frame = got.get(timeout=10)
        received.append(frame.index)
        committer.commit(frame.index)
    for w in watchers:
        w.close()
    assert sorted(received) == indexes, "a record was lost or delivered twice"
    assert producer.attributes()["stream.length"] == "0"


def test_client_raises_the_client_error_tree_with_eas_codes(serve_door: Any, client: Any) -> None:
    server = serve_door(token="t0k", max_length=1)
    with pytest.raises(UnauthorizedError):
        client(server).put(b"x")
    authorized = client(server, token="t0k")
    authorized.set_retry_count(0)  # a 429 is otherwise retried after its Retry-After
    authorized.put(b"x")
    with pytest.raises(TooManyRequests) as full:
        authorized.put(b"y")
    assert isinstance(full.value, PredictException) and full.value.code == 429
    assert full.value.retry_after is not None
    assert not isinstance(full.value, ServekitError)  # the server's tree stays the server's
    with pytest.raises(BadRequestError):
        authorized.get(timeout="soon")
    with pytest.raises(NotFoundError):
        client(server, name="missing", token="t0k").attributes()
    with pytest.raises(NotFoundError):
        next(iter(client(server, name="missing", token="t0k").watch(0, 1).run()))


def test_a_put_refused_with_429_is_resent_after_retry_after(serve_door: Any, client: Any) -> None:
    server = serve_door(max_length=1)
    producer = client(server)
    first, _ = producer.put(b"x")
    consumer = client(server)
    timer = threading.Timer(0.3, lambda: consumer.get(index=first))  # frees the one slot
    timer.start()
    started = time.monotonic()
    index, _ = producer.put(b"y")
    timer.join()
    assert index > first and time.monotonic() - started >= 0.3


def test_watcher_close_from_another_thread_ends_run(serve_door: Any, client: Any) -> None:
    watcher = client(serve_door()).watch(0, window=1)
    done = threading.Event()

    def loop() -> None:
        for _ in watcher.run():
            pass
        done.set()

    threading.Thread(target=loop, daemon=True).start()
    deadline = time.monotonic() + 10
    while watcher._conn is None:  # poll with a deadline until the watcher is connected
        assert time.monotonic() < deadline, "the watcher did not connect"
        time.sleep(0.01)
    watcher.close()
    assert done.wait(10)


def test_watcher_reconnects_after_the_server_restarts(
    make_queue: Any, door_on_port: Any, client: Any
) -> None:
    name = f"restart-{time.monotonic_ns()}"
    first = door_on_port({"svc": make_queue(name)})
    port = first.port
    c = client(first)
    c.put(b"before")
    frames: queue.Queue[Any] = queue.Queue()
    watcher = c.watch(0, window=1, auto_commit=True)
    thread = collect(watcher, 2, frames)
    assert frames.get(timeout=10).data == b"before"
    first.__exit__()  # the connection drops with the server

    second = door_on_port({"svc": make_queue(name)}, port=port)
    try:
        c.put(b"after")
        assert frames.get(timeout=15).data == b"after"
        thread.join(10)
    finally:
        watcher.close()
        second.__exit__()
