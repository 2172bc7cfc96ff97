"""Fuzzed bodies for every request decoder: a malformed body is a ``BadRequest``, never
another exception (which a door would answer with a 500).

Decoders: v2 JSON, v2 binary extension, EAS TensorFlow and EAS PyTorch protobufs. Bodies are
built from near-valid parts (names, datatypes, shapes with huge, negative, zero and too many
dimensions, ragged and deeply nested data, binary sizes that lie) plus plain random bytes.
"""

from __future__ import annotations

import contextlib
import struct
from typing import Any

import orjson
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from servekit.codecs._ndarray import decode_numpy
from servekit.codecs.tensors import V2_DATATYPES
from servekit.errors import BadRequest
from servekit.protocol import eas
from servekit.protocol.eas_pb import tf_predict_pb2 as tf_pb
from servekit.protocol.eas_pb import torch_predict_pb2 as torch_pb
from servekit.protocol.v2 import parse_infer_request

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

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
        return b"[" * self.depth + orjson.dumps(self.leaf) + b"]" * self.depth


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


def rejects_only_as_bad_request(decode: Any, *args: Any) -> None:
    """Run ``decode``; any exception but ``BadRequest`` fails the test."""
    with contextlib.suppress(BadRequest):
        decode(*args)


def one_input(shape: Any, data: Any, datatype: str = "FP32") -> dict[str, Any]:
    return {"inputs": [{"name": "x", "datatype": datatype, "shape": shape, "data": data}]}


@FUZZ
@given(v2_documents(binary=False))
@example(one_input([1] * 65, [1]))
@example(one_input([1] * 65, ["a"], "BYTES"))
@example(one_input([0, 2**62, 2**62], []))
@example(one_input([0, 2**62, 2**62], [], "BYTES"))
@example(one_input([1], nested(900, [1])))
@example(one_input([2], nested(900, [1, 2])))
def test_v2_json_decoder_raises_only_bad_request(document: Any) -> None:
    rejects_only_as_bad_request(parse_infer_request, dumps(document))


@FUZZ
@given(v2_documents(binary=True), st.binary(max_size=80), st.integers(-4, 4))
def test_v2_binary_decoder_raises_only_bad_request(document: Any, tail: bytes, skew: int) -> None:
    header = dumps(document)
    rejects_only_as_bad_request(parse_infer_request, header + tail, max(0, len(header) + skew))


@FUZZ
@given(st.binary(max_size=200), st.one_of(st.none(), st.integers(-2, 300)))
def test_v2_decoder_on_random_bytes_raises_only_bad_request(
    body: bytes, json_length: int | None
) -> None:
    rejects_only_as_bad_request(parse_infer_request, body, json_length)


# ---------------------------------------------------------------------------------- EAS

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


@FUZZ
@given(feeds, st.binary(max_size=20))
def test_eas_tf_decoder_raises_only_bad_request(parts: list[Any], junk: bytes) -> None:
    request = tf_pb.PredictRequest()
    for i, (dtype, shape, numbers) in enumerate(parts):
        fill(request.inputs[f"f{i}"], dtype, shape, numbers)
    body = request.SerializeToString()
    rejects_only_as_bad_request(eas.decode_tf_request, body)
    rejects_only_as_bad_request(eas.decode_tf_request, body + junk)
    rejects_only_as_bad_request(eas.decode_tf_request, junk)


@FUZZ
@given(feeds, st.binary(max_size=20))
def test_eas_pytorch_decoder_raises_only_bad_request(parts: list[Any], junk: bytes) -> None:
    request = torch_pb.PredictRequest()
    for dtype, shape, numbers in parts:
        fill(request.inputs.add(), dtype, shape, numbers)
    body = request.SerializeToString()
    rejects_only_as_bad_request(eas.decode_torch_request, body)
    rejects_only_as_bad_request(eas.decode_torch_request, body + junk)
    rejects_only_as_bad_request(eas.decode_torch_request, junk)


# ------------------------------------------------------------------ self-describing numpy

sknp_names = st.sampled_from(["FP32", "INT8", "BYTES", "<U3", "BF16", "NOPE", ""])


@FUZZ
@given(
    st.integers(0, 4),
    sknp_names,
    st.one_of(
        st.lists(st.sampled_from([0, 1, 2, 2**31, 2**62, 2**64 - 1]), max_size=70),
        st.lists(st.integers(0, 3), max_size=3),
    ),
    st.binary(max_size=40),
    st.integers(0, 2),
)
def test_numpy_decoder_raises_only_bad_request(
    kind: int, name: str, shape: list[int], payload: bytes, version: int
) -> None:
    ndim = min(len(shape), 255)
    body = b"SKNP" + bytes((version, kind, len(name))) + name.encode()
    body += bytes((ndim,)) + struct.pack(f"<{ndim}Q", *shape[:ndim]) + payload
    rejects_only_as_bad_request(decode_numpy, body)
    rejects_only_as_bad_request(decode_numpy, body[: len(body) // 2])
