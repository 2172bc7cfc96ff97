"""Jobs on the mock Kafka cluster (``BOOTSTRAP_SERVERS``): both topics consumed, every
message in order with its envelope; a broker down during a job."""

from __future__ import annotations

import json
import uuid
from typing import Any

from jobs.checks import CANCELLED, FAILURE, SUCCESS, check_envelopes, kinds, of_job
from jobs.helpers import wait_until
from support.kafka import KafkaMock

INSTANCE = "modelid1412-algorithm112345540-train-1412-4"


def _environ(kafka: KafkaMock) -> dict[str, str]:
    suffix = uuid.uuid4().hex[:8]
    env = {
        "BOOTSTRAP_SERVERS": kafka.bootstrap,
        "INSTANCE_ID": INSTANCE,
        "TOPIC_MODEL_STATUS": f"status-{suffix}",
        "TOPIC_MODEL_RESULT": f"result-{suffix}",
    }
    kafka.create_topic(env["TOPIC_MODEL_STATUS"], partitions=1)
    kafka.create_topic(env["TOPIC_MODEL_RESULT"], partitions=1)
    return env


def _values(kafka: KafkaMock, topic: str, n: int) -> list[dict[str, Any]]:
    records = kafka.consume(topic, n, timeout=20)
    assert all(r.key() == INSTANCE.encode() for r in records)
    return [json.loads(r.value()) for r in records]


def _finish(service: Any, job_id: str) -> str:
    job = service.runner.get(job_id)
    wait_until(lambda: job.finished, f"job {job_id} finished", timeout=20)
    return str(job.state)


def _check(kafka: KafkaMock, env: dict[str, str], jobs: dict[str, list[str]]) -> None:
    status_count = 1 + sum(len([k for k in seq if k != "RESULT"]) for seq in jobs.values())
    result_count = sum(seq.count("RESULT") for seq in jobs.values())
    status = _values(kafka, env["TOPIC_MODEL_STATUS"], status_count)
    results = _values(kafka, env["TOPIC_MODEL_RESULT"], result_count)
    assert len(status) == status_count and len(results) == result_count
    check_envelopes(status + results, INSTANCE)
    assert kinds(status[:1]) == ["READY"]
    for job_id, expected in jobs.items():
        # the two topics merged by date keep the job's order; each topic keeps its own
        assert kinds(of_job(status, job_id)) == [k for k in expected if k != "RESULT"]
        assert kinds(of_job(results, job_id)) == [k for k in expected if k == "RESULT"]
        dates = [v["date"] for v in of_job(status, job_id)]
        assert all(dates[0] <= v["date"] <= dates[-1] for v in of_job(results, job_id))


def test_http_jobs_on_kafka(http_server: Any, kafka_mock: KafkaMock) -> None:
    env = _environ(kafka_mock)
    server, client = http_server(environ=env)
    ok = client.post("/train/start", json={}).json()["job_id"]
    bad = client.post("/train/start", json={"mode": "raise"}).json()["job_id"]
    assert _finish(server.service, ok) == "succeeded"
    assert _finish(server.service, bad) == "failed"
    waiting = client.post("/train/start", json={"mode": "wait"}).json()["job_id"]
    wait_until(lambda: server.service.runner.get(waiting).progress == 0.5, "job running")
    client.delete(f"/jobs/{waiting}")
    assert _finish(server.service, waiting) == "cancelled"
    assert server.service.bus is not None and server.service.bus.flush(20)
    _check(kafka_mock, env, {ok: SUCCESS, bad: FAILURE, waiting: CANCELLED})


def test_tcp_jobs_on_kafka(tcp_server: Any, kafka_mock: KafkaMock) -> None:
    env = _environ(kafka_mock)
    server, client = tcp_server(environ=env)
    ok = client.ask({"req_type": 1, "instance_id": INSTANCE})["job_id"]
    bad = client.ask({"req_type": 1, "mode": "raise"})["job_id"]
    assert _finish(server.service, ok) == "succeeded"
    assert _finish(server.service, bad) == "failed"
    assert server.service.bus.flush(20)
    _check(kafka_mock, env, {ok: SUCCESS, bad: FAILURE})


def test_a_broker_down_during_a_job_delays_its_messages(
    http_server: Any, own_kafka_mock: KafkaMock
) -> None:
    env = _environ(own_kafka_mock)
    server, client = http_server(environ=env)
    assert server.service.bus.flush(20)  # READY delivered
    own_kafka_mock.stop()
    job_id = client.post("/train/start", json={}).json()["job_id"]
    assert _finish(server.service, job_id) == "succeeded"  # the outage never fails the job
    own_kafka_mock.start()
    assert server.service.bus.flush(30)
    _check(own_kafka_mock, env, {job_id: SUCCESS})
