"""servekit.client.Retry: what is resent, after how long, and when it stops."""

from __future__ import annotations

import asyncio

import pytest

from servekit.client import (
    BadRequestError,
    ConnectError,
    HTTPStatusError,
    ProtocolError,
    RequestTimeout,
    Retry,
    ServiceUnavailable,
    TooManyRequests,
)
from servekit.client._errors import status_error


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    low = Retry(backoff=0.1, max_backoff=0.5, rand=lambda: 0.0)
    high = Retry(backoff=0.1, max_backoff=0.5, rand=lambda: 0.999)
    assert [low.delay(k) for k in range(1, 6)] == [0.05, 0.1, 0.2, 0.25, 0.25]
    assert [round(high.delay(k), 3) for k in range(1, 4)] == [0.1, 0.2, 0.4]


@pytest.mark.parametrize(
    "error",
    [
        status_error(500, b'{"error": "the model raised"}'),
        status_error(400),
        status_error(404),
        status_error(504),
        RequestTimeout("slow"),
        ProtocolError("garbage"),
        ConnectError("reset after sending", sent=True),
    ],
    ids=["500", "400", "404", "504", "timeout", "protocol", "sent"],
)
def test_what_may_have_run_or_cannot_change_is_never_retried(error: Exception) -> None:
    assert Retry(rand=lambda: 0.0).wait_after(error, 1) is None  # type: ignore[arg-type]


def test_unsent_connection_failures_and_503_are_retried_with_backoff() -> None:
    retry = Retry(backoff=0.1, rand=lambda: 0.0)
    assert retry.wait_after(ConnectError("refused", sent=False), 1) == 0.05
    assert retry.wait_after(status_error(503), 2) == 0.1
    assert retry.wait_after(ConnectError("reset", sent=True), 1, idempotent=True) == 0.05


def test_429_and_503_wait_what_retry_after_asks() -> None:
    retry = Retry(backoff=0.1, rand=lambda: 0.5)
    full = status_error(429, b"full", {"retry-after": "2"})
    assert isinstance(full, TooManyRequests) and full.retry_after == 2.0
    assert retry.wait_after(full, 1) == pytest.approx(2.05)
    draining = status_error(503, b"", {"retry-after": "1"})
    assert isinstance(draining, ServiceUnavailable)
    assert retry.wait_after(draining, 1) == pytest.approx(1.05)


def test_the_attempts_and_the_time_budget_bound_the_retries() -> None:
    unsent = ConnectError("refused", sent=False)
    assert Retry(attempts=3).wait_after(unsent, 3) is None
    slow = status_error(429, b"", {"retry-after": "20"})
    assert Retry(budget=10.0).wait_after(slow, 1) is None
    assert Retry(budget=10.0, rand=lambda: 0.0).wait_after(unsent, 2, waited=9.99) is None


def test_call_stops_at_the_first_answer_it_must_not_resend() -> None:
    sleeps: list[float] = []
    tries: list[int] = []

    def once() -> str:
        tries.append(1)
        if len(tries) == 1:
            raise ConnectError("refused", sent=False)
        raise status_error(500, b"boom")

    with pytest.raises(HTTPStatusError) as info:
        Retry(sleep=sleeps.append).call(once)
    assert info.value.status == 500 and len(tries) == 2 and len(sleeps) == 1


def test_acall_retries_like_call() -> None:
    waits: list[float] = []
    tries: list[int] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async def once() -> str:
        tries.append(1)
        if len(tries) < 3:
            raise status_error(503)
        return "ok"

    assert asyncio.run(Retry(async_sleep=sleep).acall(once)) == "ok"
    assert len(waits) == 2


def test_status_errors_are_typed_and_keep_what_the_server_said() -> None:
    error = status_error(400, b'{"error": "bad shape"}', {"x-a": "1"}, where="POST /m")
    assert isinstance(error, BadRequestError)
    assert (error.status, error.code, error.message) == (400, 400, "POST /m: bad shape")
    assert error.headers == {"x-a": "1"} and str(error) == "[400] POST /m: bad shape"
