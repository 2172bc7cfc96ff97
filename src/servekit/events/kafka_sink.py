"""Kafka as a destination of the event bus (``confluent-kafka``, imported only when used).

``kafka://host:port[,host:port]?acks=all&compression.type=lz4`` (the query is librdkafka
configuration) or ``KafkaSink({"bootstrap.servers": ...})``. The topic is the message's
stream; key and headers travel as Kafka's. The producer is idempotent, so records of one
producer stay in order through its retries.

A batch counts as delivered when every delivery report is OK. When the brokers are down
(every broker unreachable, a transport error, or no report within ``delivery_timeout``
seconds) :meth:`KafkaSink.send` purges what librdkafka still queues and raises
:class:`SinkUnavailable` with the number of leading records that did arrive: the bus spools
the rest. A record librdkafka sent but has not heard back about may still arrive, so a retry
can repeat it (delivery is at least once). Records the cluster refuses for good (too large,
not authorized) are counted in :attr:`KafkaSink.rejected` and skipped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from servekit.events.message import Message, encode_value
from servekit.events.sinks import SinkUnavailable

try:
    import confluent_kafka
    from confluent_kafka import KafkaError
except ImportError as exc:  # pragma: no cover - the extra is installed in the tests
    raise ImportError(
        "the kafka:// event sink needs confluent-kafka: pip install servekit[kafka]"
    ) from exc

__all__ = ["KafkaSink", "kafka_config_from_url"]

log = logging.getLogger("servekit.events.kafka")

DEFAULTS: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 5,
    "socket.connection.setup.timeout.ms": 5000,
    "reconnect.backoff.max.ms": 2000,
}
# these say the brokers cannot be reached now; retrying later may work
_DOWN = {
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._TRANSPORT,
    KafkaError._MSG_TIMED_OUT,
    KafkaError._TIMED_OUT,
    KafkaError._PURGE_QUEUE,
    KafkaError._PURGE_INFLIGHT,
    KafkaError._RESOLVE,
}
_EARLY_EXIT = {KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT}


def kafka_config_from_url(url: str) -> dict[str, Any]:
    """``kafka://h1:9092,h2:9092?acks=1`` → librdkafka configuration."""
    parts = urlsplit(url)
    if parts.scheme != "kafka" or not parts.netloc:
        raise ValueError(f"Kafka sink {url!r}: expected kafka://HOST:PORT[,HOST:PORT][?key=value]")
    config: dict[str, Any] = dict(parse_qsl(parts.query, keep_blank_values=True))
    config["bootstrap.servers"] = parts.netloc
    return config


class KafkaSink:
    """Delivers each batch through one idempotent producer and waits for its reports."""

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        delivery_timeout: float = 5.0,
        name: str | None = None,
    ) -> None:
        if "bootstrap.servers" not in config:
            raise ValueError("KafkaSink: the configuration needs 'bootstrap.servers'")
        self.config = {**DEFAULTS, **config}
        self.delivery_timeout = delivery_timeout
        self.name = name or f"kafka://{config['bootstrap.servers']}"
        self.rejected = 0
        self._errors: list[KafkaError] = []
        self._producer: confluent_kafka.Producer | None = None

    @classmethod
    def from_url(cls, url: str, **options: Any) -> KafkaSink:
        """A sink for ``kafka://host:port[,host:port][?librdkafka=settings]``."""
        return cls(kafka_config_from_url(url), **options)

    def _on_error(self, error: KafkaError) -> None:
        self._errors.append(error)

    def producer(self) -> confluent_kafka.Producer:
        """The producer, made on first use (on the bus's sender thread)."""
        if self._producer is None:
            self._producer = confluent_kafka.Producer(
                {**self.config, "error_cb": self._on_error, "logger": log}
            )
        return self._producer

    def send(self, batch: Sequence[Message]) -> None:
        producer = self.producer()
        reports: list[KafkaError | bool | None] = [False] * len(batch)  # False: no report yet

        def report(index: int) -> Any:
            def on_delivery(error: KafkaError | None, _record: Any) -> None:
                reports[index] = error

            return on_delivery

        self._errors.clear()
        waiting = len(batch)
        for index, message in enumerate(batch):
            try:
                producer.produce(
                    message.stream,
                    encode_value(message.value),
                    key=message.key,
                    headers=list(message.headers) or None,
                    on_delivery=report(index),
                )
            except BufferError:  # librdkafka's queue is full: send the rest next time
                waiting = index
                break
            except (confluent_kafka.KafkaException, TypeError, ValueError) as exc:
                reports[index] = KafkaError(KafkaError.INVALID_RECORD, str(exc))
                waiting -= 1
            producer.poll(0)
        self._wait(producer, reports, waiting)
        self._settle(batch, reports)

    def _wait(self, producer: confluent_kafka.Producer, reports: list[Any], waiting: int) -> None:
        deadline = time.monotonic() + self.delivery_timeout
        while reports[:waiting].count(False):
            left = deadline - time.monotonic()
            if left <= 0 or any(e.code() in _EARLY_EXIT for e in self._errors):
                # the records librdkafka still queues would arrive after the spooled copies
                producer.purge(in_queue=True, in_flight=False)
                producer.poll(0)
                break
            producer.poll(min(left, 0.05))

    def _settle(self, batch: Sequence[Message], reports: list[Any]) -> None:
        for index, error in enumerate(reports):
            if error is None:
                continue
            if error is False or error.code() in _DOWN or error.retriable() or error.fatal():
                if isinstance(error, KafkaError) and error.fatal():
                    self._renew()
                why = "no delivery report" if error is False else error.str()
                raise SinkUnavailable(f"{self.name}: {why}", delivered=self._leading(reports))
            self.rejected += 1  # refused for good: retrying would block the destination
            log.error(
                "events: %s refused a record for %r: %s", self.name, batch[index].stream, error
            )

    @staticmethod
    def _leading(reports: list[Any]) -> int:
        count = 0
        for error in reports:
            if error is False or (error is not None and error.code() in _DOWN):
                break
            count += 1  # delivered, or refused for good (counted, not retried)
        return count

    def _renew(self) -> None:
        # after a fatal error (e.g. the idempotent sequence was lost) a new producer is needed
        log.error("events: %s: the producer failed fatally; making a new one", self.name)
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.purge()
            producer.flush(0)

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(min(self.delivery_timeout, 1.0))
            self._producer.purge()
            self._producer.poll(0)
            self._producer = None
