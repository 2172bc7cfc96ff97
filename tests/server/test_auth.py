"""``App(models, token=...)``: every route of every door but the health routes needs the token.

The matrix is built from the app's own route table, so a route added later is covered too:
every HTTP route (v2, EAS, the queue door's), the queue door's WebSocket, and every TCP frame
type. On HTTP, an EAS signature opens a route only once, fresh, over its own body.
"""

from __future__ import annotations

import json
import socket
import struct
from typing import Any

import httpx
import numpy as np
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

import servekit
import servekit.server
from servekit.errors import Unauthorized, Unavailable
from servekit.server.auth import EasRules, ReplayCache, TokenGuard
from servekit.settings import InvalidSetting, ServerSettings
from support.eas_signing import Clock, http_date, signed

TOKEN = "s3cret"
INFER = {"inputs": [{"name": "x", "datatype": "INT32", "shape": [1, 1], "data": [7]}]}


class Echo(servekit.Model):
    name = "echo"
    version = "1"

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def predict(self, batch: list[np.ndarray]) -> list[Any]:
        self.calls += 1
        return batch

    def op_ping(self, payload: Any) -> str:
        return "pong"


@pytest.fixture(scope="module")
def guarded(serve_shared):
    return serve_shared([Echo()], token=TOKEN)


GUARDED_ROUTES = [
    ("GET", "/v2", None),
    ("GET", "/v2/models/echo", None),
    ("POST", "/v2/models/echo/infer", INFER),
    ("POST", "/v2/models/echo/ping", {}),
]
PUBLIC_ROUTES = [
    "/v2/health/live",
    "/v2/health/ready",
    "/v2/models/echo/ready",
    "/v2/models/echo/versions/1/ready",
]
PARAMS = {"name": "echo", "version": "1", "op": "ping", "queue": "echo", "path": "x"}


def concrete(template: str) -> str:
    for key, value in PARAMS.items():
        template = template.replace(f"{{{key}}}", value).replace(f"{{{key}:path}}", value)
    return template


def route_matrix(public: bool) -> list[tuple[str, str]]:
    app = servekit.server.App([Echo()], queue=True, queue_url="sqlite://:memory:")
    return sorted(
        {
            (method, concrete(route.template))
            for route in app.routes()
            for method in route.methods
            if route.public == public and method not in ("WEBSOCKET", "HEAD")
        }
    )


