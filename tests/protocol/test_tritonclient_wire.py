"""The published tritonclient.http client and servekit agree on the wire format."""

import numpy as np
import pytest

from servekit.protocol import encode_infer_response, parse_infer_request

httpclient = pytest.importorskip("tritonclient.http")
Client = httpclient.InferenceServerClient

FP32 = np.array([[0.5, -1.25, 3e-8], [7.0, 0.0, 1e30]], dtype=np.float32)
WORDS = np.array([["héllo", "日本"], ["", "🎉"]], dtype=object)


def client_inputs(binary: bool) -> list:
    x = httpclient.InferInput("x", list(FP32.shape), "FP32")
    x.set_data_from_numpy(FP32, binary_data=binary)
    s = httpclient.InferInput("s", list(WORDS.shape), "BYTES")
    s.set_data_from_numpy(WORDS, binary_data=binary)
    return [x, s]


@pytest.mark.parametrize("binary", [False, True])
def test_request_from_tritonclient_is_parsed(binary):
    outputs = [httpclient.InferRequestedOutput("y", binary_data=binary)]
    raw, json_length = Client.generate_request_body(
        client_inputs(binary), outputs=outputs, request_id="r7", timeout=2500
    )
    assert (json_length is None) is not binary
    req = parse_infer_request(raw, json_length)
    assert req.id == "r7"
    assert req.timeout_us == 2500
    assert list(req.inputs) == ["x", "s"]
    assert req.inputs["x"].dtype == np.float32
    np.testing.assert_array_equal(req.inputs["x"], FP32)
    assert req.inputs["s"].tolist() == [[w.encode() for w in row] for row in WORDS.tolist()]
    assert req.wants_binary("y") is binary


def test_tritonclient_request_without_outputs_asks_for_binary_output():
    raw, json_length = Client.generate_request_body(client_inputs(True))
    req = parse_infer_request(raw, json_length)
    assert req.outputs == []
    assert req.binary_output is True


@pytest.mark.parametrize("binary", [False, True])
def test_tritonclient_reads_fp32_and_bytes_response(binary):
    raw, json_length = encode_infer_response("m", "1", "r7", {"y": FP32, "s": WORDS}, binary=binary)
    result = Client.parse_response_body(raw, header_length=json_length)
    assert result.get_response()["id"] == "r7"
    assert result.get_response()["model_name"] == "m"
    y = result.as_numpy("y")
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, FP32)
    s = result.as_numpy("s")
    assert s.shape == WORDS.shape
    # tritonclient yields bytes from binary data and str from JSON data
    want = WORDS if not binary else np.vectorize(str.encode, otypes=[object])(WORDS)
    assert s.tolist() == want.tolist()


@pytest.mark.parametrize(
    "dtype",
    [
        np.bool_,
        np.uint8,
        np.uint16,
        np.uint32,
        np.uint64,
        np.int8,
        np.int16,
        np.int32,
        np.int64,
        np.float16,
        np.float32,
        np.float64,
    ],
)
@pytest.mark.parametrize("binary", [False, True])
def test_tritonclient_reads_every_numeric_datatype(dtype, binary):
    arr = (np.arange(6) % 2 == 0) if dtype is np.bool_ else np.arange(6).astype(dtype)
    arr = arr.reshape(2, 3)
    raw, json_length = encode_infer_response("m", None, None, {"y": arr}, binary=binary)
    got = Client.parse_response_body(raw, header_length=json_length).as_numpy("y")
    assert got.dtype == arr.dtype
    np.testing.assert_array_equal(got, arr)


@pytest.mark.parametrize("binary", [False, True])
def test_every_numeric_tritonclient_input_round_trips(binary):
    for dtype in (np.bool_, np.uint64, np.int8, np.float16, np.float64):
        arr = np.ones((2, 2), dtype=dtype)
        i = httpclient.InferInput("a", [2, 2], httpclient.np_to_triton_dtype(arr.dtype))
        i.set_data_from_numpy(arr, binary_data=binary)
        raw, json_length = Client.generate_request_body([i])
        got = parse_infer_request(raw, json_length).inputs["a"]
        assert got.dtype == arr.dtype
        np.testing.assert_array_equal(got, arr)
