"""The Redis Streams sink on a real redis-server: fields, MAXLEN, a restart without loss."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from servekit.events import EventBus, Message, SinkUnavailable, open_sink
from servekit.events.redis_sink import RedisSink
from support.redis_server import RedisServer


def test_messages_become_stream_entries_with_value_key_and_headers(
    redis_server: RedisServer,
) -> None:
    sink = open_sink(redis_server.url + "?maxlen=1000")
    assert isinstance(sink, RedisSink) and sink.maxlen == 1000
    sink.send([Message("rs-fields", {"a": 1}, "k", (("h", "v"),)), Message("rs-fields", b"raw")])
    sink.close()
    client: Any = redis.Redis(port=redis_server.port)
    (_, first), (_, second) = client.xrange("rs-fields")
    assert first == {b"value": b'{"a":1}', b"key": b"k", b"headers": b'{"h":"v"}'}
    assert second == {b"value": b"raw"}
    client.close()


def test_streams_are_trimmed_to_about_maxlen(redis_server: RedisServer) -> None:
    sink = RedisSink.from_url(redis_server.url + "?maxlen=100")
    for start in range(0, 5000, 500):
        sink.send([Message("rs-maxlen", {"i": i}) for i in range(start, start + 500)])
    sink.close()
    client: Any = redis.Redis(port=redis_server.port)
    length = client.xlen("rs-maxlen")
    (_, last), *_ = client.xrevrange("rs-maxlen", count=1)
    client.close()
    assert 100 <= length < 1000, length  # "~": Redis trims whole nodes
    assert orjson.loads(last[b"value"]) == {"i": 4999}


def test_a_server_that_is_down_raises_sink_unavailable(tmp_path: Path) -> None:
    dead = RedisServer(tmp_path)  # a free port nobody listens on
    sink = RedisSink(dead.url, timeout=1.0)
    started = time.monotonic()
    with pytest.raises(SinkUnavailable, match=f"redis://127.0.0.1:{dead.port}/0"):
        sink.send([Message("rs-down", {"a": 1})])
    assert time.monotonic() - started < 2.5


def test_redis_restart_loses_nothing_and_keeps_the_order(
    own_redis: RedisServer, tmp_path: Path
) -> None:
    bus = EventBus([own_redis.url], spool_dir=tmp_path / "spool", retry_max=0.3)
    bus.publish("rs-restart", {"i": -1})
    assert bus.flush(10)
    own_redis.kill()
    for i in range(2000):
        bus.publish("rs-restart", {"i": i})
    deadline = time.monotonic() + 10
    while bus.channels[0].spooled() < 2000 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert bus.channels[0].spooled() == 2000
    own_redis.start()  # same port; the AOF brings back what was there
    assert bus.flush(20)
    bus.close(5)
    client: Any = redis.Redis(port=own_redis.port)
    values = [orjson.loads(f[b"value"])["i"] for _, f in client.xrange("rs-restart")]
    client.close()
    assert list(dict.fromkeys(values)) == list(range(-1, 2000))
    assert bus.dropped == 0
