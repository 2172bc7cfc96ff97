"""EAS signatures on a live server: fresh, new, over the body they came with, never a query.

Each server's guard runs on a :class:`Clock` the test moves, so Date windows and replay grace
are exact. The published SDK is run too, in other time zones than the server's.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import servekit
from servekit.protocol.queue_wire import decode_list
from servekit.server import App
from servekit.server.auth import EasRules, TokenGuard
from support.eas_signing import Clock, http_date, signed
from support.servers import LiveServer

TOKEN = "s3cret-token"
INFER = b'{"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1], "data": ["hi"]}]}'
SCRIPT = Path(__file__).with_name("eas_client_script.py")
HOUR = 3600.0
SINK = "/api/predict/shout/sink"  # a queue nobody consumes: what is put there stays


class Shout(servekit.Model):
    name = "shout"
    version = "1"

    def predict(self, batch: list[Any]) -> list[Any]:
        return [item.upper() if isinstance(item, bytes) else item for item in batch]


Guarded = tuple[LiveServer, Clock]


def _start(rules: EasRules | None = None, **settings: Any) -> Guarded:
    app = App([Shout()], token=TOKEN, **settings)
    clock = Clock()
    app.http.guard = TokenGuard(TOKEN, rules, clock=clock)
    live = LiveServer(app).start()
    live.call(app.wait_loaded())
    return live, clock


@pytest.fixture(scope="module")
def server() -> Iterator[Guarded]:
    live, clock = _start()
    yield live, clock
    live.stop()


@pytest.fixture(scope="module")
def queue_server() -> Iterator[Guarded]:
    live, clock = _start(queue=True, queue_url="sqlite://:memory:")
    yield live, clock
    live.stop()


@pytest.fixture
def fresh(server: Guarded) -> Iterator[Guarded]:
    """The shared server, its clock moved past every signature an earlier test sent."""
    live, clock = server
    clock.advance(2 * HOUR * 24)
    yield live, clock


def post(live: LiveServer, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(live.url + path, content=body, headers=headers, timeout=10)


# The signature covers the body, on every door that reads one


@pytest.mark.parametrize(
    "path", ["/api/predict/shout", "/v2/models/shout/infer", "/v2/models/shout/versions/1/infer"]
)
def test_a_captured_signature_with_another_body_is_refused_on_each_door(
    fresh: Guarded, path: str
) -> None:
    live, clock = fresh
    body = INFER if path.startswith("/v2") else b"hello"
    headers = signed(TOKEN, "POST", path, body, date=http_date(clock.now))
    other = body.replace(b"hi", b"yo") if path.startswith("/v2") else b"evil!"
    refused = post(live, path, other, headers)
    assert refused.status_code == 401, refused.text
    assert "Content-MD5" in refused.json()["error"]
    assert post(live, path, body, headers).status_code != 401


# Date window


def test_a_signature_dated_1970_is_refused_naming_the_date(fresh: Guarded) -> None:
    live, _ = fresh
    date = "Thu, 01 Jan 1970 00:00:00 GMT"
    refused = post(
        live,
        "/api/predict/shout",
        b"x",
        signed(TOKEN, "POST", "/api/predict/shout", b"x", date=date),
    )
    assert refused.status_code == 401
    assert "Date" in refused.json()["error"] and "1970" in refused.json()["error"]


@pytest.mark.parametrize("hours", [-12.0, -5.5, 0.0, 5.75, 8.0, 14.0])
def test_local_time_labelled_gmt_in_any_utc_offset_is_accepted(
    fresh: Guarded, hours: float
) -> None:
    live, clock = fresh
    path = "/api/predict/shout"
    headers = signed(TOKEN, "POST", path, b"x", date=http_date(clock.now + hours * HOUR + 60))
    reply = post(live, path, b"x", headers)
    assert reply.status_code == 200, reply.text
    assert reply.content == b"X"


@pytest.mark.parametrize("hours", [-12.5, 14.5, 48.0, -30 * 24.0])
def test_a_date_beyond_every_utc_offset_and_the_skew_is_refused(
    fresh: Guarded, hours: float
) -> None:
    live, clock = fresh
    path = "/api/predict/shout"
    headers = signed(TOKEN, "POST", path, b"x", date=http_date(clock.now + hours * HOUR))
    refused = post(live, path, b"x", headers)
    assert refused.status_code == 401
    assert "SERVEKIT_EAS_DATE_SKEW" in refused.json()["error"]


@pytest.mark.parametrize("date", [None, "", "yesterday", "Mon, 30 Nov 99999 11:04:26 GMT"])
def test_a_signature_without_a_readable_date_is_refused(fresh: Guarded, date: str | None) -> None:
    live, _ = fresh
    path = "/api/predict/shout"
    headers = signed(TOKEN, "POST", path, b"x", date=date or "")
    if date is None:
        del headers["Date"]
    refused = post(live, path, b"x", headers)
    assert refused.status_code == 401
    assert "Date" in refused.json()["error"]


def test_with_gmt_only_dates_the_window_is_the_skew_alone() -> None:
    live, clock = _start(EasRules(date_skew=60, date_any_zone=False))
    try:
        path = "/api/predict/shout"
        for offset, status in [(0, 200), (-59, 200), (59, 200), (-61, 401), (8 * HOUR, 401)]:
            date = http_date(clock.now + offset)
            reply = post(live, path, b"x", signed(TOKEN, "POST", path, b"x", date=date))
            assert reply.status_code == status, (offset, reply.text)
    finally:
        live.stop()


# Replays


def test_an_identical_replay_is_refused_once_the_grace_has_passed(fresh: Guarded) -> None:
    live, clock = fresh
    path = "/api/predict/shout"
    headers = signed(TOKEN, "POST", path, b"once", date=http_date(clock.now))
    assert post(live, path, b"once", headers).status_code == 200
    clock.advance(0.5)  # the same request signed in the same second: the protocol can't tell
    assert post(live, path, b"once", headers).status_code == 200
    clock.advance(5)
    replay = post(live, path, b"once", headers)
    assert replay.status_code == 401
    assert "already used" in replay.json()["error"]
    clock.advance(HOUR)
    assert post(live, path, b"once", headers).status_code == 401
    again = signed(TOKEN, "POST", path, b"once", date=http_date(clock.now))
    assert post(live, path, b"once", again).status_code == 200


def test_a_replay_refused_on_one_route_is_refused_on_the_v2_routes_too(fresh: Guarded) -> None:
    live, clock = fresh
    path = "/v2/models/shout/infer"
    headers = signed(TOKEN, "POST", path, INFER, date=http_date(clock.now))
    assert post(live, path, INFER, headers).status_code == 200
    clock.advance(2)
    assert post(live, path, INFER, headers).status_code == 401


def test_with_no_grace_even_a_same_second_repeat_is_refused() -> None:
    live, clock = _start(EasRules(replay_grace=0))
    try:
        path = "/api/predict/shout"
        headers = signed(TOKEN, "POST", path, b"x", date=http_date(clock.now))
        assert post(live, path, b"x", headers).status_code == 200
        assert post(live, path, b"x", headers).status_code == 401
    finally:
        live.stop()


def test_the_plain_and_bearer_token_are_not_subject_to_dates_or_replays(fresh: Guarded) -> None:
    live, _ = fresh
    for authorization in (TOKEN, f"Bearer {TOKEN}"):
        for _ in range(2):
            reply = post(live, "/api/predict/shout", b"x", {"Authorization": authorization})
            assert reply.status_code == 200


# The queue door: the signature covers neither the query nor anything the query selects


def test_a_signed_truncate_is_refused_because_the_query_is_not_signed(
    queue_server: Guarded,
) -> None:
    live, clock = queue_server
    path = SINK
    for i in range(3):
        assert post(live, path, b"r%d" % i, {"Authorization": TOKEN}).status_code == 200
    headers = signed(TOKEN, "DELETE", path, date=http_date(clock.now))
    refused = httpx.delete(
        live.url + path, params={"_trunc_": "true", "_index_": "3"}, headers=headers
    )
    assert refused.status_code == 401
    assert "query string" in refused.json()["error"]
    attrs = httpx.get(
        live.url + path, params={"_attrs_": "true"}, headers={"Authorization": f"Bearer {TOKEN}"}
    ).json()
    assert int(attrs["stream.length"]) >= 3


def test_a_signed_put_is_accepted_once_and_only_with_its_own_body(queue_server: Guarded) -> None:
    live, clock = queue_server
    clock.advance(2 * HOUR * 24)
    path = SINK
    headers = signed(TOKEN, "POST", path, b"signed put", date=http_date(clock.now))
    assert post(live, path, b"other body", headers).status_code == 401
    assert post(live, path, b"signed put", headers).status_code == 200
    clock.advance(2)
    assert post(live, path, b"signed put", headers).status_code == 401
    records = httpx.get(
        live.url + path,
        params={"_length_": "1000", "_timeout_": "0"},
        headers={"Authorization": TOKEN, "X-EAS-QueueService-Redis-Uid": "reader"},
    )
    assert records.status_code == 200
    datas = [frame.data for frame in decode_list(records.content)]
    assert datas.count(b"signed put") == 1 and b"other body" not in datas


# The published SDK, from other time zones than the server's


def run_sdk(python: str, live: LiveServer, tz: str) -> dict[str, Any]:
    env = {**os.environ, "TZ": tz}
    done = subprocess.run(
        [python, str(SCRIPT), f"127.0.0.1:{live.port}", "shout", "string", TOKEN],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=env,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture(scope="module")
def sdk_server() -> Iterator[LiveServer]:
    app = App([Shout()], token=TOKEN)  # the real clock: the SDK signs with it
    live = LiveServer(app).start()
    live.call(app.wait_loaded())
    yield live
    live.stop()


@pytest.mark.parametrize("tz", ["UTC", "Asia/Shanghai", "America/Los_Angeles", "Asia/Kolkata"])
def test_the_published_client_signing_local_time_works_from_any_zone(
    eas_sdk_python: str, sdk_server: LiveServer, tz: str
) -> None:
    assert run_sdk(eas_sdk_python, sdk_server, tz) == {"body": "HELLO SERVEKIT"}


def test_the_published_client_in_a_far_zone_is_refused_with_gmt_only_dates(
    eas_sdk_python: str,
) -> None:
    app = App([Shout()], token=TOKEN)
    app.http.guard = TokenGuard(TOKEN, EasRules(date_any_zone=False))
    live = LiveServer(app).start()
    try:
        live.call(app.wait_loaded())
        assert run_sdk(eas_sdk_python, live, "UTC") == {"body": "HELLO SERVEKIT"}
        refused = run_sdk(eas_sdk_python, live, "Asia/Shanghai")
        assert refused["code"] == 401 and "Date" in refused["error"]
    finally:
        live.stop()


def test_the_eas_settings_given_to_app_reach_its_token_guard(serve) -> None:
    class Echo(servekit.Model):
        name = "echo"
        eas_format = "string"

        def predict(self, batch: list[bytes]) -> list[bytes]:
            return batch

    strict = serve([Echo()], token=TOKEN, eas_date_any_zone=False, eas_date_skew=60)
    lenient = serve([Echo()], token=TOKEN)
    path = "/api/predict/echo"
    two_hours_off = http_date(time.time() + 2 * HOUR)  # local time labelled GMT, UTC+2
    for live, status in [(strict, 401), (lenient, 200)]:
        headers = signed(TOKEN, "POST", path, b"x", date=two_hours_off)
        reply = live.client().post(path, content=b"x", headers=headers)
        assert reply.status_code == status, reply.text
