"""``servekit serve --workers 2`` as a real subprocess: one scrape sums every worker, a killed
worker is replaced, SIGTERM under load answers everything accepted and exits 0."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from servekit.server.metrics import SHARE_INTERVAL

ROOT = Path(__file__).resolve().parents[2]
MODELS = "tests/server/workers_models.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def row(value: float) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 1], "data": [value]}]}


class Workers:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc, self.log = proc, log
        self.url = f"http://127.0.0.1:{port}"

    def fresh(self) -> httpx.Client:
        """A client on a new connection: the kernel hands it to either worker."""
        return httpx.Client(base_url=self.url, timeout=10.0)

    def pid_and_post(self, model: str, value: float) -> int:
        with self.fresh() as client:
            pid = int(client.get("/").json()["pid"])
            response = client.post(f"/v2/models/{model}/infer", json=row(value))
            assert response.status_code == 200, response.text
            return pid

    def scrape(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        with self.fresh() as client:
            text = client.get("/metrics").text
        return {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def wait_for(predicate: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


@contextmanager
def serving(tmp_path: Path, target: str, *args: str) -> Iterator[Workers]:
    port = free_port()
    log = tmp_path / "server.log"
    command = [sys.executable, "-m", "servekit", "serve", f"{MODELS}:{target}", "--workers", "2"]
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [*command, *args, "--port", str(port), "--log-level", "info"],
            cwd=ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    served = Workers(proc, port, log)

    def ready() -> bool:
        assert proc.poll() is None, f"server exited early:\n{served.output()}"
        try:
            with served.fresh() as client:
                return client.get("/v2/health/ready").status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(ready, "the server is ready", timeout=30)
        yield served
    finally:
        if proc.poll() is None:
            proc.terminate()  # not SIGKILL: the workers would outlive their parent
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def requests_total(samples: dict[Any, float], model: str) -> float:
    return samples.get(("servekit_requests_total", frozenset({("model", model)})), 0.0)


def answered(samples: dict[Any, float], model: str) -> float:
    labels = frozenset({("model", model), ("door", "v2"), ("status", "200")})
    return samples.get(("servekit_responses_total", labels), 0.0)


def settled(served: Workers, total: float) -> None:
    """Wait until a scrape shows ``total``, then one sharing interval more: every worker has
    written its numbers since its last request (another worker's are at most that old)."""
    wait_for(lambda: requests_total(served.scrape(), "echo") == total, f"a scrape shows {total}")
    time.sleep(SHARE_INTERVAL * 1.5)


def spread_requests(served: Workers, model: str, n: int) -> Counter[int]:
    """``n`` requests on fresh connections; how many each worker pid answered."""
    return Counter(served.pid_and_post(model, float(i)) for i in range(n))


def test_one_scrape_shows_the_sum_over_every_worker(tmp_path):
    with serving(tmp_path, "Echo") as served:
        by_pid = spread_requests(served, "echo", 40)
        while len(by_pid) < 2:  # the kernel chose one worker every time: go on until both
            by_pid += spread_requests(served, "echo", 10)
            assert sum(by_pid.values()) < 400, f"one worker took every connection: {by_pid}"
        total = sum(by_pid.values())
        settled(served, total)
        for _ in range(8):  # whichever worker answers
            samples = served.scrape()
            assert requests_total(samples, "echo") == total
            assert answered(samples, "echo") == total
            ready = samples[("servekit_model_ready", frozenset({("model", "echo")}))]
            assert ready == 1  # the minimum over the workers, not their sum
        assert served.proc.send_signal(signal.SIGTERM) is None
        assert served.proc.wait(timeout=20) == 0


def test_a_killed_worker_is_replaced_and_its_counts_stay(tmp_path):
    with serving(tmp_path, "Echo") as served:
        by_pid = spread_requests(served, "echo", 30)
        while len(by_pid) < 2:
            by_pid += spread_requests(served, "echo", 10)
        total = sum(by_pid.values())
        settled(served, total)
        victim = min(by_pid)
        os.kill(victim, signal.SIGKILL)
        seen: set[int] = set()

        def replaced() -> bool:
            seen.update(spread_requests(served, "echo", 4))  # the server keeps answering
            return len(seen - set(by_pid)) >= 1

        wait_for(replaced, "a new worker answers", timeout=30)
        assert victim not in seen
        assert "was killed by SIGKILL" in served.output()
        # the dead worker's counts stay in the sum (counters never go down)
        assert requests_total(served.scrape(), "echo") >= total
        assert served.proc.send_signal(signal.SIGTERM) is None
        assert served.proc.wait(timeout=20) == 0


def post_raw(port: int) -> tuple[float | None, str]:
    """One request on a new connection: (when its last byte was written, outcome).

    Outcome: the status code, ``refused`` (never connected: nothing was accepted) or
    ``reset`` (connected, then closed without an answer). Raw sockets, so the time the
    request was fully sent is known.
    """
    body = json.dumps(row(1.0)).encode()
    head = (
        f"POST /v2/models/slow/infer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    except ConnectionRefusedError:
        return None, "refused"
    with sock:
        try:
            sock.sendall(head.encode() + body)
            written = time.monotonic()
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
        except OSError:
            return time.monotonic(), "reset"
    return written, reply.split(b" ", 2)[1].decode() if reply else "reset"


def test_sigterm_under_load_answers_every_request_sent_before_it_and_exits_0(tmp_path):
    outcomes: list[tuple[float | None, str]] = []
    stop = threading.Event()
    with serving(tmp_path, "Slow", "--max-batch-size", "4") as served:
        port = int(served.url.rsplit(":", 1)[1])

        def client_loop() -> None:
            while not stop.is_set():
                outcomes.append(post_raw(port))
                if outcomes[-1][1] == "refused":
                    return  # the server stopped listening

        threads = [threading.Thread(target=client_loop) for _ in range(12)]
        for thread in threads:
            thread.start()
        wait_for(lambda: len(outcomes) >= 60, "requests flow", timeout=30)
        signalled = time.monotonic()
        served.proc.send_signal(signal.SIGTERM)
        code = served.proc.wait(timeout=30)
        stop.set()
        for thread in threads:
            thread.join(25)
    assert code == 0, served.output()
    sent_before = [outcome for written, outcome in outcomes if written and written < signalled]
    later = [outcome for written, outcome in outcomes if not written or written >= signalled]
    # every request fully sent before the signal got its answer
    assert len(sent_before) >= 60 and set(sent_before) == {"200"}, Counter(sent_before)
    assert "refused" in later
    # sent after it: answered, or refused (503, no connection, or closed unread); never a 5xx
    assert set(later) <= {"200", "503", "refused", "reset"}, Counter(later)
