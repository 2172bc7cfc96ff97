"""Open Inference Protocol (KServe v2) REST messages, with Triton's binary tensor extension.

A request body is JSON, or — when the ``Inference-Header-Content-Length`` header is set — a
JSON header of that many bytes followed by the binary tensors of the inputs that carry
``parameters.binary_data_size``, in input order. Responses are built the same way.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from servekit.codecs._json_numbers import NumberArray, cut_number_arrays
from servekit.codecs.tensors import (
    V2_DATATYPES,
    decode_tensor,
    encode_tensor,
    numpy_dtype,
    v2_datatype,
)
from servekit.errors import BadRequest, ModelError

__all__ = [
    "InferRequest",
    "InputSignature",
    "RequestedOutput",
    "encode_infer_response",
    "error_body",
    "model_metadata",
    "parse_infer_request",
    "server_metadata",
    "timeout_parameter",
]

_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
#: A JSON document at least this large has its inputs' numeric ``data`` arrays of at least
#: ``MIN_CUT_BYTES`` read from the text a piece at a time (`servekit.codecs._json_numbers`).
LARGE_JSON_BYTES = 1 << 20
MIN_CUT_BYTES = 1 << 16


@dataclass
class RequestedOutput:
    """An entry of the request's ``outputs``: which output, and whether to send it binary."""

    name: str
    binary: bool = False
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class InferRequest:
    """A decoded inference request; ``inputs`` keeps the request's order."""

    id: str | None
    inputs: dict[str, np.ndarray]
    parameters: dict[str, Any] = field(default_factory=dict)
    outputs: list[RequestedOutput] = field(default_factory=list)
    binary_output: bool = False
    timeout_us: int | None = None

    def wants_binary(self, output_name: str) -> bool:
        """Whether ``output_name`` goes back as binary data (its own flag, else the default)."""
        for requested in self.outputs:
            if requested.name == output_name:
                return requested.binary
        return self.binary_output


def parse_infer_request(
    body: bytes | bytearray | memoryview, json_length: int | None = None
) -> InferRequest:
    """Parse and validate an infer request body; ``json_length`` is the binary extension's
    ``Inference-Header-Content-Length``.

    Binary tensors decoded from a ``bytearray`` body share its memory instead of copying.
    """
    view = memoryview(body)
    size = len(view)
    if json_length is None:
        header_end = size
    else:
        if type(json_length) is not int or json_length < 0:
            raise BadRequest(
                f"Inference-Header-Content-Length must be a non-negative integer, "
                f"got {json_length!r}"
            )
        if json_length > size:
            raise BadRequest(
                f"Inference-Header-Content-Length is {json_length} but the body has "
                f"only {size} bytes"
            )
        header_end = json_length
    if header_end >= LARGE_JSON_BYTES and isinstance(body, (bytes, bytearray)):
        doc = _load_large_json(body, header_end)
    else:
        doc = _load_json(body if json_length is None else view[:header_end])
    if not isinstance(doc, dict):
        raise BadRequest(f"request body must be a JSON object, got {_json_kind(doc)}")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequest(f"'id' must be a string, got {_json_kind(request_id)}")
    parameters = _object(doc.get("parameters"), "request 'parameters'")
    inputs = _inputs(doc, view, header_end, json_length is not None)
    binary_output = parameters.get("binary_data_output", False)
    if type(binary_output) is not bool:
        raise BadRequest("parameter 'binary_data_output' must be true or false")
    return InferRequest(
        id=request_id,
        inputs=inputs,
        parameters=parameters,
        outputs=_requested_outputs(doc.get("outputs"), binary_output),
        binary_output=binary_output,
        timeout_us=timeout_parameter(parameters),
    )


def _load_json(header: bytes | bytearray | memoryview) -> Any:
    try:
        return orjson.loads(header)
    except orjson.JSONDecodeError as exc:
        if str(exc).startswith("failed to allocate memory"):
            # orjson (3.13) refuses some valid documents that start indented and hold a long
            # array; the standard library's parser reads them (NaN and Infinity still refused)
            return _load_json_stdlib(bytes(header))
        raise BadRequest(f"malformed JSON in request body: {exc}") from None


def _load_json_stdlib(text: bytes) -> Any:
    def refuse(constant: str) -> Any:
        raise BadRequest(f"malformed JSON in request body: {constant} is not JSON")

    try:
        return json.loads(text, parse_constant=refuse)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8, too deep
        raise BadRequest(f"malformed JSON in request body: {exc}") from None


