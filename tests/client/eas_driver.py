"""Drives a servekit queue door with the published ``eas-prediction`` QueueClient, unchanged.

Run by ``test_eas_client.py`` with the Python of a virtualenv that has ``eas-prediction``
installed: ``python eas_driver.py <endpoint> <token> <queue> <groups queue> <shared queue>``
(three empty queues: a queue keeps a record until every group that exists committed it).
Every check is an ``assert``; the last line printed is ``OK <json of what was seen>``.
Written for the old protobuf the client pins: it uses the standard library and the client only.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

from eas_prediction import QueueClient

ENDPOINT, TOKEN, QUEUE, GROUPS_QUEUE, SHARED_QUEUE = sys.argv[1:6]
DEADLINE = time.monotonic() + 120


def client(uid: str | None = None, gid: str = "eas", queue: str = QUEUE) -> QueueClient:
    c = QueueClient(ENDPOINT, queue)
    c.set_token(TOKEN)
    c.init(uid=uid, gid=gid)
    c.set_timeout(20000)
    return c


def length(c: QueueClient) -> int:
    return int(c.attributes()["stream.length"])


def drained(c: QueueClient) -> bool:
    """True once the queue is empty; polls, since an auto-commit lands just after the send
    (the client's own test sleeps a second before looking)."""
    deadline = time.monotonic() + 10
    while length(c) != 0:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def collect(
    c: QueueClient,
    count: int,
    window: int,
    auto_commit: bool = False,
    commit: bool = True,
    barrier: threading.Barrier | None = None,
) -> list:
    """Watch until ``count`` frames came, committing each as it comes; with ``barrier``,
    commit all at the end, once every party passed the barrier."""
    frames = []
    watcher = c.watch(0, window, auto_commit=auto_commit)
    for frame in watcher.run():
        frames.append(frame)
        if commit and not auto_commit and barrier is None:
            c.commit(frame.index)
        if len(frames) == count:
            break
        assert time.monotonic() < DEADLINE
    if barrier is not None:
        barrier.wait(timeout=30)
        c.commit([f.index for f in frames])
    watcher.close()
    return frames


def main() -> None:
    seen: dict[str, object] = {}
    q = client()

    # put / get by request id, by index; tags travel
    index, request_id = q.put("abc", tags={"color": "red"})
    (frame,) = q.get(request_id=request_id)
    assert frame.data == b"abc" and frame.tags["color"] == "red", frame
    assert frame.tags["requestId"] == request_id
    index, _ = q.put("by index")
    (frame,) = q.get(index=index)
    assert frame.data == b"by index" and str(frame.index) == str(index)
    seen["put_get"] = True

    # attributes and truncate, as the client's own tests do it
    last = None
    for i in range(10):
        last, _ = q.put(str(i))
    attributes = q.attributes()
    assert int(attributes["stream.length"]) == 10, attributes
    assert attributes["stream.lastEntry"] == str(last)
    q.truncate(int(attributes["stream.lastEntry"]) + 1)
    assert length(q) == 0
    seen["attributes_truncate"] = True

    # delete one and a list
    a, _ = q.put("a")
    b, _ = q.put("b")
    c_, _ = q.put("c")
    q.delete(a)
    q.delete([b, c_])
    assert length(q) == 0
    seen["delete"] = True

    # search: waiting, then held by a watcher
    first, _ = q.put("s1")
    second, _ = q.put("s2")
    assert q.search(second) == {"ConsumerId": "", "IsPending": False, "WaitCount": 1}
    holder = client(uid="holder")
    watcher = holder.watch(0, 1)
    got = next(iter(watcher.run()))
    assert str(got.index) == str(first)
    found = holder.search(first)
    assert found == {"ConsumerId": "holder", "IsPending": True, "WaitCount": 0}, found
    holder.commit(got.index)
    watcher.close()
    q.truncate(int(second) + 1)
    seen["search"] = found

    # watch with manual commit, then with auto commit (the client's own test cases)
    for i in range(10):
        q.put(str(i))
    frames = collect(client(), 10, 5)
    assert [int(f.data) for f in frames] == list(range(10))
    assert length(q) == 0
    for i in range(10):
        q.put(str(i))
    frames = collect(client(), 10, 5, auto_commit=True)
    assert [int(f.data) for f in frames] == list(range(10))
    assert drained(q)
    seen["watch_commit"] = True

    # two groups: each sees every record; gone once both committed
    q = client(queue=GROUPS_QUEUE)
    for i in range(6):
        q.put(f"g{i}")
    barrier = threading.Barrier(2)
    results: dict[str, list] = {}

    def group(gid: str) -> None:
        results[gid] = collect(client(gid=gid, queue=GROUPS_QUEUE), 6, 10, barrier=barrier)

    threads = [threading.Thread(target=group, args=(g,)) for g in ("g1", "g2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [f.data for f in results["g1"]] == [f.data for f in results["g2"]]
    assert len(results["g1"]) == 6
    assert length(q) == 0
    seen["two_groups"] = True

    # two consumers in one group, window 1 each: the records spread over both
    total = 8
    q = client(queue=SHARED_QUEUE)
    for i in range(total):
        q.put(f"w{i}")
    lock = threading.Lock()
    by_consumer: dict[str, list[int]] = {"c1": [], "c2": []}
    committed: set[int] = set()
    both_hold_one = threading.Barrier(2)  # window 1: the second record must go to the other

    def consume(uid: str) -> None:
        c = client(uid=uid, gid="shared", queue=SHARED_QUEUE)
        for frame in c.watch(0, 1).run():
            with lock:
                by_consumer[uid].append(frame.index)
            if len(by_consumer[uid]) == 1:
                both_hold_one.wait(timeout=30)
            c.commit(frame.index)
            with lock:
                committed.add(frame.index)
                if len(committed) == total:
                    return

    consumers = [threading.Thread(target=consume, args=(u,), daemon=True) for u in ("c1", "c2")]
    for t in consumers:
        t.start()
    while len(committed) < total:
        assert time.monotonic() < DEADLINE, by_consumer
        time.sleep(0.02)
    assert by_consumer["c1"] and by_consumer["c2"], by_consumer
    assert sorted(by_consumer["c1"] + by_consumer["c2"]) == sorted(committed)
    assert length(q) == 0
    seen["two_consumers"] = {k: len(v) for k, v in by_consumer.items()}

    print("OK " + json.dumps(seen), flush=True)
    # the published Watcher reconnects after close(); end the process, not its threads
    os._exit(0)


if __name__ == "__main__":
    main()
