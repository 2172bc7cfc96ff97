"""The exit flush: bounded when the destination is down; the next process delivers the rest."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import orjson

from servekit.events import EventBus
from servekit.events.kafka_sink import KafkaSink
from support.kafka import KafkaMock

PUBLISHER = """
import sys
import servekit.events as events
events.configure(sys.argv[1], spool_dir=sys.argv[2], exit_flush_timeout=float(sys.argv[3]))
for i in range(1000):
    events.publish("bus-exit", {"i": i})
print("published", flush=True)
"""


def test_exit_with_the_broker_down_is_bounded_and_the_next_process_delivers_the_spool(
    own_kafka_mock: KafkaMock, tmp_path: Path
) -> None:
    own_kafka_mock.create_topic("bus-exit", 1)
    own_kafka_mock.stop()
    url = f"kafka://{own_kafka_mock.bootstrap}"
    spool = tmp_path / "spool"
    with subprocess.Popen(
        [sys.executable, "-c", PUBLISHER, url, str(spool), "1.0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    ) as child:
        assert child.stdout is not None
        assert child.stdout.readline() == b"published\n"
        published = time.monotonic()
        assert child.wait(30) == 0
        took = time.monotonic() - published
    assert took < 1.0 + 1.5, f"exit took {took:.2f} s with exit_flush_timeout=1.0"
    assert list(spool.rglob("*.seg")), "what was not delivered stays on disk"

    own_kafka_mock.start()
    bus = EventBus([KafkaSink.from_url(url)], spool_dir=spool, retry_max=0.3)
    assert bus.channels[0].spooled() == 1000, "a new process adopts the dead one's spool"
    assert bus.flush(20)
    bus.close(5)
    records = own_kafka_mock.consume("bus-exit", 2000, 20, idle=1.0)
    values = [orjson.loads(r.value() or b"")["i"] for r in records]
    assert list(dict.fromkeys(values)) == list(range(1000))
    assert not list(spool.rglob("*.seg"))