def _load_large_json(body: bytes | bytearray, end: int) -> Any:
    """``body[:end]`` parsed with each input's large numeric ``data`` left as text (a
    ``NumberArray``): orjson would build a Python object per number."""
    cut = cut_number_arrays(body, end, MIN_CUT_BYTES)
    if cut is None:
        return _load_json(memoryview(body)[:end])
    rest, arrays = cut
    doc = _load_json(rest)  # a cut array was a value: the rest is valid if the body was
    if not _place_arrays(doc, arrays):
        return _load_json(memoryview(body)[:end])  # a cut was not an input's data after all
    return doc


def _place_arrays(doc: Any, arrays: dict[str, NumberArray]) -> bool:
    """Put each cut array back as its input's ``data``; False if one is found elsewhere."""
    specs = doc.get("inputs") if isinstance(doc, dict) else None
    placed = 0
    for spec in specs if isinstance(specs, list) else ():
        data = spec.get("data") if isinstance(spec, dict) else None
        if isinstance(data, str) and data in arrays:
            spec["data"] = arrays[data]
            placed += 1
    return placed == len(arrays)


def _inputs(
    doc: dict[str, Any], view: memoryview, offset: int, has_binary: bool
) -> dict[str, np.ndarray]:
    specs = doc.get("inputs")
    if specs is None:
        raise BadRequest("request has no 'inputs'")
    if not isinstance(specs, list):
        raise BadRequest(f"'inputs' must be a list, got {_json_kind(specs)}")
    if not specs:
        raise BadRequest("'inputs' is empty; a request needs at least one input")
    start, end = offset, len(view)
    inputs: dict[str, np.ndarray] = {}
    for index, spec in enumerate(specs):
        if not isinstance(spec, dict):
            raise BadRequest(f"inputs[{index}] must be an object, got {_json_kind(spec)}")
        raw = None
        params = spec.get("parameters")
        size = params.get("binary_data_size") if isinstance(params, dict) else None
        if size is not None:
            label = _input_label(spec, index)
            if type(size) is not int or size < 0:
                raise BadRequest(f"{label}: binary_data_size must be a non-negative integer")
            if not has_binary:
                raise BadRequest(
                    f"{label}: binary_data_size is set but the request has no "
                    "Inference-Header-Content-Length header"
                )
            if offset + size > end:
                raise BadRequest(
                    f"{label}: binary_data_size {size} runs past the end of the body "
                    f"({end - offset} bytes left)"
                )
            raw = view[offset : offset + size]
            offset += size
        array = decode_tensor(spec, raw, consume=True)  # our own parse: free data as it goes
        name = spec["name"]
        if name in inputs:
            raise BadRequest(f"duplicate input name {name!r}")
        inputs[name] = array
    if offset != end:
        raise BadRequest(
            f"the inputs' binary_data_size values add up to {offset - start} bytes but "
            f"{end - start} bytes follow the JSON header"
        )
    return inputs


def _input_label(spec: dict[str, Any], index: int) -> str:
    name = spec.get("name")
    return f"input {name!r}" if isinstance(name, str) else f"inputs[{index}]"


def _requested_outputs(specs: Any, default_binary: bool) -> list[RequestedOutput]:
    if specs is None:
        return []
    if not isinstance(specs, list):
        raise BadRequest(f"'outputs' must be a list, got {_json_kind(specs)}")
    outputs: list[RequestedOutput] = []
    seen: set[str] = set()
    for index, spec in enumerate(specs):
        if not isinstance(spec, dict):
            raise BadRequest(f"outputs[{index}] must be an object, got {_json_kind(spec)}")
        name = spec.get("name")
        if not isinstance(name, str):
            raise BadRequest(f"outputs[{index}]: 'name' must be a string")
        if name in seen:
            raise BadRequest(f"duplicate requested output name {name!r}")
        seen.add(name)
        params = _object(spec.get("parameters"), f"output {name!r}: 'parameters'")
        binary = params.get("binary_data", default_binary)
        if type(binary) is not bool:
            raise BadRequest(f"output {name!r}: binary_data must be true or false")
        outputs.append(RequestedOutput(name, binary, params))
    return outputs


