"""A Kafka cluster for tests: librdkafka's mock cluster in a process of its own.

librdkafka (bundled with ``confluent-kafka``) carries an in-memory Kafka cluster that speaks
the real protocol on loopback ports. Its C API (``rd_kafka_mock_cluster_new``,
``rd_kafka_mock_broker_set_down`` / ``_set_up``) is exported by the bundled library but not
wrapped by confluent-kafka, so the child process here drives it with ctypes and takes
commands on its stdin. ``set_down`` closes the broker's connections and its listening socket
(clients get "connection refused"); ``set_up`` listens again on the same port, with every
record it held before. The child ends when the test process does (its stdin closes).

Use the fixtures from ``tests/conftest.py``::

    def test_records_arrive(kafka_mock: KafkaMock) -> None:        # one per session
        producer = Producer({"bootstrap.servers": kafka_mock.bootstrap})
        ...
        records = kafka_mock.consume("topic", 3, timeout=10)       # from the beginning
        assert [r.value() for r in records] == [b"a", b"b", b"c"]

    def test_outage(own_kafka_mock: KafkaMock) -> None:            # this test's alone
        own_kafka_mock.stop()     # broker down: connections refused
        ...
        own_kafka_mock.start()    # back, same address, same records

Topics are created on first use with the mock's default of 4 partitions; call
``create_topic(name, partitions=1)`` first when a test needs one total order.
"""

from __future__ import annotations

import ctypes
import glob
import os
import subprocess
import sys
import time
import uuid
from typing import IO, Any

import confluent_kafka

__all__ = ["KafkaMock"]


class KafkaMock:
    """A mock Kafka cluster in a child process: ``bootstrap``, ``stop()``, ``start()``."""

    def __init__(self, brokers: int = 1) -> None:
        self.brokers = brokers
        self._process = subprocess.Popen(
            [sys.executable, __file__, str(brokers)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.bootstrap = self._reply()
        self.up = True

    def _reply(self) -> str:
        out: IO[str] | None = self._process.stdout
        assert out is not None
        line = out.readline().strip()
        if not line.startswith("ok"):
            code = self._process.poll()
            raise RuntimeError(f"mock Kafka cluster failed: {line!r} (exit code {code})")
        return line[3:]

    def _command(self, *words: str) -> str:
        stdin = self._process.stdin
        assert stdin is not None
        stdin.write(" ".join(words) + "\n")
        stdin.flush()
        return self._reply()

    def stop(self) -> None:
        """Take every broker down: open connections close, new ones are refused."""
        self._command("down")
        self.up = False

    def start(self) -> None:
        """Bring the brokers back on the same address, with the records they held."""
        self._command("up")
        self.up = True

    def create_topic(self, topic: str, partitions: int = 1) -> None:
        """Create ``topic`` with ``partitions`` partitions (before anyone uses it)."""
        self._command("topic", topic, str(partitions))

    def consume(
        self, topic: str, n: int, timeout: float = 10.0, idle: float | None = None
    ) -> list[confluent_kafka.Message]:
        """Up to ``n`` records of ``topic`` read from the beginning of every partition (in
        each partition's order), waiting at most ``timeout`` seconds for them, or (with
        ``idle``) until ``idle`` seconds pass without a record once one came."""
        consumer = confluent_kafka.Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"servekit-tests-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "topic.metadata.refresh.interval.ms": 200,
            }
        )
        deadline = time.monotonic() + timeout
        records: list[confluent_kafka.Message] = []
        try:
            partitions = self._partitions(consumer, topic, deadline)
            consumer.assign(
                [
                    confluent_kafka.TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING)
                    for p in partitions
                ]
            )
            last = time.monotonic()
            while len(records) < n:
                now = time.monotonic()
                left = deadline - now
                if left <= 0 or (idle is not None and records and now - last > idle):
                    break
                record = consumer.poll(min(left, 0.1))
                if record is not None and record.error() is None:
                    records.append(record)
                    last = time.monotonic()
        finally:
            consumer.close()
        return records

    @staticmethod
    def _partitions(consumer: confluent_kafka.Consumer, topic: str, deadline: float) -> list[int]:
        while True:
            meta = consumer.list_topics(topic, timeout=max(0.1, deadline - time.monotonic()))
            found = meta.topics.get(topic)
            if found is not None and found.error is None and found.partitions:
                return sorted(found.partitions)
            if time.monotonic() > deadline:
                return []
            time.sleep(0.05)

    def close(self) -> None:
        """End the child process."""
        if self._process.poll() is None:
            assert self._process.stdin is not None
            self._process.stdin.close()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()

    def __enter__(self) -> KafkaMock:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _library() -> Any:
    libs = os.path.join(
        os.path.dirname(confluent_kafka.__file__), os.pardir, "confluent_kafka.libs"
    )
    found = glob.glob(os.path.join(libs, "librdkafka*.so*"))
    lib = ctypes.CDLL(found[0] if found else "librdkafka.so.1")
    p, i32, cstr = ctypes.c_void_p, ctypes.c_int32, ctypes.c_char_p
    signatures: dict[str, tuple[Any, list[Any]]] = {
        "rd_kafka_conf_new": (p, []),
        "rd_kafka_conf_set": (ctypes.c_int, [p, cstr, cstr, cstr, ctypes.c_size_t]),
        "rd_kafka_new": (p, [ctypes.c_int, p, cstr, ctypes.c_size_t]),
        "rd_kafka_mock_cluster_new": (p, [p, ctypes.c_int]),
        "rd_kafka_mock_cluster_bootstraps": (cstr, [p]),
        "rd_kafka_mock_broker_set_down": (ctypes.c_int, [p, i32]),
        "rd_kafka_mock_broker_set_up": (ctypes.c_int, [p, i32]),
        "rd_kafka_mock_topic_create": (ctypes.c_int, [p, cstr, ctypes.c_int, ctypes.c_int]),
    }
    for name, (restype, argtypes) in signatures.items():
        function = getattr(lib, name)
        function.restype, function.argtypes = restype, argtypes
    return lib


def _serve(brokers: int) -> None:
    """The child: make the cluster, print ``ok <bootstrap>``, obey commands until stdin ends."""
    lib = _library()
    conf = lib.rd_kafka_conf_new()
    errstr = ctypes.create_string_buffer(512)
    for key, value in (("log_level", "3"),):
        lib.rd_kafka_conf_set(conf, key.encode(), value.encode(), errstr, len(errstr))
    handle = lib.rd_kafka_new(0, conf, errstr, len(errstr))  # a producer handle hosts it
    cluster = handle and lib.rd_kafka_mock_cluster_new(handle, brokers)
    if not cluster:
        print(f"error: no mock cluster: {errstr.value.decode()}", flush=True)
        return
    print("ok", lib.rd_kafka_mock_cluster_bootstraps(cluster).decode(), flush=True)
    for line in sys.stdin:
        words = line.split()
        if words and words[0] in ("down", "up"):
            setter = lib.rd_kafka_mock_broker_set_down if words[0] == "down" else None
            setter = setter or lib.rd_kafka_mock_broker_set_up
            codes = [setter(cluster, broker) for broker in range(1, brokers + 1)]
            reply = "ok" if not any(codes) else f"error: codes {codes}"
        elif len(words) == 3 and words[0] == "topic":
            code = lib.rd_kafka_mock_topic_create(cluster, words[1].encode(), int(words[2]), 1)
            reply = "ok" if code == 0 else f"error: code {code}"
        else:
            reply = f"error: unknown command {line.strip()!r}"
        print(reply, flush=True)


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
