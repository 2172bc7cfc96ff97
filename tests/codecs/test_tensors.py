import hypothesis.extra.numpy as hnp
import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servekit.codecs import V2_DATATYPES, decode_tensor, encode_tensor, numpy_dtype, v2_datatype
from servekit.errors import BadRequest, ModelError

NUMERIC = [dt for dt in V2_DATATYPES if dt != "BYTES"]


def sample(datatype: str, shape: tuple[int, ...] = (2, 3)) -> np.ndarray:
    """An array of the datatype holding its extreme values where the shape allows."""
    count = int(np.prod(shape))
    if datatype == "BYTES":
        values = [b"", b"ascii", "héllo ✓".encode(), b"\x00\x01", b"x" * 300, b"last"]
        arr = np.empty(count, dtype=object)
        arr[:] = (values * count)[:count]
        return arr.reshape(shape)
    dtype = numpy_dtype(datatype)
    if datatype == "BOOL":
        return (np.arange(count) % 2 == 0).reshape(shape)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        base = np.array([info.min, info.max, 0, 1, info.max - 1, info.min + 1], dtype=dtype)
    else:
        info = np.finfo(dtype)
        base = np.array([info.min, info.max, 0.0, -1.5, info.tiny, 0.1], dtype=dtype)
    return np.resize(base, count).reshape(shape)


def json_wire(spec: dict) -> dict:
    """What a server receives: the spec serialised and parsed again."""
    return orjson.loads(orjson.dumps(spec, option=orjson.OPT_SERIALIZE_NUMPY))


