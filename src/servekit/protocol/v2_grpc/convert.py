"""gRPC v2 messages ⇄ numpy arrays, through the same tensor codec as the REST routes.

A tensor's data is either one entry of ``raw_input_contents`` / ``raw_output_contents``
(little-endian, row-major; each BYTES element a 4-byte little-endian length then its bytes:
the binary tensor extension's layout, decoded by :func:`servekit.codecs.tensors.decode_tensor`)
or its typed ``contents`` field for the datatype. FP16 has no typed field and travels raw.
Answers always carry raw outputs, as Triton's do. Problems in what a client sent are
``BadRequest`` naming the tensor.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from servekit.codecs.tensors import V2_DATATYPES, decode_tensor, encode_tensor
from servekit.errors import BadRequest
from servekit.protocol.v2 import InferRequest, RequestedOutput, timeout_parameter
from servekit.protocol.v2_grpc.grpc_service_pb2 import (
    InferParameter,
    InferTensorContents,
    ModelInferRequest,
    ModelInferResponse,
)

__all__ = [
    "TYPED_FIELDS",
    "decode_tensors",
    "encode_tensors",
    "infer_request_from_message",
    "infer_request_message",
    "infer_response_message",
    "parameters_of",
    "set_parameters",
]

#: The ``InferTensorContents`` field that carries each datatype's typed data.
TYPED_FIELDS: dict[str, str] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
_CONTENT_FIELDS = sorted(set(TYPED_FIELDS.values()))


class _Tensor(Protocol):
    """An ``InferInputTensor`` or an ``InferOutputTensor``."""

    name: str
    datatype: str

    @property
    def shape(self) -> Sequence[int]: ...

    @property
    def contents(self) -> InferTensorContents: ...


def parameters_of(parameters: Mapping[str, InferParameter]) -> dict[str, Any]:
    """A parameters map as plain values (an unset ``InferParameter`` is None)."""
    values: dict[str, Any] = {}
    for key, parameter in parameters.items():
        choice = parameter.WhichOneof("parameter_choice")
        values[key] = None if choice is None else getattr(parameter, choice)
    return values


def set_parameters(target: Any, values: Mapping[str, Any]) -> None:
    """Fill a parameters map from plain values: bool, int, float or str."""
    for key, value in values.items():
        parameter = target[key]
        if isinstance(value, bool):
            parameter.bool_param = value
        elif isinstance(value, int):
            if value >= 2**63:
                parameter.uint64_param = value
            else:
                parameter.int64_param = value
        elif isinstance(value, float):
            parameter.double_param = value
        elif isinstance(value, str):
            parameter.string_param = value
        else:
            raise TypeError(
                f"parameter {key!r} is {type(value).__name__}; gRPC parameters are bool, int,"
                " float or str"
            )


def decode_tensors(
    tensors: Sequence[_Tensor], raw: Sequence[bytes], kind: str = "input"
) -> dict[str, np.ndarray]:
    """Tensors (with their raw contents, one per tensor or none) as arrays by name, in order."""
    if raw and len(raw) != len(tensors):
        raise BadRequest(
            f"raw_{kind}_contents has {len(raw)} entries for {len(tensors)} {kind}s: send one"
            f" per {kind}, in {kind} order, or none (typed contents)"
        )
    arrays: dict[str, np.ndarray] = {}
    for index, tensor in enumerate(tensors):
        name = tensor.name
        if name in arrays:
            raise BadRequest(f"duplicate {kind} name {name!r}")
        arrays[name] = _decode(tensor, raw[index] if raw else None, kind)
    return arrays


def _decode(tensor: _Tensor, raw: bytes | None, kind: str) -> np.ndarray:
    name, datatype = tensor.name, tensor.datatype
    spec: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(tensor.shape)}
    filled = [f for f in _CONTENT_FIELDS if getattr(tensor.contents, f)]
    if raw is not None:
        if filled:
            raise BadRequest(
                f"{kind} {name!r}: has both typed contents ({filled[0]}) and raw_{kind}_contents;"
                " send one"
            )
        return decode_tensor(spec, raw)
    field = TYPED_FIELDS.get(datatype)
    if field is None and datatype in V2_DATATYPES:
        raise BadRequest(
            f"{kind} {name!r}: {datatype} has no typed contents field; send it in"
            f" raw_{kind}_contents"
        )
    if field is not None and filled and filled != [field]:
        other = next(f for f in filled if f != field)
        raise BadRequest(
            f"{kind} {name!r}: datatype {datatype} takes its data in contents.{field}, got"
            f" contents.{other}"
        )
    spec["data"] = list(getattr(tensor.contents, field)) if field else []
    return decode_tensor(spec, consume=True)


def encode_tensors(tensors: Any, raw: Any, arrays: Mapping[str, np.ndarray]) -> None:
    """Append each array to ``tensors`` (a repeated tensor field) with its data in ``raw``."""
    for name, array in arrays.items():
        spec, data = encode_tensor(name, array, binary=True)
        tensors.add(name=name, datatype=spec["datatype"], shape=spec["shape"])
        raw.append(data)


def infer_request_from_message(message: ModelInferRequest) -> InferRequest:
    """A ``ModelInferRequest`` as the REST routes' ``InferRequest`` (inputs decoded)."""
    parameters = parameters_of(message.parameters)
    outputs: list[RequestedOutput] = []
    seen: set[str] = set()
    for wanted in message.outputs:
        if wanted.name in seen:
            raise BadRequest(f"duplicate requested output name {wanted.name!r}")
        seen.add(wanted.name)
        outputs.append(RequestedOutput(wanted.name, True, parameters_of(wanted.parameters)))
    if not message.inputs:
        raise BadRequest("request has no inputs; a request needs at least one input")
    return InferRequest(
        id=message.id or None,
        inputs=decode_tensors(message.inputs, message.raw_input_contents),
        parameters=parameters,
        outputs=outputs,
        binary_output=True,
        timeout_us=timeout_parameter(parameters),
    )


def infer_response_message(
    model_name: str,
    model_version: str | None,
    request_id: str | None,
    outputs: Mapping[str, np.ndarray],
) -> ModelInferResponse:
    """A ``ModelInferResponse`` with every output in ``raw_output_contents``."""
    response = ModelInferResponse(
        model_name=model_name, model_version=model_version or "", id=request_id or ""
    )
    encode_tensors(response.outputs, response.raw_output_contents, outputs)
    return response


def infer_request_message(
    model: str,
    inputs: Mapping[str, np.ndarray],
    *,
    version: str | None = None,
    outputs: Iterable[str] = (),
    request_id: str | None = None,
    parameters: Mapping[str, Any] | None = None,
) -> ModelInferRequest:
    """A ``ModelInferRequest`` with every input in ``raw_input_contents`` (client side)."""
    request = ModelInferRequest(model_name=model, model_version=version or "", id=request_id or "")
    set_parameters(request.parameters, parameters or {})
    encode_tensors(
        request.inputs,
        request.raw_input_contents,
        {name: np.asarray(array) for name, array in inputs.items()},
    )
    for name in outputs:
        request.outputs.add(name=name)
    return request
