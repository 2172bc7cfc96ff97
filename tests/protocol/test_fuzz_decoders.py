"""Fuzzed bodies for every request decoder: a malformed body is a ``BadRequest``, never
another exception (which a door would answer with a 500).

Decoders: v2 JSON, v2 binary extension, EAS TensorFlow and EAS PyTorch protobufs, and the
self-describing numpy bytes; bodies from ``support.fuzz_bodies`` plus plain random bytes.
"""

from __future__ import annotations

import contextlib
import struct
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from servekit.codecs._ndarray import decode_numpy
from servekit.errors import BadRequest
from servekit.protocol import eas
from servekit.protocol.v2 import parse_infer_request
from support.fuzz_bodies import dumps, feeds, nested, tf_body, torch_body, v2_documents

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


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


@FUZZ
@given(feeds, st.binary(max_size=20))
def test_eas_tf_decoder_raises_only_bad_request(parts: list[Any], junk: bytes) -> None:
    body = tf_body(parts)
    rejects_only_as_bad_request(eas.decode_tf_request, body)
    rejects_only_as_bad_request(eas.decode_tf_request, body + junk)
    rejects_only_as_bad_request(eas.decode_tf_request, junk)


@FUZZ
@given(feeds, st.binary(max_size=20))
def test_eas_pytorch_decoder_raises_only_bad_request(parts: list[Any], junk: bytes) -> None:
    body = torch_body(parts)
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
