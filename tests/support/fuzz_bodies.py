"""Hypothesis strategies for malformed request bodies: v2 JSON and binary, EAS protobufs.

Bodies are built from near-valid parts (names, datatypes, shapes with huge, negative, zero
and too many dimensions, ragged and deeply nested data, binary sizes that lie), so they reach
deep into the decoders instead of failing at the first check.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from hypothesis import strategies as st

from servekit.codecs.tensors import V2_DATATYPES
from servekit.protocol.eas_pb import tf_predict_pb2 as tf_pb
from servekit.protocol.eas_pb import torch_predict_pb2 as torch_pb

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=False),
    st.text(max_size=4),
)
dims = st.one_of(
    st.integers(min_value=0, max_value=4),
    st.integers(min_value=-3, max_value=2**64 - 1),
    st.sampled_from([0, 2**31, 2**32, 2**62, 2**63 - 1]),
)
shapes = st.one_of(
    st.lists(dims, max_size=6),
    st.lists(st.sampled_from([0, 1]), min_size=60, max_size=70),
    st.lists(st.sampled_from([0, 2**62, 2**62 + 1]), min_size=1, max_size=4),
    scalars,
)


class Deep:
    """``depth`` lists around ``leaf``, spliced in as text: too deep for ``orjson.dumps``."""

    def __init__(self, depth: int, leaf: list[Any]) -> None:
        self.depth, self.leaf = depth, leaf

    def text(self) -> bytes:
        # the standard library writes integers past 64 bits (orjson refuses them): the leaf
        # may hold one, and the decoders must see it
        return b"[" * self.depth + json.dumps(self.leaf).encode() + b"]" * self.depth


def nested(depth: int, leaf: list[Any]) -> Deep:
    return Deep(depth, leaf)


datas = st.one_of(
    st.lists(scalars, max_size=8),
    st.recursive(st.lists(scalars, max_size=3), lambda inner: st.lists(inner, max_size=3)),
    st.builds(nested, st.integers(min_value=1, max_value=1000), st.lists(scalars, max_size=3)),
    scalars,
)
datatypes = st.one_of(
    st.sampled_from(V2_DATATYPES), st.sampled_from(V2_DATATYPES), st.text(max_size=5), scalars
)
binary_sizes = st.one_of(st.integers(min_value=-2, max_value=64), scalars)


@st.composite
def v2_inputs(draw: st.DrawFn, binary: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if draw(st.integers(0, 9)):
        spec["name"] = (
            draw(st.sampled_from(["x", "y"])) if draw(st.integers(0, 5)) else draw(scalars)
        )
    if draw(st.integers(0, 9)):
        spec["datatype"] = draw(datatypes)
    if draw(st.integers(0, 9)):
        spec["shape"] = draw(shapes)
    if binary and draw(st.booleans()):
        spec["parameters"] = {"binary_data_size": draw(binary_sizes)}
    elif draw(st.integers(0, 9)):
        spec["data"] = draw(datas)
    if not draw(st.integers(0, 19)):
        spec["parameters"] = draw(st.one_of(scalars, st.dictionaries(st.text(max_size=3), scalars)))
    return spec


def v2_documents(binary: bool) -> st.SearchStrategy[Any]:
    inputs = st.one_of(st.lists(v2_inputs(binary), max_size=3), scalars)
    document = st.fixed_dictionaries(
        {"inputs": inputs},
        optional={
            "id": scalars,
            "parameters": st.one_of(
                st.fixed_dictionaries(
                    {}, optional={"timeout": scalars, "binary_data_output": scalars}
                ),
                scalars,
            ),
            "outputs": st.one_of(
                st.lists(st.fixed_dictionaries({}, optional={"name": scalars}), max_size=2),
                scalars,
            ),
        },
    )
    return st.one_of(document, scalars, st.lists(scalars, max_size=2))


def dumps(document: Any) -> bytes:
    deep: list[Deep] = []

    def splice(value: Any) -> str:
        deep.append(value)
        return f"<deep {len(deep) - 1}>"

    try:
        text = orjson.dumps(document, default=splice)
    except orjson.JSONEncodeError:  # an integer past 64 bits
        return b'{"inputs": [{"shape": 18446744073709551616}]}'
    for i, value in enumerate(deep):
        text = text.replace(f'"<deep {i}>"'.encode(), value.text())
    return text


eas_dims = st.one_of(
    st.lists(st.integers(min_value=-2, max_value=4), max_size=6),
    st.lists(st.sampled_from([0, 1]), min_size=60, max_size=70),
    st.lists(st.sampled_from([0, 2**31, 2**62, 2**63 - 1]), min_size=1, max_size=4),
    st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=4),
)
values = st.lists(st.integers(min_value=-(2**31), max_value=2**31 - 1), max_size=8)


def fill(proto: Any, dtype: int, shape: list[int], numbers: list[int]) -> None:
    proto.dtype = dtype
    proto.array_shape.dim.extend(shape)
    field = {
        tf_pb.DT_FLOAT: "float_val",
        tf_pb.DT_DOUBLE: "double_val",
        tf_pb.DT_INT64: "int64_val",
        tf_pb.DT_STRING: "string_val",
        tf_pb.DT_BOOL: "bool_val",
    }.get(dtype, "int_val")
    if field not in proto.DESCRIPTOR.fields_by_name:
        return
    if field == "string_val":
        getattr(proto, field).extend(str(n).encode() for n in numbers)
    elif field == "bool_val":
        getattr(proto, field).extend(bool(n) for n in numbers)
    else:
        getattr(proto, field).extend(numbers)


feeds = st.lists(st.tuples(st.integers(min_value=0, max_value=30), eas_dims, values), max_size=3)


def tf_body(parts: list[Any]) -> bytes:
    """A TF ``PredictRequest`` with one feed per ``(dtype, shape, values)`` part."""
    request = tf_pb.PredictRequest()
    for i, (dtype, shape, numbers) in enumerate(parts):
        fill(request.inputs[f"f{i}"], dtype, shape, numbers)
    return bytes(request.SerializeToString())


def torch_body(parts: list[Any]) -> bytes:
    """A PyTorch ``PredictRequest`` with one feed per ``(dtype, shape, values)`` part."""
    request = torch_pb.PredictRequest()
    for dtype, shape, numbers in parts:
        fill(request.inputs.add(), dtype, shape, numbers)
    return bytes(request.SerializeToString())
