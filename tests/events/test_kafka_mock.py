"""The mock Kafka cluster the tests use: records kept, broker down and back on one address."""

from __future__ import annotations

import socket

import confluent_kafka
import pytest

from support.kafka import KafkaMock


def _produce(bootstrap: str, topic: str, values: list[bytes], timeout: float = 10) -> list[object]:
    errors: list[object] = []
    producer = confluent_kafka.Producer(
        {"bootstrap.servers": bootstrap, "message.timeout.ms": int(timeout * 1000)}
    )
    for value in values:
        producer.produce(topic, value, key=b"k", on_delivery=lambda e, _m: errors.append(e))
    producer.flush(timeout + 5)
    return errors


def test_records_produced_are_consumed_from_the_beginning(kafka_mock: KafkaMock) -> None:
    kafka_mock.create_topic("mock-basic", 1)
    assert _produce(kafka_mock.bootstrap, "mock-basic", [b"a", b"b", b"c"]) == [None] * 3
    records = kafka_mock.consume("mock-basic", 3, timeout=10)
    assert [r.value() for r in records] == [b"a", b"b", b"c"]
    assert {r.key() for r in records} == {b"k"}


def test_stopped_broker_refuses_and_restarts_on_the_same_address_with_its_records(
    own_kafka_mock: KafkaMock,
) -> None:
    host, port = own_kafka_mock.bootstrap.split(",")[0].rsplit(":", 1)
    assert _produce(own_kafka_mock.bootstrap, "mock-outage", [b"before"]) == [None]
    own_kafka_mock.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, int(port)), timeout=2).close()
    errors = _produce(own_kafka_mock.bootstrap, "mock-outage", [b"lost"], timeout=1)
    assert [e.code() for e in errors] == [confluent_kafka.KafkaError._MSG_TIMED_OUT]  # type: ignore[attr-defined]
    own_kafka_mock.start()
    assert _produce(own_kafka_mock.bootstrap, "mock-outage", [b"after"]) == [None]
    values = [r.value() for r in own_kafka_mock.consume("mock-outage", 2, timeout=10)]
    assert sorted(v or b"" for v in values) == [b"after", b"before"]
