"""The ``servekit.Model`` behind a ``V2ModelServer``: mlrun's hooks run in the batcher's thread.

One batch item is one request (a :class:`Call`). Per call, in the model thread:
``preprocess(request, op)`` → ``validate(request, op)``; then calls that may share a
``predict`` (the *merge key*, :func:`merge_key`) are merged: one ``predict({"inputs": all
rows})``, its outputs split back by each call's row count. Every other call runs alone, as
in mlrun. Each call's answer is its response after ``postprocess`` and ``result_path``.
"""

from __future__ import annotations

import os
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from servekit.errors import BadRequest, ModelError, OperationNotImplemented, ServekitError
from servekit.model import Model, batch_context
from servekit.serving.paths import update_in

if TYPE_CHECKING:
    from servekit.serving.v2_model_server import V2ModelServer

INFER_OPS = frozenset({"infer", "predict"})
MODEL_OPS = INFER_OPS | {"explain"}
_BATCH_SETTINGS = ("max_batch_size", "max_latency_ms", "idle_batch_size", "max_queue_size")
_Member = tuple[int, "Call", dict[str, Any]]


@dataclass
class Event:
    """What an ``op_<name>(event)`` method receives.

    ``body``: the request body, parsed JSON (or the raw bytes when it is not JSON);
    ``path``: ``"/<name>"`` (the part of the URL after the model, as mlrun's router passes it);
    ``method``: ``"POST"``; ``headers``: lower-cased names to values; ``id``: the body's
    ``"id"``, else one made for the request.
    """

    body: Any
    path: str
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=dict)
    id: Any = None


@dataclass
class Call:
    """One request to a V2ModelServer: its operation, body, request and id."""

    op: str
    body: Any  # the body as received (result_path writes into it)
    request: Any  # the body at input_path
    id: Any
    event: Event | None = None  # for op_<name> calls


def merge_key(op: str, request: Any) -> Hashable | None:
    """Requests with equal keys share one ``predict``; None: this one runs alone.

    A request merges when it is a predict/infer whose request (after preprocess/validate) is a
    dict holding only ``inputs`` (a non-empty list of rows) and maybe ``id``; the key is the
    first row's nested shape, so rows of different widths never meet in one call.
    """
    if op not in INFER_OPS or type(request) is not dict:
        return None
    if len(request) > 2 or (len(request) == 2 and "id" not in request):
        return None  # extra parameters: predict may read them, so no other request's rows
    inputs = request.get("inputs")
    if type(inputs) is not list or not inputs:
        return None
    shape = []
    row = inputs[0]
    while isinstance(row, (list, tuple)):
        shape.append(len(row))
        if not row:
            break
        row = row[0]
    return tuple(shape)


def split_outputs(model: str, outputs: Any, counts: list[int]) -> list[Any]:
    """``outputs`` of a merged predict cut back into one slice per request (its row count)."""
    total = sum(counts)
    if not isinstance(outputs, (list, tuple, np.ndarray)) or len(outputs) != total:
        got = f"{type(outputs).__name__}"
        if isinstance(outputs, (list, tuple, np.ndarray)):
            got += f" of length {len(outputs)}"
        raise ModelError(
            f"model '{model}' predict returned {got} for {len(counts)} merged requests"
            f" ({total} rows); with max_batch_size > 1 predict must return one output per row"
            " (a list or array), or serve it with max_batch_size=1"
        )
    parts, start = [], 0
    for count in counts:
        parts.append(outputs[start : start + count])
        start += count
    return parts


