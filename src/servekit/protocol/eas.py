"""PAI-EAS predict protocol bodies: TensorFlow and PyTorch protobufs ⇄ numpy, server-agnostic.

A TF ``PredictRequest`` carries named feeds, output names to fetch and a signature name; a
PyTorch ``PredictRequest`` carries feeds and output indices. Each tensor (``ArrayProto``) is
a dtype, a shape and its values flattened row-major into the field for that dtype:

=========================================  ==============  =====================
dtype                                      values field    numpy
=========================================  ==============  =====================
DT_FLOAT / DT_DOUBLE                       float_val /     float32 / float64
                                           double_val
DT_INT32, DT_INT16, DT_INT8, DT_UINT8,     int_val         int32, int16, int8,
DT_UINT16, DT_QINT8/16/32, DT_QUINT8/16                    uint8, uint16, …
DT_INT64                                   int64_val       int64
DT_BOOL (TF only)                          bool_val        bool
DT_STRING                                  string_val      object array of bytes
=========================================  ==============  =====================

Decoding reads what a client sent, so every problem is a ``BadRequest`` naming the feed.
Encoding writes what a model returned: an output EAS cannot carry is a ``ModelError``. Outputs
are encoded with the dtype the model produced, except float16 (sent as DT_FLOAT, no EAS field
holds halves), uint32/uint64 (sent as DT_INT64) and, for PyTorch, which has no bool field,
bool (sent as DT_UINT8).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from google.protobuf.message import DecodeError

from servekit.codecs.tensors import MAX_DIMS, MAX_ELEMENTS
from servekit.errors import BadRequest, ModelError
from servekit.protocol.eas_pb import tf_predict_pb2 as tf_pb
from servekit.protocol.eas_pb import torch_predict_pb2 as torch_pb

__all__ = [
    "array_from_proto",
    "array_to_proto",
    "decode_tf_request",
    "decode_torch_request",
    "encode_tf_response",
    "encode_torch_response",
    "values_field",
]

# dtype enum value -> (values field, numpy dtype); TF and PyTorch share the numbering.
_FIELDS: dict[int, tuple[str, np.dtype]] = {
    tf_pb.DT_FLOAT: ("float_val", np.dtype(np.float32)),
    tf_pb.DT_DOUBLE: ("double_val", np.dtype(np.float64)),
    tf_pb.DT_INT32: ("int_val", np.dtype(np.int32)),
    tf_pb.DT_UINT8: ("int_val", np.dtype(np.uint8)),
    tf_pb.DT_INT16: ("int_val", np.dtype(np.int16)),
    tf_pb.DT_INT8: ("int_val", np.dtype(np.int8)),
    tf_pb.DT_UINT16: ("int_val", np.dtype(np.uint16)),
    tf_pb.DT_QINT8: ("int_val", np.dtype(np.int8)),
    tf_pb.DT_QUINT8: ("int_val", np.dtype(np.uint8)),
    tf_pb.DT_QINT16: ("int_val", np.dtype(np.int16)),
    tf_pb.DT_QUINT16: ("int_val", np.dtype(np.uint16)),
    tf_pb.DT_QINT32: ("int_val", np.dtype(np.int32)),
    tf_pb.DT_INT64: ("int64_val", np.dtype(np.int64)),
    tf_pb.DT_BOOL: ("bool_val", np.dtype(np.bool_)),
    tf_pb.DT_STRING: ("string_val", np.dtype(object)),
}
# numpy (kind, itemsize) -> dtype enum value for outputs.
_ENUMS: dict[tuple[str, int], int] = {
    ("f", 2): tf_pb.DT_FLOAT,
    ("f", 4): tf_pb.DT_FLOAT,
    ("f", 8): tf_pb.DT_DOUBLE,
    ("i", 1): tf_pb.DT_INT8,
    ("i", 2): tf_pb.DT_INT16,
    ("i", 4): tf_pb.DT_INT32,
    ("i", 8): tf_pb.DT_INT64,
    ("u", 1): tf_pb.DT_UINT8,
    ("u", 2): tf_pb.DT_UINT16,
    ("u", 4): tf_pb.DT_INT64,
    ("u", 8): tf_pb.DT_INT64,
    ("b", 1): tf_pb.DT_BOOL,
}


def decode_tf_request(body: bytes) -> tuple[dict[str, np.ndarray], list[str], str]:
    """Parse a TF ``PredictRequest`` into ``(feeds, fetches, signature_name)``."""
    request = _parse(tf_pb.PredictRequest(), body, "TensorFlow PredictRequest")
    if not request.inputs:
        raise BadRequest("TensorFlow PredictRequest has no inputs: call add_feed at least once")
    feeds = {name: array_from_proto(p, f"feed {name!r}") for name, p in request.inputs.items()}
    return feeds, list(request.output_filter), request.signature_name


def encode_tf_response(outputs: Mapping[str, Any], fetches: Sequence[str] = ()) -> bytes:
    """Build a TF ``PredictResponse`` from named outputs, keeping only ``fetches`` if given."""
    if not isinstance(outputs, Mapping):
        raise ModelError(
            "a TensorFlow-protocol model must return a dict of outputs, "
            f"not {type(outputs).__name__}"
        )
    names = list(fetches) if fetches else list(outputs)
    missing = [n for n in names if n not in outputs]
    if missing:
        raise BadRequest(
            f"fetch {missing[0]!r} is not an output of this model; outputs: {sorted(outputs)}"
        )
    response = tf_pb.PredictResponse()
    for name in names:
        array_to_proto(outputs[name], response.outputs[name], f"output {name!r}", bool_ok=True)
    return response.SerializeToString()


def decode_torch_request(body: bytes) -> tuple[list[np.ndarray], list[int]]:
    """Parse a PyTorch ``PredictRequest`` into ``(feeds by index, output_filter)``."""
    request = _parse(torch_pb.PredictRequest(), body, "PyTorch PredictRequest")
    if request.map_inputs:
        raise BadRequest(
            "PyTorch PredictRequest: named feeds (add_feed_map) are not supported; "
            "use add_feed by index"
        )
    if not request.inputs:
        raise BadRequest("PyTorch PredictRequest has no inputs: call add_feed at least once")
    feeds = [array_from_proto(proto, f"feed {i}") for i, proto in enumerate(request.inputs)]
    return feeds, list(request.output_filter)


def encode_torch_response(outputs: Iterable[Any], output_filter: Sequence[int] = ()) -> bytes:
    """Build a PyTorch ``PredictResponse`` from outputs by index, keeping ``output_filter``."""
    if isinstance(outputs, (Mapping, str, bytes)) or not isinstance(outputs, Iterable):
        raise ModelError(
            f"a PyTorch-protocol model must return a list of outputs, not {type(outputs).__name__}"
        )
    values = list(outputs)
    indices = list(output_filter) if output_filter else range(len(values))
    response = torch_pb.PredictResponse()
    for i in indices:
        if not 0 <= i < len(values):
            raise BadRequest(
                f"output_filter index {i} is out of range: the model has {len(values)} outputs"
            )
        array_to_proto(values[i], response.outputs.add(), f"output {i}", bool_ok=False)
    return response.SerializeToString()


def array_from_proto(proto: Any, what: str = "tensor") -> np.ndarray:
    """An ``ArrayProto`` (TF or PyTorch) as a numpy array of its shape and dtype."""
    entry = _FIELDS.get(proto.dtype)
    if entry is None or not _has_field(proto, entry[0]):
        raise BadRequest(f"{what}: unsupported dtype {_dtype_name(proto)}")
    field, dtype = entry
    shape = tuple(proto.array_shape.dim)
    _check_shape(shape, what)
    values = getattr(proto, field)
    if len(values) != math.prod(shape):
        raise BadRequest(
            f"{what}: shape {list(shape)} needs {math.prod(shape)} values, got {len(values)} "
            f"in {field}"
        )
    if dtype.kind == "O":
        array = np.empty(len(values), dtype=object)
        array[:] = list(values)
    elif field == "int_val" and dtype.itemsize < 4:
        array = _narrow(np.array(values, dtype=np.int32), dtype, what)
    else:
        array = np.array(values, dtype=dtype)
    return array.reshape(shape)


def _check_shape(shape: tuple[int, ...], what: str) -> None:
    if len(shape) > MAX_DIMS:
        raise BadRequest(
            f"{what}: shape has {len(shape)} dimensions; at most {MAX_DIMS} are supported"
        )
    if any(d < 0 for d in shape):
        raise BadRequest(f"{what}: shape {list(shape)} has a negative dimension")
    if math.prod(d for d in shape if d) >= MAX_ELEMENTS:
        raise BadRequest(
            f"{what}: shape {list(shape)} is too large for any array "
            "(the product of its non-zero dimensions must be below 2**60)"
        )


def array_to_proto(value: Any, proto: Any, what: str = "tensor", *, bool_ok: bool = True) -> Any:
    """Fill an ``ArrayProto`` with an array's dtype, shape and values; returns ``proto``."""
    array = np.asarray(value)
    kind = array.dtype.kind
    proto.array_shape.dim.extend(array.shape)
    if kind in "OUS":
        proto.dtype = tf_pb.DT_STRING
        proto.string_val.extend(_as_bytes(x, what) for x in array.ravel().tolist())
        return proto
    enum = _ENUMS.get((kind, array.dtype.itemsize))
    if enum is None:
        raise ModelError(f"{what}: dtype {array.dtype} cannot be sent over the EAS protocol")
    if enum == tf_pb.DT_BOOL and not bool_ok:
        enum, array = tf_pb.DT_UINT8, array.astype(np.uint8)
    if kind == "u" and array.dtype.itemsize == 8 and array.size and array.max() > 2**63 - 1:
        raise ModelError(f"{what}: uint64 value {array.max()} does not fit DT_INT64")
    proto.dtype = enum
    field = _FIELDS[enum][0]
    getattr(proto, field).extend(array.ravel().tolist())
    return proto


