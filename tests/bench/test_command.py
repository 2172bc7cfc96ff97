"""``servekit bench`` on the command line: table, --json, --plot, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from bench.models import Echo, Picky
from servekit.cli import main
from support.servers import LiveServer


@pytest.fixture(scope="module")
def server(serve_models) -> LiveServer:  # type: ignore[no-untyped-def]
    return serve_models([Echo(), Picky()])  # type: ignore[no-any-return]


def test_table_json_and_plot(
    server: LiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json, out_png = tmp_path / "run.json", tmp_path / "run.png"
    argv = ["bench", server.url, "--model", "echo", "-c", "2", "-d", "1.2"]
    code = main([*argv, "--json", str(out_json), "--plot", str(out_png)])
    assert code == 0
    table = capsys.readouterr().out
    for label in ("throughput", "latency p50", "latency p99.9", "latency max", "errors"):
        assert label in table
    doc = json.loads(out_json.read_text())
    assert doc["servekit_bench"] == 1 and doc["mode"] == "closed" and doc["concurrency"] == 2
    assert doc["ok"] + doc["failed"] == doc["sent"] > 0
    assert set(doc["latency_ms"]) == {"p50", "p90", "p99", "p99.9", "max", "mean"}
    assert doc["throughput"] > 0 and doc["errors"] == {}
    assert doc["windows"] and {"second", "ok", "errors", "latency_ms"} <= set(doc["windows"][0])
    assert sum(b["count"] for b in doc["distribution"]) == doc["ok"]
    png = out_png.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000


def test_open_loop_json(server: LiveServer, tmp_path: Path) -> None:
    out_json = tmp_path / "open.json"
    argv = ["bench", server.url, "--model", "echo", "--rate", "100", "-d", "1", "-q"]
    assert main([*argv, "--json", str(out_json)]) == 0
    doc = json.loads(out_json.read_text())
    assert doc["mode"] == "open" and doc["rate"] == 100
    assert {"late_sends", "max_send_lag_ms", "service_latency_ms"} <= set(doc)


def test_every_request_failing_exits_1(
    server: LiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = tmp_path / "neg.json"
    tensor = {"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [-1, 0, 0, 0]}
    body.write_bytes(orjson.dumps({"inputs": [tensor]}))
    argv = ["bench", server.url, "--model", "picky", "--input", str(body), "-n", "20"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "status 400" in captured.out
    assert "every request failed (400: 20)" in captured.err


def test_server_down_exits_2_with_a_clear_message() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "servekit",
            "bench",
            "http://127.0.0.1:9",
            "--model",
            "m",
            "-d",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "cannot reach the server" in done.stderr and "Connection refused" in done.stderr


def test_bad_input_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    argv = ["bench", "http://127.0.0.1:9", "--model", "m", "--input", str(bad)]
    assert main(argv) == 2
    assert "--input is not valid JSON" in capsys.readouterr().err
    assert main(["bench", "http://127.0.0.1:9", "--model", "m", "--input", "/nope.json"]) == 2
    assert "cannot read --input /nope.json" in capsys.readouterr().err
