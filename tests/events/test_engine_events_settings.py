"""``events_*`` settings as CLI flags and App keywords; request-log settings on the CLI."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

import servekit.events
from servekit import Model
from servekit.cli import _export_event_settings, parse_serve
from servekit.events.engine import REQUEST_DURATION
from servekit.settings import event_overrides, split_overrides
from support.event_files import served, structured


class Echo(Model):
    name = "echo"

    def predict(self, batch: list[Any]) -> list[Any]:
        return list(batch)


def test_events_flags_are_parsed_kept_out_of_the_server_settings_and_exported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events = ["--events-url", "file:///tmp/e.jsonl", "--no-events-engine"]
    log = ["--request-log", "all", "--request-log-sample", "0.25", "--request-log-batch", "10"]
    targets, given = parse_serve(["m:Echo", *events, *log])
    assert targets == ["m:Echo"]
    assert event_overrides(given) == {"url": "file:///tmp/e.jsonl", "engine": False}
    server, _, _ = split_overrides(given)
    assert server == {"request_log": "all", "request_log_sample": 0.25, "request_log_batch": 10}
    monkeypatch.delenv("SERVEKIT_EVENTS_URL", raising=False)
    monkeypatch.setenv("SERVEKIT_EVENTS_ENGINE", "true")
    _export_event_settings(given)  # worker processes and the lazily made bus read these
    assert os.environ["SERVEKIT_EVENTS_URL"] == "file:///tmp/e.jsonl"
    assert os.environ["SERVEKIT_EVENTS_ENGINE"] == "false"


def test_app_keywords_configure_the_process_bus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "app-events.jsonl"
    monkeypatch.setattr(servekit.events, "_bus", None)
    try:
        with served([Echo()], events_url=f"file://{path}", events_engine=True) as live:
            reply = httpx.post(
                f"{live.url}/v2/models/echo/infer",
                json={"inputs": [{"name": "x", "shape": [1], "datatype": "INT64", "data": [1]}]},
            )
            assert reply.status_code == 200
        bus = servekit.events.get_bus()
        assert bus.flush(10.0)
        lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]
        (event,) = structured(lines, REQUEST_DURATION)
        assert event["Detail"] == "v2 echo" and event["Code"] == "200"
    finally:
        bus = servekit.events._bus
        if bus is not None:
            bus.close(5.0)
