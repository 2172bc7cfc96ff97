"""mlrun-style bodies on the v2 routes: ``{"id": …, "inputs": [[…], […]]}`` (rows, not tensors).

Two doors, both through ``ModelRuntime.infer``:

- :func:`serve_mlrun`: every request to a V2ModelServer (``…/infer``, ``…/predict``,
  ``…/explain``, ``…/<op>``): the body goes to the server's hooks as it came (parsed JSON, or
  bytes), one batch item per request (see :mod:`servekit.serving.adapter`).
- :func:`infer_rows`: a plain ``servekit.Model`` answering a rows body. Used only after the
  v2 tensor parser refused the body, when :func:`rows_request` finds it unambiguous.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import numpy as np
import orjson

from servekit.errors import BadRequest, ModelNotReady, NotFound
from servekit.server.asgi import (
    OFF_LOOP_BYTES,
    Receive,
    Scope,
    Send,
    header,
    send_bytes,
    timeout_seconds,
    watch_disconnect,
)
from servekit.server.runtime import ModelRuntime, correlation_id
from servekit.serving.adapter import MODEL_OPS, Call, Event, MlrunModel
from servekit.serving.paths import get_in

_DUMP = orjson.OPT_SERIALIZE_NUMPY


_FIRST_INPUT = re.compile(rb'"inputs"\s*:\s*\[\s*(\S)')


def rows_request(body: bytes, scope: Scope) -> dict[str, Any] | None:
    """The body as a rows request, or None: a JSON object whose ``inputs`` is a non-empty list
    whose first element is not an object (v2 tensors are objects), without binary data."""
    if header(scope, b"inference-header-content-length") is not None:
        return None
    # look before parsing: a refused v2 body (inputs are objects) must not be parsed a second
    # time into Python objects (a malformed 60 MB tensor body would cost ~10x its size)
    first = _FIRST_INPUT.search(body)
    if first is None or first.group(1) == b"{":
        return None
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if type(doc) is not dict:
        return None
    inputs = doc.get("inputs")
    if type(inputs) is not list or not inputs or isinstance(inputs[0], dict):
        return None
    return doc


async def infer_rows(
    runtime: ModelRuntime, scope: Scope, receive: Receive, send: Send, doc: dict[str, Any]
) -> None:
    """A rows body to a plain model: each row one item (``batch_rows``), as the v2 path does."""
    model = runtime.model
    array = _rows_array(str(model.name), doc["inputs"], model.batch_rows)
    items: list[Any] = list(array) if model.batch_rows else [array]
    request_id = doc.get("id")
    if request_id is None:
        request_id = uuid.uuid4().hex
    results = await runtime.infer(
        items,
        request={"inputs": array},
        deadline=_deadline(runtime, scope),
        cancelled_by=watch_disconnect(scope, receive),
        door="v2",
        correlation_id=correlation_id(scope["headers"], request_id) if runtime.observing else None,
    )
    response: dict[str, Any] = {"id": request_id, "model_name": model.name}
    if model.version:
        response["model_version"] = model.version
    response["outputs"] = results if model.batch_rows else results[0]
    await send_bytes(send, 200, orjson.dumps(response, option=_DUMP, default=_jsonable))


def _rows_array(model: str, rows: list[Any], batch_rows: bool) -> Any:
    try:
        return np.asarray(rows)
    except ValueError:  # ragged rows: one array per row, batched only with equal shapes
        if not batch_rows:
            raise BadRequest(
                f"model '{model}' takes the whole request as one item, so its rows must have"
                " equal lengths"
            ) from None
        return [np.asarray(row) for row in rows]


async def serve_mlrun(
    runtime: ModelRuntime,
    op: str,
    scope: Scope | None,
    receive: Receive | None,
    send: Send,
    body: bytes,
) -> None:
    """One request to a V2ModelServer: ``op`` is infer, predict, explain or a custom op."""
    model = runtime.model
    assert isinstance(model, MlrunModel)
    server = model.server
    if op not in MODEL_OPS and op not in model.custom_ops:
        known = ", ".join(["infer", "predict", "explain", *sorted(model.custom_ops)])
        raise NotFound(f"model '{model.name}' has no operation '{op}' (POST: {known})")
    if not server.ready:
        raise ModelNotReady(f"model {server.name} is not ready yet")
    parsed = await _parse(body)
    request = parsed
    if server._input_path:
        try:
            request = get_in(parsed, server._input_path)
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise BadRequest(
                f"input_path {server._input_path!r} selects nothing in the request body: {exc!r}"
            ) from None
    request_id = request.get("id") if isinstance(request, dict) else None
    if request_id is None:
        request_id = uuid.uuid4().hex
    headers = scope["headers"] if scope is not None else []
    call = Call(op, parsed, request, request_id)
    if op not in MODEL_OPS:
        call.event = Event(parsed, "/" + op, "POST", _header_dict(headers), request_id)
    results = await runtime.infer(
        [call],
        request=parsed,
        deadline=None if scope is None else _deadline(runtime, scope),
        cancelled_by=None if receive is None else watch_disconnect(scope or {}, receive),
        door="mlrun",
        correlation_id=correlation_id(headers, request_id) if runtime.observing else None,
    )
    await send_bytes(send, 200, orjson.dumps(results[0], option=_DUMP, default=_jsonable))


async def _parse(body: bytes) -> Any:
    """The body as JSON (off the loop when large); not JSON: the bytes, as mlrun passes them."""
    if not body:
        return None
    try:
        if len(body) < OFF_LOOP_BYTES:
            return orjson.loads(body)
        return await asyncio.to_thread(orjson.loads, body)
    except orjson.JSONDecodeError:
        return body


def _header_dict(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in headers}


def _deadline(runtime: ModelRuntime, scope: Scope) -> float | None:
    seconds = timeout_seconds(scope)
    return None if seconds is None else runtime.now() + seconds


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")
