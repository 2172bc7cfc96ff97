"""servekit.HttpClient against the real Virtex door (``http_server``) on a loopback port."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from servekit import HttpClient, HttpMessage, RequestHandler, http_server
from servekit.client import BadRequestError, HTTPStatusError, TooManyRequests
from servekit.errors import BadRequest
from support.servers import LiveServer


class Upper(RequestHandler):
    """Upper-cases strings; ``"bad"`` is refused (400), ``"boom"`` breaks the handler (500)."""

    def __init__(self) -> None:
        self.runs = 0

    def process_request(self, data: list[Any]) -> list[Any]:
        if "bad" in data:
            raise BadRequest("'bad' is not a word")
        return data

    def run_inference(self, model_input: list[Any]) -> list[Any]:
        self.runs += 1
        if "boom" in model_input:
            raise RuntimeError("the handler broke")
        return [word.upper() for word in model_input]

    def process_response(self, output: list[Any]) -> Any:
        return output


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, Upper]]:
    handler = Upper()
    app = http_server(name="upper", handler=handler, max_batch_size=1, max_time_on_queue=0)
    live = LiveServer(app).start()
    yield live.url, handler
    live.stop()


def test_a_message_round_trips(served: tuple[str, Upper]) -> None:
    url, _ = served
    with HttpClient(url) as client:
        assert client.post(HttpMessage(data=["a", "bc"])).data == ["A", "BC"]


def test_input_the_handler_refuses_is_a_400(served: tuple[str, Upper]) -> None:
    url, _ = served
    with HttpClient(url) as client, pytest.raises(BadRequestError, match="not a word"):
        client.post(HttpMessage(data=["bad"]))


def test_a_handler_that_raises_runs_once_and_is_a_500(served: tuple[str, Upper]) -> None:
    url, handler = served
    before = handler.runs
    with HttpClient(url, retries=5) as client, pytest.raises(HTTPStatusError) as info:
        client.post(HttpMessage(data=["boom"]))
    assert info.value.status == 500 and not isinstance(info.value, TooManyRequests)
    assert handler.runs == before + 1