def timeout_parameter(parameters: dict[str, Any]) -> int | None:
    """The request's ``timeout`` parameter (microseconds), checked; None when absent."""
    timeout = parameters.get("timeout")
    if timeout is None:
        return None
    if type(timeout) is not int or timeout < 0:
        raise BadRequest(
            f"parameter 'timeout' must be a non-negative integer of microseconds, got {timeout!r}"
        )
    return timeout


def _object(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"{what} must be an object, got {_json_kind(value)}")
    return value


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return _JSON_KINDS.get(type(value), "a number")


_JSON_KINDS: dict[type, str] = {dict: "an object", list: "a list", str: "a string"}


def encode_infer_response(
    model_name: str,
    model_version: str | None,
    request_id: str | None,
    outputs: Mapping[str, np.ndarray],
    *,
    binary: bool | set[str] = False,
    parameters: dict[str, Any] | None = None,
) -> tuple[bytes, int | None]:
    """Encode an infer response; returns (body, JSON header length if any output is binary).

    ``binary`` is True for all outputs, or the set of output names to send as binary data.
    """
    doc: dict[str, Any] = {"model_name": model_name}
    if model_version is not None:
        doc["model_version"] = model_version
    if request_id is not None:
        doc["id"] = request_id
    if parameters:
        doc["parameters"] = parameters
    specs: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, array in outputs.items():
        as_binary = binary if isinstance(binary, bool) else name in binary
        spec, raw = encode_tensor(name, array, binary=as_binary, numpy_data=True)
        specs.append(spec)
        if raw is not None:
            chunks.append(raw)
    doc["outputs"] = specs
    try:
        header = orjson.dumps(doc, option=_JSON_OPTIONS)
    except TypeError as exc:
        raise ModelError(
            f"response for model {model_name!r} is not JSON-serialisable: {exc}"
        ) from exc
    if not chunks:
        return header, None
    return b"".join([header, *chunks]), len(header)


def error_body(message: str) -> bytes:
    """The v2 error body ``{"error": message}``."""
    return orjson.dumps({"error": message})


TensorDescription = Mapping[str, Any] | tuple[str, Any, Sequence[int]]


def model_metadata(
    name: str,
    versions: Sequence[str],
    platform: str,
    inputs: Iterable[TensorDescription],
    outputs: Iterable[TensorDescription],
) -> dict[str, Any]:
    """The v2 model metadata object.

    Each tensor is a ``{"name", "datatype", "shape"}`` mapping or a ``(name, datatype,
    shape)`` tuple; datatype is a v2 name or a numpy dtype, and -1 in shape means any size.
    """
    return {
        "name": name,
        "versions": [str(v) for v in versions],
        "platform": platform,
        "inputs": [_tensor_metadata(t) for t in inputs],
        "outputs": [_tensor_metadata(t) for t in outputs],
    }


def _tensor_metadata(tensor: TensorDescription) -> dict[str, Any]:
    if isinstance(tensor, Mapping):
        name, datatype, shape = tensor["name"], tensor["datatype"], tensor["shape"]
    else:
        name, datatype, shape = tensor
    if not (isinstance(datatype, str) and datatype in V2_DATATYPES):
        try:
            datatype = v2_datatype(datatype)
        except TypeError as exc:
            raise ModelError(f"tensor {name!r}: unknown datatype {datatype!r}") from exc
    dims = [int(d) for d in shape]
    if any(d < -1 for d in dims):
        raise ModelError(f"tensor {name!r}: shape {dims} has a dimension below -1")
    return {"name": name, "datatype": datatype, "shape": dims}


