"""A large JSON body costs the server a small multiple of its size in memory, not a Python
object per number: measured as the peak RSS of a real ``python -m servekit serve`` process
(``VmHWM`` in ``/proc/<pid>/status``, reset through ``clear_refs`` before each request)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest

ROOT = Path(__file__).resolve().parents[2]
MiB = 1 << 20

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc peak RSS"
)


def status_bytes(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


class Server:
    def __init__(self, proc: subprocess.Popen[bytes], client: httpx.Client) -> None:
        self.proc, self.client = proc, client

    def peak_growth(self, body: bytes) -> tuple[httpx.Response, int]:
        """Answer to ``body`` and how far the peak RSS rose above the RSS before it."""
        before = status_bytes(self.proc.pid, "VmRSS")
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")  # peak := current RSS
        response = self.client.post("/v2/models/size/infer", content=body)
        return response, status_bytes(self.proc.pid, "VmHWM") - before


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "log"
    target = "tests/server/large_body_models.py:Size"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "servekit", "serve", target, "--port", str(port)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if client.get("/v2/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        warm = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}
        assert client.post("/v2/models/size/infer", json=warm).status_code == 200
        yield Server(proc, client)
    finally:
        client.close()
        proc.terminate()
        proc.wait(10)


def body_of(datatype: str, data: np.ndarray) -> bytes:
    spec = {"name": "x", "datatype": datatype, "shape": list(data.shape), "data": data}
    return orjson.dumps({"inputs": [spec]}, option=orjson.OPT_SERIALIZE_NUMPY)


def test_57_mib_of_small_integers_peaks_below_five_times_the_body(server):
    # the worst case per byte for orjson: a 28-byte int object for every 2 bytes of text
    data = np.random.default_rng(0).integers(0, 10, (300_000, 100))
    body = body_of("FP32", data)
    assert len(body) > 57 * MiB
    response, growth = server.peak_growth(body)
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == [data.size]
    # body (1x) + the FP32 array (2x) + a piece at a time; was 14x (798 MiB)
    assert growth < 5 * len(body), f"peak grew {growth / MiB:.0f} MiB for {len(body) / MiB:.0f}"


def test_a_malformed_large_body_is_a_400_naming_the_input_at_the_same_cost(server):
    body = body_of("INT8", np.arange(30_000_000, dtype=np.int64) % 10)
    body = body[: len(body) - 100] + b",x" + body[len(body) - 98 :]
    response, growth = server.peak_growth(body)
    assert response.status_code == 400, response.text
    assert "input 'x'" in response.json()["error"]
    assert growth < 5 * len(body), f"peak grew {growth / MiB:.0f} MiB for {len(body) / MiB:.0f}"
