"""GET /openapi.json: every route the server answers is in the document, with its schemas,
and the token's routes carry the security requirement (health routes do not)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

import servekit
from jobs import pipelines
from servekit.handler import RequestHandler
from servekit.jobs.config import JobConfig
from servekit.jobs.http_door import jobs_http_app
from servekit.jobs.service import JobsService
from servekit.server.message_app import http_server
from servekit.server.openapi import ApiInfo, document
from servekit.server.routing import Route
from servekit.settings import JobSettings
from support.servers import LiveServer

Doc = dict[str, Any]


class Echo(servekit.Model):
    name = "echo"

    def predict(self, batch: list[Any]) -> list[Any]:
        return batch


class Doubler(RequestHandler):
    def process_request(self, data: list[Any]) -> list[Any]:
        return data

    def run_inference(self, model_input: list[Any]) -> list[Any]:
        return [2 * x for x in model_input]

    def process_response(self, output: list[Any]) -> list[Any]:
        return output


def _operations(routes: list[Route]) -> set[tuple[str, str]]:
    """(method, OpenAPI path) of every HTTP route; HEAD goes with GET, WebSockets have none."""
    found = set()
    for route in routes:
        if route.websocket:
            continue
        path = route.template.replace(":path}", "}")
        found |= {(m.lower(), path) for m in route.methods if m != "HEAD"}
    return found


def _documented(doc: Doc) -> set[tuple[str, str]]:
    return {(method, path) for path, item in doc["paths"].items() for method in item}


def _check_complete(doc: Doc, routes: list[Route]) -> None:
    assert _documented(doc) == _operations(routes)
    undocumented = [
        (method, path)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if op.get("x-undocumented")
    ]
    assert not undocumented, f"routes with no entry in servekit.server.openapi: {undocumented}"
    assert doc["openapi"].startswith("3.")


def _served(url: str, **kwargs: Any) -> Doc:
    response = httpx.get(url + "/openapi.json", timeout=10, **kwargs)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    return response.json()  # type: ignore[no-any-return]


def test_every_v2_eas_triton_and_discovery_route_is_documented(serve: Callable[..., Any]) -> None:
    live = serve([Echo(), Echo(name="echo:2")])
    doc = _served(live.url)
    _check_complete(doc, live.app.http.router.routes())
    paths = doc["paths"]
    for path in (
        "/v2/health/live",
        "/v2/models/{name}/versions/{version}/infer",
        "/api/predict/{name}",
        "/v2/models/{name}/config",
        "/v2/repository/index",
        "/api/v1/servicediscovery/upstreams/{service}",
        "/metrics",
        "/docs",
    ):
        assert path in paths
    infer = paths["/v2/models/{name}/infer"]["post"]
    assert {"400", "404", "413", "429", "503", "504"} <= infer["responses"].keys()
    error = infer["responses"]["429"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/Error"}
    names = {p["name"]: p["schema"].get("enum") for p in infer["parameters"] if p["in"] == "path"}
    assert names == {"name": ["echo"]}
    versioned = paths["/v2/models/{name}/versions/{version}/infer"]["post"]
    (version,) = [p for p in versioned["parameters"] if p["name"] == "version"]
    assert version["schema"]["enum"] == ["2"]


def test_tensor_schema_lists_every_v2_datatype(serve: Callable[..., Any]) -> None:
    schemas = _served(serve([Echo()]).url)["components"]["schemas"]
    datatypes = schemas["RequestInput"]["properties"]["datatype"]["enum"]
    assert set(datatypes) == {
        "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
        "FP16", "FP32", "FP64", "BYTES",
    }  # fmt: skip
    assert schemas["Error"]["required"] == ["error"]


def test_token_routes_need_bearer_and_health_routes_do_not(serve: Callable[..., Any]) -> None:
    live = serve([Echo()], token="s3cret")
    doc = _served(live.url)  # public, like health: no token sent
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    paths = doc["paths"]
    infer = paths["/v2/models/{name}/infer"]["post"]
    assert infer["security"] == [{"bearerAuth": []}]
    assert "401" in infer["responses"]
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/{name}/ready", "/docs"):
        assert paths[path]["get"]["security"] == []
        assert "401" not in paths[path]["get"]["responses"]
    assert paths["/metrics"]["get"]["security"] == [{"bearerAuth": []}]
    assert httpx.get(live.url + "/docs", timeout=10).status_code == 200
    assert httpx.get(live.url + "/v2", timeout=10).status_code == 401


def test_no_token_means_no_security_requirement(serve: Callable[..., Any]) -> None:
    doc = _served(serve([Echo()], public_metrics=True).url)
    assert all(op["security"] == [] for item in doc["paths"].values() for op in item.values())


def test_queue_door_routes_are_documented(serve: Callable[..., Any], tmp_path: Path) -> None:
    live = serve([Echo()], queue_url=f"sqlite://{tmp_path / 'queues'}")
    doc = _served(live.url)
    _check_complete(doc, live.app.http.router.routes())
    queue = doc["paths"]["/api/predict/{queue}"]
    assert set(queue) == {"get", "post", "put", "delete"}
    (param,) = [p for p in queue["get"]["parameters"] if p["in"] == "path"]
    assert param["schema"]["enum"] == ["echo", "echo/sink"]


def test_virtex_routes_are_documented() -> None:
    app = http_server(name="doubler", handler=Doubler())
    live = LiveServer(app).start()
    try:
        doc = _served(live.url)
        _check_complete(doc, app.app.router.routes())
        assert doc["paths"]["/"]["get"]["tags"] == ["virtex"]
        assert "Message" in str(doc["paths"]["/{path}"]["post"]["requestBody"])
        # the catch-all still answers every other path
        assert httpx.post(live.url + "/x", json={"data": [1]}, timeout=10).json() == {"data": [2]}
    finally:
        live.stop()


def test_jobs_routes_are_documented(tmp_path: Path) -> None:
    settings = JobSettings(work_dir=str(tmp_path / "work"), log_dir=str(tmp_path / "log"))
    config = JobConfig.resolve(settings, {}).replace(events_url=f"file://{tmp_path / 'e.jsonl'}")
    app = jobs_http_app(JobsService([pipelines.Trainer], config), token="t")
    table = app.router.routes()
    doc = document(table, app.api, secured=True)
    _check_complete(doc, table)
    assert doc["paths"]["/heart"]["post"]["security"] == []
    assert doc["paths"]["/jobs/{job_id}"]["delete"]["security"] == [{"bearerAuth": []}]


def test_a_route_with_no_entry_is_marked_undocumented() -> None:
    async def handler(request: Any) -> None:
        raise AssertionError("not called")

    table = [Route.http("GET", "/brand-new/{thing}", handler)]
    doc = document(table, ApiInfo(), secured=False)
    op = doc["paths"]["/brand-new/{thing}"]["get"]
    assert op["x-undocumented"] is True
    with pytest.raises(AssertionError, match="no entry"):
        _check_complete(doc, table)
