"""The pieces of the API description: the ``Operation`` record and the JSON schemas,
responses and parameters the operations of :mod:`servekit.server.openapi_operations` are
built from (v2 tensors, the error body, headers)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from servekit.codecs.tensors import V2_DATATYPES

if TYPE_CHECKING:
    pass

Json = dict[str, Any]
OPENAPI_PATH = "/openapi.json"
DOCS_PATH = "/docs"


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
