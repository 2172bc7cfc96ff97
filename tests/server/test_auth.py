"""``App(models, token=...)``: every route but liveness needs the token."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import servekit

TOKEN = "s3cret"
INFER = {"inputs": [{"name": "x", "datatype": "INT32", "shape": [1, 1], "data": [7]}]}


class Echo(servekit.Model):
    name = "echo"

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
    ("GET", "/v2/health/ready", None),
    ("GET", "/v2/models/echo", None),
    ("GET", "/v2/models/echo/ready", None),
    ("POST", "/v2/models/echo/infer", INFER),
    ("POST", "/v2/models/echo/ping", {}),
]


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


def test_liveness_stays_open_without_token(guarded):
    response = guarded.client().get("/v2/health/live")
    assert response.status_code == 200
    assert response.json() == {"live": True}
