"""``servekit serve`` and ``python -m servekit serve`` as real subprocesses."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
MODELS_FILE = "tests/server/cli_models.py"
STARTUP_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def servekit_command() -> list[str]:
    script = Path(sys.executable).with_name("servekit")
    if script.exists():
        return [str(script)]
    found = shutil.which("servekit")
    assert found, "the servekit console script is not installed"
    return [found]


def wait_for(predicate: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.005)


def row(value: float) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 1], "data": [value]}]}


class Served:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc = proc
        self.url = f"http://127.0.0.1:{port}"
        self.port = port
        self.log = log
        self.client = httpx.Client(base_url=self.url, timeout=10.0)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, headers: dict[str, str]) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            assert self.proc.poll() is None, f"server exited early:\n{self.output()}"
            try:
                if self.client.get("/v2/health/ready", headers=headers).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"server not ready in time:\n{self.output()}"
            time.sleep(0.02)

    def listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                return True
        except OSError:
            return False

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=15)


@contextmanager
def serving(
    command: list[str],
    *args: str,
    tmp_path: Path,
    cwd: Path = ROOT,
    env: dict[str, str] | None = None,
    ready_headers: dict[str, str] | None = None,
) -> Iterator[Served]:
    """Run ``command serve *args`` on a free port until ready; kill it if still running."""
    port = free_port()
    log = tmp_path / f"server-{port}.log"
    full_env = {**os.environ, **(env or {})}
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [*command, "serve", *args, "--port", str(port), "--log-level", "warning"],
            cwd=cwd,
            env=full_env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    served = Served(proc, port, log)
    try:
        served.wait_ready(ready_headers or {})
        yield served
    finally:
        served.client.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_python_m_servekit_serves_a_file_target_and_sigterm_drains_queued_work(tmp_path):
    gate = tmp_path / "gate"
    gate.mkdir()
    with (
        serving(
            [sys.executable, "-m", "servekit"],
            f"{MODELS_FILE}:Echo",
            "--max-batch-size",
            "1",
            tmp_path=tmp_path,
            env={"SERVEKIT_TEST_GATE": str(gate)},
        ) as served,
        ThreadPoolExecutor(2) as pool,
    ):
        running = pool.submit(served.client.post, "/v2/models/echo/infer", json=row(41))
        wait_for(lambda: (gate / "entered").exists(), "the first request reaches the model")
        queued = pool.submit(served.client.post, "/v2/models/echo/infer", json=row(42))
        wait_for(
            lambda: 'servekit_queued_items{model="echo"} 1.0' in served.client.get("/metrics").text,
            "the second request is queued",
        )
        served.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: not served.listening(), "the server stops listening after SIGTERM")
        (gate / "open").touch()
        for call, value in ((running, 41.0), (queued, 42.0)):
            response = call.result(10)
            assert response.status_code == 200, response.text
            assert response.json()["outputs"][0]["data"] == [value]
        code = served.proc.wait(timeout=15)
        assert code == 0, f"exit code {code} after SIGTERM:\n{served.output()}"


def test_servekit_script_serves_a_module_target(tmp_path):
    with serving(servekit_command(), "cli_models:Echo", tmp_path=tmp_path, cwd=HERE) as served:
        response = served.client.post("/v2/models/echo/infer", json=row(7))
        assert response.status_code == 200, response.text
        assert response.json()["outputs"][0]["data"] == [7.0]
        code = served.terminate()
        assert code == 0, f"exit code {code} after SIGTERM:\n{served.output()}"


def test_serve_several_targets_and_versions_in_one_server(tmp_path):
    with serving(
        servekit_command(), f"{MODELS_FILE}:Echo", f"{MODELS_FILE}:VERSIONS", tmp_path=tmp_path
    ) as served:
        client = served.client
        echoed = client.post("/v2/models/echo/infer", json=row(3)).json()
        assert echoed["outputs"][0]["data"] == [3.0]
        assert client.get("/v2/models/negate").json()["versions"] == ["1", "2"]
        negated = client.post("/v2/models/negate/versions/1/infer", json=row(3)).json()
        assert negated["model_version"] == "1"
        assert negated["outputs"][0]["data"] == [-3.0]


def test_cli_options_reach_the_batcher_and_the_auth_check(tmp_path):
    with serving(
        servekit_command(),
        f"{MODELS_FILE}:Echo",
        "--max-batch-size",
        "2",
        "--token",
        "tok",
        tmp_path=tmp_path,
        env={"SERVEKIT_TOKEN": ""},
        ready_headers={"Authorization": "tok"},
    ) as served:
        client = served.client
        body = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [5], "data": [1] * 5}]}
        assert client.post("/v2/models/echo/infer", json=body).status_code == 401
        auth = {"Authorization": "Bearer tok"}
        assert client.post("/v2/models/echo/infer", json=body, headers=auth).status_code == 200
        metrics = client.get("/metrics", headers=auth).text
        assert 'servekit_batches_total{model="echo"} 3.0' in metrics  # 5 rows in batches of 2


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no_such_module_xyz:Model", "No module named 'no_such_module_xyz'"),
        (f"{MODELS_FILE}:Missing", "has no attribute 'Missing'"),
        (f"{MODELS_FILE}:NOT_A_MODEL", "expected a servekit.Model subclass or instance"),
        ("tests/server/no_such_file.py:Model", "no such file"),
        ("just_a_module", "expected MODULE:ATTR or FILE.py:ATTR"),
    ],
)
def test_bad_target_prints_a_clear_error_and_exits_2(target, message):
    result = subprocess.run(
        [sys.executable, "-m", "servekit", "serve", target, "--port", str(free_port())],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("servekit: error:"), result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_iris_example_classifies_a_setosa_row(tmp_path):
    with serving(
        servekit_command(), "examples/iris/model.py:IrisClassifier", tmp_path=tmp_path
    ) as served:
        body = {
            "inputs": [
                {
                    "name": "measurements",
                    "datatype": "FP32",
                    "shape": [2, 4],
                    "data": [5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3],
                },
            ]
        }
        response = served.client.post("/v2/models/iris/infer", json=body)
        assert response.status_code == 200, response.text
        outputs = {o["name"]: o for o in response.json()["outputs"]}
        assert outputs["label"]["data"] == ["setosa", "virginica"]
        assert outputs["probabilities"]["shape"] == [2, 3]


def test_workers_run_several_server_processes_on_one_port(tmp_path):
    with serving(
        [sys.executable, "-m", "servekit"],
        f"{MODELS_FILE}:Echo",
        "--workers",
        "2",
        tmp_path=tmp_path,
    ) as served:
        pids: set[int] = set()
        deadline = time.monotonic() + 20
        while len(pids) < 2 and time.monotonic() < deadline:
            with httpx.Client(base_url=served.url, timeout=5.0) as fresh:  # a new connection
                pids.add(fresh.get("/").json()["pid"])
                assert fresh.post("/v2/models/echo/infer", json=row(3.0)).status_code == 200
        assert len(pids) == 2, f"only saw worker pids {pids}"
        assert served.terminate() == 0


def test_tcp_port_option_opens_the_frame_door(tmp_path):
    import orjson

    tcp_port = free_port()
    with serving(
        [sys.executable, "-m", "servekit"],
        f"{MODELS_FILE}:Echo",
        "--tcp-port",
        str(tcp_port),
        tmp_path=tmp_path,
    ) as served:
        body = orjson.dumps({"req_type": 0, "request_number": 1})
        with socket.create_connection(("127.0.0.1", tcp_port), timeout=10) as sock:
            sock.sendall(len(body).to_bytes(4, "big") + body)
            length = int.from_bytes(sock.recv(4), "big")
            reply = orjson.loads(sock.recv(length))
        assert reply["message"] == "service online"
        assert served.terminate() == 0


def test_workers_with_a_sqlite_queue_is_refused_clearly():
    done = subprocess.run(
        [sys.executable, "-m", "servekit", "serve", f"{MODELS_FILE}:Echo", "--workers", "2",
         "--queue", "--port", str(free_port())],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "needs a shared queue" in done.stderr and "redis://" in done.stderr
