"""servekit.rlog: pyraisdk's records, levels, settings from the environment, and a bad format
that does not raise, on the real bus with a JSON-lines file sink."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import traceback
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from servekit import events, rlog
from servekit.events import records, sysmetrics
from servekit.events.records import Identity
from support.event_records import (
    PYRAISDK_ENV,
    STRUCTURED_FIELDS,
    UNSTRUCTURED_FIELDS,
    lines,
    values,
)
from support.redis_server import RedisServer


@pytest.fixture
def sink(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A file for the bus, no pyraisdk settings in the environment, rlog reset afterwards."""
    for name in PYRAISDK_ENV:
        monkeypatch.delenv(name, raising=False)
    yield tmp_path / "events.jsonl"
    rlog.shutdown()
    records.set_identity(Identity.default())
    records.set_streams()
    events.configure("stdout")


def start(path: Path, **kwargs: Any) -> None:
    rlog.initialize(sink=f"file://{path}", sys_metrics_enable=False, **kwargs)


def parse_time(stamp: str) -> datetime:
    assert stamp.endswith("Z"), stamp
    return datetime.fromisoformat(stamp[:-1]).replace(tzinfo=timezone.utc)


def test_event_carries_every_pyraisdk_field(sink: Path) -> None:
    start(sink, role="Scorer", instance="m|1|host")
    before = datetime.now(timezone.utc)
    rlog.event("RequestDuration", "200", 0.01, "seconds", corr_id="c-1", elem=3)
    after = datetime.now(timezone.utc)
    assert rlog.flush(5)
    [line] = lines(sink)
    assert line["stream"] == "servekit-events"
    assert line["key"] == "m|1|host"
    record = line["value"]
    assert set(record) == STRUCTURED_FIELDS
    assert {k: v for k, v in record.items() if k != "Timestamp"} == {
        "Key": "RequestDuration",
        "Role": "Scorer",
        "Instance": "m|1|host",
        "CorrelationId": "c-1",
        "Element": 3,
        "Code": "200",
        "Numeric": 0.01,
        "Detail": "seconds",
    }
    assert before <= parse_time(record["Timestamp"]) <= after


def test_event_defaults_match_pyraisdk(sink: Path) -> None:
    start(sink)
    rlog.event("LifetimeEvent", "STOP_GRACEFUL_SIGNAL", 0)
    assert rlog.flush(5)
    [record] = values(sink, "servekit-events")
    assert (record["Detail"], record["CorrelationId"], record["Element"]) == ("", "", -1)
    assert record["Role"] == "RemoteModel"


def test_every_level_and_its_context(sink: Path) -> None:
    start(sink, role="R", instance="I")
    rlog.infof("i %s", 1)
    rlog.warnf("w %s", 2)
    line = sys._getframe().f_lineno + 1
    rlog.errorf("e %s", 3)
    rlog.fatalf("f %s", 4)
    rlog.infocf("c1", 0, "ic %d", 5)
    rlog.warncf("c2", 1, "wc %d", 6)
    rlog.errorcf("c3", 2, None, "ec %d", 7)
    rlog.fatalcf("c4", 3, None, "fc %d", 8)
    assert rlog.flush(5)
    logs = values(sink, "servekit-logs")
    assert all(set(r) == UNSTRUCTURED_FIELDS for r in logs)
    assert all((r["Role"], r["Instance"]) == ("R", "I") for r in logs)
    here = __name__
    assert [
        (r["Level"], r["Message"], r["CorrelationId"], r["Element"], r["Context"]) for r in logs
    ] == [
        ("INFO", "i 1", "", -1, ""),
        ("WARN", "w 2", "", -1, ""),
        ("ERROR", "e 3", "", -1, f"{here}:{line}"),
        ("FATAL", "f 4", "", -1, f"{here}:{line + 1}"),
        ("INFO", "ic 5", "c1", 0, ""),
        ("WARN", "wc 6", "c2", 1, ""),
        ("ERROR", "ec 7", "c3", 2, f"{here}:{line + 4}"),
        ("FATAL", "fc 8", "c4", 3, f"{here}:{line + 5}"),
    ]
    assert values(sink, "servekit-events") == []


def test_errorcf_appends_the_exception_and_its_traceback(sink: Path) -> None:
    start(sink)

    def failing_step() -> None:
        raise ValueError("boom")

    try:
        failing_step()
    except ValueError as exc:
        rlog.errorcf("c", 1, exc, "step %s failed", "two")
        expected = "".join(traceback.format_exception(exc)).rstrip("\n")
    rlog.fatalcf("c", 2, Exception("error msg"), "never raised")
    assert rlog.flush(5)
    raised, plain = values(sink, "servekit-logs")
    assert raised["Message"] == "step two failed\n" + expected
    assert "Traceback (most recent call last)" in raised["Message"]
    assert "in failing_step" in raised["Message"]
    assert raised["Message"].endswith("ValueError: boom")
    assert plain["Message"] == "never raised\nException: error msg"


