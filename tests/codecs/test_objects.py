"""Round trips and refusals of servekit.codecs.objects."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal, assert_series_equal
from PIL import Image

from servekit.codecs.objects import (
    decode_base64,
    decode_bytes,
    decode_numpy,
    decode_pandas,
    decode_pickle,
    decode_pil,
    decode_torch,
    encode_base64,
    encode_bytes,
    encode_numpy,
    encode_pandas,
    encode_pickle,
    encode_pil,
    encode_torch,
)
from servekit.errors import BadRequest, PickleNotAllowed

NUMERIC_DTYPES = ["?", "u1", "u2", "u4", "u8", "i1", "i2", "i4", "i8", "f2", "f4", "f8"]


def _assert_same_array(decoded: np.ndarray, original: np.ndarray) -> None:
    assert decoded.shape == original.shape
    assert decoded.dtype == original.dtype.newbyteorder("=")
    np.testing.assert_array_equal(decoded, original)


# numpy


@pytest.mark.parametrize("dtype", NUMERIC_DTYPES)
def test_numpy_round_trip_keeps_every_v2_numeric_datatype(dtype: str) -> None:
    original = (np.arange(24) % 7).astype(dtype).reshape(2, 3, 4)
    _assert_same_array(decode_numpy(encode_numpy(original)), original)


def test_numpy_round_trip_keeps_fp16_values_exactly() -> None:
    original = np.array([0.0, -1.5, 65504.0, np.inf, 6e-8], dtype=np.float16)
    decoded = decode_numpy(encode_numpy(original))
    assert decoded.tobytes() == original.tobytes()


def test_numpy_round_trip_keeps_bf16_bits() -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    original = np.array([1.0, -2.5, 3.25], dtype=ml_dtypes.bfloat16)
    decoded = decode_numpy(encode_numpy(original))
    assert decoded.dtype == original.dtype
    assert decoded.tobytes() == original.tobytes()


@pytest.mark.parametrize("dtype", ["f4", "i2", "?", "O", "U3"])
def test_numpy_round_trip_keeps_empty_arrays_and_their_shape(dtype: str) -> None:
    original = np.empty((0, 3, 2), dtype=dtype)
    decoded = decode_numpy(encode_numpy(original))
    assert decoded.shape == (0, 3, 2)
    assert decoded.dtype == original.dtype


def test_numpy_round_trip_keeps_zero_dimensional_arrays() -> None:
    decoded = decode_numpy(encode_numpy(np.float64(2.5)))
    assert decoded.shape == ()
    assert decoded == 2.5


def test_numpy_round_trip_of_non_contiguous_views_keeps_their_logical_order() -> None:
    base = np.arange(48, dtype=np.int32).reshape(6, 8)
    for view in (base[::2, 1::3], base.T, np.asfortranarray(base)):
        assert not view.flags.c_contiguous or view is base
        _assert_same_array(decode_numpy(encode_numpy(view)), view)


@pytest.mark.parametrize("dtype", [">f4", ">i8", ">u2", ">f2"])
def test_numpy_big_endian_input_decodes_to_equal_native_values(dtype: str) -> None:
    original = np.array([[1, 2, 300], [4, 5, 6]], dtype=dtype)
    decoded = decode_numpy(encode_numpy(original))
    assert decoded.dtype.isnative
    np.testing.assert_array_equal(decoded, original)


def test_numpy_round_trip_keeps_unicode_strings_in_object_arrays() -> None:
    original = np.array([["héllo", "日本語"], ["", "emoji 🎉"]], dtype=object)
    decoded = decode_numpy(encode_numpy(original))
    assert decoded.dtype == object
    assert decoded.tolist() == original.tolist()
    assert all(type(x) is str for x in decoded.ravel())


def test_numpy_round_trip_keeps_bytes_in_object_arrays() -> None:
    original = np.array([b"\x00\xff", b"", b"abc"], dtype=object)
    decoded = decode_numpy(encode_numpy(original))
    assert decoded.tolist() == [b"\x00\xff", b"", b"abc"]
    assert all(type(x) is bytes for x in decoded)


@pytest.mark.parametrize("dtype", ["U5", "S4", ">U5"])
def test_numpy_round_trip_keeps_fixed_width_string_arrays(dtype: str) -> None:
    original = np.array(["ab", "ü" if "U" in dtype else "x", ""]).astype(dtype)
    decoded = decode_numpy(encode_numpy(original))
    assert decoded.dtype.itemsize == original.dtype.itemsize
    np.testing.assert_array_equal(decoded, original)


def test_numpy_decoding_shares_memory_with_the_payload() -> None:
    payload = bytearray(encode_numpy(np.zeros(4, dtype=np.float32)))
    decoded = decode_numpy(payload)
    payload[-4:] = np.float32(7.0).tobytes()
    assert decoded[-1] == 7.0


def test_numpy_encoding_refuses_arbitrary_objects_and_points_to_pickle() -> None:
    with pytest.raises(TypeError, match="encode_pickle"):
        encode_numpy(np.array([{"a": 1}], dtype=object))


def test_numpy_encoding_refuses_non_v2_dtypes() -> None:
    with pytest.raises(TypeError, match="complex"):
        encode_numpy(np.zeros(2, dtype=np.complex64))


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda b: b"XXXX" + b[4:], "header"),
        (lambda b: b[:6], "truncated"),
        (lambda b: b[:-1], "needs 24 bytes"),
        (lambda b: b + b"\x00", "needs 24 bytes"),
        (lambda b: b[:4] + b"\x09" + b[5:], "version"),
        (lambda b: b[:7] + b"XP32" + b[11:], "unknown datatype"),
    ],
)
def test_numpy_decoding_of_corrupt_bytes_is_a_bad_request_saying_why(mangle, message) -> None:
    good = encode_numpy(np.arange(6, dtype=np.float32).reshape(2, 3))
    with pytest.raises(BadRequest, match=message):
        decode_numpy(mangle(good))


def test_numpy_decoding_refuses_a_huge_bytes_shape_without_allocating_it() -> None:
    good = encode_numpy(np.array([b"a"], dtype=object))
    huge = good[:-13] + (2**40).to_bytes(8, "little") + good[-5:]
    with pytest.raises(BadRequest, match="needs at least"):
        decode_numpy(huge)


def test_numpy_decoding_reports_the_element_that_is_not_utf8() -> None:
    good = encode_numpy(np.array(["ok", "no"], dtype=object))
    with pytest.raises(BadRequest, match="element 1 is not valid UTF-8"):
        decode_numpy(good[:-2] + b"\xff\xfe")


# pandas


def test_pandas_round_trip_keeps_columns_dtypes_index_and_missing_values() -> None:
    frame = pd.DataFrame(
        {
            "f32": np.arange(4, dtype=np.float32),
            "flag": [True, False, True, False],
            "text": ["a", "héllo", None, "日本"],
            "raw": np.array([b"x", None, b"", b"z"], dtype=object),
            "when": pd.date_range("2024-01-01", periods=4, freq="h"),
            "when_tz": pd.date_range("2024-03-30", periods=4, tz="Europe/Paris"),
            "took": pd.to_timedelta([1, 2, 3, 4], unit="s"),
            "cat": pd.Categorical(["x", "y", "x", None], categories=["y", "x", "w"], ordered=True),
            "nullable": pd.array([1, None, 3, 4], dtype="Int64"),
            "maybe": pd.array([True, None, False, True], dtype="boolean"),
            "string": pd.array(["a", None, "c", "d"], dtype="string"),
        },
        index=pd.Index(["r0", "r1", "r2", "r3"], name="row"),
    )
    assert_frame_equal(decode_pandas(encode_pandas(frame)), frame)


def test_pandas_round_trip_keeps_a_series_name_and_range_index() -> None:
    series = pd.Series([1.5, -2.5], name="score", index=pd.RangeIndex(5, 9, 2, name="k"))
    assert_series_equal(decode_pandas(encode_pandas(series)), series)


def test_pandas_round_trip_keeps_a_datetime_index_frequency() -> None:
    series = pd.Series([1, 2, 3], index=pd.date_range("2020-01-01", periods=3, tz="UTC"))
    assert_series_equal(decode_pandas(encode_pandas(series)), series)


def test_pandas_round_trip_keeps_empty_frames_and_duplicate_columns() -> None:
    for frame in (
        pd.DataFrame(),
        pd.DataFrame(np.zeros((0, 3))),
        pd.DataFrame([[1, 2]], columns=["a", "a"]),
    ):
        assert_frame_equal(decode_pandas(encode_pandas(frame)), frame)


def test_pandas_encoding_refuses_arbitrary_object_columns_naming_the_column() -> None:
    with pytest.raises(TypeError, match="column 'bad'"):
        encode_pandas(pd.DataFrame({"bad": [object()]}))


def test_pandas_decoding_of_truncated_bytes_is_a_bad_request() -> None:
    good = encode_pandas(pd.DataFrame({"a": [1, 2, 3]}))
    for bad in (good[:-3], good[:20], b"nope"):
        with pytest.raises(BadRequest, match="pandas"):
            decode_pandas(bad)


# PIL


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "I;16", "1"])
def test_pil_round_trip_keeps_mode_size_and_pixels(mode: str) -> None:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (5, 7, 4), dtype=np.uint8), "RGBA").convert(mode)
    payload = encode_pil(image)
    assert payload.startswith(b"\x89PNG")
    decoded = decode_pil(payload)
    assert (decoded.mode, decoded.size) == (image.mode, image.size)
    np.testing.assert_array_equal(np.asarray(decoded), np.asarray(image))


def test_pil_decoding_of_garbage_or_truncated_images_is_a_bad_request() -> None:
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    payload = encode_pil(image)
    with pytest.raises(BadRequest, match="not in any format"):
        decode_pil(b"definitely not an image")
    with pytest.raises(BadRequest, match="truncated"):
        decode_pil(payload[: len(payload) // 2])


# torch


@pytest.mark.parametrize(
    "dtype", ["float32", "float64", "float16", "bfloat16", "int8", "int64", "uint8", "bool"]
)
def test_torch_round_trip_keeps_dtype_shape_and_values(dtype: str) -> None:
    torch = pytest.importorskip("torch")
    tensor = (torch.arange(12) % 5).to(getattr(torch, dtype)).reshape(3, 4)
    decoded = decode_torch(encode_torch(tensor))
    assert decoded.dtype == tensor.dtype
    assert torch.equal(decoded, tensor)


def test_torch_round_trip_of_a_non_contiguous_tensor_needing_grad() -> None:
    torch = pytest.importorskip("torch")
    tensor = torch.randn(4, 6, requires_grad=True)[:, ::2]
    decoded = decode_torch(encode_torch(tensor))
    assert torch.equal(decoded, tensor.detach())


def test_torch_round_trip_keeps_empty_and_scalar_tensors() -> None:
    torch = pytest.importorskip("torch")
    for tensor in (torch.zeros(0, 3), torch.tensor(7), torch.zeros(0, dtype=torch.bfloat16)):
        decoded = decode_torch(encode_torch(tensor))
        assert decoded.shape == tensor.shape
        assert torch.equal(decoded, tensor)


def test_torch_decodes_numpy_payloads_into_writable_tensors() -> None:
    torch = pytest.importorskip("torch")
    decoded = decode_torch(encode_numpy(np.arange(3, dtype=np.float32)))
    decoded += 1
    assert isinstance(decoded, torch.Tensor)
    assert decoded.tolist() == [1.0, 2.0, 3.0]


def test_torch_decoding_of_string_arrays_is_a_bad_request() -> None:
    pytest.importorskip("torch")
    with pytest.raises(BadRequest, match="no string tensors"):
        decode_torch(encode_numpy(np.array(["a"], dtype=object)))


# bytes, base64


def test_bytes_round_trip_and_str_becomes_utf8() -> None:
    assert decode_bytes(encode_bytes(b"\x00\xffraw")) == b"\x00\xffraw"
    assert decode_bytes(memoryview(bytearray(b"ab"))) == b"ab"
    assert encode_bytes("é") == b"\xc3\xa9"
    with pytest.raises(TypeError):
        encode_bytes(3)  # type: ignore[arg-type]


def test_base64_round_trip_and_invalid_input_is_a_bad_request() -> None:
    payload = bytes(range(256))
    encoded = encode_base64(payload)
    assert encoded.isascii()
    assert decode_base64(encoded) == payload
    assert decode_base64(encoded.decode()) == payload
    with pytest.raises(BadRequest, match="base64"):
        decode_base64(b"not base64!")


# pickle


def test_pickle_round_trip_when_explicitly_allowed() -> None:
    obj = {"a": [1, 2.5, "ü"], "b": (None, b"x")}
    assert decode_pickle(encode_pickle(obj), allow_pickle=True) == obj


def test_pickle_decoding_is_refused_by_default_and_says_how_to_allow_it() -> None:
    with pytest.raises(PickleNotAllowed, match="pass allow_pickle=True") as info:
        decode_pickle(pickle.dumps([1, 2]))
    assert info.value.status == 400


def test_pickle_refusal_never_runs_the_payload() -> None:
    ran: list[int] = []

    class Boom:
        def __reduce__(self):
            return (ran.append, (1,))

    with pytest.raises(PickleNotAllowed):
        decode_pickle(encode_pickle(Boom()))
    assert ran == []


def test_pickle_decoding_of_garbage_is_a_bad_request_when_allowed() -> None:
    with pytest.raises(BadRequest, match="pickled"):
        decode_pickle(b"\x80\x05garbage", allow_pickle=True)