class InputSignature:
    """A model's declared inputs (name, datatype, shape with -1 for any size), checked once
    per request against the decoded inputs; a mismatch is a ``BadRequest`` naming the input."""

    def __init__(self, model_name: str, declared: Iterable[TensorDescription]) -> None:
        self.model_name = model_name
        self._specs: dict[str, tuple[str, np.dtype, list[int]]] = {}
        # per input: its dtype, rank and the (axis, size) pairs that are fixed (not -1)
        self._fast: dict[str, tuple[np.dtype, int, tuple[tuple[int, int], ...]]] = {}
        for tensor in declared:
            try:
                meta = _tensor_metadata(tensor)
            except (KeyError, TypeError, ValueError) as exc:
                raise ModelError(
                    f"model '{model_name}': each declared input needs a name, a datatype and "
                    f"a shape; got {tensor!r} ({type(exc).__name__}: {exc})"
                ) from None
            name, datatype, shape = meta["name"], meta["datatype"], meta["shape"]
            if name in self._specs:
                raise ModelError(f"model '{model_name}' declares input {name!r} twice")
            self._specs[name] = (datatype, numpy_dtype(datatype), shape)
            fixed = tuple((axis, size) for axis, size in enumerate(shape) if size != -1)
            self._fast[name] = (numpy_dtype(datatype), len(shape), fixed)
        self._names = self._specs.keys()

    def check(self, inputs: Mapping[str, np.ndarray]) -> None:
        """Raise ``BadRequest`` unless ``inputs`` are exactly the declared ones, each of its
        declared datatype and shape."""
        if inputs.keys() != self._names:
            raise self._names_error(inputs)
        fast = self._fast
        for name, array in inputs.items():
            dtype, rank, fixed = fast[name]
            got_dtype = array.dtype
            if got_dtype is not dtype and got_dtype != dtype:
                datatype = self._specs[name][0]
                raise BadRequest(
                    f"input {name!r}: datatype {v2_datatype(got_dtype)}, but model "
                    f"'{self.model_name}' expects {datatype}"
                )
            got = array.shape
            if len(got) != rank or any(got[axis] != size for axis, size in fixed):
                shape = self._specs[name][2]
                raise BadRequest(
                    f"input {name!r}: shape {list(got)} does not match the shape {shape} "
                    f"model '{self.model_name}' expects (-1: any size)"
                )

    def _names_error(self, inputs: Mapping[str, np.ndarray]) -> BadRequest:
        declared = ", ".join(self._specs)
        unknown = [n for n in inputs if n not in self._specs]
        if unknown:
            return BadRequest(
                f"model '{self.model_name}' has no input {unknown[0]!r} (inputs: {declared})"
            )
        missing = [n for n in self._specs if n not in inputs]
        return BadRequest(
            f"request lacks input {missing[0]!r} of model '{self.model_name}' (inputs: {declared})"
        )


def server_metadata(name: str, version: str, extensions: Iterable[str]) -> dict[str, Any]:
    """The v2 server metadata object."""
    return {"name": name, "version": version, "extensions": list(extensions)}


# ---------------------------------------------------------------------- client side
def encode_infer_request(
    inputs: Mapping[str, np.ndarray],
    *,
    binary: bool = False,
    outputs: Sequence[str] = (),
    binary_output: bool = False,
    request_id: str | None = None,
    parameters: dict[str, Any] | None = None,
) -> tuple[bytes, int | None]:
    """Encode an infer request; returns (body, JSON header length if any input is binary)."""
    doc: dict[str, Any] = {}
    if request_id is not None:
        doc["id"] = request_id
    params = dict(parameters or {})
    if binary_output:
        params["binary_data_output"] = True
    if params:
        doc["parameters"] = params
    specs: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, array in inputs.items():
        spec, raw = encode_tensor(name, np.asarray(array), binary=binary, numpy_data=True)
        specs.append(spec)
        if raw is not None:
            chunks.append(raw)
    doc["inputs"] = specs
    if outputs:
        doc["outputs"] = [
            {"name": name, "parameters": {"binary_data": binary_output}} for name in outputs
        ]
    header = orjson.dumps(doc, option=_JSON_OPTIONS)
    if not chunks:
        return header, None
    return b"".join([header, *chunks]), len(header)


@dataclass
class InferResponse:
    """A decoded infer response: outputs by name, in the server's order."""

    model_name: str
    model_version: str | None
    id: str | None
    outputs: dict[str, np.ndarray]
    parameters: dict[str, Any] = field(default_factory=dict)


def parse_infer_response(
    body: bytes | bytearray | memoryview, json_length: int | None = None
) -> InferResponse:
    """Parse an infer response (JSON or binary extension); ``BadRequest`` if malformed."""
    view = memoryview(body)
    header_end = len(view) if json_length is None else json_length
    if header_end > len(view):
        raise BadRequest(f"JSON header length {header_end} exceeds the body ({len(view)} bytes)")
    doc = _load_json(view[:header_end])
    if not isinstance(doc, dict):
        raise BadRequest(f"response body must be a JSON object, got {_json_kind(doc)}")
    outputs = _inputs({"inputs": doc.get("outputs")}, view, header_end, json_length is not None)
    return InferResponse(
        model_name=str(doc.get("model_name", "")),
        model_version=doc.get("model_version"),
        id=doc.get("id"),
        outputs=outputs,
        parameters=_object(doc.get("parameters"), "response 'parameters'"),
    )
