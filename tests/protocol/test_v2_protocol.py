import numpy as np
import orjson
import pytest

from servekit.codecs import encode_tensor
from servekit.errors import BadRequest, ModelError
from servekit.protocol import (
    InferRequest,
    RequestedOutput,
    encode_infer_response,
    error_body,
    model_metadata,
    parse_infer_request,
    server_metadata,
)

X = {"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1.0, 2.0]}


def body(**doc) -> bytes:
    return orjson.dumps(doc)


def binary_body(doc: dict, *chunks: bytes) -> tuple[bytes, int]:
    header = orjson.dumps(doc)
    return header + b"".join(chunks), len(header)


def bad(message: str, raw: bytes, json_length: int | None = None) -> None:
    with pytest.raises(BadRequest) as info:
        parse_infer_request(raw, json_length)
    assert info.value.message == message


# --------------------------------------------------------------------------------- parsing


def test_json_request_is_parsed_with_all_fields():
    req = parse_infer_request(
        body(
            id="r1",
            parameters={"timeout": 1500, "custom": "v"},
            inputs=[X, {"name": "s", "shape": [1], "datatype": "BYTES", "data": ["hé"]}],
            outputs=[{"name": "y", "parameters": {"binary_data": True}}, {"name": "z"}],
        )
    )
    assert req.id == "r1"
    assert req.parameters == {"timeout": 1500, "custom": "v"}
    assert req.timeout_us == 1500
    assert req.binary_output is False
    assert req.inputs["x"].dtype == np.float32
    assert req.inputs["x"].tolist() == [[1.0, 2.0]]
    assert req.inputs["s"].tolist() == ["hé".encode()]
    assert req.outputs == [
        RequestedOutput("y", True, {"binary_data": True}),
        RequestedOutput("z", False, {}),
    ]


def test_minimal_request_has_defaults():
    req = parse_infer_request(body(inputs=[X]))
    assert req == InferRequest(id=None, inputs=req.inputs, parameters={}, outputs=[])
    assert req.timeout_us is None
    assert req.binary_output is False


def test_inputs_keep_request_order():
    names = ["c", "a", "b"]
    req = parse_infer_request(body(inputs=[{**X, "name": n} for n in names]))
    assert list(req.inputs) == names


def test_binary_data_output_is_the_default_for_unlisted_and_unflagged_outputs():
    req = parse_infer_request(
        body(
            inputs=[X],
            parameters={"binary_data_output": True},
            outputs=[{"name": "a"}, {"name": "b", "parameters": {"binary_data": False}}],
        )
    )
    assert req.binary_output is True
    assert req.wants_binary("a") is True
    assert req.wants_binary("b") is False
    assert req.wants_binary("unlisted") is True


def test_body_may_be_bytearray_or_memoryview():
    raw = body(inputs=[X])
    assert parse_infer_request(bytearray(raw)).inputs["x"].tolist() == [[1.0, 2.0]]
    assert parse_infer_request(memoryview(raw)).inputs["x"].tolist() == [[1.0, 2.0]]


def test_binary_request_mixes_binary_and_json_inputs_in_order():
    a = np.arange(6, dtype=np.int64).reshape(2, 3)
    s = np.array([b"\xff\x00", b"ok"], dtype=object)
    spec_a, raw_a = encode_tensor("a", a, binary=True)
    spec_s, raw_s = encode_tensor("s", s, binary=True)
    raw, n = binary_body({"inputs": [spec_a, X, spec_s]}, raw_a, raw_s)
    req = parse_infer_request(raw, n)
    assert list(req.inputs) == ["a", "x", "s"]
    assert req.inputs["a"].tolist() == a.tolist()
    assert req.inputs["x"].tolist() == [[1.0, 2.0]]
    assert req.inputs["s"].tolist() == [b"\xff\x00", b"ok"]


def test_header_length_covering_whole_body_reads_json_only():
    raw = body(inputs=[X])
    assert parse_infer_request(raw, len(raw)).inputs["x"].shape == (1, 2)


def test_binary_inputs_from_bytearray_body_are_not_copied():
    spec, chunk = encode_tensor("a", np.array([1, 2], dtype=np.int32), binary=True)
    raw, n = binary_body({"inputs": [spec]}, chunk)
    buf = bytearray(raw)
    req = parse_infer_request(buf, n)
    buf[n] = 9
    assert req.inputs["a"].tolist() == [9, 2]


def test_empty_binary_input_is_accepted():
    spec, chunk = encode_tensor("a", np.zeros((0, 4), dtype=np.float32), binary=True)
    raw, n = binary_body({"inputs": [spec]}, chunk)
    assert parse_infer_request(raw, n).inputs["a"].shape == (0, 4)


# ---------------------------------------------------------------------------- parse errors


def test_malformed_json_says_where():
    with pytest.raises(BadRequest, match=r"^malformed JSON in request body: .*line 1 column 12"):
        parse_infer_request(b'{"inputs": ]')


def test_empty_body_is_malformed_json():
    with pytest.raises(BadRequest, match=r"^malformed JSON in request body"):
        parse_infer_request(b"")


def test_non_utf8_body_is_malformed_json():
    with pytest.raises(BadRequest, match=r"^malformed JSON in request body: .*UTF-8"):
        parse_infer_request(b'{"id": "\xff"}')


def test_body_that_is_not_an_object_is_rejected():
    bad("request body must be a JSON object, got a list", b"[1, 2]")


def test_missing_inputs_is_rejected():
    bad("request has no 'inputs'", body(id="1"))


def test_empty_inputs_is_rejected():
    bad("'inputs' is empty; a request needs at least one input", body(inputs=[]))


def test_inputs_not_a_list_is_rejected():
    bad("'inputs' must be a list, got an object", body(inputs={"x": X}))


def test_input_that_is_not_an_object_is_rejected():
    bad("inputs[1] must be an object, got a number", body(inputs=[X, 3]))


def test_duplicate_input_names_are_rejected():
    bad("duplicate input name 'x'", body(inputs=[X, X]))


def test_input_missing_a_field_is_rejected():
    no_shape = {k: v for k, v in X.items() if k != "shape"}
    bad("input 'x': missing 'shape'", body(inputs=[no_shape]))


def test_input_data_not_matching_datatype_is_rejected():
    bad(
        "input 'x': element 0 ('a') is a string, but FP32 needs numbers",
        body(inputs=[{**X, "data": ["a", "b"]}]),
    )


def test_input_shape_not_matching_count_is_rejected():
    bad(
        "input 'x': shape [1, 3] has 3 elements but data has 2",
        body(inputs=[{**X, "shape": [1, 3]}]),
    )


def test_id_that_is_not_a_string_is_rejected():
    bad("'id' must be a string, got a number", body(id=5, inputs=[X]))


def test_parameters_not_an_object_are_rejected():
    bad("request 'parameters' must be an object, got a list", body(parameters=[], inputs=[X]))


@pytest.mark.parametrize("timeout", [-1, 1.5, True, "100"])
def test_timeout_that_is_not_a_non_negative_int_is_rejected(timeout):
    bad(
        f"parameter 'timeout' must be a non-negative integer of microseconds, got {timeout!r}",
        body(parameters={"timeout": timeout}, inputs=[X]),
    )


def test_binary_data_output_that_is_not_bool_is_rejected():
    bad(
        "parameter 'binary_data_output' must be true or false",
        body(parameters={"binary_data_output": 1}, inputs=[X]),
    )


def test_outputs_not_a_list_is_rejected():
    bad("'outputs' must be a list, got a string", body(inputs=[X], outputs="y"))


def test_output_without_name_is_rejected():
    bad("outputs[0]: 'name' must be a string", body(inputs=[X], outputs=[{"parameters": {}}]))


def test_duplicate_output_names_are_rejected():
    bad("duplicate requested output name 'y'", body(inputs=[X], outputs=[{"name": "y"}] * 2))


def test_output_binary_data_that_is_not_bool_is_rejected():
    outputs = [{"name": "y", "parameters": {"binary_data": "yes"}}]
    bad("output 'y': binary_data must be true or false", body(inputs=[X], outputs=outputs))


def test_header_length_beyond_body_is_rejected():
    raw = body(inputs=[X])
    bad(
        f"Inference-Header-Content-Length is {len(raw) + 1} but the body has only {len(raw)} bytes",
        raw,
        len(raw) + 1,
    )


def test_negative_header_length_is_rejected():
    bad(
        "Inference-Header-Content-Length must be a non-negative integer, got -1",
        body(inputs=[X]),
        -1,
    )


def test_binary_data_size_without_header_length_is_rejected():
    spec = {"name": "a", "shape": [1], "datatype": "INT32", "parameters": {"binary_data_size": 4}}
    bad(
        "input 'a': binary_data_size is set but the request has no "
        "Inference-Header-Content-Length header",
        body(inputs=[spec]),
    )


def test_binary_data_size_that_is_not_an_int_is_rejected():
    spec = {"name": "a", "shape": [1], "datatype": "INT32", "parameters": {"binary_data_size": "4"}}
    raw, n = binary_body({"inputs": [spec]}, b"\0" * 4)
    bad("input 'a': binary_data_size must be a non-negative integer", raw, n)


def test_binary_sizes_beyond_body_are_rejected():
    spec = {"name": "a", "shape": [2], "datatype": "INT32", "parameters": {"binary_data_size": 8}}
    raw, n = binary_body({"inputs": [spec]}, b"\0" * 5)
    bad("input 'a': binary_data_size 8 runs past the end of the body (5 bytes left)", raw, n)


def test_bytes_left_over_after_binary_inputs_are_rejected():
    spec = {"name": "a", "shape": [1], "datatype": "INT32", "parameters": {"binary_data_size": 4}}
    raw, n = binary_body({"inputs": [spec]}, b"\0" * 6)
    bad(
        "the inputs' binary_data_size values add up to 4 bytes but 6 bytes follow the JSON header",
        raw,
        n,
    )


def test_binary_size_not_matching_shape_is_rejected():
    spec = {"name": "a", "shape": [2], "datatype": "INT32", "parameters": {"binary_data_size": 4}}
    raw, n = binary_body({"inputs": [spec]}, b"\0" * 4)
    bad("input 'a': binary data has 4 bytes but shape [2] of INT32 needs 8", raw, n)


# -------------------------------------------------------------------------------- response


def test_json_response_has_v2_fields_and_values():
    y = np.array([[0.5, 0.25]], dtype=np.float32)
    raw, n = encode_infer_response("m", "2", "r1", {"y": y}, parameters={"p": 1})
    assert n is None
    assert orjson.loads(raw) == {
        "model_name": "m",
        "model_version": "2",
        "id": "r1",
        "parameters": {"p": 1},
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [1, 2], "data": [0.5, 0.25]}],
    }