class MlrunModel(Model):
    """A ``servekit.Model`` that serves one :class:`V2ModelServer` through the batcher."""

    platform = "mlrun"

    def __init__(self, server: V2ModelServer, **batching: Any) -> None:
        full = f"{server.name}:{server.version}" if server.version else server.name
        super().__init__(full, **batching)
        self.server = server
        for key in (*_BATCH_SETTINGS, "instances"):
            if getattr(self, key) is None and getattr(server, key, None) is not None:
                setattr(self, key, getattr(server, key))
        if self.max_batch_size is None and "SERVEKIT_MAX_BATCH_SIZE" not in os.environ:
            self.max_batch_size = 1  # mlrun's behaviour: one request per predict
        #: custom routes: ``op_<name>`` methods of the server
        self.custom_ops = {
            attr[3:]: getattr(server, attr)
            for attr in dir(type(server))
            if attr.startswith("op_") and callable(getattr(server, attr))
        }

    def load(self) -> None:
        server = self.server
        if server.ready:
            return
        try:
            server.load()
        except Exception as exc:
            server.error = exc
            raise RuntimeError(f"failed to load model {server.name}, {exc}") from exc
        server.ready = True
        server.context.logger.info(f"model {server.name} was loaded")

    def run_batch(self, batch: list[Any]) -> list[Any]:
        """Prepare each call, merge those with equal keys, run the rest alone."""
        context = batch_context
        context.model, context.metrics, context.preprocess = self, {}, None
        results: list[Any] = [None] * len(batch)
        groups: dict[Hashable, list[_Member]] = {}
        for index, call in enumerate(batch):
            if not isinstance(call, Call):
                results[index] = BadRequest(
                    f"model '{self.name}' is an mlrun V2ModelServer: send its requests to"
                    f" POST /v2/models/{self.name}/infer"
                )
                continue
            if call.op not in MODEL_OPS:
                results[index] = self._custom(call)
                continue
            request = self._prepare(call)
            if isinstance(request, BaseException):
                results[index] = request
                continue
            key = merge_key(call.op, request)
            if key is None:
                results[index] = self._alone(call, request)
            else:
                groups.setdefault(key, []).append((index, call, request))
        for members in groups.values():
            if len(members) == 1:
                index, call, request = members[0]
                results[index] = self._alone(call, request)
            else:
                self._merged(members, results)
        return results

    def _prepare(self, call: Call) -> Any:
        """``preprocess`` then ``validate``; what they raise refuses this request (400)."""
        server = self.server
        try:
            request = server.preprocess(call.request, call.op)
            validated = server.validate(request, call.op)
        except ServekitError as exc:
            return exc
        except Exception as exc:  # mlrun's validate raises plain Exception: the request's fault
            return BadRequest(str(exc) or type(exc).__name__)
        return request if validated is None else validated

    def _alone(self, call: Call, request: Any) -> Any:
        server = self.server
        try:
            if call.op == "explain":
                try:
                    outputs = server.explain(request)
                except NotImplementedError:
                    raise OperationNotImplemented(
                        f"model '{self.name}' has no explain(); define explain(request)"
                    ) from None
            else:
                outputs = server.predict(request)
            return self._respond(call, outputs)
        except Exception as exc:  # this request's outcome
            return exc

    def _merged(self, members: list[_Member], results: list[Any]) -> None:
        counts = [len(request["inputs"]) for _, _, request in members]
        rows = [row for _, _, request in members for row in request["inputs"]]
        try:
            outputs = self.server.predict({"inputs": rows})
        except Exception:  # one request may be at fault: each runs alone, once
            for index, call, request in members:
                results[index] = self._alone(call, request)
            return
        try:
            parts = split_outputs(str(self.name), outputs, counts)
        except ModelError as exc:
            for index, _, _ in members:
                results[index] = exc
            return
        for (index, call, _), part in zip(members, parts, strict=True):
            try:
                results[index] = self._respond(call, part)
            except Exception as exc:  # postprocess failed for this request
                results[index] = exc

    def _respond(self, call: Call, outputs: Any) -> Any:
        server = self.server
        response: dict[str, Any] = {"id": call.id, "model_name": server.name, "outputs": outputs}
        if server.version:
            response["model_version"] = server.version
        return self._at_result_path(call, server.postprocess(response))

    def _custom(self, call: Call) -> Any:
        try:
            return self._at_result_path(call, self.custom_ops[call.op](call.event))
        except Exception as exc:
            return exc

    def _at_result_path(self, call: Call, response: Any) -> Any:
        path = self.server._result_path
        if not path or not call.body:
            return response
        try:
            return update_in(call.body, path, response)
        except TypeError as exc:
            raise BadRequest(str(exc)) from None
