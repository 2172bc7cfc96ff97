"""Large v2 JSON bodies: each input's numeric ``data`` is cut out of the body and read from
its text a piece at a time. On every valid body the result is the one-shot orjson parse's,
bit for bit; every malformed body is still a ``BadRequest``.

The size thresholds are lowered here so small random bodies take the large-body path, with
pieces of a few bytes (every split point gets exercised).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from servekit.codecs import _json_numbers
from servekit.errors import BadRequest
from servekit.protocol import v2
from servekit.protocol.v2 import parse_infer_request
from support.fuzz_bodies import dumps, v2_documents

RUNS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NUMERIC = ["BOOL", "UINT8", "UINT16", "UINT64", "INT8", "INT32", "INT64", "FP16", "FP32", "FP64"]

# --------------------------------------------------------------------------- the two paths


@contextlib.contextmanager
def large_path(piece: int = 7, scan: int = 5) -> Iterator[None]:
    """Every body takes the large-body path, with tiny pieces and scan windows."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(v2, "LARGE_JSON_BYTES", 0)
        patch.setattr(v2, "MIN_CUT_BYTES", 0)
        patch.setattr(_json_numbers, "PIECE_BYTES", piece)
        patch.setattr(_json_numbers, "_SCAN_BYTES", scan)
        yield


