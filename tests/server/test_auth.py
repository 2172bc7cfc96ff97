"""``App(models, token=...)``: every route but the health routes needs the token.

The matrix is built from the app's own route table, so a route added later is covered too.
"""

from __future__ import annotations

import socket
from typing import Any

import numpy as np
import pytest

import servekit
import servekit.server

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
def guarded_queue(serve_shared):
    return serve_shared([Echo()], token=TOKEN, queue=True, queue_url="sqlite://:memory:")


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
