"""The Virtex seed's load-test client example runs with only its import changed."""

from __future__ import annotations

import pprint
from collections.abc import Iterator
from typing import Any

import pytest

from servekit import HttpMessage, RequestHandler, http_server
from servekit.bench import HttpLoadTest
from support.servers import LiveServer


class EchoHandler(RequestHandler):
    def process_request(self, data: list[Any]) -> Any:
        return data

    def run_inference(self, model_input: Any) -> list[Any]:
        return list(model_input)

    def process_response(self, output: Any) -> Any:
        return output


@pytest.fixture
def url() -> Iterator[str]:
    live = LiveServer(http_server(name="echo", handler=EchoHandler(), max_batch_size=32)).start()
    yield live.url
    live.stop()


def test_echo_client_example_runs(url: str) -> None:
    # virtex-benchmarks echo/client.py, with N=300 items, M=3 per request, R=500 req/s
    n_items, per_request, rate, content_length = 300, 3, 500, 64
    payload = "X" * content_length
    messages = []
    for _ in range(0, n_items, per_request):
        message = HttpMessage(data=[payload for _ in range(per_request)])
        message.validate()
        messages.append(message)
    client = HttpLoadTest()
    responses, metrics = client.run(url, messages, requests_per_second=rate)
    pprint.pprint(metrics.dict())

    assert len(responses) == len(messages) == 100
    assert all(r.data == [payload] * per_request for r in responses)
    m = metrics.dict()
    assert m["num_requests"] == 100 and m["num_data"] == 300 and m["num_errors"] == 0
    assert m["client_requests_per_second"] == rate
    assert 0 < m["latency_p50"] <= m["latency_p99"] <= m["latency_max"]
    assert m["test_duration_seconds"] > 0.1  # 100 requests at 500/s: about 0.2 s
