"""Processes as users start them: the seed's dubhe-sdk example with only the import
changed (``servekit serve app.py``, ``protocol=tcp``), and examples/jobs/app.py
(``python app.py`` calling ``jobs.run()``, HTTP)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobs.checks import kinds
from jobs.helpers import TcpClient, read_messages, wait_until

ROOT = Path(__file__).resolve().parents[2]

# The seed's app.py (dubhe-sdk's docs), verbatim but for the import line; load_config and
# get_time_stamp are the user's own helpers, and train strings the seed's other snippets.
SEED_APP = (Path(__file__).parent / "seed_app.txt").read_text(encoding="utf-8")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    full = {**os.environ, **env, "SERVEKIT_JOBS_HOST": "127.0.0.1"}
    return subprocess.Popen(
        args, cwd=cwd, env=full, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True
    )


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _events(path: Path) -> list[dict[str, Any]]:
    return [m["value"] for m in read_messages(path)]


def _ended(path: Path, job_id: str) -> bool:
    ends = [v for v in _events(path) if v["mes_type"] == 1 and v["data"]["action"] == "END"]
    return any(v["job_id"] == job_id for v in ends)


def test_seed_example_with_only_the_import_changed(tmp_path: Path, processes: list[Any]) -> None:
    torch = pytest.importorskip("torch")
    (tmp_path / "config").mkdir()
    (tmp_path / "config/model_predict_config.json").write_text('{"model": "m", "batch_size": 4}')
    torch.save({"code_list": ["cat"], "state_dict": {}}, tmp_path / "model.pth")
    (tmp_path / "app.py").write_text(SEED_APP)
    events, port = tmp_path / "events.jsonl", _free_port()
    env = {
        "protocol": "tcp",  # run.sh
        "PORT": str(port),
        "model_path": str(tmp_path / "model.pth"),
        "SERVEKIT_JOBS_EVENTS_URL": f"file://{events}",
        "SERVEKIT_JOBS_WORK_DIR": str(tmp_path / "work"),
        "SERVEKIT_JOBS_LOG_DIR": str(tmp_path / "log"),
    }
    processes.append(_start([sys.executable, "-m", "servekit", "serve", "app.py"], tmp_path, env))
    wait_until(lambda: bool(_events(events)), "READY", timeout=60)
    client = TcpClient(port)
    try:
        evaluation = client.ask({"req_type": 2, "data_paths": ["x.png"], "request_number": 1})
        training = client.ask({"req_type": 1, "request_number": 2})
    finally:
        client.close()
    assert evaluation["flag"] == 1 and training["flag"] == 1
    for answer in (evaluation, training):
        wait_until(lambda a=answer: _ended(events, a["job_id"]), "END", timeout=30)
    values = _events(events)
    assert kinds(values[:1]) == ["READY"]
    evaluated = [v for v in values if v["job_id"] == evaluation["job_id"]]
    assert kinds(evaluated) == ["START", "END:200"]
    trained = [v for v in values if v["job_id"] == training["job_id"]]
    assert kinds(trained) == ["START"] + ["PROGRESS"] * 7 + ["RESULT", "RESULT", "END:200"]
    assert trained[1]["data"] == {
        "loss": 0.375,
        "accuracy": 0.5,
        "progress": 0.25,
        "epoch": 0,
        "batch_idx": 0,
        "batch_count": 2,
    }
    assert trained[-1]["data"]["model_path"].endswith("_1_0.19.pth")
    service_log = (tmp_path / "log" / "dubhe.log").read_text()
    assert "model train starting..." in service_log and "| INFO     | app.py:" in service_log


def test_example_trains_a_real_model_with_progress_per_epoch(
    tmp_path: Path, processes: list[Any]
) -> None:
    pytest.importorskip("sklearn")
    events, port = tmp_path / "events.jsonl", _free_port()
    env = {
        "PORT": str(port),
        "SERVEKIT_JOBS_EVENTS_URL": f"file://{events}",
        "SERVEKIT_JOBS_WORK_DIR": str(tmp_path / "work"),
        "SERVEKIT_JOBS_LOG_DIR": str(tmp_path / "log"),
    }
    app = ROOT / "examples" / "jobs" / "app.py"
    processes.append(_start([sys.executable, str(app)], tmp_path, env))
    wait_until(lambda: bool(_events(events)), "READY", timeout=60)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        job_id = client.post("/train/start", json={"epochs": 4}).json()["job_id"]
        wait_until(lambda: _ended(events, job_id), "END", timeout=60)
        job = client.get(f"/jobs/{job_id}").json()
        answer = client.post("/predict/multiple", json={"image_names": ["0", "1"]}).json()
    assert job["state"] == "succeeded" and job["epoch"] == 3 and job["progress"] == 1.0
    assert job["metrics"]["accuracy"] > 0.8
    values = [v for v in _events(events) if v["job_id"] == job_id]
    assert kinds(values) == ["START"] + ["PROGRESS"] * 4 + ["RESULT"] * 5 + ["END:200"]
    assert [v["data"]["epoch"] for v in values[1:5]] == [0, 1, 2, 3]
    assert Path(values[-1]["data"]["model_path"]).is_file()
    assert answer["flag"] == 1 and [d["img_path"] for d in answer["data"]] == ["0", "1"]


def test_serve_a_file_without_pipelines_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "plain.py").write_text("x = 1\n")
    result = subprocess.run(
        [sys.executable, "-m", "servekit", "serve", "plain.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "plain.py defines no @pipeline() class" in result.stderr


def test_a_pipeline_that_fails_to_load_publishes_end_300_and_exits_2(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(
        "import servekit.jobs as dubhe_sdk\n\n"
        "@dubhe_sdk.pipeline()\nclass Broken:\n"
        "    def __init__(self, ctx):\n        raise FileNotFoundError('config.json')\n\n"
        "    @dubhe_sdk.train()\n    def train(self, ctx):\n        pass\n"
    )
    events = tmp_path / "events.jsonl"
    env = {
        **os.environ,
        "SERVEKIT_JOBS_EVENTS_URL": f"file://{events}",
        "SERVEKIT_JOBS_WORK_DIR": str(tmp_path / "work"),
        "SERVEKIT_JOBS_LOG_DIR": str(tmp_path / "log"),
        "PORT": str(_free_port()),
    }
    result = subprocess.run(
        [sys.executable, "-m", "servekit", "serve", "app.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    (end,) = _events(events)
    assert end["data"]["status"] == 300 and end["job_id"] is None
    assert end["data"]["error"] == "FileNotFoundError: config.json"
