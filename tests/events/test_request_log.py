"""Request logging for model monitoring, on real servers, read back from a file sink and a
mock Kafka cluster."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from servekit import Model
from servekit.events import EventBus
from servekit.events.request_log import COLUMNS, REQUEST_TYPE, RESPONSE_TYPE
from servekit.settings import InvalidSetting, ServerSettings
from support.event_files import file_bus, read, served
from support.kafka import KafkaMock

TOPIC = "servekit-requests"
WAIT = 10.0


class Scale(Model):
    """Multiplies by 3; sets a per-batch metric and a model-wide one; refuses negatives."""

    name = "scale"
    version = "2"

    def load(self) -> None:
        self.set_metric("loaded", True)  # outside a batch: model-wide

    def validate(self, inputs: dict[str, Any]) -> None:
        if (inputs["x"] < 0).any():
            raise ValueError("x must not be negative")

    def predict(self, batch: list[Any]) -> list[Any]:
        self.set_metric("batch_items", len(batch))
        return [row * 3 for row in batch]


def body(values: list[float]) -> dict[str, Any]:
    return {
        "inputs": [{"name": "x", "shape": [1, len(values)], "datatype": "FP32", "data": values}]
    }


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[tuple[EventBus, Path]]:
    path = tmp_path / "events.jsonl"
    with file_bus(path) as bus:
        yield bus, path


def records(bus: tuple[EventBus, Path]) -> list[dict[str, Any]]:
    return [line for line in read(*bus) if line["stream"] == TOPIC]


def record(line: dict[str, Any]) -> dict[str, Any]:
    """A record as one dict: its CloudEvents attributes (headers) and its data (value)."""
    headers = line["headers"]
    attributes = {
        "id": headers["ce_id"],
        "type": headers["ce_type"],
        "time": headers["ce_time"],
        "model": headers["ce_model"],
        "version": headers["ce_modelversion"],
        "door": headers["ce_door"],
        "correlation_id": headers["ce_correlationid"],
    }
    assert not attributes.keys() & line["value"].keys()  # the value is the data alone
    return {**attributes, **line["value"]}


def test_every_request_under_load_is_logged_as_it_was_answered(
    bus: tuple[EventBus, Path],
) -> None:
    with served([Scale()], request_log="all") as live:
        url = f"{live.url}/v2/models/scale/infer"

        def call(i: int) -> tuple[int, Any]:
            reply = httpx.post(
                url, json=body([i, i + 0.5]), headers={"Correlation-Id": f"c{i}"}, timeout=WAIT
            )
            return i, reply.json()

        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(call, range(200)))
    for i, answer in answers:  # responses are what they would be without logging
        assert answer["outputs"][0]["data"] == [i * 3, (i + 0.5) * 3]
    lines = records(bus)
    assert len(lines) == 400
    by_corr: dict[str, dict[str, dict[str, Any]]] = {}
    for line in lines:
        headers = line["headers"]
        assert headers["ce_specversion"] == "1.0"
        assert headers["ce_source"].startswith("servekit://") and headers["ce_source"].endswith(
            "/scale"
        )
        assert headers["ce_model"] == "scale" and headers["ce_modelversion"] == "2"
        assert headers["ce_door"] == "v2" and headers["content-type"] == "application/json"
        value = record(line)
        assert value["time"].endswith("Z")
        by_corr.setdefault(value["correlation_id"], {})[value["type"]] = value
    assert len(by_corr) == 200
    for i in range(200):
        pair = by_corr[f"c{i}"]
        request, response = pair[REQUEST_TYPE], pair[RESPONSE_TYPE]
        assert request["id"] == response["id"]  # request and response share the event id
        assert request["inputs"] == {"x": [[i, i + 0.5]]}
        assert response["outputs"] == [[i * 3, (i + 0.5) * 3]]
        assert response["status"] == 200 and 0 < response["seconds"] < WAIT
        assert response["metrics"]["loaded"] is True
        assert 1 <= response["metrics"]["batch_items"] <= 32
        assert response["model"] == "scale" and response["version"] == "2"
    assert len({pair[REQUEST_TYPE]["id"] for pair in by_corr.values()}) == 200


def test_with_sampling_at_zero_only_errors_are_logged(bus: tuple[EventBus, Path]) -> None:
    with served([Scale()], request_log="response", request_log_sample=0.0) as live:
        url = f"{live.url}/v2/models/scale/infer"
        for i in range(5):
            assert httpx.post(url, json=body([i])).status_code == 200
        bad = httpx.post(url, json=body([-1]), headers={"Correlation-Id": "neg"})
        assert bad.status_code == 400
    (line,) = records(bus)
    value = record(line)
    assert value["type"] == RESPONSE_TYPE and value["status"] == 400
    assert value["correlation_id"] == "neg"
    assert "x must not be negative" in value["error"]
    assert "outputs" not in value


def test_request_mode_logs_only_the_request_record(bus: tuple[EventBus, Path]) -> None:
    with served([Scale()], request_log="request") as live:
        assert httpx.post(f"{live.url}/v2/models/scale/infer", json=body([1])).is_success
    (line,) = records(bus)
    assert line["headers"]["ce_type"] == REQUEST_TYPE
    assert line["value"] == {"inputs": {"x": [[1.0]]}}


def test_batched_messages_group_n_records_and_the_rest_is_sent_at_shutdown(
    bus: tuple[EventBus, Path],
) -> None:
    with served([Scale()], request_log="all", request_log_batch=4) as live:
        url = f"{live.url}/v2/models/scale/infer"
        for i in range(5):  # 10 records: two messages of 4, two records left until shutdown
            assert httpx.post(url, json=body([i]), headers={"Correlation-Id": f"b{i}"}).is_success
        assert [len(line["value"]["values"]) for line in records(bus)] == [4, 4]
    lines = records(bus)
    assert [len(line["value"]["values"]) for line in lines] == [4, 4, 2]
    for line in lines:
        assert line["value"]["headers"] == list(COLUMNS)
        assert line["headers"]["ce_type"] == "org.servekit.inference.batch"
    rows = [
        dict(zip(COLUMNS, row, strict=True)) for line in lines for row in line["value"]["values"]
    ]
    assert [(r["correlation_id"], r["type"]) for r in rows] == [
        (f"b{i}", kind) for i in range(5) for kind in (REQUEST_TYPE, RESPONSE_TYPE)
    ]
    assert all(r["outputs"] == [[r_i * 3.0]] for r_i, r in zip(range(5), rows[1::2], strict=True))


def test_request_log_settings_are_checked() -> None:
    with pytest.raises(InvalidSetting, match="request_log"):
        ServerSettings(request_log="everything")
    with pytest.raises(InvalidSetting, match="request_log_sample"):
        ServerSettings(request_log_sample=1.5)


def test_off_by_default_nothing_is_logged(bus: tuple[EventBus, Path]) -> None:
    with served([Scale()]) as live:
        assert live.app.registry.get("scale").request_log is None
        assert httpx.post(f"{live.url}/v2/models/scale/infer", json=body([1])).is_success
    assert records(bus) == []


def test_on_kafka_the_records_are_cloudevents_in_binary_mode(kafka_mock: KafkaMock) -> None:
    topic = f"requests-{time.monotonic_ns()}"
    kafka_mock.create_topic(topic, partitions=1)
    import servekit.events

    old = servekit.events._bus
    servekit.events._bus = None
    bus = servekit.events.configure(f"kafka://{kafka_mock.bootstrap}")
    try:
        with served([Scale()], request_log="all", request_log_topic=topic) as live:
            reply = httpx.post(
                f"{live.url}/v2/models/scale/infer",
                json=body([2]),
                headers={"Correlation-Id": "k1"},
            )
            assert reply.status_code == 200
        assert bus.flush(WAIT)
    finally:
        bus.close(WAIT)
        servekit.events._bus = old
    found = kafka_mock.consume(topic, 2, timeout=WAIT)
    assert len(found) == 2
    headers = [{k: v.decode() for k, v in record.headers()} for record in found]
    assert [h["ce_type"] for h in headers] == [REQUEST_TYPE, RESPONSE_TYPE]
    assert headers[0]["ce_id"] == headers[1]["ce_id"]
    for h in headers:
        assert h["ce_specversion"] == "1.0" and h["content-type"] == "application/json"
        assert (h["ce_model"], h["ce_modelversion"], h["ce_door"]) == ("scale", "2", "v2")
        assert h["ce_correlationid"] == "k1" and h["ce_source"].startswith("servekit://")
    request, response = (orjson.loads(record.value()) for record in found)
    assert request["inputs"] == {"x": [[2.0]]}  # the value is the data
    assert response["outputs"] == [[6.0]] and response["status"] == 200


class Gauge(Model):
    """set_metric in predict: which inputs shared the batch."""

    name = "gauge"

    def __init__(self) -> None:
        super().__init__(max_batch_size=8, max_latency_ms=200, idle_batch_size=8)

    def predict(self, batch: list[Any]) -> list[Any]:
        self.set_metric("batch", sorted(float(np.asarray(row).ravel()[0]) for row in batch))
        return list(batch)


def test_a_metric_set_in_predict_goes_with_every_request_of_that_batch(
    bus: tuple[EventBus, Path],
) -> None:
    with served([Gauge()], request_log="response") as live:
        url = f"{live.url}/v2/models/gauge/infer"
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: httpx.post(url, json=body([i]), timeout=WAIT), range(8)))
    values = [line["value"] for line in records(bus)]
    assert len(values) == 8
    for value in values:  # each record carries the metric of the batch it ran in
        assert value["outputs"][0][0] in value["metrics"]["batch"]
    assert max(len(v["metrics"]["batch"]) for v in values) > 1  # requests did share batches