def test_a_bad_format_is_logged_raw_and_never_raises(sink: Path) -> None:
    class NoStr:
        def __str__(self) -> str:
            raise RuntimeError("no str")

        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    start(sink)
    rlog.infof("%d apples", "many")
    rlog.warnf("%s and %s", 1)
    rlog.errorcf("c", 0, None, "%(name)s", 1)
    rlog.infocf("c", 0, "%s", NoStr())
    rlog.infof("100% sure")  # no args: the format is the message, as in pyraisdk
    assert rlog.flush(5)
    messages = [r["Message"] for r in values(sink, "servekit-logs")]
    assert messages[0].startswith("'%d apples' % ('many',) [format failed: TypeError:")
    assert messages[1].startswith("'%s and %s' % (1,) [format failed: TypeError:")
    assert messages[2].startswith("'%(name)s' % (1,) [format failed: TypeError:")
    assert messages[3].startswith("'%s' % <tuple object, repr failed: RuntimeError>")
    assert messages[4] == "100% sure"


def test_streams_named_by_arguments_then_environment(
    sink: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    start(sink, eh_structured="ehstruct", eh_unstructured="ehunstruct")
    rlog.event("k", "", 1)
    rlog.infof("m")
    assert rlog.flush(5)
    assert [line["stream"] for line in lines(sink)] == ["ehstruct", "ehunstruct"]
    monkeypatch.setenv("EVENTHUB_AUX_STRUCTURED", "env-struct")
    monkeypatch.setenv("EVENTHUB_AUX_UNSTRUCTURED", "env-unstruct")
    start(sink)
    assert (records.structured_stream(), records.unstructured_stream()) == (
        "env-struct",
        "env-unstruct",
    )


def test_instance_default_from_endpoint_or_model_name(monkeypatch: pytest.MonkeyPatch) -> None:
    host = socket.gethostname()
    for name in PYRAISDK_ENV:
        monkeypatch.delenv(name, raising=False)
    assert Identity.default() == Identity("RemoteModel", f"unknown|unknown|{host}")
    monkeypatch.setenv("MODEL_NAME", "model")
    monkeypatch.setenv("ENDPOINT_VERSION", "3")
    assert Identity.default().instance == f"model|3|{host}"
    monkeypatch.setenv("ENDPOINT_NAME", "endpoint")
    assert Identity.default().instance == f"endpoint|3|{host}"


def test_initialize_takes_the_instance_default_from_the_environment(
    sink: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENDPOINT_NAME", "ep")
    start(sink)
    rlog.infof("x")
    assert rlog.flush(5)
    [record] = values(sink, "servekit-logs")
    assert (record["Role"], record["Instance"]) == (
        "RemoteModel",
        f"ep|unknown|{socket.gethostname()}",
    )


def test_event_hubs_settings_from_pyraisdk_environment(
    sink: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVENTHUB_NAMESPACE", "ns")  # pyraisdk 0.5: a name, the suffix added
    monkeypatch.setenv("UAI_CLIENT_ID", "client")
    monkeypatch.setenv("EVENTHUB_CONN_STRING", "Endpoint=sb://ns.servicebus.windows.net/;x")
    start(sink)
    assert rlog._config is not None
    assert rlog._config.event_hubs == (
        "Endpoint=sb://ns.servicebus.windows.net/;x",
        "ns.servicebus.windows.net",
        "client",
    )
    monkeypatch.setenv("EVENTHUB_NAMESPACE", "ns.servicebus.chinacloudapi.cn")  # the README's
    start(sink, client_id="arg")
    assert rlog._config.event_hubs[1:] == ("ns.servicebus.chinacloudapi.cn", "arg")


def test_event_hubs_when_no_sink_is_named(sink: Path) -> None:
    pytest.importorskip("servekit.events.eventhubs")
    conn = "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=s"
    rlog.initialize(
        eh_conn_str=conn, eh_structured="s", eh_unstructured="u", sys_metrics_enable=False
    )
    [channel] = events.get_bus().channels
    assert channel.sink.name == "eventhubs://ns.servicebus.windows.net"


def test_records_reach_a_real_redis_server(sink: Path, redis_server: RedisServer) -> None:
    redis = pytest.importorskip("redis")
    rlog.initialize(
        sink=redis_server.url,
        eh_structured="rlog-test-struct",
        eh_unstructured="rlog-test-logs",
        instance="i",
        sys_metrics_enable=False,
    )
    rlog.event("k", "200", 0.5, "d", "c", 1)
    rlog.warncf("c", 2, "careful %s", "now")
    assert rlog.flush(10)
    client = redis.Redis.from_url(redis_server.url)
    [(_, structured)] = client.xrange("rlog-test-struct")
    [(_, logged)] = client.xrange("rlog-test-logs")
    event, line = orjson.loads(structured[b"value"]), orjson.loads(logged[b"value"])
    assert set(event) == STRUCTURED_FIELDS and set(line) == UNSTRUCTURED_FIELDS
    assert (event["Key"], event["Numeric"], event["Instance"]) == ("k", 0.5, "i")
    assert (line["Level"], line["Message"], line["Element"]) == ("WARN", "careful now", 2)


def test_servekit_events_url_wins_over_event_hubs(
    sink: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SERVEKIT_EVENTS_URL", f"file://{sink}")
    monkeypatch.setenv("EVENTHUB_CONN_STRING", "Endpoint=sb://unreachable.invalid/;x")
    events.configure()
    rlog.initialize(sys_metrics_enable=False)
    rlog.event("k", "c", 1)
    assert rlog.flush(5)
    assert [r["Key"] for r in values(sink, "servekit-events")] == ["k"]


def test_initialize_twice_same_is_a_no_op_other_reconfigures(sink: Path, tmp_path: Path) -> None:
    start(sink, role="a")
    bus = events.get_bus()
    start(sink, role="a")
    assert events.get_bus() is bus
    start(sink, role="b")  # same sink: the bus stays, the identity changes
    assert events.get_bus() is bus
    rlog.infof("to the first file")
    other = tmp_path / "other.jsonl"
    start(other, role="b")
    assert events.get_bus() is not bus
    rlog.infof("to the second file")
    assert rlog.flush(5)
    assert [(r["Role"], r["Message"]) for r in values(sink, "servekit-logs")] == [
        ("b", "to the first file")
    ]
    assert [r["Message"] for r in values(other, "servekit-logs")] == ["to the second file"]


def test_log_lines_are_mirrored_to_python_logging(
    sink: Path, caplog: pytest.LogCaptureFixture
) -> None:
    start(sink)
    with caplog.at_level(logging.INFO, logger="servekit.rlog"):
        rlog.infof("hello %s", "there")
        rlog.warncf("corr", 2, "careful")
        rlog.fatalf("the end")
    assert [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "servekit.rlog"] == [
        (logging.INFO, "hello there"),
        (logging.WARNING, "careful  {CorrId: corr, Elem: 2}"),
        (logging.CRITICAL, "the end"),
    ]


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in PYRAISDK_ENV}
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


BEFORE_INITIALIZE = """
from servekit import rlog
rlog.infof("before %s", "initialize")
rlog.event("Early", "", 1.5)
"""


def test_calls_before_initialize_go_to_the_default_file(tmp_path: Path) -> None:
    path = tmp_path / "early.jsonl"
    done = run_python(BEFORE_INITIALIZE, {"SERVEKIT_EVENTS_URL": f"file://{path}"})
    assert done.returncode == 0, done.stderr
    assert [r["Message"] for r in values(path, "servekit-logs")] == ["before initialize"]
    assert [r["Key"] for r in values(path, "servekit-events")] == ["Early"]


def test_calls_before_initialize_go_to_stdout_by_default() -> None:
    done = run_python(BEFORE_INITIALIZE, {})
    assert done.returncode == 0, done.stderr
    assert '"stream":"servekit-logs"' in done.stdout
    assert '"Message":"before initialize"' in done.stdout
    assert '"Key":"Early"' in done.stdout


def test_a_forked_child_sets_up_its_own_sink_and_reporter(sink: Path) -> None:
    rlog.initialize(sink=f"file://{sink}", sys_metrics_interval=30)
    parent_reporter = sysmetrics.current()
    assert parent_reporter is not None
    pid = os.fork()
    if pid == 0:  # the child: its first record sets up its own bus and reporter
        code = 1
        try:
            rlog.infof("from the child")
            reporter = sysmetrics.current()
            ok = reporter is not None and reporter is not parent_reporter and rlog.flush(5)
            code = 0 if ok else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert [r["Message"] for r in values(sink, "servekit-logs")] == ["from the child"]
    assert sysmetrics.current() is parent_reporter
