"""Drive the published ``eas-prediction`` SDK; run by an interpreter that has it installed.

Its pins (``protobuf<=3.20.3``) clash with servekit's, so tests run this file in a separate
environment (``SERVEKIT_EAS_PYTHON``) and exchange JSON over stdin/stdout:

- ``python eas_sdk_script.py requests`` prints ``{case: base64 body}`` built with the SDK's
  ``TFRequest``/``TorchRequest``. Its output is saved as ``data/eas_sdk_requests.json``.
- ``python eas_sdk_script.py signed`` prints the headers ``PredictClient`` signs a request
  with (token ``secret-token``, service ``echo``); saved as ``data/eas_sdk_signed.json``.
- ``python eas_sdk_script.py client <endpoint> <token>`` sends a ``StringRequest`` to
  service ``echo``, a ``TFRequest`` to ``tf`` and a ``TorchRequest`` to ``torch`` with the
  SDK's ``PredictClient`` and prints what came back.
- ``python eas_sdk_script.py responses`` reads ``{case: {"kind": "tf"|"torch", "body": b64,
  "keys": [...]}}`` and prints, for each key, the shape and values the SDK's
  ``TFResponse``/``TorchResponse`` read from the body (bytes as latin-1 strings).
"""

from __future__ import annotations

import base64
import json
import sys


def build_requests() -> dict[str, str]:
    from eas_prediction import TFRequest, TorchRequest

    cases = {}
    tf = TFRequest("serving_default")
    tf.add_feed("images", [2, 3], TFRequest.DT_FLOAT, [0.5, 1.5, -2.0, 3.25, 0.0, 1e-3])
    tf.add_feed("ids", [3], TFRequest.DT_INT64, [1, -2, 2**40])
    tf.add_feed("mask", [2, 2], TFRequest.DT_BOOL, [True, False, False, True])
    tf.add_feed("words", [2], TFRequest.DT_STRING, ["héllo".encode(), b"\x00\xff"])
    tf.add_fetch("scores")
    tf.add_fetch("labels")
    cases["tf_mixed"] = tf.to_string()

    tf = TFRequest("predict")
    tf.add_feed("d", [1], TFRequest.DT_DOUBLE, [0.1])
    tf.add_feed("i8", [2], TFRequest.DT_INT8, [-128, 127])
    tf.add_feed("i16", [2], TFRequest.DT_INT16, [-300, 300])
    tf.add_feed("i32", [1, 1], TFRequest.DT_INT32, [2**31 - 1])
    tf.add_feed("u8", [3], TFRequest.DT_UINT8, [0, 1, 255])
    tf.add_feed("empty", [0, 4], TFRequest.DT_FLOAT, [])
    cases["tf_numeric"] = tf.to_string()

    torch = TorchRequest()
    torch.add_feed(0, [2, 2], TorchRequest.DT_FLOAT, [1.0, 2.0, 3.0, 4.0])
    torch.add_feed(1, [3], TorchRequest.DT_INT64, [7, 8, 9])
    torch.add_feed(2, [2], TorchRequest.DT_UINT8, [0, 255])
    torch.add_feed(3, [1], TorchRequest.DT_DOUBLE, [2.5])
    torch.add_fetch(1)
    cases["torch_mixed"] = torch.to_string()

    tf = TFRequest("serving_default")
    tf.add_feed("x", [2, 2], TFRequest.DT_FLOAT, [1, 2, 3])
    cases["tf_bad_count"] = tf.to_string()
    return {name: base64.b64encode(body).decode() for name, body in cases.items()}


def build_signed() -> dict[str, object]:
    from eas_prediction import PredictClient

    client = PredictClient("127.0.0.1:1", "echo")
    client.set_token("secret-token")
    body = b"payload \x00\xff"
    return {
        "token": "secret-token",
        "path": "/api/predict/echo",
        "body": base64.b64encode(body).decode(),
        "headers": client.generate_singaure(bytearray(body)),
    }


def run_client(endpoint: str, token: str) -> dict[str, object]:
    from eas_prediction import PredictClient, StringRequest, TFRequest, TorchRequest

    def client(service: str) -> PredictClient:
        c = PredictClient(endpoint, service)
        c.set_token(token)
        c.set_retry_count(1)
        c.init()
        return c

    echo = client("echo").predict(StringRequest("héllo sdk")).response_data
    tf = TFRequest("serving_default")
    tf.add_feed("x", [2], TFRequest.DT_FLOAT, [1.5, 2.0])
    tf.add_fetch("doubled")
    tf_response = client("tf").predict(tf)
    torch = TorchRequest()
    torch.add_feed(0, [3], TorchRequest.DT_INT64, [1, 2, 3])
    torch_response = client("torch").predict(torch)
    return {
        "echo": echo.decode("utf-8"),
        "tf": list(tf_response.get_values("doubled")),
        "tf_shape": tf_response.get_tensor_shape("doubled"),
        "torch": [list(torch_response.get_values(i)) for i in range(2)],
    }


def parse_responses(cases: dict[str, dict]) -> dict[str, dict]:
    from eas_prediction import TFResponse, TorchResponse

    out: dict[str, dict] = {}
    for name, case in cases.items():
        body = base64.b64decode(case["body"])
        response = TFResponse(body) if case["kind"] == "tf" else TorchResponse(body)
        out[name] = {}
        for key in case["keys"]:
            values = response.get_values(key)
            out[name][str(key)] = {
                "shape": response.get_tensor_shape(key),
                "values": None if values is None else [_plain(v) for v in values],
            }
    return out


def _plain(value: object) -> object:
    return value.decode("latin-1") if isinstance(value, bytes) else value


if __name__ == "__main__":
    if sys.argv[1:] == ["requests"]:
        json.dump(build_requests(), sys.stdout, indent=1, sort_keys=True)
    elif sys.argv[1:] == ["signed"]:
        json.dump(build_signed(), sys.stdout, indent=1, sort_keys=True)
    elif sys.argv[1:2] == ["client"] and len(sys.argv) == 4:
        json.dump(run_client(sys.argv[2], sys.argv[3]), sys.stdout)
    elif sys.argv[1:] == ["responses"]:
        json.dump(parse_responses(json.load(sys.stdin)), sys.stdout)
    else:
        sys.exit("usage: eas_sdk_script.py requests|signed|client URL TOKEN|responses")
