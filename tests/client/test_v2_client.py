"""servekit.Client and servekit.AsyncClient against the real v2 door: results and every error."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest

import servekit
from servekit.client import (
    AsyncClient,
    BadRequestError,
    Client,
    ConnectError,
    HTTPStatusError,
    NotFoundError,
    RequestTimeout,
    ServiceUnavailable,
    UnauthorizedError,
)

from .conftest import TOKEN, Boom, Door, Wide, closed_port, refusals_of_a_full_queue

ONE = {"x": np.ones((1, 2), np.float32)}


def _sync(url: str, **options: Any) -> Callable[..., Any]:
    """``call(method, *args)`` on a fresh ``Client``."""

    def call(method: str, *args: Any, **kw: Any) -> Any:
        with Client(url, **{"token": TOKEN, **options}) as client:
            return getattr(client, method)(*args, **kw)

    return call


def _async(url: str, **options: Any) -> Callable[..., Any]:
    """``call(method, *args)`` on a fresh ``AsyncClient``, run to completion."""

    def call(method: str, *args: Any, **kw: Any) -> Any:
        async def scenario() -> Any:
            async with AsyncClient(url, **{"token": TOKEN, **options}) as client:
                result: Awaitable[Any] = getattr(client, method)(*args, **kw)
                return await result

        return asyncio.run(scenario())

    return call


CLIENTS = {"Client": _sync, "AsyncClient": _async}


@pytest.fixture(params=list(CLIENTS))
def make(request: pytest.FixtureRequest) -> Callable[..., Callable[..., Any]]:
    return CLIENTS[request.param]


@pytest.mark.parametrize("binary", [False, True])
def test_infer_round_trips_numpy_arrays(door: Door, make: Any, binary: bool) -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    out = make(door.url, binary=binary)("infer", "scale", {"x": x})
    np.testing.assert_array_equal(out["scaled"], x * 2)
    assert out["scaled"].dtype == np.float32


def test_ready_live_metadata(door: Door, make: Any) -> None:
    call = make(door.url)
    assert call("live") and call("ready", "scale", "1")
    assert not call("ready")  # one model is still loading
    assert not call("ready", "warming")
    assert call("metadata", "scale")["versions"] == ["1"]
    assert call("metadata")["name"] == "servekit"


def test_unknown_model_is_a_404_with_the_servers_message(door: Door, make: Any) -> None:
    with pytest.raises(NotFoundError, match="unknown model 'nope'") as info:
        make(door.url)("infer", "nope", ONE)
    assert info.value.status == 404


def test_malformed_input_is_a_400(door: Door, make: Any) -> None:
    with pytest.raises(BadRequestError) as info:
        make(door.url)("infer", "scale", {})
    assert info.value.status == 400 and "'inputs' is empty" in info.value.message


def test_wrong_token_is_a_401(door: Door, make: Any) -> None:
    with pytest.raises(UnauthorizedError):
        make(door.url, token="wrong")("infer", "scale", ONE)


def test_a_model_still_loading_is_a_503_retried_then_raised(door: Door, make: Any) -> None:
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable, match="loading"):
        make(door.url, retries=3)("infer", "warming", ONE)
    assert time.monotonic() - started < 2  # three tries, two short backoffs


def test_a_model_that_raises_runs_once_and_is_a_500(door: Door, make: Any) -> None:
    """Issue 13 item 3: the old retry ran ``predict`` three times for one ``infer``."""
    before = Boom.calls
    with pytest.raises(HTTPStatusError, match="the model broke") as info:
        make(door.url, retries=5)("infer", "boom", ONE)
    assert type(info.value) is HTTPStatusError and info.value.status == 500
    assert Boom.calls == before + 1


def test_a_full_queue_is_a_429_with_retry_after(door: Door, make: Any, jammed: None) -> None:
    refusals = refusals_of_a_full_queue(lambda: make(door.url, retries=1)("infer", "jam", ONE))
    assert all(r.status == 429 and (r.retry_after or 0) >= 1 for r in refusals)


def test_no_answer_within_the_timeout_is_a_request_timeout(door: Door, make: Any) -> None:
    with pytest.raises(RequestTimeout):
        make(door.url, timeout=0.2)("infer", "slow", ONE)


def test_connection_refused_is_a_connect_error_that_was_never_sent(make: Any) -> None:
    with closed_port() as port, pytest.raises(ConnectError) as info:
        make(f"http://127.0.0.1:{port}", retries=2)("infer", "scale", ONE)
    assert info.value.sent is False and info.value.code is None


def test_async_client_keeps_200_requests_in_flight_at_once(door: Door) -> None:
    """A thread pool would cap this at min(32, cores + 4): the batch formed while the first
    one runs holds every request that was in flight at once."""

    async def scenario() -> list[dict[str, np.ndarray]]:
        async with servekit.AsyncClient(door.url, token=TOKEN) as client:
            return await asyncio.gather(
                *(client.infer("wide", {"x": np.full((1, 2), i, np.float32)}) for i in range(200))
            )

    Wide.sizes.clear()
    Wide.first_batch_seconds = 1.5
    try:
        results = asyncio.run(scenario())
    finally:
        Wide.first_batch_seconds = 0.0
    assert [float(r["output-0"][0, 0]) for r in results] == [i + 1.0 for i in range(200)]
    assert max(Wide.sizes) > 32, Wide.sizes


def test_async_client_reuses_its_connections(door: Door) -> None:
    async def scenario() -> int:
        async with servekit.AsyncClient(door.url, token=TOKEN) as client:
            for _ in range(10):
                await client.infer("scale", ONE)
            return len(client._transport._idle)

    assert asyncio.run(scenario()) == 1