def assert_same(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    assert got.dtype == numpy_dtype(v2_datatype(want.dtype))
    assert got.tolist() == want.tolist()


# ------------------------------------------------------------------------ datatype mapping


@pytest.mark.parametrize("datatype", V2_DATATYPES)
def test_every_v2_datatype_maps_to_numpy_and_back(datatype):
    assert v2_datatype(numpy_dtype(datatype)) == datatype


def test_numpy_dtypes_are_the_expected_ones():
    assert numpy_dtype("FP16") == np.float16
    assert numpy_dtype("UINT64") == np.uint64
    assert numpy_dtype("BOOL") == np.bool_
    assert numpy_dtype("BYTES") == np.dtype(object)


def test_str_bytes_and_object_dtypes_are_bytes_datatype():
    assert v2_datatype(np.dtype("U5")) == "BYTES"
    assert v2_datatype(np.dtype("S5")) == "BYTES"
    assert v2_datatype(object) == "BYTES"


def test_big_endian_dtype_maps_like_native():
    assert v2_datatype(np.dtype(">f4")) == "FP32"
    assert v2_datatype(np.dtype(">i8")) == "INT64"


def test_unknown_datatype_name_is_bad_request_listing_known_ones():
    with pytest.raises(BadRequest, match=r"unknown datatype 'BF16'; expected one of BOOL, UINT8"):
        numpy_dtype("BF16")


def test_dtype_without_v2_datatype_is_model_error():
    with pytest.raises(ModelError, match="complex128 has no Open Inference Protocol datatype"):
        v2_datatype(np.complex128)


# ------------------------------------------------------------------------------ round trips


@pytest.mark.parametrize("datatype", V2_DATATYPES)
def test_json_round_trip_keeps_values_for_every_datatype(datatype):
    arr = sample(datatype)
    if datatype == "BYTES":
        arr = np.array([b"a", "é".encode(), b"", b"z", b"12", b"x"], dtype=object).reshape(2, 3)
    spec, raw = encode_tensor("t", arr)
    assert raw is None
    assert spec["datatype"] == datatype
    assert spec["shape"] == [2, 3]
    assert isinstance(spec["data"], list)
    assert_same(decode_tensor(json_wire(spec)), arr)


@pytest.mark.parametrize("datatype", V2_DATATYPES)
def test_json_round_trip_with_numpy_data_keeps_values(datatype):
    arr = sample(datatype) if datatype != "BYTES" else np.array([b"a", b"b"], dtype=object)
    spec, _ = encode_tensor("t", arr, numpy_data=True)
    assert_same(decode_tensor(json_wire(spec)), arr)


def test_numpy_data_writes_fp32_at_its_own_precision():
    spec, _ = encode_tensor("t", np.array([0.1], dtype=np.float32), numpy_data=True)
    assert orjson.dumps(spec["data"], option=orjson.OPT_SERIALIZE_NUMPY) == b"[0.1]"


@pytest.mark.parametrize("datatype", V2_DATATYPES)
def test_binary_round_trip_keeps_values_for_every_datatype(datatype):
    arr = sample(datatype)
    spec, raw = encode_tensor("t", arr, binary=True)
    assert "data" not in spec
    assert spec["parameters"] == {"binary_data_size": len(raw)}
    assert_same(decode_tensor(json_wire(spec), raw), arr)


@pytest.mark.parametrize("datatype", NUMERIC)
def test_binary_layout_is_little_endian_row_major(datatype):
    arr = sample(datatype)
    _, raw = encode_tensor("t", arr, binary=True)
    assert raw == arr.astype(arr.dtype.newbyteorder("<")).tobytes(order="C")


def test_binary_bytes_layout_is_length_prefixed():
    _, raw = encode_tensor("t", np.array([b"ab", "é"], dtype=object), binary=True)
    assert raw == b"\x02\x00\x00\x00ab\x02\x00\x00\x00\xc3\xa9"


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("datatype", V2_DATATYPES)
def test_empty_array_round_trips(datatype, binary):
    arr = np.empty((0, 3), dtype=numpy_dtype(datatype))
    spec, raw = encode_tensor("t", arr, binary=binary)
    assert spec["shape"] == [0, 3]
    if binary:
        assert raw == b""
    got = decode_tensor(json_wire(spec), raw)
    assert got.shape == (0, 3)
    assert got.dtype == numpy_dtype(datatype)


@pytest.mark.parametrize("binary", [False, True])
def test_zero_dimensional_array_round_trips(binary):
    arr = np.array(7.5, dtype=np.float64)
    spec, raw = encode_tensor("t", arr, binary=binary)
    assert spec["shape"] == []
    got = decode_tensor(json_wire(spec), raw)
    assert got.shape == ()
    assert got.item() == 7.5


@pytest.mark.parametrize("binary", [False, True])
def test_non_contiguous_array_is_encoded_in_row_major_order(binary):
    base = np.arange(24, dtype=np.int32).reshape(4, 6)
    for view in (base[:, ::2], base.T, base[::-1]):
        assert not view.flags.c_contiguous
        spec, raw = encode_tensor("t", view, binary=binary)
        assert_same(decode_tensor(json_wire(spec), raw), view)


@pytest.mark.parametrize("binary", [False, True])
def test_big_endian_array_is_encoded_by_value(binary):
    arr = np.array([[1.5, -2.25], [1e30, 3.0]], dtype=">f4")
    spec, raw = encode_tensor("t", arr, binary=binary)
    got = decode_tensor(json_wire(spec), raw)
    assert got.dtype == np.dtype("<f4")
    assert got.tolist() == arr.tolist()


def test_big_endian_array_with_numpy_data_serialises():
    spec, _ = encode_tensor("t", np.array([1, 2], dtype=">i4"), numpy_data=True)
    assert decode_tensor(json_wire(spec)).tolist() == [1, 2]


@pytest.mark.parametrize("binary", [False, True])
def test_unicode_strings_round_trip_as_utf8_bytes(binary):
    words = ["héllo", "日本語", "emoji 🎉", ""]
    spec, raw = encode_tensor("t", np.array(words), binary=binary)
    assert spec["datatype"] == "BYTES"
    if not binary:
        assert spec["data"] == words
    got = decode_tensor(json_wire(spec), raw)
    assert got.dtype == object
    assert got.tolist() == [w.encode() for w in words]


def test_object_array_mixing_str_and_bytes_encodes_both():
    arr = np.array(["é", b"raw"], dtype=object)
    spec, _ = encode_tensor("t", arr)
    assert spec["data"] == ["é", "raw"]


def test_non_utf8_bytes_round_trip_in_binary():
    arr = np.array([b"\xff\xfe\x00", b"ok"], dtype=object)
    spec, raw = encode_tensor("t", arr, binary=True)
    assert decode_tensor(spec, raw).tolist() == [b"\xff\xfe\x00", b"ok"]


def test_non_utf8_bytes_in_json_mode_is_bad_request_suggesting_binary():
    arr = np.array([b"ok", b"\xff"], dtype=object)
    with pytest.raises(BadRequest, match=r"tensor 'y': BYTES element 1 is not valid UTF-8.*binary"):
        encode_tensor("y", arr)


def test_bytes_element_of_wrong_type_is_model_error():
    with pytest.raises(ModelError, match=r"tensor 'y': BYTES element 1 is an integer"):
        encode_tensor("y", np.array(["a", 3], dtype=object), binary=True)


def test_nested_and_flat_data_decode_to_the_same_array():
    flat = {"name": "x", "shape": [2, 2], "datatype": "INT32", "data": [1, 2, 3, 4]}
    nested = {**flat, "data": [[1, 2], [3, 4]]}
    assert decode_tensor(flat).tolist() == [[1, 2], [3, 4]]
    assert decode_tensor(nested).tolist() == [[1, 2], [3, 4]]


def test_nested_data_of_other_nesting_is_read_row_major():
    spec = {"name": "x", "shape": [3], "datatype": "FP32", "data": [[1.0, 2.0], [3.0]]}
    assert decode_tensor(spec).tolist() == [1.0, 2.0, 3.0]


def test_nested_bytes_data_decodes():
    spec = {"name": "s", "shape": [2, 1], "datatype": "BYTES", "data": [["a"], ["ü"]]}
    assert decode_tensor(spec).tolist() == [[b"a"], ["ü".encode()]]


def test_integers_are_accepted_in_float_tensors():
    spec = {"name": "x", "shape": [3], "datatype": "FP32", "data": [1, 2.5, -3]}
    got = decode_tensor(spec)
    assert got.dtype == np.float32
    assert got.tolist() == [1.0, 2.5, -3.0]


def test_uint64_values_above_int64_range_decode_exactly():
    spec = {"name": "x", "shape": [2], "datatype": "UINT64", "data": [2**64 - 1, 0]}
    assert decode_tensor(spec).tolist() == [2**64 - 1, 0]


def test_largest_fp32_value_decodes():
    biggest = float(np.finfo(np.float32).max)
    spec = {"name": "x", "shape": [2], "datatype": "FP32", "data": [biggest, -biggest]}
    assert decode_tensor(spec).tolist() == [biggest, -biggest]


def test_decoded_json_tensor_is_writable():
    got = decode_tensor({"name": "x", "shape": [2], "datatype": "FP32", "data": [1, 2]})
    got[0] = 5
    assert got[0] == 5


def test_tensor_decoded_from_read_only_bytes_is_writable_copy():
    raw = np.array([1, 2], dtype="<i4").tobytes()
    got = decode_tensor({"name": "x", "shape": [2], "datatype": "INT32"}, raw)
    got[0] = 9
    assert got.tolist() == [9, 2]


def test_tensor_decoded_from_bytearray_shares_its_memory():
    raw = bytearray(np.array([1, 2], dtype="<i4").tobytes())
    got = decode_tensor({"name": "x", "shape": [2], "datatype": "INT32"}, memoryview(raw))
    raw[0] = 7
    assert got.tolist() == [7, 2]


# ---------------------------------------------------------------------------------- errors


def spec(datatype: str = "INT32", shape: list | None = None, data: object = None) -> dict:
    return {
        "name": "x",
        "shape": [2] if shape is None else shape,
        "datatype": datatype,
        "data": [1, 2] if data is None else data,
    }


def bad(message: str, spec: dict, raw: bytes | None = None) -> None:
    with pytest.raises(BadRequest) as info:
        decode_tensor(spec, raw)
    assert info.value.message == message
    assert info.value.status == 400


def test_count_mismatch_names_shape_and_counts():
    bad("input 'x': shape [2, 3] has 6 elements but data has 5", spec(shape=[2, 3], data=[1] * 5))


def test_count_mismatch_in_ragged_data_is_reported():
    bad("input 'x': shape [4] has 4 elements but data has 3", spec(shape=[4], data=[[1, 2], [3]]))


def test_count_mismatch_in_bytes_is_reported():
    bad("input 'x': shape [2] has 2 elements but data has 1", spec("BYTES", data=["a"]))


def test_string_in_int_tensor_is_rejected():
    bad(
        "input 'x': element 1 ('7') is a string, but INT32 needs integers",
        spec(data=[1, "7"]),
    )


def test_all_strings_in_float_tensor_is_rejected():
    bad(
        "input 'x': element 0 ('a') is a string, but FP32 needs numbers",
        spec("FP32", data=["a", "b"]),
    )


def test_float_in_int64_tensor_is_rejected():
    bad(
        "input 'x': element 1 (2.5) is a float, but INT64 needs integers",
        spec("INT64", data=[1, 2.5]),
    )


def test_integral_float_in_int_tensor_is_rejected():
    bad("input 'x': element 0 (1.0) is a float, but INT32 needs integers", spec(data=[1.0, 2.0]))


def test_numbers_in_bool_tensor_are_rejected():
    bad("input 'x': element 0 (1) is not true/false, as BOOL needs", spec("BOOL", data=[1, 0]))


def test_bools_in_int_tensor_are_rejected():
    bad(
        "input 'x': element 0 (True) is a boolean, but INT32 needs integers",
        spec(data=[True, False]),
    )


def test_bools_in_float_tensor_are_rejected():
    bad(
        "input 'x': element 0 (True) is a boolean, but FP32 needs numbers",
        spec("FP32", data=[True, False]),
    )


def test_null_in_float_tensor_is_rejected():
    bad(
        "input 'x': element 1 (None) is null, but FP64 needs numbers",
        spec("FP64", data=[1.0, None]),
    )


def test_object_in_data_is_rejected():
    bad(
        "input 'x': element 0 ({'a': 1}) is an object, but INT32 needs integers",
        spec(data=[{"a": 1}, 2]),
    )


def test_number_in_bytes_tensor_is_rejected():
    bad(
        "input 'x': element 1 (3) is an integer, but BYTES data in JSON must be strings",
        spec("BYTES", data=["a", 3]),
    )


@pytest.mark.parametrize(
    ("datatype", "value", "bounds"),
    [
        ("UINT8", 256, "[0, 255]"),
        ("UINT8", -1, "[0, 255]"),
        ("INT8", -129, "[-128, 127]"),
        ("INT32", 2**31, "[-2147483648, 2147483647]"),
        ("UINT64", -1, "[0, 18446744073709551615]"),
    ],
)
def test_integer_out_of_range_is_rejected(datatype, value, bounds):
    bad(
        f"input 'x': element 1 ({value}) is out of range for {datatype} {bounds}",
        spec(datatype, data=[0, value]),
    )


def test_int64_overflow_mixed_with_negatives_is_rejected():
    bad(
        f"input 'x': element 1 ({2**63}) is out of range for INT64 [{-(2**63)}, {2**63 - 1}]",
        spec("INT64", data=[-1, 2**63]),
    )


@pytest.mark.parametrize(
    ("datatype", "value"), [("FP16", 70000.0), ("FP32", 1e39), ("FP16", -65520)]
)
def test_float_beyond_datatype_range_is_rejected(datatype, value):
    bad(
        f"input 'x': element 0 ({value}) is out of range for {datatype}",
        spec(datatype, data=[value, 1.0]),
    )


def test_non_string_name_is_rejected():
    bad("an input's 'name' must be a string, got an integer", {**spec(), "name": 3})


def test_spec_that_is_not_an_object_is_rejected():
    bad("an input must be a JSON object, got a list", [1, 2])  # type: ignore[arg-type]


@pytest.mark.parametrize("shape", [[-1], [2.0], [True, 2], "2", None])
def test_bad_shape_is_rejected(shape):
    bad(
        f"input 'x': shape must be a list of non-negative integers, got {shape!r}",
        {**spec(), "shape": shape},
    )


def test_missing_shape_is_rejected():
    s = spec()
    del s["shape"]
    bad("input 'x': missing 'shape'", s)


def test_missing_datatype_is_rejected():
    s = spec()
    del s["datatype"]
    bad("input 'x': missing 'datatype'", s)


def test_unknown_datatype_is_rejected():
    with pytest.raises(BadRequest, match=r"^input 'x': unknown datatype 'FLOAT'; expected one of"):
        decode_tensor(spec("FLOAT"))


def test_datatype_that_is_not_a_string_is_rejected():
    with pytest.raises(BadRequest, match=r"^input 'x': unknown datatype \['FP32'\]"):
        decode_tensor(spec(["FP32"]))  # type: ignore[arg-type]


def test_missing_data_is_rejected():
    s = spec()
    del s["data"]
    bad("input 'x': missing 'data'", s)


def test_binary_data_size_without_binary_data_is_rejected():
    s = spec()
    del s["data"]
    s["parameters"] = {"binary_data_size": 8}
    bad("input 'x': binary_data_size is set but no binary data came", s)


def test_data_that_is_not_a_list_is_rejected():
    bad("input 'x': 'data' must be a list, got a string", spec(data="12"))


def test_parameters_that_are_not_an_object_are_rejected():
    bad("input 'x': 'parameters' must be an object", {**spec(), "parameters": [1]})


def test_binary_size_not_matching_shape_is_rejected():
    s = {"name": "x", "shape": [2, 2], "datatype": "FP32"}
    bad("input 'x': binary data has 12 bytes but shape [2, 2] of FP32 needs 16", s, b"\0" * 12)


def test_binary_together_with_json_data_is_rejected():
    bad("input 'x': has both 'data' and binary data; send one", spec(), b"\0" * 8)


def test_binary_bool_other_than_zero_or_one_is_rejected():
    s = {"name": "x", "shape": [2], "datatype": "BOOL"}
    bad("input 'x': BOOL binary data holds a byte other than 0 or 1", s, b"\x01\x02")


def test_binary_bytes_with_truncated_length_prefix_is_rejected():
    s = {"name": "x", "shape": [2], "datatype": "BYTES"}
    bad("input 'x': BYTES element 1 has a truncated 4-byte length", s, b"\x01\0\0\0a\x01\0")


def test_binary_bytes_with_overlong_element_is_rejected():
    s = {"name": "x", "shape": [1], "datatype": "BYTES"}
    bad("input 'x': BYTES element 0 declares 9 bytes but only 2 remain", s, b"\x09\0\0\0ab")


def test_binary_bytes_with_wrong_element_count_is_rejected():
    s = {"name": "x", "shape": [3], "datatype": "BYTES"}
    bad("input 'x': shape [3] has 3 elements but data has 1", s, b"\x01\0\0\0a")


# ------------------------------------------------------------------------ property checks

SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)


