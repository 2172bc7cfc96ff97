"""Every documented HTTP route: one :class:`~servekit.server.openapi_schemas.Operation` per
method and route template of every door (v2, Triton, EAS, the queue door, Virtex, jobs,
discovery, metrics, the API description itself). A route missing here still appears in the
document, marked ``x-undocumented``, and the tests refuse it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass

from servekit.server.openapi_schemas import (
    _ANY,
    _ANY_JSON_BODY,
    _ERRORS,
    _JOB_PARAMS,
    _JSON_LENGTH,
    _MESSAGE_BODY,
    _NAMED,
    _OCTETS_BODY,
    _RUNTIME,
    _STR,
    _TIMEOUT,
    _V2_BODY,
    DOCS_PATH,
    OPENAPI_PATH,
    Operation,
    _binary,
    _header,
    _json,
    _query,
    _ref,
    _text,
)

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
