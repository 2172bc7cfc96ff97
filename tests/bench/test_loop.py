"""The load loops against a real servekit server: counts, percentiles, open-loop timing."""

from __future__ import annotations

import orjson
import pytest

from bench.models import Echo, Picky, Slow
from servekit.bench import BenchError, Plan, run
from support.servers import LiveServer


@pytest.fixture(scope="module")
def server(serve_models) -> LiveServer:  # type: ignore[no-untyped-def]
    return serve_models([Echo(), Slow(), Picky()])  # type: ignore[no-any-return]


def _row(first: float) -> bytes:
    tensor = {"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [first, 1, 2, 3]}
    return orjson.dumps({"inputs": [tensor]})


def test_closed_loop_accounts_for_every_request_and_orders_percentiles(server: LiveServer) -> None:
    result = run(server.url, "echo", plan=Plan(concurrency=4, duration=1.0))
    assert result.sent > 100
    assert result.ok + result.failed == result.sent
    assert result.failed == 0
    lat = result.latency_ms
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99.9"] <= lat["max"]
    assert result.throughput == pytest.approx(result.ok / result.duration_s)
    assert sum(w.ok for w in result.windows) == result.ok


def test_request_cap_stops_the_run(server: LiveServer) -> None:
    result = run(server.url, "echo", plan=Plan(concurrency=3, duration=30.0, max_requests=50))
    assert result.sent == 50 and result.ok == 50
    assert result.duration_s < 10


def test_open_loop_delivers_the_rate_it_is_asked_for(server: LiveServer) -> None:
    result = run(server.url, "echo", plan=Plan(rate=200.0, duration=2.0, seed=1))
    assert result.mode == "open"
    assert 300 <= result.sent <= 500  # Poisson: 400 expected
    assert result.ok == result.sent, result.errors


def test_open_loop_latency_counts_queueing_a_closed_loop_hides(server: LiveServer) -> None:
    # 'slow' serves one request per 20 ms: 50 req/s at most. One connection each way.
    closed = run(server.url, "slow", plan=Plan(concurrency=1, duration=1.0))
    opened = run(server.url, "slow", plan=Plan(rate=100.0, duration=1.0, max_connections=1, seed=2))
    assert 15 < closed.latency_ms["p50"] < 60
    # every request was served in about 20 ms ...
    assert opened.service_latency_ms["p50"] < 60
    # ... but the requests due later waited behind the earlier ones: that counts
    assert opened.latency_ms["p99"] > 300
    assert opened.latency_ms["p99"] > 5 * closed.latency_ms["p99"]
    assert opened.late_sends > 0


def test_errors_are_counted_by_status(server: LiveServer) -> None:
    refused = run(server.url, "picky", body=_row(-1.0), plan=Plan(concurrency=2, duration=0.5))
    assert refused.ok == 0 and refused.errors == {"400": refused.sent}
    missing = run(server.url, "nope", body=_row(1.0), plan=Plan(concurrency=2, duration=0.5))
    assert missing.errors == {"404": missing.sent} and missing.sent > 0
    # errors are not timed
    assert refused.latency_ms["max"] == 0.0


@pytest.mark.parametrize("protocol", ["v2", "v2-binary", "eas"])
def test_each_protocol_gets_answers(server: LiveServer, protocol: str) -> None:
    result = run(server.url, "echo", protocol=protocol, plan=Plan(concurrency=2, max_requests=20))
    assert result.ok == 20, result.errors


def test_unreachable_server_is_a_bench_error() -> None:
    with pytest.raises(BenchError, match="cannot reach"):
        run("http://127.0.0.1:9", "echo", body=_row(1.0), plan=Plan(concurrency=1, duration=1.0))


def test_generated_body_needs_known_model(server: LiveServer) -> None:
    with pytest.raises(BenchError, match=r"404.*--input"):
        run(server.url, "nope", plan=Plan(concurrency=1, duration=0.2))


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        (Plan(concurrency=1, rate=1.0), "exactly one"),
        (Plan(concurrency=0), "--concurrency"),
        (Plan(rate=-1.0), "--rate"),
        (Plan(concurrency=1, duration=0), "--duration"),
    ],
)
def test_out_of_bounds_plans_are_refused(plan: Plan, message: str) -> None:
    with pytest.raises(BenchError, match=message):
        plan.check()