@st.composite
def tensors(draw: st.DrawFn, *, finite: bool) -> np.ndarray:
    datatype = draw(st.sampled_from(V2_DATATYPES))
    if datatype == "BYTES":
        element = st.text() if finite else st.binary()
        return draw(hnp.arrays(object, SHAPES, elements=element.map(_to_bytes)))
    dtype = numpy_dtype(datatype)
    if finite and dtype.kind == "f":
        elements = st.floats(allow_nan=False, allow_infinity=False, width=dtype.itemsize * 8)
        return draw(hnp.arrays(dtype, SHAPES, elements=elements))
    return draw(hnp.arrays(dtype, SHAPES))


def _to_bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


@settings(max_examples=300, deadline=None)
@given(arr=tensors(finite=True), numpy_data=st.booleans())
def test_any_finite_tensor_round_trips_through_json(arr, numpy_data):
    spec, _ = encode_tensor("t", arr, numpy_data=numpy_data)
    got = decode_tensor(json_wire(spec))
    assert got.dtype == numpy_dtype(v2_datatype(arr.dtype))
    np.testing.assert_array_equal(got, arr)


@settings(max_examples=300, deadline=None)
@given(arr=tensors(finite=False))
def test_any_tensor_round_trips_through_binary(arr):
    spec, raw = encode_tensor("t", arr, binary=True)
    got = decode_tensor(json_wire(spec), raw)
    assert got.dtype == numpy_dtype(v2_datatype(arr.dtype))
    np.testing.assert_array_equal(got, arr)
