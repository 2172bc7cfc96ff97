"""examples/mlrun: the issue's V2ModelServer example with a real pickled scikit-learn model,
served by ``servekit serve app.py:instance`` and called concurrently over HTTP."""

from __future__ import annotations

import os
import pickle
import runpy
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sklearn.datasets import load_iris

from servekit.server.loader import load_target
from servekit.serving import MlrunModel

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mlrun"
REQUESTS, THREADS = 64, 16


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("mlrun") / "model"
    runpy.run_path(str(EXAMPLE / "train.py"))["train"](folder)
    return folder


@pytest.fixture(scope="module")
def served(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("log") / "server.log"
    env = {**os.environ, "MLRUN_EXAMPLE_MODEL": str(model_dir)}
    command = [sys.executable, "-m", "servekit", "serve", "app.py:instance", "--port", str(port)]
    with log.open("wb") as sink:
        proc = subprocess.Popen(command, cwd=EXAMPLE, env=env, stdout=sink, stderr=sink)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{url}/v2/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def request_rows(i: int) -> list[list[float]]:
    """Request i's rows: 1 to 4 iris samples, different for every request."""
    data = load_iris().data
    return [list(map(float, data[(7 * i + k) % len(data)])) for k in range(1 + i % 4)]


def test_the_example_answers_concurrent_requests_with_fewer_predict_calls(
    served: str, model_dir: Path
) -> None:
    with open(model_dir / "model.pkl", "rb") as file:
        classifier = pickle.load(file)
    client = httpx.Client(base_url=served, timeout=10.0, limits=httpx.Limits(max_connections=32))

    def call(i: int) -> tuple[int, dict[str, Any]]:
        route = "/v2/models/iris/versions/v1/infer" if i % 2 else "/v2/models/iris/predict"
        reply = client.post(route, json={"id": f"r{i}", "inputs": request_rows(i)})
        return reply.status_code, reply.json()

    with client, ThreadPoolExecutor(THREADS) as pool:
        answers = list(pool.map(call, range(REQUESTS)))
        stats = client.get("/v2/models/iris/versions/v1/stats").json()["model_stats"][0]
    for i, (status, answer) in enumerate(answers):
        assert status == 200, answer
        expected = classifier.predict(request_rows(i)).tolist()
        assert answer == {
            "id": f"r{i}",
            "model_name": "iris",
            "model_version": "v1",
            "outputs": expected,
        }
    # one batcher item per request; each batch is one predict call (all rows have 4 values)
    assert stats["inference_count"] == REQUESTS
    assert stats["execution_count"] < REQUESTS, stats
    print(f"{REQUESTS} requests from {THREADS} threads: {stats['execution_count']} predict calls")


def test_the_example_target_is_a_v2_model_server(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLRUN_EXAMPLE_MODEL", str(model_dir))
    monkeypatch.chdir(EXAMPLE)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "app", raising=False)
    (model,) = load_target("app.py:instance")
    assert isinstance(model, MlrunModel)
    assert (model.name, model.version, model.batch_settings().max_batch_size) == ("iris", "v1", 16)
