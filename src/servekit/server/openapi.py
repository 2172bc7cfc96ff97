"""The API description: an OpenAPI 3 document built from an app's own route table, served at
``GET /openapi.json``, and ``GET /docs`` rendering it with the Swagger UI files the package
ships (``servekit/server/static``: no CDN, the page works offline).

Every route an :class:`~servekit.server.http_app.HttpApp` serves is described from
:data:`OPERATIONS` (keyed by method and route template); a route missing from it still appears,
marked ``x-undocumented`` (the tests refuse any). Both routes are public, like the health
routes: the document names the models served, which the public ``…/ready`` routes already
reveal. Routes behind a token carry the ``bearerAuth`` security requirement and a 401.
"""

from __future__ import annotations

import functools
import importlib.resources
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import TYPE_CHECKING

import orjson

from servekit import __version__
from servekit.errors import NotFound
from servekit.server.asgi import send_bytes
from servekit.server.routing import Request, Route

if TYPE_CHECKING:
    from servekit.server.http_app import HttpApp
from servekit.server.openapi_operations import OPERATIONS, VIRTEX_CATCH_ALL, VIRTEX_OPERATIONS
from servekit.server.openapi_schemas import (
    _ERRORS,
    DOCS_PATH,
    OPENAPI_PATH,
    SCHEMAS,
    Json,
    Operation,
    _json,
    _ref,
)


@dataclass(frozen=True)
class ApiInfo:
    """The document's title, and the values each path parameter can take (model names…)."""

    title: str = "servekit"
    values: Mapping[str, Sequence[str]] = field(default_factory=dict)


# ---------------------------------------------------------------------------- the document
_PARAM = re.compile(r"\{(\w+)(?::path)?\}")
_UNDOCUMENTED = Operation("Undocumented route", "undocumented", {200: {"description": "?"}})


def document(route_table: Iterable[Route], info: ApiInfo, *, secured: bool) -> Json:
    """The OpenAPI 3 document of ``route_table`` (WebSocket routes have no place in it)."""
    table = list(route_table)
    operations = OPERATIONS
    if any(route.template == VIRTEX_CATCH_ALL for route in table):
        operations = {**OPERATIONS, **VIRTEX_OPERATIONS}
    paths: dict[str, Json] = {}
    for route in table:
        if route.websocket:
            continue
        path = _PARAM.sub(r"{\1}", route.template)
        for method in sorted(route.methods - {"HEAD"}):
            item = paths.setdefault(path, {})
            found = operations.get((method, route.template))
            private = secured and not route.public
            item[method.lower()] = _operation(route, method, found, info, private)
    doc: Json = {
        "openapi": "3.0.3",
        "info": {
            "title": info.title,
            "version": __version__,
            "description": 'Errors answer `{"error": "…"}` with their status. Routes '
            "behind the token also take the raw token or an EAS signature in Authorization.",
        },
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }
    return doc


def _operation(
    route: Route, method: str, found: Operation | None, info: ApiInfo, secured: bool
) -> Json:
    op = found or _UNDOCUMENTED
    responses: Json = {str(status): response for status, response in op.responses.items()}
    errors = (*op.errors, 401) if secured else op.errors
    for status in errors:
        responses.setdefault(str(status), _json(_ref("Error"), _ERRORS[status]))
    responses["default"] = _json(_ref("Error"), "any other failure, e.g. 405 with Allow")
    out: Json = {
        "summary": op.summary,
        "tags": [op.tag],
        "operationId": _operation_id(method, route.template),
        "parameters": [*_path_parameters(route.template, info), *op.parameters],
        "responses": responses,
    }
    if op.description:
        out["description"] = op.description
    if op.body is not None:
        out["requestBody"] = op.body
    out["security"] = [{"bearerAuth": []}] if secured else []
    if found is None:
        out["x-undocumented"] = True
    return out


def _path_parameters(template: str, info: ApiInfo) -> list[Json]:
    parameters = []
    for match in _PARAM.finditer(template):
        name = match.group(1)
        schema: Json = {"type": "string", "minLength": 1}
        if info.values.get(name):
            schema["enum"] = list(info.values[name])
        parameter = {"name": name, "in": "path", "required": True, "schema": schema}
        if match.group(0).endswith(":path}"):
            parameter["description"] = "may contain /"
        parameters.append(parameter)
    return parameters


def _operation_id(method: str, template: str) -> str:
    words = re.sub(r"[^A-Za-z0-9]+", "_", _PARAM.sub(r"by_\1", template)).strip("_")
    return f"{method.lower()}_{words or 'root'}"


# ---------------------------------------------------------------------------- the routes
_ASSETS = {
    "swagger-ui-bundle.js": b"text/javascript; charset=utf-8",
    "swagger-ui.css": b"text/css; charset=utf-8",
    "LICENSE": b"text/plain; charset=utf-8",
    "NOTICE": b"text/plain; charset=utf-8",
    "swagger-ui-bundle.js.LICENSE.txt": b"text/plain; charset=utf-8",
}
_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} API</title>
<link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({{
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout"
}});
</script>
</body>
</html>
"""


@functools.cache
def asset(name: str) -> bytes:
    """A file of ``servekit/server/static`` (read once)."""
    return (importlib.resources.files("servekit.server") / "static" / name).read_bytes()


def routes(app: HttpApp) -> list[Route]:
    """``GET /openapi.json``, ``GET /docs`` and its files: public routes describing ``app``."""
    cache: dict[int, bytes] = {}

    async def openapi(request: Request) -> None:
        table = app.router.routes()
        body = cache.get(len(table))
        if body is None:
            secured = app.guard.token is not None
            body = cache[len(table)] = orjson.dumps(document(table, app.api, secured=secured))
        await send_bytes(request.send, 200, body)

    async def page(request: Request) -> None:
        html = _PAGE.format(title=escape(app.api.title)).encode()
        await send_bytes(request.send, 200, html, [(b"content-type", b"text/html; charset=utf-8")])

    async def static(request: Request) -> None:
        name = request.params["asset"]
        media = _ASSETS.get(name)
        if media is None:
            raise NotFound(f"no docs file {name!r} (files: {', '.join(sorted(_ASSETS))})")
        await send_bytes(request.send, 200, asset(name), [(b"content-type", media)])

    return [
        Route.http("GET", OPENAPI_PATH, openapi, public=True),
        Route.http("GET", DOCS_PATH, page, public=True),
        Route.http("GET", DOCS_PATH + "/{asset}", static, public=True),
    ]
