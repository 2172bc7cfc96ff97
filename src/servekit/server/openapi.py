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
from typing import TYPE_CHECKING, Any

import orjson

from servekit import __version__
from servekit.codecs.tensors import V2_DATATYPES
from servekit.errors import NotFound
from servekit.server.asgi import send_bytes
from servekit.server.routing import Request, Route

if TYPE_CHECKING:
    from servekit.server.http_app import HttpApp

__all__ = ["OPERATIONS", "ApiInfo", "Operation", "document", "routes"]

Json = dict[str, Any]
OPENAPI_PATH = "/openapi.json"
DOCS_PATH = "/docs"


@dataclass(frozen=True)
class ApiInfo:
    """The document's title, and the values each path parameter can take (model names…)."""

    title: str = "servekit"
    values: Mapping[str, Sequence[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Operation:
    """One method on one route template: what it does, takes and answers.

    ``errors`` are the statuses answered with the error body ``{"error": "…"}``.
    """

    summary: str
    tag: str
    responses: Mapping[int, Json]
    body: Json | None = None
    parameters: tuple[Json, ...] = ()
    errors: tuple[int, ...] = ()
    description: str = ""


# ---------------------------------------------------------------------------- schemas
def _ref(name: str) -> Json:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(required: Sequence[str] = (), **properties: Json) -> Json:
    schema: Json = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


_STR: Json = {"type": "string"}
_INT: Json = {"type": "integer"}
_BOOL: Json = {"type": "boolean"}
_NUM: Json = {"type": "number"}
_ANY: Json = {}
_STRINGS: Json = {"type": "array", "items": _STR}
_ARRAY: Json = {"type": "array"}
_DATATYPE: Json = {"type": "string", "enum": list(V2_DATATYPES)}
_STATE: Json = {"type": "string", "enum": ["loading", "ready", "failed"]}

SCHEMAS: Json = {
    "Error": _object(["error"], error={**_STR, "description": "what was wrong, in words"}),
    "TensorMetadata": _object(
        ["name", "datatype", "shape"],
        name=_STR,
        datatype=_DATATYPE,
        shape={"type": "array", "items": {"type": "integer", "minimum": -1}},
    ),
    "RequestInput": _object(
        ["name", "shape", "datatype"],
        name=_STR,
        shape={"type": "array", "items": {"type": "integer", "minimum": 0}},
        datatype=_DATATYPE,
        parameters=_object(binary_data_size={"type": "integer", "minimum": 0}),
        data={**_ARRAY, "description": "row-major values, flat or nested (absent when binary)"},
    ),
    "RequestOutput": _object(["name"], name=_STR, parameters=_object(binary_data=_BOOL)),
    "InferRequest": _object(
        ["inputs"],
        id=_STR,
        parameters=_object(
            timeout={"type": "integer", "minimum": 0, "description": "microseconds"},
            binary_data_output=_BOOL,
        ),
        inputs={"type": "array", "minItems": 1, "items": _ref("RequestInput")},
        outputs={"type": "array", "items": _ref("RequestOutput")},
    ),
    "ResponseOutput": _object(
        ["name", "shape", "datatype"],
        name=_STR,
        shape={"type": "array", "items": {"type": "integer", "minimum": 0}},
        datatype=_DATATYPE,
        parameters={"type": "object"},
        data=_ARRAY,
    ),
    "InferResponse": _object(
        ["model_name", "outputs"],
        model_name=_STR,
        model_version=_STR,
        id=_STR,
        parameters={"type": "object"},
        outputs={"type": "array", "items": _ref("ResponseOutput")},
    ),
    "ExplainResponse": _object(
        ["model_name", "explanations"],
        model_name=_STR,
        id={**_STR, "nullable": True},
        explanations=_ARRAY,
    ),
    "ServerMetadata": _object(
        ["name", "version", "extensions"], name=_STR, version=_STR, extensions=_STRINGS
    ),
    "ModelMetadata": _object(
        ["name", "versions", "platform", "inputs", "outputs"],
        name=_STR,
        versions=_STRINGS,
        platform=_STR,
        inputs={"type": "array", "items": _ref("TensorMetadata")},
        outputs={"type": "array", "items": _ref("TensorMetadata")},
        state=_STATE,
        error=_STR,
    ),
    "Live": _object(["live"], live=_BOOL),
    "Ready": _object(["ready"], ready=_BOOL),
    "ModelReady": _object(["name", "ready"], name=_STR, ready=_BOOL),
    "ServerInfo": _object(
        ["name", "version", "pid", "models"],
        name=_STR,
        version=_STR,
        pid=_INT,
        models={"type": "object", "additionalProperties": _STATE},
    ),
    "ModelList": _object(
        ["models"],
        models={
            "type": "array",
            "items": _object(
                ["name", "version", "platform", "state"],
                name=_STR,
                version=_STR,
                platform=_STR,
                state=_STATE,
            ),
        },
    ),
    "ModelConfig": _object(
        ["name", "platform", "max_batch_size", "input", "output"],
        name=_STR,
        platform=_STR,
        backend=_STR,
        max_batch_size=_INT,
        input=_ARRAY,
        output=_ARRAY,
        dynamic_batching={"type": "object"},
        instance_group=_ARRAY,
    ),
    "ModelStatistics": _object(
        ["model_stats"],
        model_stats={
            "type": "array",
            "items": _object(
                ["name", "version", "inference_count", "execution_count"],
                name=_STR,
                version=_STR,
                inference_count=_INT,
                execution_count=_INT,
                inference_stats={"type": "object"},
                batch_stats=_ARRAY,
            ),
        },
    ),
    "RepositoryIndex": {
        "type": "array",
        "items": _object(
            ["name", "version", "state"],
            name=_STR,
            version=_STR,
            state={"type": "string", "enum": ["READY", "LOADING", "UNAVAILABLE"]},
            reason=_STR,
        ),
    },
    "Upstreams": _object(
        ["endpoints"],
        endpoints=_object(
            ["items"],
            items={
                "type": "array",
                "items": _object(["ip", "port", "weight"], ip=_STR, port=_INT, weight=_INT),
            },
        ),
    ),
    "Message": _object(["data"], data=_ARRAY),
    "JobAnswer": _object(["flag", "message"], flag=_INT, message=_STR, job_id=_STR, data=_ANY),
    "JobFailure": _object(["flag", "message", "error"], flag=_INT, message=_STR, error=_STR),
    "Job": _object(["job_id", "state"], job_id=_STR, kind=_STR, state=_STR, progress=_ANY),
    "Jobs": _object(["jobs"], jobs={"type": "array", "items": _ref("Job")}),
}


# ---------------------------------------------------------------------------- responses
def _json(schema: Json, description: str) -> Json:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _text(description: str) -> Json:
    return {"description": description, "content": {"text/plain": {"schema": _STR}}}


def _binary(media: str, description: str) -> Json:
    schema = {"type": "string", "format": "binary"}
    return {"description": description, "content": {media: {"schema": schema}}}


_ERRORS = {
    400: "the request is malformed or does not fit the model",
    401: "missing or wrong token",
    404: "no such model, version, operation, queue or job",
    413: "the body exceeds max_body_size (or more items than the queue can hold)",
    429: "the model's queue is full (Retry-After)",
    500: "the model raised or returned something unusable",
    501: "the model does not implement this operation",
    503: "the model is not ready, or the server is draining",
    504: "the deadline passed while queued",
}
_RUNTIME = (400, 404, 413, 429, 500, 503, 504)
_NAMED = (404,)


def _header(name: str, description: str, schema: Json = _STR) -> Json:
    return {"name": name, "in": "header", "schema": schema, "description": description}


def _query(name: str, description: str, schema: Json = _STR) -> Json:
    return {"name": name, "in": "query", "schema": schema, "description": description}


_TIMEOUT = _header("X-Request-Timeout-Ms", "deadline in milliseconds (a number >= 0, or inf)")
_JSON_LENGTH = _header(
    "Inference-Header-Content-Length",
    "binary tensor extension: length of the JSON header before the binary tensors",
    {"type": "integer", "minimum": 0},
)
_V2_BODY: Json = {
    "required": True,
    "content": {
        "application/json": {"schema": _ref("InferRequest")},
        "application/octet-stream": {
            "schema": {"type": "string", "format": "binary"},
            "description": "JSON header then binary tensors (Inference-Header-Content-Length)",
        },
    },
}
_ANY_JSON_BODY: Json = {"required": False, "content": {"application/json": {"schema": _ANY}}}
_OCTETS_BODY: Json = {
    "required": True,
    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
}
_MESSAGE_BODY: Json = {
    "required": True,
    "content": {"application/json": {"schema": _ref("Message")}},
}
_JOB_PARAMS: Json = {
    "required": False,
    "content": {"application/json": {"schema": {"type": "object"}}},
    "description": "the job's parameters (a JSON object, or a JSON string holding one); "
    "without a body, the query string",
}

OPERATIONS: dict[tuple[str, str], Operation] = {}


#: The Virtex message door's routes: its ``/`` is not the v2 app's ``GET /`` (server info).
VIRTEX_OPERATIONS: dict[tuple[str, str], Operation] = {}
VIRTEX_CATCH_ALL = "/{path:path}"


def _add(
    method: str,
    templates: str | Iterable[str],
    operation: Operation,
    table: dict[tuple[str, str], Operation] = OPERATIONS,
) -> None:
    for template in [templates] if isinstance(templates, str) else templates:
        table[(method, template)] = operation


_MODEL = ("/v2/models/{name}", "/v2/models/{name}/versions/{version}")


def _per_model(suffix: str) -> list[str]:
    return [base + suffix for base in _MODEL]


_add(
    "GET",
    "/v2/health/live",
    Operation("Liveness: the process answers", "health", {200: _json(_ref("Live"), "alive")}),
)
_add(
    "GET",
    "/v2/health/ready",
    Operation(
        "Readiness: every model is loaded",
        "health",
        {200: _json(_ref("Ready"), "ready"), 503: _json(_ref("Ready"), "not ready yet")},
    ),
)
_add(
    "GET",
    "/v2",
    Operation(
        "Server metadata", "v2", {200: _json(_ref("ServerMetadata"), "name, version, extensions")}
    ),
)
_add(
    "GET",
    "/metrics",
    Operation("Prometheus metrics", "metrics", {200: _text("Prometheus text exposition format")}),
)
_add(
    "GET",
    ("/", "/health"),
    Operation(
        "Server info: version, process id and each model's state",
        "health",
        {200: _json(_ref("ServerInfo"), "server info")},
    ),
)
_add(
    "GET",
    "/v2/models",
    Operation(
        "Models served (Triton extension)", "triton", {200: _json(_ref("ModelList"), "models")}
    ),
)
_add(
    "GET",
    "/v2/models/stats",
    Operation(
        "Statistics of every model (Triton extension)",
        "triton",
        {200: _json(_ref("ModelStatistics"), "statistics")},
    ),
)
_add(
    "POST",
    "/v2/repository/index",
    Operation(
        "Model repository index (Triton extension)",
        "triton",
        {200: _json(_ref("RepositoryIndex"), "every model version and its state")},
        body=_ANY_JSON_BODY,
        errors=(413,),
    ),
)
_add(
    "GET",
    _MODEL,
    Operation(
        "Model metadata",
        "v2",
        {200: _json(_ref("ModelMetadata"), "the model's tensors")},
        errors=_NAMED,
    ),
)
_add(
    "GET",
    _per_model("/ready"),
    Operation(
        "Model readiness",
        "health",
        {200: _json(_ref("ModelReady"), "ready"), 503: _json(_ref("ModelReady"), "not ready")},
        errors=_NAMED,
    ),
)
_add(
    "GET",
    _per_model("/config"),
    Operation(
        "Model configuration (Triton extension)",
        "triton",
        {200: _json(_ref("ModelConfig"), "configuration")},
        errors=_NAMED,
    ),
)
_add(
    "GET",
    _per_model("/stats"),
    Operation(
        "Model statistics (Triton extension)",
        "triton",
        {200: _json(_ref("ModelStatistics"), "statistics")},
        errors=_NAMED,
    ),
)
_add(
    "POST",
    _per_model("/infer"),
    Operation(
        "Inference (Open Inference Protocol v2)",
        "v2",
        {
            200: {
                **_json(_ref("InferResponse"), "the outputs"),
                "content": {
                    "application/json": {"schema": _ref("InferResponse")},
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                },
            }
        },
        body=_V2_BODY,
        parameters=(_TIMEOUT, _JSON_LENGTH),
        errors=_RUNTIME,
        description="Rows along the first axis are batched with other requests' rows.",
    ),
)
_add(
    "POST",
    _per_model("/explain"),
    Operation(
        "Explanations (the model's explain())",
        "v2",
        {200: _json(_ref("ExplainResponse"), "one explanation per item")},
        body=_V2_BODY,
        parameters=(_JSON_LENGTH,),
        errors=(400, 404, 413, 500, 501, 503),
    ),
)
_add(
    "POST",
    _per_model("/{op}"),
    Operation(
        "A custom operation: JSON in, the model's op_<op>(payload) out",
        "v2",
        {200: _json(_ANY, "what the operation returned")},
        body=_ANY_JSON_BODY,
        errors=(400, 404, 413, 500, 503),
    ),
)
_add(
    "POST",
    "/api/predict/{name}",
    Operation(
        "PAI-EAS predict: one item in the model's eas_format",
        "eas",
        {200: _binary("application/octet-stream", "the encoded result")},
        body=_OCTETS_BODY,
        parameters=(_TIMEOUT,),
        errors=_RUNTIME,
    ),
)
_add(
    "GET",
    "/api/v1/servicediscovery/upstreams/{service}",
    Operation(
        "Service discovery: the replicas serving a model (EAS DIRECT mode)",
        "discovery",
        {200: _json(_ref("Upstreams"), "replicas")},
        errors=(404, 503),
    ),
)

_QUEUE_HEADERS = (
    _header("X-EAS-QueueService-Redis-Uid", "consumer id"),
    _header("X-EAS-QueueService-Redis-Gid", "consumer group (default eas)"),
)
_INDEX = {"type": "integer", "minimum": 0}
_FLAG = {"type": "string", "enum": ["true", "false"]}
_QUEUE = "/api/predict/{queue:path}"
_add(
    "POST",
    _QUEUE,
    Operation(
        "Queue: put a record (a POST without queue headers or query to a model's input queue "
        "predicts at once, as the EAS predict route)",
        "queue",
        {
            200: {
                "description": "the record's index (text), or the prediction (octets)",
                "headers": {"X-Eas-Queueservice-Request-Id": {"schema": _STR}},
                "content": {
                    "text/plain": {"schema": _STR},
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                },
            }
        },
        body={
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                "application/vnd.google.protobuf": {
                    "schema": {"type": "string", "format": "binary"}
                },
            },
        },
        parameters=(_query("requestId", "the record's request id"), *_QUEUE_HEADERS),
        errors=(400, 404, 413, 429, 503),
        description="Other query parameters name=value become the record's tags.",
    ),
)
_add(
    "GET",
    _QUEUE,
    Operation(
        "Queue: attributes, a consumer's position, or records (WebSocket with _watch_=true "
        "pushes them)",
        "queue",
        {
            200: {
                "description": "attributes or position (JSON), records (DataFrameListProto)",
                "content": {
                    "application/json": {"schema": {"type": "object"}},
                    "application/vnd.google.protobuf": {
                        "schema": {"type": "string", "format": "binary"}
                    },
                },
            }
        },
        parameters=(
            _query("_attrs_", "answer the queue's attributes", _FLAG),
            _query("_search_", "answer the consumer's position of _index_", _FLAG),
            _query("_index_", "first index", _INDEX),
            _query("_length_", "how many records", {"type": "integer", "minimum": 1}),
            _query("_timeout_", "how long to wait for a record (e.g. 5s)"),
            _query("_auto_delete_", "delete what is read", _FLAG),
            _query("requestId", "the record with this request id"),
            *_QUEUE_HEADERS,
        ),
        errors=(400, 404, 503),
    ),
)
_add(
    "DELETE",
    _QUEUE,
    Operation(
        "Queue: truncate before _index_, or delete _indexes_",
        "queue",
        {200: _text("OK")},
        parameters=(
            _query("_trunc_", "truncate", _FLAG),
            _query("_index_", "index", _INDEX),
            _query("_indexes_", "comma-separated indexes"),
        ),
        errors=(400, 404, 503),
    ),
)
_add(
    "PUT",
    _QUEUE,
    Operation(
        "Queue: commit _indexes_ for the caller's group",
        "queue",
        {200: _text("OK")},
        parameters=(_query("_indexes_", "comma-separated indexes"), *_QUEUE_HEADERS),
        errors=(400, 404, 503),
    ),
)

for _template in ("/", VIRTEX_CATCH_ALL):
    _add(
        "POST",
        _template,
        Operation(
            "Virtex message: each element of data is one batch item",
            "virtex",
            {200: _json(_ref("Message"), "one result per element")},
            body=_MESSAGE_BODY,
            parameters=(_TIMEOUT,),
            errors=_RUNTIME,
        ),
        VIRTEX_OPERATIONS,
    )
    _add(
        "GET",
        _template,
        Operation(
            "Virtex health: whether the handler is ready",
            "virtex",
            {200: _json(_ref("Ready"), "ready"), 503: _json(_ref("Ready"), "not ready")},
        ),
        VIRTEX_OPERATIONS,
    )

_JOB_ERRORS = {
    s: _json(_ref("JobFailure"), _ERRORS[s]) for s in (400, 401, 404, 413, 429, 500, 503)
}
for _method in ("GET", "POST"):
    _add(
        _method,
        "/heart",
        Operation("Jobs: the service is online", "jobs", {200: _json(_ref("JobAnswer"), "online")}),
    )
    for _template, _summary in (
        ("/train/start", "Jobs: start a training job"),
        ("/predict/batch", "Jobs: start an offline evaluation job"),
        ("/predict/multiple", "Jobs: online inference"),
    ):
        _add(
            _method,
            _template,
            Operation(
                _summary,
                "jobs",
                {200: _json(_ref("JobAnswer"), "started / the result"), **_JOB_ERRORS},
                body=_JOB_PARAMS,
            ),
        )
_add(
    "GET",
    "/jobs",
    Operation(
        "Jobs: every job remembered", "jobs", {200: _json(_ref("Jobs"), "jobs"), **_JOB_ERRORS}
    ),
)
_add(
    "GET",
    "/jobs/{job_id}",
    Operation("Jobs: one job's state", "jobs", {200: _json(_ref("Job"), "the job"), **_JOB_ERRORS}),
)
_add(
    "DELETE",
    "/jobs/{job_id}",
    Operation(
        "Jobs: cancel a job",
        "jobs",
        {200: _json(_ref("Job"), "cancellation requested"), **_JOB_ERRORS},
    ),
)

_add(
    "GET",
    OPENAPI_PATH,
    Operation("This OpenAPI document", "docs", {200: _json({"type": "object"}, "OpenAPI 3")}),
)
_add(
    "GET",
    DOCS_PATH,
    Operation(
        "API docs page (Swagger UI, served from the package)",
        "docs",
        {200: {"description": "HTML page", "content": {"text/html": {"schema": _STR}}}},
    ),
)
_add(
    "GET",
    DOCS_PATH + "/{asset}",
    Operation(
        "A file of the docs page (Swagger UI script, style sheet, license)",
        "docs",
        {200: {"description": "the file", "content": {"*/*": {"schema": _STR}}}},
        errors=(404,),
    ),
)


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
