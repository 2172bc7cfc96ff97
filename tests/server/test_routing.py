"""One method table for every route: raw-path matching, 404 and 405 with ``Allow``."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import servekit
from servekit.errors import NotFound
from servekit.server.routing import MethodNotAllowed, Request, Route, Router


async def nothing(request: Request) -> None:
    return None


def scope(method: str, raw_path: bytes) -> dict[str, Any]:
    return {"type": "http", "method": method, "raw_path": raw_path, "path": raw_path.decode()}


ROUTER = Router(
    [
        Route.http("GET", "/v2/models/{name}/ready", nothing),
        Route.http("POST", "/v2/models/{name}/infer", nothing),
        Route.http("POST", "/v2/models/{name}/{op}", nothing),
        Route.http(("POST", "GET"), "/api/predict/{queue:path}", nothing),
    ]
)


def test_parameters_are_decoded_after_splitting_on_the_raw_path() -> None:
    route, params = ROUTER.resolve(scope("POST", b"/v2/models/my%20model/infer"))
    assert route.template == "/v2/models/{name}/infer" and params == {"name": "my model"}


def test_an_encoded_slash_stays_inside_its_segment() -> None:
    with pytest.raises(NotFound):
        ROUTER.resolve(scope("POST", b"/v2/models/doubler%2Finfer"))


def test_a_path_parameter_takes_the_rest_of_the_path() -> None:
    _, params = ROUTER.resolve(scope("GET", b"/api/predict/svc/sink?_attrs_=true"))
    assert params == {"queue": "svc/sink"}


def test_the_first_template_matching_the_path_decides_the_method() -> None:
    with pytest.raises(MethodNotAllowed) as refused:
        ROUTER.resolve(scope("POST", b"/v2/models/m/ready"))  # not an op named "ready"
    assert refused.value.status == 405
    assert refused.value.headers() == {"allow": "GET, HEAD"}


def test_get_routes_also_answer_head() -> None:
    route, _ = ROUTER.resolve(scope("HEAD", b"/v2/models/m/ready"))
    assert "GET" in route.methods


def test_a_method_routed_twice_on_one_template_is_refused() -> None:
    with pytest.raises(ValueError, match="routed twice"):
        Router([Route.http("GET", "/x", nothing), Route.http("GET", "/x", nothing)])


class Doubler(servekit.Model):
    name = "doubler"

    def predict(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        return [row * 2 for row in batch]


ROW = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [1], "data": [1.0]}]}


@pytest.fixture(scope="module")
def live(serve_shared: Any) -> Any:
    return serve_shared([Doubler()])


def test_encoded_slash_in_a_model_name_is_404_not_inference(live: Any) -> None:
    response = live.client().post("/v2/models/doubler%2Finfer", json=ROW)
    assert response.status_code == 404, response.text
    assert live.client().post("/v2/models/doubler/infer", json=ROW).status_code == 200


@pytest.mark.parametrize("path", ["/v2/health/live", "/v2/health/ready", "/metrics"])
@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_read_only_routes_refuse_other_methods_with_405(live: Any, path: str, method: str) -> None:
    response = live.client().request(method, path)
    assert response.status_code == 405, f"{method} {path} answered {response.status_code}"
    assert response.headers["allow"] == "GET, HEAD"
    assert f"method {method} is not allowed" in response.json()["error"]


def test_trace_is_refused_too(live: Any) -> None:
    request = b"TRACE /v2/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    assert live.raw_exchange(request).startswith((b"HTTP/1.1 405", b"HTTP/1.1 400"))


def test_an_unknown_operation_names_the_post_routes_the_model_has(live: Any) -> None:
    response = live.client().post("/v2/models/doubler/nosuch", json={})
    assert response.status_code == 404
    message = response.json()["error"]
    assert "has no operation 'nosuch'" in message and "(POST: infer, explain)" in message


def test_a_resolved_path_is_remembered_but_refusals_are_not() -> None:
    router = Router([Route.http("POST", "/v2/models/{name}/infer", nothing)])
    first = router.resolve(scope("POST", b"/v2/models/m/infer"))
    assert router.resolve(scope("POST", b"/v2/models/m/infer")) is first
    for _ in range(2):
        with pytest.raises(MethodNotAllowed):
            router.resolve(scope("GET", b"/v2/models/m/infer"))
    for n in range(3000):  # bounded: the cache is cleared when full, answers stay right
        _, params = router.resolve(scope("POST", b"/v2/models/m%d/infer" % n))
        assert params == {"name": f"m{n}"}