def values_field(dtype: int) -> str:
    """The ``ArrayProto`` field holding the values of an EAS dtype (``int_val`` for DT_INT8)."""
    try:
        return _FIELDS[dtype][0]
    except KeyError:
        raise ValueError(f"dtype {dtype} has no values field in the EAS protocol") from None


def _parse(message: Any, body: bytes, what: str) -> Any:
    try:
        message.ParseFromString(body)
    except DecodeError as exc:
        raise BadRequest(f"body is not a valid {what} protobuf: {exc}") from None
    return message


def _narrow(wide: np.ndarray, dtype: np.dtype, what: str) -> np.ndarray:
    info = np.iinfo(dtype)
    if wide.size and (wide.min() < info.min or wide.max() > info.max):
        raise BadRequest(f"{what}: value out of range for {dtype} [{info.min}, {info.max}]")
    return wide.astype(dtype)


def _has_field(proto: Any, field: str) -> bool:
    return field in proto.DESCRIPTOR.fields_by_name


def _dtype_name(proto: Any) -> str:
    enum = proto.DESCRIPTOR.fields_by_name["dtype"].enum_type
    value = enum.values_by_number.get(proto.dtype)
    return value.name if value is not None else str(proto.dtype)


def _as_bytes(item: Any, what: str) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode("utf-8")
    raise ModelError(f"{what}: string outputs must hold str or bytes, found {type(item).__name__}")