def test_response_omits_version_id_and_parameters_when_absent():
    raw, _ = encode_infer_response("m", None, None, {"y": np.array([1])})
    assert set(orjson.loads(raw)) == {"model_name", "outputs"}


def test_binary_response_puts_raw_tensors_after_json_header():
    y = np.arange(4, dtype=np.float64)
    s = np.array(["é"], dtype=object)
    raw, n = encode_infer_response("m", "1", None, {"y": y, "s": s}, binary=True)
    header = orjson.loads(raw[:n])
    assert [o["parameters"]["binary_data_size"] for o in header["outputs"]] == [32, 6]
    assert all("data" not in o for o in header["outputs"])
    assert raw[n:] == y.tobytes() + b"\x02\x00\x00\x00\xc3\xa9"


def test_binary_set_selects_which_outputs_go_binary():
    outputs = {"a": np.array([1, 2], dtype=np.int32), "b": np.array([True])}
    raw, n = encode_infer_response("m", None, None, outputs, binary={"b"})
    header = orjson.loads(raw[:n])
    assert header["outputs"][0]["data"] == [1, 2]
    assert header["outputs"][1]["parameters"] == {"binary_data_size": 1}
    assert raw[n:] == b"\x01"


def test_response_parameters_that_are_not_serialisable_are_model_error():
    with pytest.raises(ModelError, match="response for model 'm' is not JSON-serialisable"):
        encode_infer_response("m", None, None, {"y": np.array([1])}, parameters={"x": object()})


