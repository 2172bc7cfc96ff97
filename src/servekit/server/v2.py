"""Open Inference Protocol (KServe v2) REST routes: health, metadata, infer, explain, ops."""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

import numpy as np
import orjson

from servekit.errors import BadRequest, ModelError, NotFound, OperationNotImplemented
from servekit.model import Model
from servekit.protocol.v2 import (
    InferRequest,
    InputSignature,
    encode_infer_response,
    model_metadata,
    parse_infer_request,
)
from servekit.server.asgi import (
    JSON,
    MICROSECONDS,
    OFF_LOOP_BYTES,
    Receive,
    Scope,
    Send,
    checked_timeout,
    header,
    send_bytes,
    timeout_seconds,
    watch_disconnect,
)
from servekit.server.runtime import ModelRuntime, correlation_id
from servekit.serving import rows
from servekit.serving.adapter import MlrunModel


def metadata(runtime: ModelRuntime, versions: list[str]) -> dict[str, Any]:
    model = runtime.model
    doc = model_metadata(str(model.name), versions, model.platform, model.inputs, model.outputs)
    doc["state"] = runtime.state
    if runtime.load_error:
        doc["error"] = runtime.load_error
    return doc


_signatures: weakref.WeakKeyDictionary[ModelRuntime, tuple[Any, InputSignature]] = (
    weakref.WeakKeyDictionary()
)


async def decode_request(runtime: ModelRuntime, scope: Scope, body: bytes) -> InferRequest:
    """Parse an infer/explain body (off the loop when large) and check the declared inputs."""
    json_length = _json_length(scope)
    if len(body) < OFF_LOOP_BYTES:
        request = parse_infer_request(body, json_length)
    else:
        request = await asyncio.to_thread(parse_infer_request, body, json_length)
    if runtime.model.inputs:
        input_signature(runtime).check(request.inputs)
    return request


def input_signature(runtime: ModelRuntime) -> InputSignature:
    """The model's declared inputs, compiled once (again if ``Model.inputs`` is replaced)."""
    declared = runtime.model.inputs
    entry = _signatures.get(runtime)
    if entry is None or entry[0] is not declared:
        entry = (declared, InputSignature(str(runtime.model.name), declared))
        _signatures[runtime] = entry
    return entry[1]


def split_items(runtime: ModelRuntime, inputs: dict[str, np.ndarray]) -> list[Any]:
    """Rows along the first axis become items: an array per row, or a dict per row.

    A request with no rows is a ``BadRequest``: there is nothing to run, and no output to
    build an empty result from.
    """
    if not runtime.model.batch_rows:
        return [next(iter(inputs.values())) if len(inputs) == 1 else inputs]
    arrays = list(inputs.values())
    if any(a.ndim == 0 for a in arrays):
        scalar = next(n for n, a in inputs.items() if a.ndim == 0)
        raise BadRequest(
            f"input '{scalar}' is a scalar; model '{runtime.model.name}' batches rows along the"
            " first axis, so every input needs a first dimension"
        )
    if len(arrays) == 1:
        if not len(arrays[0]):
            raise _no_rows(runtime, inputs)
        return list(arrays[0])
    rows = {name: a.shape[0] for name, a in inputs.items()}
    if len(set(rows.values())) != 1:
        raise BadRequest(f"inputs disagree on the number of rows (first dimension): {rows}")
    if not len(arrays[0]):
        raise _no_rows(runtime, inputs)
    names = list(inputs)
    return [dict(zip(names, row, strict=True)) for row in zip(*arrays, strict=True)]


def _no_rows(runtime: ModelRuntime, inputs: dict[str, np.ndarray]) -> BadRequest:
    name, array = next(iter(inputs.items()))
    return BadRequest(
        f"input '{name}' has no rows (shape {list(array.shape)}); model '{runtime.model.name}'"
        " runs each row along the first axis as one item, so send at least one row"
    )


def join_outputs(runtime: ModelRuntime, results: list[Any]) -> dict[str, np.ndarray]:
    """Stack per-item outputs back into tensors named after the model's outputs."""
    model = runtime.model
    if not model.batch_rows:
        result = results[0]
        if isinstance(result, dict):
            return {k: np.asarray(v) for k, v in result.items()}
        return {_default_output_name(model): np.asarray(result)}
    first = results[0]
    try:
        if isinstance(first, dict):
            return {key: np.stack([np.asarray(r[key]) for r in results]) for key in first}
        if len(results) == 1:  # one row (the common request): a view, not np.stack's copy
            return {_default_output_name(model): np.asarray(first)[np.newaxis]}
        return {_default_output_name(model): np.stack([np.asarray(r) for r in results])}
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(
            f"model '{model.name}' returned per-item outputs that cannot be stacked into one"
            f" tensor (every item must give the same names and shapes): {exc}"
        ) from exc


def _default_output_name(model: Any) -> str:
    outputs = model.outputs
    return str(outputs[0]["name"]) if outputs else "output-0"