@pytest.mark.parametrize(("method", "path", "body"), GUARDED_ROUTES)
@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong", "Bearer s3cret-and-more", "Basic czNjcmV0"]
)
def test_missing_or_wrong_token_is_401(guarded, method, path, body, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    response = guarded.client().request(method, path, json=body, headers=headers)
    assert response.status_code == 401, f"{method} {path} answered {response.status_code}"
    assert "token" in response.json()["error"]


@pytest.mark.parametrize(("method", "path", "body"), GUARDED_ROUTES)
def test_bearer_token_opens_every_route(guarded, method, path, body):
    response = guarded.client().request(
        method, path, json=body, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert response.status_code == 200, response.text


def test_infer_refused_without_token_never_reaches_the_model(guarded):
    model = guarded.runtime("echo").model
    before = model.calls
    assert guarded.client().post("/v2/models/echo/infer", json=INFER).status_code == 401
    assert model.calls == before
    ok = guarded.client().post(
        "/v2/models/echo/infer", json=INFER, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert ok.json()["outputs"][0]["data"] == [7]
    assert model.calls == before + 1


@pytest.mark.parametrize("path", ["/metrics", "/"])
def test_token_guards_metrics_and_server_summary_too(guarded, path):
    # App's docstring: the token guards every route but liveness; these list model names
    # and states, so they are not exempt.
    response = guarded.client().get(path)
    assert response.status_code == 401, f"GET {path} answered {response.status_code}"
    authorized = guarded.client().get(path, headers={"Authorization": f"Bearer {TOKEN}"})
    assert authorized.status_code == 200


def test_plain_token_without_bearer_prefix_is_accepted(guarded):
    response = guarded.client().get("/v2", headers={"Authorization": TOKEN})
    assert response.status_code == 200


@pytest.mark.parametrize("path", PUBLIC_ROUTES)
def test_health_routes_answer_probes_without_a_token(guarded, path):
    response = guarded.client().get(path)
    assert response.status_code == 200, f"GET {path} answered {response.status_code}"


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def guarded_queue(serve_shared, clock):
    """Every door at once: v2, the queue door (HTTP and WebSocket), TCP; the guard on ``clock``."""
    live = serve_shared(
        [Echo()], token=TOKEN, queue=True, queue_url="sqlite://:memory:", tcp_port=0
    )
    live.app.http.guard = TokenGuard(TOKEN, clock=clock)
    return live


@pytest.mark.parametrize(("method", "path"), route_matrix(public=False))
def test_every_non_health_route_of_every_door_needs_the_token(guarded_queue, method, path):
    client = guarded_queue.client()
    response = client.request(method, path, content=b"{}")
    assert response.status_code == 401, f"{method} {path} answered {response.status_code}"
    assert "token" in response.json()["error"]
    authorized = client.request(
        method, path, content=b"{}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert authorized.status_code != 401, f"{method} {path} refused the right token"


@pytest.mark.parametrize(("method", "path"), route_matrix(public=True))
def test_every_public_route_is_a_health_route(guarded_queue, method, path):
    assert path in PUBLIC_ROUTES
    assert guarded_queue.client().request(method, path).status_code == 200


def test_metrics_can_be_made_public_by_a_setting(serve):
    live = serve([Echo()], token=TOKEN, public_metrics=True)
    assert live.client().get("/metrics").status_code == 200
    assert live.client().get("/v2").status_code == 401


@pytest.mark.parametrize("path", ["/api/predict/echo", "/v2/models/echo/infer"])
def test_token_is_checked_before_any_body_is_read(guarded, path):
    # headers announce 60 MB that are never sent: the 401 must come from the headers alone
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {60 << 20}\r\n"
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", guarded.port), timeout=5) as sock:
        sock.sendall(head + b"x" * 1024)
        reply = sock.recv(65536)
    assert reply.startswith(b"HTTP/1.1 401"), reply[:200]


# EAS signatures on every HTTP route: accepted once, fresh, over their own body


def _signed_request(live, method: str, path: str, body: bytes, date: str) -> httpx.Response:
    headers = signed(TOKEN, method, path, body, date=date)
    return live.client().request(method, path, content=body, headers=headers)


@pytest.mark.parametrize(("method", "path"), route_matrix(public=False))
def test_every_route_takes_a_fresh_eas_signature_once(guarded_queue, clock, method, path):
    body = b"{}" if method in ("POST", "PUT") else b""
    date = http_date(clock.now)
    first = _signed_request(guarded_queue, method, path, body, date)
    assert first.status_code != 401, f"{method} {path} refused a valid signature: {first.text}"
    clock.advance(2)
    replay = _signed_request(guarded_queue, method, path, body, date)
    assert replay.status_code == 401, f"{method} {path} took a replay: {replay.status_code}"
    assert "already used" in replay.json()["error"]


@pytest.mark.parametrize(("method", "path"), route_matrix(public=False))
def test_every_route_refuses_an_eas_signature_dated_1970(guarded_queue, method, path):
    date = "Thu, 01 Jan 1970 00:00:00 GMT"
    refused = _signed_request(guarded_queue, method, path, b"", date)
    assert refused.status_code == 401, f"{method} {path} answered {refused.status_code}"
    assert "Date" in refused.json()["error"]


BODY_ROUTES = [(m, p) for m, p in route_matrix(public=False) if m == "POST"]


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
def test_every_route_with_a_body_refuses_a_signature_over_another_body(
    guarded_queue, clock, method, path
):
    headers = signed(TOKEN, method, path, b"{}", date=http_date(clock.now))
    refused = guarded_queue.client().request(method, path, content=b'{"x": 1}', headers=headers)
    assert refused.status_code == 401, f"{method} {path} answered {refused.status_code}"
    assert "Content-MD5" in refused.json()["error"]


# The queue door's WebSocket


def ws_matrix() -> list[str]:
    app = servekit.server.App([Echo()], queue=True, queue_url="sqlite://:memory:")
    paths = {concrete(r.template) for r in app.routes() if "WEBSOCKET" in r.methods}
    return sorted(paths | {concrete(r.template) + "/sink" for r in app.routes() if r.websocket})


def _ws(live, path: str, headers: dict[str, str] | None = None):
    url = f"ws://127.0.0.1:{live.port}{path}?_watch_=true&_window_=1"
    return connect(url, additional_headers=headers or {}, open_timeout=5)


@pytest.mark.parametrize("path", ws_matrix())
@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "s3cre"])
def test_every_websocket_refuses_a_missing_or_wrong_token(guarded_queue, path, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    with pytest.raises(InvalidStatus) as refused:
        _ws(guarded_queue, path, headers)
    assert refused.value.response.status_code == 401


@pytest.mark.parametrize("path", ws_matrix())
@pytest.mark.parametrize("authorization", [TOKEN, f"Bearer {TOKEN}"])
def test_every_websocket_opens_with_the_token(guarded_queue, path, authorization):
    with _ws(guarded_queue, path, {"Authorization": authorization}) as ws:
        assert ws.protocol.state.name == "OPEN"


@pytest.mark.parametrize("path", ws_matrix())
def test_every_websocket_refuses_an_eas_signature_which_cannot_cover_its_query(
    guarded_queue, clock, path
):
    headers = signed(TOKEN, "GET", path, date=http_date(clock.now))
    with pytest.raises(InvalidStatus) as refused:
        _ws(guarded_queue, path, headers)
    assert refused.value.response.status_code == 401
    assert b"query string" in refused.value.response.body


# The TCP door: every frame type but the heartbeat


def _tcp(live, frame: dict[str, Any]) -> dict[str, Any]:
    port = live.app.tcp_port
    payload = json.dumps(frame).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(struct.pack(">I", len(payload)) + payload)
        head = sock.recv(4, socket.MSG_WAITALL)
        (length,) = struct.unpack(">I", head)
        answer: dict[str, Any] = json.loads(sock.recv(length, socket.MSG_WAITALL))
    return answer


TCP_FRAMES = {1: {"epochs": 1}, 2: [1], 3: [[7]]}


@pytest.mark.parametrize("req_type", sorted(TCP_FRAMES))
@pytest.mark.parametrize("token", [None, "wrong", TOKEN + "x", 123])
def test_every_tcp_frame_type_refuses_a_missing_or_wrong_token(guarded_queue, req_type, token):
    frame: dict[str, Any] = {"req_type": req_type, "request_number": 1}
    frame["data"] = TCP_FRAMES[req_type]
    if token is not None:
        frame["token"] = token
    answer = _tcp(guarded_queue, frame)
    assert (answer["flag"], answer["code"]) == (2, 401), answer
    assert "token" in answer["message"]


@pytest.mark.parametrize("req_type", sorted(TCP_FRAMES))
def test_every_tcp_frame_type_passes_the_guard_with_the_token(guarded_queue, req_type):
    frame = {"req_type": req_type, "request_number": 1, "data": TCP_FRAMES[req_type]}
    answer = _tcp(guarded_queue, {**frame, "token": TOKEN})
    assert answer.get("code") != 401, answer


def test_a_tcp_heartbeat_stays_open_like_the_health_routes(guarded_queue):
    assert _tcp(guarded_queue, {"req_type": 0, "request_number": 1})["flag"] == 1


def test_tcp_inference_with_the_token_is_served(guarded_queue):
    frame = {"req_type": 3, "request_number": 5, "data": [[7]], "token": TOKEN}
    answer = _tcp(guarded_queue, frame)
    assert (answer["flag"], answer["request_number"]) == (1, 5), answer


# The replay cache on its own: bounded, and never forgetting what it would still accept


def test_replay_cache_forgets_a_signature_once_its_date_would_be_refused_anyway():
    cache = ReplayCache(capacity=10, grace=1.0)
    cache.admit("a", expires=100.0, now=0.0)
    with pytest.raises(Unauthorized, match="already used"):
        cache.admit("a", expires=100.0, now=50.0)
    cache.admit("b", expires=200.0, now=101.0)
    assert len(cache) == 1  # "a" expired: its Date is outside the window from now on


def test_replay_cache_lets_a_repeat_through_within_the_grace_only():
    cache = ReplayCache(capacity=10, grace=1.0)
    cache.admit("a", expires=100.0, now=0.0)
    cache.admit("a", expires=100.0, now=0.9)
    with pytest.raises(Unauthorized):
        cache.admit("a", expires=100.0, now=1.0)


def test_a_full_replay_cache_refuses_what_it_can_no_longer_vouch_for():
    cache = ReplayCache(capacity=2, grace=0.0)
    cache.admit("a", expires=10.0, now=0.0)
    cache.admit("b", expires=20.0, now=0.0)
    cache.admit("c", expires=30.0, now=0.0)  # drops "a": nothing expiring by 10 is taken now
    assert len(cache) == 2
    with pytest.raises(Unavailable, match="SERVEKIT_EAS_REPLAY_CACHE"):
        cache.admit("a", expires=10.0, now=1.0)  # the forgotten one cannot come back
    with pytest.raises(Unavailable):
        cache.admit("d", expires=5.0, now=1.0)  # older than all it holds
    with pytest.raises(Unauthorized):
        cache.admit("b", expires=20.0, now=1.0)
    cache.admit("e", expires=40.0, now=1.0)  # a newer Date still gets in
    cache.admit("f", expires=50.0, now=25.0)  # "b" expired, "c" dropped: still 2 held
    assert len(cache) == 2


def test_eas_rules_come_from_the_settings_or_the_environment(monkeypatch):
    guard = TokenGuard.from_settings(
        ServerSettings(token=TOKEN, eas_date_skew=60, eas_date_any_zone=False, eas_replay_cache=5)
    )
    assert (guard.token, guard.rules) == (TOKEN, EasRules(60, False, 5, 1.0))
    monkeypatch.setenv("SERVEKIT_EAS_REPLAY_GRACE", "0")
    assert TokenGuard(TOKEN).rules.replay_grace == 0
    monkeypatch.setenv("SERVEKIT_EAS_DATE_SKEW", "-1")
    with pytest.raises(InvalidSetting, match="SERVEKIT_EAS_DATE_SKEW"):
        TokenGuard(TOKEN)
