"""The bus on a real (mock) Kafka cluster: fields, order, outages, bounds, forks."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import confluent_kafka
import orjson
import pytest
from prometheus_client import REGISTRY

from servekit.events import EventBus
from servekit.events.bus import DROPPED_KEY
from servekit.events.kafka_sink import KafkaSink
from support.kafka import KafkaMock


def _bus(bootstrap: str, tmp_path: Path, **options: object) -> EventBus:
    sink = KafkaSink({"bootstrap.servers": bootstrap}, delivery_timeout=1.0)
    settings: dict[str, object] = {"spool_dir": tmp_path / "spool", "retry_max": 0.3}
    settings.update(options)
    return EventBus([sink], **settings)  # type: ignore[arg-type]


def _values(records: list[confluent_kafka.Message]) -> list[dict[str, Any]]:
    return [orjson.loads(r.value() or b"") for r in records]


def test_records_arrive_on_their_topics_with_key_headers_and_value(
    kafka_mock: KafkaMock, tmp_path: Path
) -> None:
    bus = _bus(kafka_mock.bootstrap, tmp_path)
    bus.publish("bus-fields-a", {"n": 1, "x": [1.5, 2]}, key="k1", headers=[("ce_id", "abc")])
    bus.publish("bus-fields-b", b"raw bytes")
    assert bus.flush(15)
    bus.close(5)
    (a,) = kafka_mock.consume("bus-fields-a", 1)
    assert (a.key(), a.headers(), orjson.loads(a.value() or b"")) == (
        b"k1",
        [("ce_id", b"abc")],
        {"n": 1, "x": [1.5, 2]},
    )
    (b,) = kafka_mock.consume("bus-fields-b", 1)
    assert (b.key(), b.headers(), b.value()) == (None, None, b"raw bytes")


def test_one_producer_keeps_its_order(kafka_mock: KafkaMock, tmp_path: Path) -> None:
    kafka_mock.create_topic("bus-order", 1)
    bus = _bus(kafka_mock.bootstrap, tmp_path)
    for i in range(3000):
        bus.publish("bus-order", {"i": i})
    assert bus.flush(20)
    bus.close(5)
    assert [v["i"] for v in _values(kafka_mock.consume("bus-order", 3000, 20))] == list(range(3000))


def test_dead_broker_spools_without_blocking_and_everything_arrives_in_order_after(
    own_kafka_mock: KafkaMock, tmp_path: Path
) -> None:
    own_kafka_mock.create_topic("bus-outage", 1)
    bus = _bus(own_kafka_mock.bootstrap, tmp_path)
    bus.publish("bus-outage", {"i": -1})
    assert bus.flush(15)
    own_kafka_mock.stop()
    channel = bus.channels[0]
    slowest = 0.0
    for i in range(5000):
        started = time.perf_counter()
        bus.publish("bus-outage", {"i": i})
        slowest = max(slowest, time.perf_counter() - started)
        if i % 1000 == 999:
            time.sleep(0.3)
    deadline = time.monotonic() + 15
    while channel.spooled() < 5000 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert channel.spooled() == 5000, "the events wait in the spool while the broker is down"
    assert list((tmp_path / "spool").rglob("*.seg"))
    assert not bus.flush(0.5)
    assert slowest < 0.05, f"publish took {slowest * 1e3:.1f} ms while the broker was down"
    own_kafka_mock.start()
    assert bus.flush(30), f"{channel.backlog()} still waiting after the broker came back"
    bus.close(5)
    records = own_kafka_mock.consume("bus-outage", 6000, 20, idle=1.0)
    values = [v["i"] for v in _values(records)]
    # at least once: a record the broker had but did not confirm may come twice, in order
    assert sorted(set(values)) == list(range(-1, 5000))
    first_seen = list(dict.fromkeys(values))
    assert first_seen == list(range(-1, 5000))
    assert bus.dropped == 0
    assert not list((tmp_path / "spool").rglob("*.seg")), "a delivered spool leaves no files"


def test_past_the_bounds_the_drop_count_is_exact_and_reported_when_the_broker_is_back(
    own_kafka_mock: KafkaMock, tmp_path: Path
) -> None:
    own_kafka_mock.create_topic("bus-bounds", 1)
    own_kafka_mock.create_topic("servekit-events", 1)
    bus = _bus(own_kafka_mock.bootstrap, tmp_path, buffer_size=100, spool_max_bytes=20_000)
    name = bus.channels[0].sink.name
    before = REGISTRY.get_sample_value("servekit_events_dropped_total", {"destination": name})
    own_kafka_mock.stop()
    sent = 0
    for _burst in range(20):
        for _ in range(200):
            bus.publish("bus-bounds", {"i": sent, "pad": "x" * 40})
            sent += 1
        time.sleep(0.05)
    own_kafka_mock.start()
    assert bus.flush(30)
    bus.close(5)
    dropped = bus.dropped
    assert 0 < dropped < sent
    arrived = {v["i"] for v in _values(own_kafka_mock.consume("bus-bounds", sent, 15, idle=1.0))}
    assert len(arrived) == sent - dropped
    reports = [
        v
        for v in _values(own_kafka_mock.consume("servekit-events", 10, 10, idle=1.0))
        if v["Key"] == DROPPED_KEY
    ]
    assert sum(r["Numeric"] for r in reports) == dropped
    assert {r["Code"] for r in reports} == {name}
    assert set(reports[0]) >= {
        "Role",
        "Instance",
        "CorrelationId",
        "Element",
        "Timestamp",
        "Detail",
    }
    after = REGISTRY.get_sample_value("servekit_events_dropped_total", {"destination": name})
    assert (after or 0) - (before or 0) == dropped


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_gets_its_own_bus_and_its_events_arrive(
    kafka_mock: KafkaMock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import servekit.events as events

    monkeypatch.setenv("SERVEKIT_EVENTS_URL", f"kafka://{kafka_mock.bootstrap}")
    monkeypatch.setenv("SERVEKIT_EVENTS_SPOOL_DIR", str(tmp_path))
    parent_bus = events.configure()
    events.publish("bus-fork", {"who": "parent"})
    pid = os.fork()
    if pid == 0:  # the child: the parent's sender thread is not here; publish makes a bus
        code = 1
        try:
            events.publish("bus-fork", {"who": "child"})
            own = (
                events.get_bus() is not parent_bus
                and events.get_bus().channels[0]._thread.is_alive()
            )
            code = 0 if own and events.flush(15) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert events.flush(15)
    events.configure("stdout")
    got = sorted(v["who"] for v in _values(kafka_mock.consume("bus-fork", 2, 15)))
    assert got == ["child", "parent"]
