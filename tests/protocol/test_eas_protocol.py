"""EAS predict bodies and authorization, checked against bytes from the published SDK.

``data/eas_sdk_requests.json`` and ``data/eas_sdk_signed.json`` were written by
``eas_sdk_script.py`` running the published ``eas-prediction==0.36``. Its ``protobuf<=3.20.3``
pin clashes with servekit's, so the tests that run the SDK live use the ``eas_sdk_python``
fixture: an interpreter in its own virtual environment (see tests/conftest.py).
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from servekit.errors import BadRequest, ModelError
from servekit.protocol.eas import (
    decode_tf_request,
    decode_torch_request,
    encode_tf_response,
    encode_torch_response,
)
from servekit.protocol.eas_auth import (
    EAST_OF_UTC,
    WEST_OF_UTC,
    check_authorization,
    date_bounds,
    eas_signature,
    parse_date,
    verify,
)
from servekit.protocol.eas_pb import tf_predict_pb2 as tf_pb
from servekit.protocol.eas_pb import torch_predict_pb2 as torch_pb

HERE = Path(__file__).parent
SDK_REQUESTS = {
    name: base64.b64decode(body)
    for name, body in json.loads((HERE / "data" / "eas_sdk_requests.json").read_text()).items()
}
SDK_SIGNED = json.loads((HERE / "data" / "eas_sdk_signed.json").read_text())


def _run_sdk(python: str, mode: str, stdin: str = "", tz: str | None = None) -> str:
    env = {**os.environ, "TZ": tz} if tz else None
    result = subprocess.run(
        [python, str(HERE / "eas_sdk_script.py"), mode],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=env,
    )
    return result.stdout


# TensorFlow requests


def test_tf_request_from_the_sdk_decodes_feeds_fetches_and_signature() -> None:
    feeds, fetches, signature = decode_tf_request(SDK_REQUESTS["tf_mixed"])
    assert signature == "serving_default"
    assert fetches == ["scores", "labels"]
    assert feeds["images"].dtype == np.float32
    np.testing.assert_array_equal(
        feeds["images"], np.array([[0.5, 1.5, -2.0], [3.25, 0.0, 1e-3]], dtype=np.float32)
    )
    assert feeds["ids"].dtype == np.int64
    assert feeds["ids"].tolist() == [1, -2, 2**40]
    assert feeds["mask"].tolist() == [[True, False], [False, True]]
    assert feeds["words"].dtype == object
    assert feeds["words"].tolist() == ["héllo".encode(), b"\x00\xff"]


def test_tf_request_from_the_sdk_keeps_each_integer_width_and_empty_shapes() -> None:
    feeds, fetches, signature = decode_tf_request(SDK_REQUESTS["tf_numeric"])
    assert (signature, fetches) == ("predict", [])
    expected = {
        "d": (np.float64, [0.1]),
        "i8": (np.int8, [-128, 127]),
        "i16": (np.int16, [-300, 300]),
        "i32": (np.int32, [[2**31 - 1]]),
        "u8": (np.uint8, [0, 1, 255]),
    }
    for name, (dtype, values) in expected.items():
        assert feeds[name].dtype == dtype, name
        assert feeds[name].tolist() == values, name
    assert feeds["empty"].shape == (0, 4)
    assert feeds["empty"].dtype == np.float32


def test_tf_request_whose_value_count_misses_its_shape_names_the_feed() -> None:
    with pytest.raises(BadRequest, match=r"feed 'x': shape \[2, 2\] needs 4 values, got 3"):
        decode_tf_request(SDK_REQUESTS["tf_bad_count"])


def test_tf_request_that_is_not_protobuf_is_a_bad_request() -> None:
    with pytest.raises(BadRequest, match="not a valid TensorFlow PredictRequest"):
        decode_tf_request(b"\xff\xff\xff\xff garbage")


def test_tf_request_without_feeds_is_a_bad_request() -> None:
    with pytest.raises(BadRequest, match="no inputs"):
        decode_tf_request(tf_pb.PredictRequest(signature_name="s").SerializeToString())


@pytest.mark.parametrize("dtype", [tf_pb.DT_HALF, tf_pb.DT_COMPLEX64, tf_pb.DT_INVALID, 99])
def test_tf_request_with_an_unsupported_dtype_names_it(dtype: int) -> None:
    request = tf_pb.PredictRequest()
    request.inputs["x"].dtype = dtype
    name = tf_pb.ArrayDataType.Name(dtype) if dtype != 99 else "99"
    with pytest.raises(BadRequest, match=f"feed 'x': unsupported dtype {name}"):
        decode_tf_request(request.SerializeToString())


def test_tf_request_with_an_int_out_of_its_dtype_range_is_a_bad_request() -> None:
    request = tf_pb.PredictRequest()
    request.inputs["u"].dtype = tf_pb.DT_UINT8
    request.inputs["u"].array_shape.dim.append(1)
    request.inputs["u"].int_val.append(256)
    with pytest.raises(BadRequest, match="feed 'u': value out of range for uint8"):
        decode_tf_request(request.SerializeToString())


def test_tf_request_with_a_negative_dimension_is_a_bad_request() -> None:
    request = tf_pb.PredictRequest()
    request.inputs["x"].dtype = tf_pb.DT_FLOAT
    request.inputs["x"].array_shape.dim.extend([-1, 2])
    with pytest.raises(BadRequest, match="negative dimension"):
        decode_tf_request(request.SerializeToString())


# TensorFlow responses


def test_tf_response_carries_every_output_with_its_dtype_and_shape() -> None:
    outputs = {
        "scores": np.arange(6, dtype=np.float32).reshape(2, 3),
        "labels": np.array([b"cat", "chien"], dtype=object),
        "ids": np.array([[1, 2**40]], dtype=np.int64),
        "ok": np.array([True, False]),
        "half": np.array([0.5], dtype=np.float16),
        "small": np.array([-1, 1], dtype=np.int8),
    }
    response = tf_pb.PredictResponse.FromString(encode_tf_response(outputs))
    assert set(response.outputs) == set(outputs)
    scores = response.outputs["scores"]
    assert (scores.dtype, list(scores.array_shape.dim)) == (tf_pb.DT_FLOAT, [2, 3])
    assert list(scores.float_val) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert list(response.outputs["labels"].string_val) == [b"cat", b"chien"]
    assert list(response.outputs["ids"].int64_val) == [1, 2**40]
    assert list(response.outputs["ok"].bool_val) == [True, False]
    assert response.outputs["half"].dtype == tf_pb.DT_FLOAT
    assert list(response.outputs["half"].float_val) == [0.5]
    assert response.outputs["small"].dtype == tf_pb.DT_INT8
    assert list(response.outputs["small"].int_val) == [-1, 1]


def test_tf_response_keeps_only_the_fetched_outputs() -> None:
    outputs = {"a": np.zeros(1), "b": np.ones(1), "c": np.ones(2)}
    response = tf_pb.PredictResponse.FromString(encode_tf_response(outputs, ["b"]))
    assert list(response.outputs) == ["b"]


def test_tf_response_for_an_unknown_fetch_is_a_bad_request_listing_outputs() -> None:
    with pytest.raises(BadRequest, match=r"fetch 'nope' is not an output.*\['a'\]"):
        encode_tf_response({"a": np.zeros(1)}, ["nope"])


def test_tf_response_from_a_model_returning_no_dict_is_a_model_error() -> None:
    with pytest.raises(ModelError, match="dict of outputs"):
        encode_tf_response([np.zeros(1)])  # type: ignore[arg-type]


def test_tf_response_of_an_unsendable_dtype_is_a_model_error() -> None:
    with pytest.raises(ModelError, match="output 'z': dtype complex64"):
        encode_tf_response({"z": np.zeros(1, dtype=np.complex64)})


# PyTorch requests and responses


def test_torch_request_from_the_sdk_decodes_feeds_by_index_and_filter() -> None:
    feeds, output_filter = decode_torch_request(SDK_REQUESTS["torch_mixed"])
    assert output_filter == [1]
    assert [f.dtype for f in feeds] == [np.float32, np.int64, np.uint8, np.float64]
    assert feeds[0].tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert feeds[1].tolist() == [7, 8, 9]
    assert feeds[2].tolist() == [0, 255]
    assert feeds[3].tolist() == [2.5]


def test_torch_request_with_named_feeds_is_refused_with_a_hint() -> None:
    request = torch_pb.PredictRequest()
    request.map_inputs["x"].dtype = torch_pb.DT_FLOAT
    with pytest.raises(BadRequest, match="add_feed by index"):
        decode_torch_request(request.SerializeToString())


def test_torch_request_with_bool_dtype_is_refused_as_unsupported() -> None:
    request = torch_pb.PredictRequest()
    request.inputs.add(dtype=torch_pb.DT_BOOL)
    with pytest.raises(BadRequest, match="feed 0: unsupported dtype DT_BOOL"):
        decode_torch_request(request.SerializeToString())


def test_torch_response_keeps_output_order_and_applies_the_filter() -> None:
    outputs = [np.array([1.5], dtype=np.float32), np.array([[1, 2]], dtype=np.int64), np.eye(1)]
    response = torch_pb.PredictResponse.FromString(encode_torch_response(outputs))
    assert [o.dtype for o in response.outputs] == [
        torch_pb.DT_FLOAT,
        torch_pb.DT_INT64,
        torch_pb.DT_DOUBLE,
    ]
    assert list(response.outputs[1].array_shape.dim) == [1, 2]
    filtered = torch_pb.PredictResponse.FromString(encode_torch_response(outputs, [2, 0]))
    assert [list(o.array_shape.dim) for o in filtered.outputs] == [[1, 1], [1]]


def test_torch_response_sends_bools_as_uint8() -> None:
    response = torch_pb.PredictResponse.FromString(encode_torch_response([np.array([True, False])]))
    assert response.outputs[0].dtype == torch_pb.DT_UINT8
    assert list(response.outputs[0].int_val) == [1, 0]


def test_torch_response_with_an_out_of_range_filter_is_a_bad_request() -> None:
    with pytest.raises(BadRequest, match="index 3 is out of range"):
        encode_torch_response([np.zeros(1)], [3])


# The published SDK, live


def test_sdk_still_builds_the_recorded_request_bytes(eas_sdk_python: str) -> None:
    built = _run_sdk(eas_sdk_python, "requests")
    live = {k: base64.b64decode(v) for k, v in json.loads(built).items()}
    assert live == SDK_REQUESTS


def test_sdk_response_classes_read_servekit_responses(eas_sdk_python: str) -> None:
    tf_body = encode_tf_response(
        {
            "scores": np.array([[0.25, 0.75]], dtype=np.float32),
            "ids": np.array([3, 2**40]),
            "names": np.array(["a", "é"], dtype=object),
            "flags": np.array([True]),
        }
    )
    torch_body = encode_torch_response([np.array([1.0, 2.0]), np.array([[5, 6]], dtype=np.int32)])
    cases = {
        "tf": {
            "kind": "tf",
            "body": base64.b64encode(tf_body).decode(),
            "keys": ["scores", "ids", "names", "flags"],
        },
        "torch": {"kind": "torch", "body": base64.b64encode(torch_body).decode(), "keys": [0, 1]},
    }
    parsed = json.loads(_run_sdk(eas_sdk_python, "responses", json.dumps(cases)))
    assert parsed["tf"]["scores"] == {"shape": [1, 2], "values": [0.25, 0.75]}
    assert parsed["tf"]["ids"] == {"shape": [2], "values": [3, 2**40]}
    assert parsed["tf"]["names"]["values"] == ["a", "é".encode().decode("latin-1")]
    assert parsed["tf"]["flags"]["values"] == [True]
    assert parsed["torch"]["0"] == {"shape": [2], "values": [1.0, 2.0]}
    assert parsed["torch"]["1"] == {"shape": [1, 2], "values": [5, 6]}


# Authorization


def _signed_headers(token: str, body: bytes, path: str = "/api/predict/echo") -> dict[str, str]:
    md5 = hashlib.md5(body).hexdigest()
    date = "Mon, 01 Jan 2024 00:00:00 GMT"
    signature = eas_signature(
        token, method="POST", path=path, content_md5=md5, content_type="text/plain", date=date
    )
    return {
        "Content-MD5": md5,
        "Content-Type": "text/plain",
        "Date": date,
        "Authorization": f"EAS {signature}",
    }


def test_auth_accepts_the_signature_the_published_client_computed() -> None:
    ok = check_authorization(
        SDK_SIGNED["token"],
        method="POST",
        path=SDK_SIGNED["path"],
        headers=SDK_SIGNED["headers"],
        body=base64.b64decode(SDK_SIGNED["body"]),
    )
    assert ok is True


def test_auth_rejects_the_published_signature_under_another_token_or_path() -> None:
    headers = SDK_SIGNED["headers"]
    assert not check_authorization("other", method="POST", path=SDK_SIGNED["path"], headers=headers)
    assert not check_authorization(
        SDK_SIGNED["token"], method="POST", path="/api/predict/other", headers=headers
    )


def test_auth_rejects_a_signature_replayed_with_another_body() -> None:
    headers = _signed_headers("t0k", b"original")
    path = "/api/predict/echo"
    assert check_authorization("t0k", method="POST", path=path, headers=headers, body=b"original")
    assert not check_authorization("t0k", method="POST", path=path, headers=headers, body=b"evil")


def test_auth_rejects_a_signature_over_changed_headers() -> None:
    headers = _signed_headers("t0k", b"x")
    headers["Date"] = "Tue, 02 Jan 2024 00:00:00 GMT"
    assert not check_authorization("t0k", method="POST", path="/api/predict/echo", headers=headers)


def test_auth_accepts_the_plain_token_and_bearer_form_with_any_header_case() -> None:
    path = "/api/predict/echo"
    assert check_authorization(
        "s3cret", method="POST", path=path, headers={"authorization": "s3cret"}
    )
    assert check_authorization(
        "s3cret", method="POST", path=path, headers={"AUTHORIZATION": "Bearer s3cret"}
    )


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "wrong"},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "EAS c2lnbmF0dXJl"},
        {"Authorization": "s3cret2"},
        {"X-Token": "s3cret"},
    ],
)
def test_auth_rejects_missing_or_wrong_tokens(headers: dict[str, str]) -> None:
    assert not check_authorization("s3cret", method="POST", path="/p", headers=headers)


def test_auth_with_no_service_token_lets_every_request_through() -> None:
    assert check_authorization("", method="POST", path="/p", headers={})


def test_auth_compares_non_ascii_headers_without_raising() -> None:
    assert not check_authorization(
        "tök", method="POST", path="/p", headers={"Authorization": "tëk"}
    )
    assert check_authorization("tök", method="POST", path="/p", headers={"Authorization": "tök"})


def test_verify_tells_the_token_itself_from_a_signature() -> None:
    path = "/api/predict/echo"
    assert verify("t0k", method="POST", path=path, headers={"Authorization": "t0k"}) == "token"
    bearer = {"Authorization": "Bearer t0k"}
    assert verify("t0k", method="POST", path=path, headers=bearer) == "token"
    signed = _signed_headers("t0k", b"x")
    assert verify("t0k", method="POST", path=path, headers=signed) == "eas"
    assert verify("t0k", method="GET", path=path, headers=signed) is None
    assert verify("", method="POST", path=path, headers={"Authorization": ""}) is None


# What the published signer covers, read from the SDK itself


def test_the_published_signer_covers_method_md5_type_date_and_path_only(
    eas_sdk_python: str,
) -> None:
    made = json.loads(_run_sdk(eas_sdk_python, "signed"))
    headers = made["headers"]
    expected = eas_signature(
        made["token"],
        method="POST",
        path="/api/predict/echo",
        content_md5=hashlib.md5(base64.b64decode(made["body"])).hexdigest(),
        content_type=headers["Content-Type"],
        date=headers["Date"],
    )
    assert headers["Authorization"] == f"EAS {expected}"
    assert set(headers) == {
        "Authorization",
        "Content-Length",
        "Content-MD5",
        "Content-Type",
        "Date",
    }


def test_the_published_signer_writes_local_time_labelled_gmt(eas_sdk_python: str) -> None:
    dates = {
        tz: json.loads(_run_sdk(eas_sdk_python, "signed", tz=tz))["headers"]["Date"]
        for tz in ("UTC", "Asia/Shanghai")
    }
    assert dates["Asia/Shanghai"].endswith(" GMT")
    utc, shanghai = parse_date(dates["UTC"]), parse_date(dates["Asia/Shanghai"])
    assert utc is not None and shanghai is not None
    assert abs((shanghai - utc) - 8 * 3600) < 60  # UTC+8, though labelled GMT


# Dates


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Thu, 01 Jan 1970 00:00:00 GMT", 0.0),
        ("Mon, 30 Nov 2026 11:04:26 GMT", calendar.timegm((2026, 11, 30, 11, 4, 26))),
        ("Mon, 30 Nov 2026 11:04:26", calendar.timegm((2026, 11, 30, 11, 4, 26))),
        ("Mon, 30 Nov 2026 19:04:26 +0800", calendar.timegm((2026, 11, 30, 11, 4, 26))),
    ],
)
def test_http_dates_parse_to_unix_time(value: str, expected: float) -> None:
    assert parse_date(value) == expected


@pytest.mark.parametrize("value", ["", "yesterday", "Mon, 30 Nov 99999 11:04:26 GMT", "1970"])
def test_unreadable_dates_parse_to_none(value: str) -> None:
    assert parse_date(value) is None


def test_date_bounds_span_every_utc_offset_or_the_skew_alone() -> None:
    assert date_bounds(900, any_zone=True) == (WEST_OF_UTC - 900, EAST_OF_UTC + 900)
    assert (WEST_OF_UTC, EAST_OF_UTC) == (-12 * 3600, 14 * 3600)
    assert date_bounds(60, any_zone=False) == (-60, 60)
