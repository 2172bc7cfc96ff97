"""Engine events from the one runtime call, on real servers, read back from a file sink."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from servekit import Model
from servekit.dynbatch import (
    BaseModel,
    DynamicBatchModel,
    PredictTimeoutError,
    RequestCorrelation,
)
from servekit.events import EventBus
from servekit.events.engine import (
    BATCH_SIZE,
    CANCELLED,
    PREDICT_DURATION,
    PREPROCESS_DURATION,
    QUEUE_WAIT,
    REFUSED,
    REQUEST_DURATION,
    TIMEOUT,
)
from servekit.protocol.tcp_frames import FrameDecoder, encode_frame
from servekit.server import App
from support.event_files import file_bus, read, served, structured
from support.servers import LiveServer

WAIT = 10.0


class Double(Model):
    name = "double"
    version = "3"

    def validate(self, inputs: dict[str, Any]) -> None:
        if (inputs["x"] < 0).any():
            raise ValueError("x must not be negative")

    def predict(self, batch: list[Any]) -> list[Any]:
        return [row * 2 for row in batch]


class Held(Model):
    """predict waits until the test opens ``gate``."""

    name = "held"

    def __init__(self) -> None:
        super().__init__(max_queue_size=1, idle_batch_size=1, max_batch_size=1)
        self.entered = threading.Event()
        self.gate = threading.Event()

    def predict(self, batch: list[Any]) -> list[Any]:
        self.entered.set()
        self.gate.wait(WAIT)
        return list(batch)


class Pre(Model):
    name = "pre"

    def preprocess(self, item: Any) -> Any:
        return item + 1

    def predict(self, batch: list[Any]) -> list[Any]:
        return list(batch)


def body(values: list[float], request_id: str | None = None) -> dict[str, Any]:
    document: dict[str, Any] = {
        "inputs": [{"name": "x", "shape": [1, len(values)], "datatype": "FP32", "data": values}]
    }
    if request_id is not None:
        document["id"] = request_id
    return document


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[tuple[EventBus, Path]]:
    path = tmp_path / "events.jsonl"
    with file_bus(path) as bus:
        yield bus, path


def until(bus: tuple[EventBus, Path], key: str, count: int = 1) -> list[dict[str, Any]]:
    """The events of ``key`` once at least ``count`` have arrived."""
    deadline = time.monotonic() + WAIT
    while True:
        found = structured(read(*bus), key)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.01)


def test_a_v2_request_has_its_duration_status_door_and_correlation_id_header(
    bus: tuple[EventBus, Path],
) -> None:
    with (
        served([Double()], events_engine=True) as live,
        httpx.Client(base_url=live.url) as client,
    ):
        reply = client.post(
            "/v2/models/double/infer",
            json=body([1, 2], request_id="v2-id"),
            headers={"Correlation-Id": "corr-7"},
        )
    assert reply.status_code == 200
    (event,) = until(bus, REQUEST_DURATION)
    assert event["Code"] == "200"
    assert event["CorrelationId"] == "corr-7"  # the header beats the v2 id
    assert event["Element"] == -1
    assert event["Detail"] == "v2 double:3"
    assert 0 < event["Numeric"] < WAIT
    for key in (BATCH_SIZE, QUEUE_WAIT, PREDICT_DURATION):
        (batch,) = until(bus, key)
        assert batch["Detail"] == "double:3"
        assert batch["CorrelationId"] == ""
    assert until(bus, BATCH_SIZE)[0]["Numeric"] == 1
    assert until(bus, PREDICT_DURATION)[0]["Code"] == "200"
    assert not structured(read(*bus), PREPROCESS_DURATION)  # preprocess not overridden


def test_the_v2_id_is_the_correlation_id_without_a_header_else_one_is_made(
    bus: tuple[EventBus, Path],
) -> None:
    with (
        served([Double()], events_engine=True) as live,
        httpx.Client(base_url=live.url) as client,
    ):
        assert client.post("/v2/models/double/infer", json=body([1], "req-1")).is_success
        assert client.post("/v2/models/double/infer", json=body([1])).is_success
        assert client.post("/v2/models/double/infer", json=body([1])).is_success
    ids = [e["CorrelationId"] for e in until(bus, REQUEST_DURATION, 3)]
    assert ids[0] == "req-1"
    assert ids[1] and ids[2] and ids[1] != ids[2]


def test_a_request_the_model_refuses_is_a_400_event(bus: tuple[EventBus, Path]) -> None:
    with (
        served([Double()], events_engine=True) as live,
        httpx.Client(base_url=live.url) as client,
    ):
        reply = client.post(
            "/v2/models/double/infer", json=body([-1]), headers={"Correlation-Id": "bad"}
        )
    assert reply.status_code == 400
    (event,) = until(bus, REQUEST_DURATION)
    assert (event["Code"], event["CorrelationId"]) == ("400", "bad")


def test_a_full_queue_a_timeout_and_a_disconnect_each_have_their_event(
    bus: tuple[EventBus, Path],
) -> None:
    model = Held()
    with served([model], events_engine=True) as live:
        url = f"{live.url}/v2/models/held/infer"
        with ThreadPoolExecutor(4) as pool:
            first = pool.submit(httpx.post, url, json=body([1]), timeout=WAIT)
            assert model.entered.wait(WAIT)  # the model is busy with the first request
            # queued (the queue holds 1), then out of time while it waits: 504
            late = pool.submit(
                httpx.post,
                url,
                json=body([2]),
                headers={"X-Request-Timeout-Ms": "300", "Correlation-Id": "late"},
                timeout=WAIT,
            )
            time.sleep(0.1)
            refused = httpx.post(url, json=body([3]), headers={"Correlation-Id": "full"})
            assert refused.status_code == 429
            assert late.result().status_code == 504
            _send_and_hang_up(live.port, body([4]), "gone")
            assert until(bus, CANCELLED)  # dropped while the model is still busy
            model.gate.set()
            assert first.result().status_code == 200
    (refusal,) = until(bus, REFUSED)
    assert (refusal["Code"], refusal["CorrelationId"]) == ("429", "full")
    (timeout,) = until(bus, TIMEOUT)
    assert (timeout["Code"], timeout["CorrelationId"]) == ("504", "late")
    (cancel,) = until(bus, CANCELLED)
    assert (cancel["Code"], cancel["CorrelationId"]) == ("499", "gone")
    codes = {e["CorrelationId"]: e["Code"] for e in until(bus, REQUEST_DURATION, 4)}
    assert codes["full"] == "429" and codes["late"] == "504" and codes["gone"] == "499"


def _send_and_hang_up(port: int, document: dict[str, Any], corr: str) -> None:
    """POST ``document`` on a raw connection, then close it before the answer."""
    data = orjson.dumps(document)
    head = (
        f"POST /v2/models/held/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Correlation-Id: {corr}\r\nContent-Length: {len(data)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(head + data)
        time.sleep(0.2)  # queued behind the held request


def test_preprocess_duration_is_an_event_when_the_model_has_preprocess(
    bus: tuple[EventBus, Path],
) -> None:
    with served([Pre()], events_engine=True) as live:
        assert httpx.post(f"{live.url}/v2/models/pre/infer", json=body([1])).is_success
    (event,) = until(bus, PREPROCESS_DURATION)
    assert event["Detail"] == "pre" and event["Numeric"] >= 0


def test_the_tcp_door_reports_its_requests(bus: tuple[EventBus, Path]) -> None:
    app = App([Pre()], events_engine=True, tcp_port=0)
    live = LiveServer(app).start()
    try:
        live.call(app.wait_loaded())
        assert app.tcp_port is not None
        with socket.create_connection(("127.0.0.1", app.tcp_port), timeout=WAIT) as sock:
            sock.sendall(
                encode_frame(
                    {"req_type": 3, "request_number": 1, "data": 1, "correlation_id": "tcp-1"}
                )
            )
            decoder = FrameDecoder()
            answers: list[Any] = []
            while not answers:
                answers = list(decoder.feed(sock.recv(65536)))
        assert answers[0]["data"] == 2
    finally:
        live.stop()
    (event,) = until(bus, REQUEST_DURATION)
    assert (event["Detail"], event["CorrelationId"], event["Code"]) == ("tcp pre", "tcp-1", "200")


class Twice(BaseModel):
    def predict(self, items: list[Any]) -> list[Any]:
        if items and items[0] == "slow":
            time.sleep(0.3)
        return [i * 2 for i in items]


def test_the_thread_api_reports_failed_calls_and_batches_with_the_callers_correlation(
    bus: tuple[EventBus, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SERVEKIT_EVENTS_ENGINE", "true")
    with DynamicBatchModel(Twice(), max_batch_size=1) as batched:
        assert batched.predict([1, 2], req_corr=RequestCorrelation("thread-1", 4)) == [2, 4]
        slow = threading.Thread(target=batched.predict_one, args=("slow",), kwargs={"timeout": 5})
        slow.start()
        time.sleep(0.05)
        with pytest.raises(PredictTimeoutError):
            batched.predict_one(3, timeout=0.05, req_corr=RequestCorrelation("thread-2", 0))
        slow.join()
    # a call that succeeded is counted by its batch's events, not by an event of its own
    (failed,) = until(bus, REQUEST_DURATION)
    assert (failed["CorrelationId"], failed["Code"], failed["Element"], failed["Detail"]) == (
        "thread-2",
        "504",
        0,
        "thread Twice",
    )
    (timeout,) = until(bus, TIMEOUT)
    assert timeout["CorrelationId"] == "thread-2"
    sizes = sorted(e["Numeric"] for e in until(bus, BATCH_SIZE, 3))
    assert sizes == [1, 1, 1]  # [1, 2] ran as two batches of one, then "slow"


def test_engine_events_off_leave_the_runtime_call_as_it_was(
    bus: tuple[EventBus, Path],
) -> None:
    with served([Double()], events_engine=False, metrics=False) as live:
        runtime = live.app.registry.get("double")  # nothing watches: the call is as it was
        assert not runtime.observing and runtime.batcher.on_batch is None
        assert httpx.post(f"{live.url}/v2/models/double/infer", json=body([1])).is_success
    assert structured(read(*bus)) == []
