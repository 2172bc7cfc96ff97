"""servekit's clients over replicas found through service discovery: real ``servekit serve``
processes registered in a real Redis; a replica killed under load costs no request."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import servekit
from servekit.client import ENDPOINT_TYPE_DIRECT, Client, PredictClient, Retry, StringRequest
from servekit.client._discovery import Balancer
from servekit.server import App
from support.redis_server import RedisServer, wait_until
from support.replicas import Replica, replicas, wait_listed
from support.servers import LiveServer

TTL = "1.5"


def load(send: Callable[[int], None], threads: int, seconds: float) -> tuple[int, list[str]]:
    """Call ``send(i)`` from ``threads`` threads for ``seconds``; (successes, errors)."""
    done, errors, lock = [0], [], threading.Lock()
    stop = time.monotonic() + seconds

    def run() -> None:
        i = 0
        while time.monotonic() < stop:
            try:
                send(i)
                with lock:
                    done[0] += 1
            except Exception as exc:  # collected for the assertion message
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
            i += 1

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return done[0], errors


def kill_during(group: list[Replica], send: Callable[[int], None]) -> tuple[int, list[str]]:
    """Run load through ``group[0]``'s list; SIGKILL ``group[1]`` once it has served some."""
    stays, dies = group
    result: dict[str, tuple[int, list[str]]] = {}
    runner = threading.Thread(target=lambda: result.update(out=load(send, 3, 3.0)))
    runner.start()
    wait_until(lambda: dies.completed() > 10, 10, "load on the replica that dies")
    dies.signal(signal.SIGKILL)
    dies.proc.wait(10)
    wait_listed(stays, [stays.port], float(TTL) + 1.0)
    runner.join(30)
    return result["out"]


def assert_only_in_flight_lost(errors: list[str], dead: Replica, threads: int) -> None:
    """Only requests already sent to the replica when it died fail (one per thread at most):
    the server may have run them, so they are not resent (a POST); every later one is."""
    assert len(errors) <= threads, errors
    for error in errors:
        assert error.startswith(f"ConnectError: http://127.0.0.1:{dead.port}"), error


def test_predict_client_direct_spreads_and_covers_a_killed_replica(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    args = ("--discovery-url", redis_server.url, "--discovery-ttl", TTL)
    with replicas(2, tmp_path, *args) as group:
        wait_listed(group[0], sorted(r.port for r in group), 5)
        client = PredictClient(group[0].url, "echo")
        client.set_endpoint_type(ENDPOINT_TYPE_DIRECT)
        client.discovery_interval = 0.5
        with client:
            client.init()
            for i in range(20):
                assert client.predict(StringRequest(f"r{i}")).response_data == f"r{i}".encode()
            assert [r.completed() for r in group] == [10, 10]  # round robin, equal weights

            def send(i: int) -> None:
                assert client.predict(StringRequest(str(i))).response_data == str(i).encode()

            ok, errors = kill_during(group, send)
        assert_only_in_flight_lost(errors, group[1], threads=3)
        assert ok > 50


def test_v2_client_with_discovery_spreads_and_covers_a_killed_replica(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    args = ("--discovery-url", redis_server.url, "--discovery-ttl", TTL)
    with replicas(2, tmp_path, *args) as group:
        wait_listed(group[0], sorted(r.port for r in group), 5)
        with Client(group[0].url, discovery=True, discovery_interval=0.5, retries=5) as client:

            def send(i: int) -> None:
                out = client.infer("echo", {"x": np.array([[float(i)]])})
                assert next(iter(out.values())).tolist() == [[float(i)]]

            for i in range(10):
                send(i)
            assert [r.completed() for r in group] == [5, 5]
            ok, errors = kill_during(group, send)
        assert_only_in_flight_lost(errors, group[1], threads=3)
        assert ok > 50


class Echo(servekit.Model):
    name = "echo"

    def predict(self, batch: list[bytes]) -> list[bytes]:
        return batch


def test_a_replica_answering_503_is_passed_over_and_the_retry_goes_elsewhere() -> None:
    loading = threading.Event()

    class Loading(Echo):
        def load(self) -> None:
            loading.wait(20)

    ready, slow = LiveServer(App([Echo()])).start(), LiveServer(App([Loading()])).start()
    try:
        client = PredictClient("", "echo")
        client.set_endpoint_type(ENDPOINT_TYPE_DIRECT)
        client._router = Balancer([(slow.url, 1), (ready.url, 1)])  # slow is tried first
        pauses: list[float] = []
        client.retry = Retry(attempts=5, sleep=pauses.append)
        with client:
            for i in range(10):
                assert client.predict(StringRequest(str(i))).response_data == str(i).encode()
        assert len(pauses) == 1  # one 503, then the loading replica is passed over
        assert ready.app.registry.get("echo").batcher.stats.requests == 10
    finally:
        loading.set()
        ready.stop()
        slow.stop()
