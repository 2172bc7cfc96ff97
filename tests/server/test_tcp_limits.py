"""The TCP door's limits: back-pressure per connection, a shared byte budget, timeouts.

Memory is measured from the server's own process (``python -m servekit serve`` in a
subprocess, ``VmRSS`` of ``/proc/<pid>/status``); the rest runs against an in-process server
on loopback.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

import servekit
from servekit.server.runtime import ModelRegistry
from servekit.server.tcp import TcpDoor
from servekit.settings import InvalidSetting, ServerSettings

from .conftest import Gate, LiveServer

ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024


class Slow(servekit.Model):
    """Answers each item unchanged after ``delay`` seconds per batch (or once ``gate`` opens)."""

    name = "slow"

    def __init__(self, delay: float = 0.0, gate: Gate | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.delay = delay
        self.gate = gate

    def predict(self, batch: list[Any]) -> list[Any]:
        if self.gate is not None:
            self.gate.block()
        time.sleep(self.delay)
        return [item if isinstance(item, (int, str)) else item.tolist() for item in batch]


class Doubling(servekit.Model):
    """Answers a string twice over (so an answer can be larger than its request)."""

    name = "doubling"

    def predict(self, batch: list[Any]) -> list[Any]:
        return [item * 2 for item in batch]


def frame(doc: Any) -> bytes:
    body = orjson.dumps(doc)
    return struct.pack("!I", len(body)) + body


def infer(number: int, data: Any = 1) -> bytes:
    return frame({"req_type": 3, "request_number": number, "data": data})


def recv_frame(sock: socket.socket) -> dict[str, Any]:
    (length,) = struct.unpack("!I", recv_exactly(sock, 4))
    return orjson.loads(recv_exactly(sock, length))  # type: ignore[no-any-return]


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "connection closed early"
        data += chunk
    return data


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server closes ``sock`` within ``within`` seconds (replies are skipped)."""
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def tcp_door(serve: Callable[..., LiveServer], models: list[Any], **settings: Any) -> int:
    live = serve(models, tcp_port=0, **settings)
    assert live.app.tcp_port
    return int(live.app.tcp_port)


# back-pressure: in-flight requests per connection


def test_one_connection_has_at_most_tcp_max_inflight_requests_queued_and_all_are_answered(
    serve: Callable[..., LiveServer], gate: Gate, wait_until: Callable[..., None]
) -> None:
    live = serve([Slow(gate=gate, max_batch_size=1)], tcp_port=0, tcp_max_inflight=8)
    batcher = live.runtime("slow").batcher
    with connect(live.app.tcp_port) as sock:
        sock.sendall(b"".join(infer(n, n) for n in range(200)))
        gate.wait_entered()
        wait_until(lambda: batcher.queued_items == 7, "the connection's other 7 requests queue")
        time.sleep(0.2)  # the door has read what it will: no more than its limit
        assert batcher.queued_items == 7
        gate.open()
        answers = [recv_frame(sock) for _ in range(200)]
    assert sorted(a["data"] for a in answers) == list(range(200))
    assert all(a["flag"] == 1 for a in answers)


def test_a_flood_on_one_tcp_connection_leaves_the_queue_to_http_clients(
    serve: Callable[..., LiveServer],
) -> None:
    model = Slow(delay=0.005, max_batch_size=8, max_queue_size=128)  # ~1,600 items/s
    live = serve([model], tcp_port=0)
    chunks, per_chunk = 30, 100  # 3,000 frames at ~10,000/s
    flood = chunks * per_chunk
    answered: list[dict[str, Any]] = []
    with connect(live.app.tcp_port) as sock:

        def send() -> None:
            for c in range(chunks):
                sock.sendall(b"".join(infer(c * per_chunk + n) for n in range(per_chunk)))
                time.sleep(0.01)

        def read_answers() -> None:
            answered.extend(recv_frame(sock) for _ in range(flood))

        threads = [threading.Thread(target=send), threading.Thread(target=read_answers)]
        for thread in threads:
            thread.start()
        client = live.client()
        row = {"inputs": [{"name": "x", "datatype": "INT64", "shape": [1], "data": [5]}]}
        statuses: list[int] = []
        while threads[0].is_alive() or len(statuses) < 10:
            statuses.append(client.post("/v2/models/slow/infer", json=row).status_code)
        for thread in threads:
            thread.join(30)
    assert statuses == [200] * len(statuses)
    assert len(answered) == flood
    assert [a["flag"] for a in answered] == [1] * flood  # held back, never refused