@contextlib.contextmanager
def one_shot_path() -> Iterator[None]:
    """No body takes the large-body path: the whole document goes through orjson."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(v2, "LARGE_JSON_BYTES", 2**62)
        yield


def outcome(body: bytes) -> Any:
    """The decoded inputs (datatype, shape and exact bytes) or ``"400"``."""
    try:
        request = parse_infer_request(body)
    except BadRequest as exc:
        assert exc.status == 400
        return "400"
    return {
        name: (a.dtype.str, a.shape, a.tolist() if a.dtype.kind == "O" else a.tobytes())
        for name, a in request.inputs.items()
    }


def both(body: bytes, piece: int = 7, scan: int = 5) -> tuple[Any, Any]:
    with one_shot_path():
        expected = outcome(body)
    with large_path(piece, scan):
        got = outcome(body)
    return expected, got


# ------------------------------------------------------------------------ random documents

int_tokens = st.one_of(
    st.integers(-300, 70000),
    st.integers(-(2**64) - 5, 2**64 + 5),
    # 2**60 + 2**36 + 1 rounds to a different FP32 directly than through float64
    st.sampled_from([2**53 + 1, -(2**53) - 1, 2**60 + 2**36 + 1, 2**63 - 1, 2**63, 2**64]),
).map(str)
float_tokens = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: orjson.dumps(f).decode()),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(lambda f: f"{f:.9e}"),
    st.from_regex(r"-?(0|[1-9][0-9]{0,20})(\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?", fullmatch=True),
    st.sampled_from(["-0", "-0.0", "0e0", "-0E-0", "1E+05", "1e-320", "3.4028235e38", "65520"]),
)
bool_tokens = st.sampled_from(["true", "false"])
bad_tokens = st.sampled_from(
    [
        *["NaN", "Infinity", "-Infinity", "01", "+1", ".5", "1.", "-", "1e", "0x10", "1e999"],
        *['"1"', "null", "nul", "True", "1true", "{}"],
    ]
)
spaces = st.sampled_from(["", "", "", " ", "\n  ", "\t", "\r\n"])


@st.composite
def data_text(draw: st.DrawFn, tokens: list[str]) -> str:
    """``tokens`` as a JSON array: flat, nested evenly or unevenly, whitespace anywhere."""
    sep = draw(spaces)
    pad = draw(spaces)

    def array(items: list[str]) -> str:
        return "[" + pad + ("," + sep).join(items) + pad + "]"

    layout = draw(st.sampled_from(["flat", "even", "ragged"]))
    if layout == "flat" or len(tokens) < 2:
        return array(tokens)
    if layout == "even":
        width = draw(st.integers(1, len(tokens)))
        rows = [tokens[i : i + width] for i in range(0, len(tokens), width)]
        return array([array(r) for r in rows])
    cuts = sorted(draw(st.sets(st.integers(1, len(tokens) - 1), max_size=4)))
    parts = [tokens[a:b] for a, b in zip([0, *cuts], [*cuts, len(tokens)], strict=True)]
    deep = draw(st.integers(1, 3))
    return array([("[" * deep + array(p) + "]" * deep) for p in parts])


@st.composite
def inputs(draw: st.DrawFn, name: str, malformed: bool) -> str:
    datatype = draw(st.sampled_from([*NUMERIC, "BYTES"]))
    count = draw(st.integers(0, 12))
    if datatype == "BYTES":
        data = orjson.dumps([str(i) for i in range(count)]).decode()
    else:
        kind = st.one_of(int_tokens, float_tokens)
        if datatype.startswith(("INT", "UINT")):
            kind = st.one_of(int_tokens, int_tokens, float_tokens)
        if datatype == "BOOL":
            kind = bool_tokens
        elif draw(st.integers(0, 5)) == 0:  # numpy folds booleans among numbers into them
            kind = st.one_of(kind, bool_tokens)
        if malformed:
            kind = st.one_of(kind, bad_tokens)
        tokens = draw(st.lists(kind, min_size=count, max_size=count))
        data = draw(data_text(tokens))
    extra = draw(st.integers(-1, 1)) if malformed else 0
    shape = [count + extra] if count + extra >= 0 else [count]
    if count and not count % 2 and draw(st.booleans()):
        shape = [2, count // 2]
    fields = [f'"name":"{name}"', f'"datatype":"{datatype}"', f'"shape":{shape}', f'"data":{data}']
    order = draw(st.permutations(fields))
    sep = draw(spaces)
    return "{" + ("," + sep).join(order) + "}"


@st.composite
def documents(draw: st.DrawFn, malformed: bool = False) -> bytes:
    names = draw(st.lists(st.sampled_from(["x", "y", "z"]), min_size=1, max_size=3))
    specs = [draw(inputs(name, malformed)) for name in names]
    parts = ['"inputs":[' + ",".join(specs) + "]"]
    decoy = draw(st.sampled_from(["", '"data": [1, 2, 3]', '"x\\"data": [4, 5]', '"data":[]']))
    if decoy:  # numeric arrays under a "data" key that is not an input's data
        parts.append('"parameters":{' + decoy + "}")
    if draw(st.booleans()):
        parts.insert(0, '"id":"r1"')
    return ("{" + ",".join(draw(st.permutations(parts))) + "}").encode()


# ------------------------------------------------------------------------------- the tests


@RUNS
@given(documents(), st.integers(1, 40), st.integers(1, 9))
@example(b'{"inputs":[{"name":"x","datatype":"FP32","shape":[2],"data":[-0,-0.0]}]}', 7, 5)
@example(
    b'{"inputs":[{"name":"x","datatype":"FP32","shape":[3],"data":[1152921573326323713,0.5,1]}]}',
    3,
    5,
)
def test_valid_bodies_decode_exactly_as_the_one_shot_parse(body, piece, scan):
    expected, got = both(body, piece, scan)
    assert got == expected, body


@RUNS
@given(documents(malformed=True), st.integers(1, 40))
def test_malformed_bodies_are_refused_exactly_when_the_one_shot_parse_refuses(body, piece):
    expected, got = both(body, piece)
    assert got == expected, body


@RUNS
@given(documents(), st.data())
def test_mutated_bytes_are_refused_or_decoded_as_the_one_shot_parse_does(body, data):
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(body) - 1))
        char = data.draw(st.sampled_from(list(b'[[]],,  -+.eE0159x"}')))
        body = body[:at] + bytes([char]) + body[at + data.draw(st.integers(0, 1)) :]
    expected, got = both(body, data.draw(st.integers(1, 9)))
    assert got == expected, body


@pytest.mark.parametrize(
    "data",
    [
        "[[1][,2]]",  # a bracket on the wrong side of a comma: the numbers alone look fine
        "[[1,]2]",
        "[1[,2]]",
        "[[1,]]",
        "[1,[2]3]",
        "[[1]2]",
        "[[1][2]]",
        "[[1],,[2]]",
        "[,1]",
        "[1,]",
        "[1 2]",
        "[[]]",
        "[[],[1]]",
        "[1,[]]",
        "[ [ ] ]",
        "[[1,2],[3]]",
        "[[[1]],2]",
    ],
)
@pytest.mark.parametrize("piece", [1, 2, 3, 100])
def test_bracket_placement_is_judged_as_the_one_shot_parse_does(data, piece):
    count = sum(c.isdigit() for c in data)  # the count a reader of the numbers alone sees
    body = f'{{"inputs":[{{"name":"x","datatype":"FP32","shape":[{count}],"data":{data}}}]}}'
    expected, got = both(body.encode(), piece)
    assert got == expected


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(v2_documents(binary=False))
def test_fuzzed_bodies_on_the_large_path_raise_only_bad_request(document):
    with large_path(), contextlib.suppress(BadRequest):
        parse_infer_request(dumps(document))


# ----------------------------------------------------------------- real sizes, no patches


def big(datatype: str, data: Any, shape: list[int], **dump: Any) -> bytes:
    spec = {"name": "x", "datatype": datatype, "shape": shape, "data": data}
    return orjson.dumps({"inputs": [spec]}, option=orjson.OPT_SERIALIZE_NUMPY, **dump)


def test_a_large_body_takes_the_text_path_and_matches_the_one_shot_parse():
    values = np.random.default_rng(0).standard_normal((3000, 100))
    body = big("FP64", values, [3000, 100])
    assert len(body) >= v2.LARGE_JSON_BYTES
    request = parse_infer_request(body)
    np.testing.assert_array_equal(request.inputs["x"], values)
    assert outcome(body) == both(body)[0]


@pytest.mark.parametrize(
    ("datatype", "data"),
    [
        ("BOOL", np.arange(300_000) % 3 == 0),
        ("FP32", [*range(10), True, *range(300_000)]),  # numpy folds the boolean in
        ("INT16", [*range(300_000), False]),
    ],
)
def test_large_bodies_with_booleans_decode_as_the_one_shot_parse(datatype, data):
    body = big(datatype, data, [len(data)])
    assert len(body) >= v2.LARGE_JSON_BYTES
    expected, got = both(body, _json_numbers.PIECE_BYTES, _json_numbers._SCAN_BYTES)
    assert got == expected


def test_a_pretty_printed_large_body_decodes():
    values = np.arange(600_000) % 10
    body = orjson.dumps(
        {"inputs": [{"name": "x", "datatype": "INT8", "shape": [600_000], "data": values}]},
        option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_INDENT_2,
    )
    assert len(body) >= v2.LARGE_JSON_BYTES
    np.testing.assert_array_equal(parse_infer_request(body).inputs["x"], values)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (b"1,2,", b"1,,2,", "input 'x': 'data' is not a well-formed JSON array: ',,'"),
        (b"3,4,", b"3,4 4,", "input 'x': 'data' holds a malformed value"),
        (b"5,6,", b"5,06,", "input 'x': 'data' holds a malformed value"),
        (b"7,8,", b"7,1e999,", "input 'x': 'data' holds a malformed value"),
        (b"7,8,", b"7,NaN,", "input 'x': 'data' holds a malformed value"),
        (b"7,8,", b"7,null,", "input 'x': element 8 (None) is null, but INT8 needs integers"),
        (b"[600000]", b"[600001]", "input 'x': shape [600001] has 600001 elements but data"),
        (b'"INT8"', b'"BOOL"', "input 'x': element 0 (0) is not true/false, as BOOL needs"),
        (b'"INT8"', b'"BYTES"', "input 'x': element 0 (0) is an integer, but BYTES data"),
        (b"9,0,", b"9,0.5,", "is a float, but INT8 needs integers"),
    ],
)
def test_a_malformed_large_body_is_a_bad_request_naming_the_input(old, new, message):
    body = big("INT8", np.arange(600_000) % 10, [600_000])
    assert len(body) >= v2.LARGE_JSON_BYTES and old in body
    with pytest.raises(BadRequest) as caught:
        parse_infer_request(body.replace(old, new, 1))
    assert message in caught.value.message


def test_a_small_body_keeps_the_one_shot_parse():
    body = big("INT8", [1, 2, 3], [3]).replace(b"1,2", b"1,,2")
    with pytest.raises(BadRequest) as caught:
        parse_infer_request(body)
    # orjson's own message: the body never went through the large-body path
    assert caught.value.message.startswith("malformed JSON in request body: unexpected")