def test_non_utf8_output_in_json_response_is_bad_request():
    with pytest.raises(BadRequest, match="tensor 's': BYTES element 0 is not valid UTF-8"):
        encode_infer_response("m", None, None, {"s": np.array([b"\xff"], dtype=object)})


def test_error_body_is_v2_error_object():
    assert orjson.loads(error_body("input 'x': bad")) == {"error": "input 'x': bad"}


# -------------------------------------------------------------------------------- metadata


def test_model_metadata_uses_v2_field_names_and_normalises_datatypes():
    doc = model_metadata(
        "m",
        [1, "2"],
        "servekit",
        [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
        [("y", np.int64, (-1,)), ("s", "BYTES", [1])],
    )
    assert doc == {
        "name": "m",
        "versions": ["1", "2"],
        "platform": "servekit",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [
            {"name": "y", "datatype": "INT64", "shape": [-1]},
            {"name": "s", "datatype": "BYTES", "shape": [1]},
        ],
    }


def test_model_metadata_rejects_unknown_datatype_name():
    with pytest.raises(ModelError, match="tensor 'x': unknown datatype 'FLOAT'"):
        model_metadata("m", [], "p", [("x", "FLOAT", [1])], [])


def test_model_metadata_rejects_dimension_below_minus_one():
    with pytest.raises(ModelError, match=r"tensor 'x': shape \[-2\] has a dimension below -1"):
        model_metadata("m", [], "p", [("x", "FP32", [-2])], [])


def test_server_metadata_uses_v2_field_names():
    assert server_metadata("servekit", "0.1.0", ("binary_tensor_data",)) == {
        "name": "servekit",
        "version": "0.1.0",
        "extensions": ["binary_tensor_data"],
    }


def test_an_indented_body_with_a_long_array_is_read_although_orjson_refuses_it() -> None:
    # orjson 3.13 answers "failed to allocate memory" for this valid document
    data = ",".join(["1"] * 150_000)
    body = (
        '{\n  "inputs": [{"name": "x", "shape": [150000], "datatype": "FP32", "data": ['
        + data
        + "]}]}"
    ).encode()
    request = parse_infer_request(body)
    assert request.inputs["x"].shape == (150_000,) and request.inputs["x"].sum() == 150_000


def test_the_fallback_parser_still_refuses_nan() -> None:
    data = ",".join(["1"] * 150_000)
    body = (
        '{\n  "inputs": [{"name": "x", "shape": [150001], "datatype": "FP32", "data": ['
        + data
        + ",NaN]}]}"
    ).encode()
    with pytest.raises(BadRequest, match="malformed JSON"):
        parse_infer_request(body)
