"""PAI-EAS Blade bodies (``BladeRequest``, ``blade_tf_request.TFRequest``) ⇄ numpy.

A Blade ``Request`` carries named feeds and the outputs to fetch; each ``Array`` has a name
(``name_in_dl_model``, else ``blade_blob_name``), a batch size, a shape and its values in one
of four fields. There is no dtype field: the field that holds the values is the dtype.

==============  =====================  ===========
values field    DataType               numpy
==============  =====================  ===========
float_val       DT_FLOAT               float32
int_val         DT_INT32               int32
int64_val       DT_INT64               int64
string_val      DT_STRING              bytes (object array)
==============  =====================  ===========

The model gets ``{name: array}`` (``batchsize`` is not checked against the shape: the SDK's
``blade_tf_request`` derives it from the shape). A fetch's ``data_type`` converts the output;
``DT_UNKNOWN`` (what ``blade_tf_request`` sends) keeps the model's dtype where a field holds
it: floats as ``float_val`` (float64 narrowed: Blade has no double field), integers up to 32
bits and bools as ``int_val``, 64-bit and uint32 as ``int64_val``, text as ``string_val``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from google.protobuf.message import DecodeError

from servekit.errors import BadRequest, ModelError
from servekit.protocol.eas import _as_bytes, _check_shape
from servekit.protocol.eas_pb import blade_predict_pb2 as blade_pb

__all__ = ["decode_blade_request", "encode_blade_response"]

Fetch = tuple[str, int]  # (output name, DataType)

_FIELDS: dict[str, np.dtype] = {
    "float_val": np.dtype(np.float32),
    "int_val": np.dtype(np.int32),
    "int64_val": np.dtype(np.int64),
    "string_val": np.dtype(object),
}
_BY_TYPE: dict[int, str] = {
    blade_pb.DT_FLOAT: "float_val",
    blade_pb.DT_INT32: "int_val",
    blade_pb.DT_INT64: "int64_val",
    blade_pb.DT_STRING: "string_val",
}


def decode_blade_request(body: bytes) -> tuple[dict[str, np.ndarray], list[Fetch]]:
    """Parse a Blade ``Request`` into ``(feeds by name, [(fetch name, DataType), ...])``."""
    request = blade_pb.Request()
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        raise BadRequest(f"body is not a valid Blade Request protobuf: {exc}") from None
    if not request.inputs:
        raise BadRequest("Blade Request has no inputs: call add_feed at least once")
    feeds: dict[str, np.ndarray] = {}
    for i, proto in enumerate(request.inputs):
        name = _name(proto, f"input {i}")
        if name in feeds:
            raise BadRequest(f"Blade Request: feed {name!r} is given twice")
        feeds[name] = _array(proto, f"feed {name!r}")
    fetches = [
        (_name(info, f"output_info {i}"), int(info.data_type))
        for i, info in enumerate(request.output_info)
    ]
    return feeds, fetches


def encode_blade_response(outputs: Mapping[str, Any], fetches: Sequence[Fetch] = ()) -> bytes:
    """Build a Blade ``Response`` from named outputs: the fetched ones (all if none)."""
    if not isinstance(outputs, Mapping):
        raise ModelError(
            f"a Blade-protocol model must return a dict of outputs, not {type(outputs).__name__}"
        )
    wanted = list(fetches) or [(name, blade_pb.DT_UNKNOWN) for name in outputs]
    response = blade_pb.Response()
    for name, data_type in wanted:
        if name not in outputs:
            raise BadRequest(
                f"fetch {name!r} is not an output of this model; outputs: {sorted(outputs)}"
            )
        _fill(response.outputs.add(), name, outputs[name], data_type)
    return response.SerializeToString()


def _name(proto: Any, what: str) -> str:
    name = str(proto.name_in_dl_model or proto.blade_blob_name)
    if not name:
        raise BadRequest(f"Blade Request: {what} has no name (name_in_dl_model)")
    return name


def _array(proto: Any, what: str) -> np.ndarray:
    shape = tuple(proto.shape.dim)
    _check_shape(shape, what)
    filled = [field for field in _FIELDS if len(getattr(proto, field))]
    if len(filled) > 1:
        raise BadRequest(f"{what}: values in both {filled[0]} and {filled[1]}; use one")
    field = filled[0] if filled else "float_val"
    values = getattr(proto, field)
    if len(values) != math.prod(shape):
        raise BadRequest(
            f"{what}: shape {list(shape)} needs {math.prod(shape)} values, got {len(values)} "
            f"in {field}"
        )
    if field == "string_val":
        array = np.empty(len(values), dtype=object)
        array[:] = list(values)
    else:
        array = np.array(values, dtype=_FIELDS[field])
    return array.reshape(shape)


def _fill(proto: Any, name: str, value: Any, data_type: int) -> None:
    array = np.asarray(value)
    what = f"output {name!r}"
    field = _BY_TYPE.get(data_type) or _field_for(array, what)
    proto.name_in_dl_model = proto.blade_blob_name = name
    proto.batchsize = int(array.shape[0]) if array.ndim else 1
    proto.shape.dim.extend(array.shape)
    flat = array.ravel()
    if field == "string_val":
        if array.dtype.kind not in "OUS":
            raise ModelError(f"{what}: DT_STRING was fetched but the model returned {array.dtype}")
        getattr(proto, field).extend(_as_bytes(x, what) for x in flat.tolist())
        return
    if array.dtype.kind not in "fiub":
        raise ModelError(f"{what}: dtype {array.dtype} cannot be sent in {field}")
    target = _FIELDS[field]
    if target.kind == "i" and array.dtype.kind in "iu" and flat.size:
        info = np.iinfo(target)
        if flat.min() < info.min or flat.max() > info.max:
            raise ModelError(f"{what}: a value does not fit {field} ({target})")
    getattr(proto, field).extend(flat.astype(target).tolist())


def _field_for(array: np.ndarray, what: str) -> str:
    kind, size = array.dtype.kind, array.dtype.itemsize
    if kind in "OUS":
        return "string_val"
    if kind == "f":
        return "float_val"
    if kind == "b" or (kind == "i" and size <= 4) or (kind == "u" and size <= 2):
        return "int_val"
    if kind in "iu":
        return "int64_val"
    raise ModelError(f"{what}: dtype {array.dtype} cannot be sent over the Blade protocol")
