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
from contextlib import contextmanager, suppress
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
    ready: bool = True,
    log_level: str = "warning",
) -> Iterator[Served]:
    """Run ``command serve *args`` on a free port (until ready); stop it if still running."""
    port = free_port()
    log = tmp_path / f"server-{port}.log"
    full_env = {**os.environ, **(env or {})}
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [*command, "serve", *args, "--port", str(port), "--log-level", log_level],
            cwd=cwd,
            env=full_env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    served = Served(proc, port, log)
    try:
        if ready:
            served.wait_ready(ready_headers or {})
        yield served
    finally:
        served.client.close()
        if proc.poll() is None:
            proc.terminate()  # not SIGKILL: --workers children would outlive their parent
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
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


@pytest.mark.parametrize("workers", ["1", "2"])
def test_cli_options_reach_the_batcher_and_the_auth_check(tmp_path, workers):
    with serving(
        servekit_command(),
        f"{MODELS_FILE}:Echo",
        "--max-batch-size",
        "2",
        "--token",
        "tok",
        "--workers",
        workers,
        tmp_path=tmp_path,
        env={"SERVEKIT_TOKEN": "", "SERVEKIT_MAX_BATCH_SIZE": "4"},
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


def test_serve_help_shows_every_setting_with_its_default_and_variable():
    from servekit.settings import flat_fields

    done = subprocess.run(
        [*servekit_command(), "serve", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    for flat, (cls, field) in flat_fields().items():
        info = cls.model_fields[field]
        shown = "none" if info.default is None else str(info.default).lower()
        flag = "--" + flat.replace("_", "-")
        assert f"{flag} " in text, flag
        assert f"(default: {shown}; env {cls.env_name(field)})" in text, flat
    for old_flag in ("--host", "--port", "--workers", "--max-batch-size", "--max-latency-ms",
                     "--idle-batch-size", "--max-queue-size", "--instances", "--token",
                     "--max-body-size", "--drain-timeout", "--tcp-port", "--queue", "--queue-url",
                     "--log-level"):  # fmt: skip
        assert f"{old_flag} " in text, old_flag
    assert "(default: 5.0; env SERVEKIT_MAX_LATENCY_MS)" in text
    assert "(default: 127.0.0.1; env SERVEKIT_HOST)" in text


def test_version_prints_the_package_version():
    import servekit

    done = subprocess.run(
        [*servekit_command(), "--version"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"servekit {servekit.__version__}"


def test_max_latency_ms_zero_reaches_the_batcher(monkeypatch):
    from servekit.cli import parse_serve
    from servekit.server.runner import build_app

    monkeypatch.setenv("SERVEKIT_MAX_LATENCY_MS", "50")
    targets, given = parse_serve([f"{HERE / 'cli_models.py'}:Echo", "--max-latency-ms", "0"])
    assert given == {"max_latency_ms": 0.0}
    app = build_app(targets, **given)
    assert app.registry.get("echo").batcher.policy.max_latency == 0


def test_flags_not_given_are_left_to_the_environment(monkeypatch):
    from servekit.cli import parse_serve

    targets, given = parse_serve(["m:A", "m:B", "--queue", "--no-freeze-gc", "--port", "9"])
    assert targets == ["m:A", "m:B"]
    assert given == {"queue": True, "freeze_gc": False, "port": 9}


@pytest.mark.parametrize(
    ("flag", "suggestion"),
    [("--max-batchsize", "--max-batch-size"), ("--max-latency", "--max-latency-ms")],
)
def test_a_misspelt_flag_is_refused_with_the_closest_one(flag, suggestion):
    done = subprocess.run(
        [sys.executable, "-m", "servekit", "serve", f"{MODELS_FILE}:Echo", flag, "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert f"unknown option {flag} (did you mean {suggestion}?)" in done.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"SERVEKIT_MAX_LATENCY_MS": "fast"},
            "environment variable SERVEKIT_MAX_LATENCY_MS='fast'",
        ),
        ({"SERVEKIT_PORT": "http"}, "environment variable SERVEKIT_PORT='http'"),
        ({"SERVEKIT_MAX_BATCH_SIZE": "0"}, "SERVEKIT_MAX_BATCH_SIZE='0'"),
    ],
)
def test_an_invalid_environment_value_is_named_and_exits_2(env, message):
    done = subprocess.run(
        [sys.executable, "-m", "servekit", "serve", f"{MODELS_FILE}:Echo"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "SERVEKIT_HOST": "256.0.0.1", **env},  # never listens if it starts
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("servekit: error:") and message in done.stderr
    assert "Traceback" not in done.stderr


# ---------------------------------------------------------------- failing targets and loads


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_target_that_cannot_load_fails_fast_once_with_any_number_of_workers(workers):
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "servekit", "serve", "nosuch.py:Foo", "--workers", workers,
         "--port", str(free_port())],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr == "servekit: error: no such file: nosuch.py\n"
    assert time.monotonic() - started < 15


@pytest.mark.parametrize(
    ("target", "cwd"),
    [("tests/server/cli_broken_import.py:Model", ROOT), ("cli_broken_import:Model", HERE)],
)
def test_an_error_inside_the_model_module_shows_its_traceback(target, cwd):
    done = subprocess.run(
        [sys.executable, "-m", "servekit", "serve", target, "--workers", "2"],
        cwd=cwd, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert lines[0].startswith("servekit: error: importing ") and lines[0].endswith(" failed:")
    assert lines[1] == "Traceback (most recent call last):"
    assert 'cli_broken_import.py", line 5, in <module>' in lines[2]  # the user's line first
    assert lines[-1] == "ModuleNotFoundError: No module named 'servekit_no_such_dependency'"


def test_a_failed_load_is_logged_with_its_traceback(tmp_path):
    with serving(
        servekit_command(), f"{MODELS_FILE}:BrokenLoad", tmp_path=tmp_path, ready=False
    ) as served:
        error = "FileNotFoundError: weights not found at /nonexistent/weights.bin\n"
        # stderr is line-buffered: wait for the traceback's last line, after the message's
        wait_for(lambda: served.output().count(error) == 2, "the load failure is logged")
        log = served.output()
        assert "model brokenload failed to load after" in log
        assert "Traceback (most recent call last):" in log
        assert "in _read_weights" in log  # the frame inside the user's load()
        # the load runs while the server starts: under load it may fail before it listens
        wait_for(served.listening, "the server listens after the failed load")
        assert served.client.get("/v2/health/ready").status_code == 503
        assert served.terminate() == 0


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_a_slow_load_stops_promptly_and_quietly(tmp_path, signum):
    gate = tmp_path / "gate"
    gate.mkdir()
    with serving(
        [sys.executable, "-m", "servekit"],
        f"{MODELS_FILE}:SlowLoad",
        tmp_path=tmp_path,
        env={"SERVEKIT_TEST_GATE": str(gate)},
        ready=False,
    ) as served:
        wait_for(lambda: (gate / "loading").exists(), "load() has begun")
        wait_for(served.listening, "the server listens while the model loads")
        started = time.monotonic()
        served.proc.send_signal(signum)
        code = served.proc.wait(timeout=20)
        took = time.monotonic() - started
        output = served.output()
    assert code == 0, output
    assert took < 3.0, f"stopping took {took:.1f} s (load() takes 30 s)"
    assert "Traceback" not in output and "Event loop is closed" not in output, output


# ---------------------------------------------------------------- logs


def test_startup_logs_each_model_its_urls_its_load_time_and_the_doors(tmp_path):
    tcp_port = free_port()
    with serving(
        servekit_command(),
        f"{MODELS_FILE}:VERSIONS",
        "--tcp-port",
        str(tcp_port),
        tmp_path=tmp_path,
        log_level="info",
    ) as served:
        wait_for(lambda: "negate:2 loaded in" in served.output(), "the load time is logged")
        log = served.output()
        assert f"HTTP on http://127.0.0.1:{served.port}; TCP on 127.0.0.1:{tcp_port}" in log
        assert f"TCP door listening on 127.0.0.1:{tcp_port}" in log
        assert (
            "model negate (version 1): POST /v2/models/negate/infer,"
            " /v2/models/negate/versions/1/infer, /api/predict/negate (EAS)"
        ) in log
        assert "model negate (version 2)" in log
        assert "model negate:1 loaded in " in log
        assert served.terminate() == 0


@pytest.mark.parametrize("flag", [[], ["--access-log"]])
def test_the_access_log_is_off_by_default_and_on_with_access_log(tmp_path, flag):
    with serving(
        servekit_command(), f"{MODELS_FILE}:Echo", *flag, tmp_path=tmp_path, log_level="info"
    ) as served:
        assert served.client.post("/v2/models/echo/infer", json=row(1)).status_code == 200
        assert served.terminate() == 0
        logged = '"POST /v2/models/echo/infer HTTP/1.1" 200' in served.output()
    assert logged == bool(flag), served.output()


# ---------------------------------------------------------------- worker processes


def _worker_pid(served: Served) -> int:
    with httpx.Client(base_url=served.url, timeout=5.0) as fresh:  # a new connection
        return int(fresh.get("/").json()["pid"])


def test_a_worker_that_dies_is_replaced(tmp_path):
    with serving(
        [sys.executable, "-m", "servekit"],
        f"{MODELS_FILE}:Echo",
        "--workers",
        "2",
        tmp_path=tmp_path,
        log_level="info",
    ) as served:
        victim = _worker_pid(served)
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: "was killed by SIGKILL" in served.output(), "the death is reported")
        pids: set[int] = set()

        def replaced() -> bool:
            with suppress(httpx.TransportError):
                pids.add(_worker_pid(served))
            return len(pids - {victim}) == 2

        wait_for(replaced, "a new worker serves next to the survivor", timeout=30)
        assert f"(pid {victim}) was killed by SIGKILL" in served.output()
        assert served.terminate() == 0


def test_a_worker_that_keeps_dying_is_backed_off_and_reported(tmp_path):
    with serving(
        [sys.executable, "-m", "servekit"],
        f"{MODELS_FILE}:DiesInLoad",
        "--workers",
        "2",
        tmp_path=tmp_path,
        ready=False,
    ) as served:
        wait_for(lambda: "replacing it in 1.0 s" in served.output(), "backoff grows", timeout=30)
        log = served.output()
        assert "exited with code 7" in log and "(death 3 in a row)" in log
        assert "Traceback" not in log
        started = time.monotonic()
        assert served.terminate() == 0  # also while a replacement waits its turn
        assert time.monotonic() - started < 5


def test_restart_delays_double_up_to_a_cap():
    from servekit.server.workers import MAX_DELAY, restart_delay

    assert [restart_delay(n) for n in range(1, 6)] == [0.0, 0.5, 1.0, 2.0, 4.0]
    assert restart_delay(100) == MAX_DELAY
