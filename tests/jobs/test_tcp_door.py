"""The jobs TCP door on a real socket: dubhe's frames (signed length), req_type 0-5."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from jobs.checks import FAILURE, SUCCESS, check_envelopes, kinds, of_job
from jobs.helpers import TcpClient, read_messages, wait_until


def _state(client: TcpClient, job_id: str) -> dict[str, Any]:
    answer: dict[str, Any] = {}

    def done() -> bool:
        answer.update(client.ask({"req_type": 4, "job_id": job_id, "request_number": 9}))
        return answer["state"] in ("succeeded", "failed", "cancelled")

    wait_until(done, f"job {job_id} finished")
    return answer


def test_heartbeat_and_inference_echo_request_number(tcp_server: Any) -> None:
    _, client = tcp_server()
    beat = client.ask({"req_type": 0, "request_number": 1})
    assert beat == {"flag": 1, "message": "service online", "request_number": 1}
    answer = client.ask({"req_type": 3, "request_number": 77, "image_names": ["a.png"]})
    assert answer["flag"] == 1 and answer["request_number"] == 77
    assert answer["message"] == "model inference success"
    assert answer["data"][0]["img_path"] == "a.png"


def test_several_requests_on_one_connection_are_each_answered(tcp_server: Any) -> None:
    _, client = tcp_server()
    for number in range(5):
        client.send({"req_type": 3, "request_number": number, "image_names": [f"{number}.png"]})
    answers = [client.receive() for _ in range(5)]
    assert sorted(a["request_number"] for a in answers) == list(range(5))
    assert all(a["data"][0]["img_path"] == f"{a['request_number']}.png" for a in answers)


def test_jobs_over_tcp_publish_in_order(tcp_server: Any, tmp_path: Path) -> None:
    server, client = tcp_server()
    ok = client.ask({"req_type": 1, "request_number": 2})
    assert ok["flag"] == 1 and ok["message"] == "model train starting now"
    bad = client.ask({"req_type": 1, "mode": "raise"})
    assert _state(client, ok["job_id"])["state"] == "succeeded"
    assert _state(client, bad["job_id"])["state"] == "failed"
    server.service.close(5)
    values = [m["value"] for m in read_messages(tmp_path / "events.jsonl")]
    assert kinds(values[:1]) == ["READY"]
    check_envelopes(values)
    assert kinds(of_job(values, ok["job_id"])) == SUCCESS
    assert kinds(of_job(values, bad["job_id"])) == FAILURE


def test_cancel_over_tcp(tcp_server: Any, tmp_path: Path) -> None:
    _, client = tcp_server()
    job_id = client.ask({"req_type": 1, "mode": "wait"})["job_id"]
    wait_until(lambda: client.ask({"req_type": 4, "job_id": job_id})["progress"] == 0.5, "run")
    answer = client.ask({"req_type": 5, "job_id": job_id, "request_number": 3})
    assert answer["flag"] == 1 and answer["cancel_requested"] is True
    assert answer["request_number"] == 3
    assert _state(client, job_id)["state"] == "cancelled"


def test_errors_are_flag_2_naming_the_problem(tcp_server: Any) -> None:
    _, client = tcp_server()
    unknown = client.ask({"req_type": 9, "request_number": 4})
    assert unknown["flag"] == 2 and "req_type error: 9" in unknown["message"]
    assert unknown["request_number"] == 4 and unknown["code"] == 400
    assert client.ask([1, 2])["message"] == "param error: request is not a dict"
    failed = client.ask({"req_type": 3, "image_names": ["bad.png"], "request_number": 5})
    assert failed["flag"] == 2 and "cannot read bad.png" in failed["message"]
    missing = client.ask({"req_type": 4, "job_id": "nope"})
    assert missing["flag"] == 2 and missing["code"] == 404
    client.sock.sendall(struct.pack("!i", 3) + b"{x}")  # a bad frame; the stream goes on
    assert client.receive()["flag"] == 2
    assert client.ask({"req_type": 0})["flag"] == 1


def test_platform_instance_check_over_tcp(tcp_server: Any) -> None:
    env = {"PLATFORM_TYPE": "1", "INSTANCE_ID": "m-a-train-1"}
    _, client = tcp_server(environ=env)
    wrong = client.ask({"req_type": 1, "instance_id": "x", "request_number": 6})
    assert wrong["flag"] == 2 and "different from ENV INSTANCE_ID [m-a-train-1]" in wrong["message"]