def deadline_for(runtime: ModelRuntime, scope: Scope, request: InferRequest) -> float | None:
    """The caller's deadline on the runtime's clock: the header, else ``parameters.timeout``."""
    seconds = timeout_seconds(scope)
    if seconds is None and request.timeout_us is not None:
        seconds = checked_timeout(request.timeout_us, "parameters.timeout", MICROSECONDS)
    return None if seconds is None else runtime.now() + seconds


def select_outputs(
    runtime: ModelRuntime, request: InferRequest, outputs: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The outputs the request names (all when it names none); 400 for an unknown one."""
    if not request.outputs:
        return outputs
    selected = {}
    for wanted in request.outputs:
        if wanted.name not in outputs:
            known = ", ".join(outputs)
            raise BadRequest(
                f"model '{runtime.model.name}' has no output '{wanted.name}' (outputs: {known})"
            )
        selected[wanted.name] = outputs[wanted.name]
    return selected


async def infer(
    runtime: ModelRuntime, scope: Scope, receive: Receive, send: Send, body: bytes
) -> None:
    """``POST /v2/models/{name}[/versions/{v}]/infer``."""
    if isinstance(runtime.model, MlrunModel):  # mlrun's V2ModelServer: its hooks take the body
        return await rows.serve_mlrun(runtime, "infer", scope, receive, send, body)
    try:
        request = await decode_request(runtime, scope, body)
    except BadRequest:  # not v2 tensors: maybe mlrun-style rows (docs/mlrun.md)
        doc = rows.rows_request(body, scope)
        if doc is None:
            raise
        return await rows.infer_rows(runtime, scope, receive, send, doc)
    model = runtime.model
    items = split_items(runtime, request.inputs)
    results = await runtime.infer(
        items,
        request=request.inputs,
        deadline=deadline_for(runtime, scope, request),
        cancelled_by=watch_disconnect(scope, receive),
        door="v2",
        correlation_id=correlation_id(scope["headers"], request.id) if runtime.observing else None,
    )
    outputs = select_outputs(runtime, request, join_outputs(runtime, results))
    binary: bool | set[str] = request.binary_output
    if request.outputs:
        binary = {o.name for o in request.outputs if request.wants_binary(o.name)}
    body_out, json_length = encode_infer_response(
        str(model.name), model.version, request.id, outputs, binary=binary
    )
    if json_length is None:
        await send_bytes(send, 200, body_out)
    else:
        headers = [
            (b"content-type", b"application/octet-stream"),
            (b"inference-header-content-length", str(json_length).encode()),
        ]
        await send_bytes(send, 200, body_out, headers)


def _json_length(scope: Scope) -> int | None:
    raw = header(scope, b"inference-header-content-length")
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(
            f"header Inference-Header-Content-Length must be an integer, got {raw!r}"
        ) from None
    if value < 0:
        raise BadRequest("header Inference-Header-Content-Length must not be negative")
    return value


async def explain(runtime: ModelRuntime, scope: Scope, send: Send, body: bytes) -> None:
    """``POST …/explain``: decode like infer, call ``model.explain(items)`` in a thread.

    A model without ``explain`` (or whose ``explain`` raises ``NotImplementedError``) is 501.
    """
    model = runtime.model
    if isinstance(model, MlrunModel):
        return await rows.serve_mlrun(runtime, "explain", scope, None, send, body)
    if type(model).explain is Model.explain:
        raise OperationNotImplemented(
            f"model '{model.name}' has no explain(); define explain(batch) on the model to "
            "serve POST …/explain"
        )
    request = await decode_request(runtime, scope, body)
    items = split_items(runtime, request.inputs)
    try:
        results = await asyncio.to_thread(model.explain, items)
    except NotImplementedError as exc:
        raise OperationNotImplemented(str(exc) or f"model '{model.name}' has no explain()") from exc
    if len(results) != len(items):
        raise ModelError(f"explain returned {len(results)} results for {len(items)} items")
    await send_bytes(
        send,
        200,
        orjson.dumps(
            {"model_name": runtime.model.name, "id": request.id, "explanations": results},
            option=orjson.OPT_SERIALIZE_NUMPY,
            default=_jsonable,
        ),
    )


async def operation(
    runtime: ModelRuntime,
    op: str,
    send: Send,
    body: bytes,
    scope: Scope | None = None,
    receive: Receive | None = None,
) -> None:
    """``POST …/{op}``: JSON in, ``model.op_<op>(payload)`` in a thread, JSON out."""
    if isinstance(runtime.model, MlrunModel):  # …/predict and op_<name>(event) routes
        return await rows.serve_mlrun(runtime, op, scope, receive, send, body)
    handler = runtime.operations.get(op)
    if handler is None:
        known = ", ".join(["infer", "explain", *sorted(runtime.operations)])
        raise NotFound(f"model '{runtime.model.name}' has no operation '{op}' (POST: {known})")
    try:
        payload = orjson.loads(body) if body else None
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from exc
    result = await asyncio.to_thread(handler, payload)
    await send_bytes(
        send, 200, orjson.dumps(result, option=orjson.OPT_SERIALIZE_NUMPY, default=_jsonable)
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


__all__ = ["JSON", "explain", "infer", "metadata", "operation"]