def test_frames_over_tcp_max_buffer_wait_for_earlier_ones_to_be_answered(
    serve: Callable[..., LiveServer], gate: Gate, wait_until: Callable[..., None]
) -> None:
    settings = {"tcp_max_frame_size": 2048, "tcp_max_buffer": 4096}
    live = serve([Slow(gate=gate, max_batch_size=1)], tcp_port=0, **settings)
    batcher = live.runtime("slow").batcher
    with connect(live.app.tcp_port) as sock:
        sock.sendall(b"".join(infer(n, "x" * 1500) for n in range(10)))
        gate.wait_entered()
        wait_until(lambda: batcher.queued_items == 1, "a second request queues")
        time.sleep(0.2)  # frames of ~1.5 KiB: two fit in 4 KiB, a third does not
        assert batcher.queued_items == 1
        gate.open()
        answers = [recv_frame(sock) for _ in range(10)]
    assert all(a["flag"] == 1 for a in answers)


# timeouts


def test_a_partial_frame_gets_408_after_tcp_frame_timeout_and_the_server_goes_on(
    serve: Callable[..., LiveServer],
) -> None:
    port = tcp_door(serve, [Slow()], tcp_frame_timeout=0.3)
    with connect(port) as sock:
        started = time.monotonic()
        sock.sendall(infer(1)[:-3])
        answer = recv_frame(sock)
        assert closed_by_server(sock, 2)
        took = time.monotonic() - started
    assert (answer["flag"], answer["code"]) == (2, 408)
    assert "within 0.3s of its first byte" in answer["message"]
    assert "tcp_frame_timeout" in answer["message"]
    assert 0.25 < took < 2
    with connect(port) as sock:
        sock.sendall(infer(2, "after"))
        assert recv_frame(sock)["data"] == "after"


def test_the_frame_timeout_stops_while_the_door_holds_back_for_its_own_work(
    serve: Callable[..., LiveServer], gate: Gate
) -> None:
    port = tcp_door(serve, [Slow(gate=gate)], tcp_max_inflight=1, tcp_frame_timeout=0.3)
    with connect(port) as sock:
        second = infer(2, "second")
        sock.sendall(infer(1, "first") + second[:5])
        gate.wait_entered()
        time.sleep(0.6)  # longer than the frame timeout, but the door was not reading
        gate.open()
        assert recv_frame(sock)["data"] == "first"
        sock.sendall(second[5:])
        assert recv_frame(sock)["data"] == "second"


def test_a_silent_connection_closes_after_tcp_idle_timeout_but_not_while_it_waits(
    serve: Callable[..., LiveServer], gate: Gate
) -> None:
    port = tcp_door(serve, [Slow(gate=gate)], tcp_idle_timeout=0.3)
    with connect(port) as silent, connect(port) as waiting:
        waiting.sendall(infer(1, "slow answer"))
        gate.wait_entered()
        assert closed_by_server(silent, 2)
        time.sleep(0.5)  # its request is in flight: the connection stays
        gate.open()
        assert recv_frame(waiting)["data"] == "slow answer"


# connections and the shared budget


def test_a_connection_beyond_tcp_max_connections_gets_503(
    serve: Callable[..., LiveServer], wait_until: Callable[..., None]
) -> None:
    live = serve([Slow()], tcp_port=0, tcp_max_connections=2)
    port = live.app.tcp_port
    with connect(port) as first, connect(port) as second:
        for sock in (first, second):
            sock.sendall(infer(1, "in"))
            assert recv_frame(sock)["data"] == "in"
        with connect(port) as third:
            answer = recv_frame(third)
            assert closed_by_server(third, 2)
    assert (answer["flag"], answer["code"]) == (2, 503)
    assert "tcp_max_connections=2" in answer["message"]
    wait_until(lambda: live.app.tcp.connections == 0, "the server sees both closed")
    with connect(port) as sock:  # a slot is free again
        sock.sendall(infer(1, "again"))
        assert recv_frame(sock)["data"] == "again"


