"""The jobs HTTP door on a real server: dubhe's routes, job control, every message in order."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from jobs import pipelines
from jobs.checks import CANCELLED, FAILURE, RESULT, STATUS, SUCCESS, check_envelopes, kinds, of_job
from jobs.helpers import read_messages, wait_until


def _values(tmp_path: Path, stream: str | None = None) -> list[dict[str, Any]]:
    lines = read_messages(tmp_path / "events.jsonl")
    return [m["value"] for m in lines if stream is None or m["stream"] == stream]


def _finished(client: Any, job_id: str) -> dict[str, Any]:
    state: dict[str, Any] = {}

    def done() -> bool:
        state.update(client.get(f"/jobs/{job_id}").json())
        return state["state"] in ("succeeded", "failed", "cancelled")

    wait_until(done, f"job {job_id} finished")
    return state


def test_heart_answers_dubhe_shape_on_get_and_post(http_server: Any) -> None:
    _, client = http_server()
    for method in ("GET", "POST"):
        answer = client.request(method, "/heart")
        assert answer.status_code == 200
        assert answer.json() == {"flag": 1, "message": "service online"}


def test_ready_is_published_once_listening(http_server: Any, tmp_path: Path) -> None:
    server, _ = http_server()
    server.service.close(5)  # deliver what is buffered
    (ready,) = _values(tmp_path)
    assert ready["mes_type"] == 0 and ready["job_id"] is None
    assert ready["data"] == {"action": "READY", "status": 200, "msg": "model is ready"}


def test_train_job_publishes_every_message_in_order(http_server: Any, tmp_path: Path) -> None:
    server, client = http_server()
    answer = client.post("/train/start", json={"name": "a", "code_list": ["cat"]})
    assert answer.status_code == 200
    body = answer.json()
    assert body["flag"] == 1 and body["message"] == "model train starting now"
    state = _finished(client, body["job_id"])
    server.service.close(5)
    assert state["state"] == "succeeded" and state["epoch"] == 2 and state["progress"] == 1.0
    assert state["metrics"] == {"loss": 1 / 3, "accuracy": 0.7}
    values = of_job(_values(tmp_path), body["job_id"])
    check_envelopes(values)
    assert kinds(values) == SUCCESS
    progress = [v["data"] for v in values if v["mes_type"] == 2]
    assert progress[0] == {"loss": 1.0, "accuracy": 0.5, "progress": 1 / 3, "epoch": 0}
    end = values[-1]["data"]
    assert end["msg"] == "model train end"
    assert Path(end["model_path"]).name.startswith("model_")
    assert Path(end["model_path"]).name.endswith("_2_0.33.pth")
    assert end["model_path"] == state["model_path"]
    results = [
        m["value"]["data"]
        for m in read_messages(tmp_path / "events.jsonl")
        if m["stream"] == RESULT
    ]
    assert results[1] == [
        {"img_path": "b.png", "info": [{"ground_true": "dog", "predict_code": "dog", "conf": 0.9}]}
    ]
    assert all(
        m["stream"] == STATUS
        for m in read_messages(tmp_path / "events.jsonl")
        if m["value"]["mes_type"] != 3
    )
    log = Path(state["log_file"]).read_text()
    assert "training a" in log and "Epoch:2, Progress:100.00%, loss:" in log
    assert "| INFO     | pipelines.py:" in log  # dubhe's format, the user's file and line


def test_failing_job_ends_once_with_300_error_and_traceback(
    http_server: Any, tmp_path: Path
) -> None:
    server, client = http_server()
    job_id = client.post("/train/start", json={"mode": "raise"}).json()["job_id"]
    state = _finished(client, job_id)
    server.service.close(5)
    assert state["state"] == "failed"
    assert state["error"] == "RuntimeError: loss is nan at epoch 1"
    values = of_job(_values(tmp_path), job_id)
    assert kinds(values) == FAILURE
    end = values[-1]["data"]
    assert end["error"] == "RuntimeError: loss is nan at epoch 1"
    assert "Traceback" in end["traceback"] and "pipelines.py" in end["traceback"]
    assert "current model error loss is nan" in end["msg"]


def test_delete_cancels_a_job_through_its_context(http_server: Any, tmp_path: Path) -> None:
    server, client = http_server()
    job_id = client.post("/train/start", json={"mode": "wait"}).json()["job_id"]
    wait_until(lambda: client.get(f"/jobs/{job_id}").json()["progress"] == 0.5, "job running")
    answer = client.delete(f"/jobs/{job_id}")
    assert answer.status_code == 200 and answer.json()["cancel_requested"] is True
    state = _finished(client, job_id)
    server.service.close(5)
    assert state["state"] == "cancelled"
    values = of_job(_values(tmp_path), job_id)
    ends = [v for v in values if v["data"].get("action") == "END"]
    assert len(ends) == 1 and ends[0]["data"]["cancelled"] is True
    assert kinds(values) == CANCELLED and values[-1] is ends[0]


def test_more_jobs_than_max_jobs_are_refused_clearly(http_server: Any) -> None:
    _, client = http_server(max_jobs=1)
    first = client.post("/train/start", json={"mode": "hold"}).json()
    refused = client.post("/train/start", json={})
    assert refused.status_code == 429
    assert refused.json()["flag"] == 2
    assert "SERVEKIT_JOBS_MAX_JOBS=1" in refused.json()["message"]
    pipelines.RELEASE.set()
    assert _finished(client, first["job_id"])["state"] == "succeeded"
    assert client.post("/train/start", json={}).json()["flag"] == 1


def test_two_jobs_at_once_keep_their_own_contexts_and_folders(http_server: Any) -> None:
    server, client = http_server(max_jobs=2)
    ids = [
        client.post("/train/start", json={"name": n, "mode": "hold"}).json()["job_id"]
        for n in ("one", "two")
    ]
    trainer = server.service.instances[pipelines.Trainer]
    wait_until(lambda: len(trainer.entered) == 2, "both jobs running")
    one, two = trainer.contexts["one"], trainer.contexts["two"]
    assert one is not two and one.job_id != two.job_id
    assert one.get("tmp_dir") != two.get("tmp_dir")
    assert one.get("output_dir") != two.get("output_dir")
    assert Path(one.get("tmp_dir"), "mine.txt").read_text() == "one"
    assert Path(two.get("tmp_dir"), "mine.txt").read_text() == "two"
    pipelines.RELEASE.set()
    states = [_finished(client, job_id) for job_id in ids]
    assert [s["state"] for s in states] == ["succeeded", "succeeded"]
    assert states[0]["model_path"] != states[1]["model_path"]


def test_predict_batch_starts_an_evaluation_job(http_server: Any, tmp_path: Path) -> None:
    server, client = http_server()
    answer = client.request("GET", "/predict/batch", content=b'{"data_paths": ["x.png"]}').json()
    assert answer["message"] == "model predict starting now"
    state = _finished(client, answer["job_id"])
    server.service.close(5)
    assert state["state"] == "succeeded" and state["kind"] == "predict"
    values = of_job(_values(tmp_path), answer["job_id"])
    assert kinds(values) == ["START", "RESULT", "PROGRESS", "END:200"]
    assert values[2]["data"] == {"progress": 1.0}
    assert values[-1]["data"]["msg"] == "model predict end"


def test_inference_answers_at_once_and_fails_with_a_real_flag(http_server: Any) -> None:
    _, client = http_server()
    answer = client.post("/predict/multiple", json={"image_names": ["a.png"]})
    assert answer.status_code == 200
    assert answer.json() == {
        "flag": 1,
        "message": "model inference success",
        "data": [
            {"img_path": "a.png", "info": [{"ground_true": "", "predict_code": "cat", "conf": 0.7}]}
        ],
    }
    failed = client.post("/predict/multiple", json={"image_names": ["bad.png"]})
    assert failed.status_code == 500
    assert failed.json()["flag"] == 2 and "cannot read bad.png" in failed.json()["message"]


def test_concurrent_inference_requests_go_through_the_batcher(http_server: Any) -> None:
    server, client = http_server()
    answers: list[Any] = []

    def ask(i: int) -> None:
        answers.append(client.post("/predict/multiple", json={"image_names": [f"{i}.png"]}))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(a.json()["flag"] == 1 for a in answers)
    assert sorted(a.json()["data"][0]["img_path"] for a in answers) == [
        f"{i}.png" for i in range(8)
    ]
    assert server.service.runtime.batcher.stats.items == 8  # the one runtime call


def test_platform_refuses_another_instances_request(http_server: Any) -> None:
    env = {"PLATFORM_TYPE": "1", "INSTANCE_ID": "modelid1-alg2-train-1-4"}
    _, client = http_server(environ=env)
    wrong = client.post("/train/start", json={"instance_id": "other"})
    assert wrong.status_code == 400
    assert wrong.json()["flag"] == 2
    assert (
        "instance_id [other] of request different from ENV INSTANCE_ID" in wrong.json()["message"]
    )
    right = client.post("/train/start", json={"instance_id": "modelid1-alg2-train-1-4"})
    assert right.json()["flag"] == 1


def test_unknown_job_and_bad_body_are_clear(http_server: Any) -> None:
    _, client = http_server()
    missing = client.get("/jobs/nope")
    assert missing.status_code == 404 and "no job 'nope'" in missing.json()["message"]
    bad = client.post("/train/start", content=b"[1, 2]")
    assert bad.status_code == 400 and "not a JSON object" in bad.json()["message"]
