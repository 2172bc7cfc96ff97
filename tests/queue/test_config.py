"""Queues built from URLs and SERVEKIT_QUEUE_* settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from servekit.queue import SqliteBackend, open_queue
from servekit.queue.redis_backend import RedisBackend


def test_sqlite_url_gives_one_file_per_queue_in_the_directory(tmp_path: Path, arun: Any) -> None:
    async def scenario() -> None:
        async with open_queue("svc/sink", f"sqlite://{tmp_path}") as q:
            await q.put(b"x")
        assert (tmp_path / "svc%2Fsink.db").exists()

    arun(scenario())


def test_redis_url_gives_a_redis_backend_named_after_the_queue() -> None:
    q = open_queue("svc", "redis://127.0.0.1:1/0")
    assert isinstance(q.backend, RedisBackend) and q.backend.name == "svc"


def test_settings_come_from_arguments_then_environment_then_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SERVEKIT_QUEUE_URL", f"sqlite://{tmp_path}")
    monkeypatch.setenv("SERVEKIT_QUEUE_MAX_LENGTH", "7")
    from_env = open_queue("a")
    assert isinstance(from_env.backend, SqliteBackend) and from_env.max_length == 7
    assert from_env.max_payload_bytes == 8 << 20 and from_env.lease == 10.0
    assert open_queue("a", max_length=3).max_length == 3
    monkeypatch.setenv("SERVEKIT_QUEUE_MAX_LENGTH", "lots")
    with pytest.raises(ValueError, match="SERVEKIT_QUEUE_MAX_LENGTH"):
        open_queue("a")


def test_unknown_url_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported queue URL"):
        open_queue("a", "kafka://broker:9092")