def test_small_requests_flow_while_large_stalled_frames_hold_the_whole_budget(
    serve: Callable[..., LiveServer],
) -> None:
    limits = {"tcp_max_frame_size": MiB, "tcp_max_buffer": MiB, "tcp_max_total_buffer": MiB}
    port = tcp_door(serve, [Slow()], **limits)
    big = infer(1, "x" * (MiB - 100))
    with connect(port) as staller, connect(port) as waiter, connect(port) as small:
        staller.sendall(big[: MiB // 2])  # reserves the whole budget, then stalls
        time.sleep(0.2)
        waiter.sendall(big[: MiB // 2])  # cannot reserve: not read
        time.sleep(0.2)
        small.sendall(infer(2, "small"))
        assert recv_frame(small)["data"] == "small"
        staller.close()  # gives its reservation back: the waiter's frame is read
        waiter.sendall(big[MiB // 2 :])
        assert recv_frame(waiter)["flag"] == 1


def test_an_answer_over_the_frame_limit_is_a_500_frame(
    serve: Callable[..., LiveServer],
) -> None:
    port = tcp_door(serve, [Doubling()], tcp_max_frame_size=64 * 1024)
    with connect(port) as sock:
        sock.sendall(infer(1, "y" * 40_000))
        answer = recv_frame(sock)
        sock.sendall(infer(2, "ok"))
        assert recv_frame(sock)["data"] == "okok"
    assert (answer["flag"], answer["code"], answer["request_number"]) == (2, 500, 1)
    assert "too large to send" in answer["message"] and "tcp_max_frame_size" in answer["message"]


def test_buffers_smaller_than_a_frame_are_refused_naming_both_settings() -> None:
    settings = ServerSettings(tcp_max_frame_size=2 * MiB, tcp_max_buffer=MiB)
    with pytest.raises(InvalidSetting, match=r"tcp_max_buffer .* tcp_max_frame_size"):
        TcpDoor.from_settings(ModelRegistry(), settings)


# memory, measured from the server process


class Served:
    """``python -m servekit serve tests/server/cli_models.py:Echo --tcp-port P``."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.port = _free_port()
        http_port = _free_port()
        self.log = tmp_path / "server.log"
        command = [sys.executable, "-m", "servekit", "serve", "tests/server/cli_models.py:Echo"]
        command += ["--port", str(http_port), "--tcp-port", str(self.port)]
        with self.log.open("wb") as sink:
            self.proc = subprocess.Popen(
                [*command, "--log-level", "warning"],
                cwd=ROOT,
                env={**os.environ, **env},
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while not self._answers():
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, "server not ready:\n" + self.log.read_text()
            time.sleep(0.05)

    def _answers(self) -> bool:
        try:
            with connect(self.port) as sock:
                sock.sendall(infer(0, "ready"))
                return recv_frame(sock).get("flag") == 1
        except OSError:
            return False

    def rss(self) -> int:
        """The server's resident memory, in bytes."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    started: list[Served] = []

    def start(**env: str) -> Served:
        started.append(Served(tmp_path, {f"SERVEKIT_{k.upper()}": v for k, v in env.items()}))
        return started[-1]

    yield start
    for server in started:
        server.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def send_what_fits(sock: socket.socket, data: bytes, patience: float) -> int:
    """Send ``data`` until the peer stops taking it for ``patience`` seconds; bytes sent."""
    sock.setblocking(False)
    sent = 0
    stuck_since = time.monotonic()
    while sent < len(data) and time.monotonic() - stuck_since < patience:
        try:
            sent += sock.send(data[sent : sent + MiB])
            stuck_since = time.monotonic()
        except BlockingIOError:
            time.sleep(0.01)
    return sent


def test_forty_stalled_large_frames_hold_at_most_the_shared_budget(
    served: Callable[..., Served],
) -> None:
    server = served(
        tcp_max_frame_size=str(4 * MiB),
        tcp_max_buffer=str(4 * MiB),
        tcp_max_total_buffer=str(32 * MiB),
        tcp_frame_timeout="1",
    )
    before = server.rss()
    part = infer(1, "z" * (4 * MiB - 100))[: 4 * MiB - 256 * 1024]  # 3.75 MiB of a 4 MiB frame
    socks = [connect(server.port) for _ in range(40)]
    peak = before
    try:
        for sock in socks:
            send_what_fits(sock, part, patience=0.05)
            peak = max(peak, server.rss())
        for _ in range(20):
            time.sleep(0.05)
            peak = max(peak, server.rss())
        # every stalled frame is cut in turn, as the budget lets each be read
        closed = 0
        deadline = time.monotonic() + 30
        for sock in socks:
            assert closed_by_server(sock, max(0.1, deadline - time.monotonic()))
            closed += 1
            peak = max(peak, server.rss())
    finally:
        for sock in socks:
            sock.close()
    assert closed == 40
    assert peak - before < 64 * MiB, f"RSS grew by {(peak - before) / MiB:.0f} MiB"
    assert server._answers()


def test_a_client_that_never_reads_its_answers_stops_being_read(
    served: Callable[..., Served],
) -> None:
    server = served()
    before = server.rss()
    payload = b"".join(infer(n, "w" * 65_000) for n in range(3000))  # ~200 MB of answers
    with connect(server.port) as sock:
        sent = send_what_fits(sock, payload, patience=1.0)
        time.sleep(0.5)
        grown = server.rss() - before
    assert sent < len(payload), "the server read everything: no back-pressure"
    assert grown < 48 * MiB, f"RSS grew by {grown / MiB:.0f} MiB ({sent / MiB:.0f} MiB sent)"
    assert server._answers()
