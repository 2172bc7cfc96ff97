"""Run the seed's Blade demos with the published ``eas-prediction`` SDK, unchanged but for
two things the SDK itself needs; run by an interpreter that has it installed.

``python blade_sdk_script.py ENDPOINT SERVICE`` prints a JSON line with what the SDK read back.
- ``BladeRequest()`` raises TypeError under protobuf 3.20 (the SDK's pin): it assigns
  ``None`` to a string field. A signature name is passed.
- The demo's ``[0.8] * 85680`` does not fill shape [1, 360, 128] (46080 values): the SDK
  refuses it before sending. 46080 values are sent.
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    from eas_prediction import BladeRequest, PredictClient
    from eas_prediction.blade_tf_request import TFRequest

    endpoint, service = sys.argv[1:3]
    client = PredictClient(endpoint, service)
    client.set_retry_count(1)
    client.init()
    out: dict[str, object] = {}
    try:
        BladeRequest()
    except TypeError as exc:
        out["no_signature"] = str(exc)

    req = BladeRequest(signature_name="serving_default")
    req.add_feed("input_data", 1, [1, 360, 128], BladeRequest.DT_FLOAT, [0.8] * 46080)
    req.add_feed("input_length", 1, [1], BladeRequest.DT_INT32, [187])
    req.add_feed("start_token", 1, [1], BladeRequest.DT_INT32, [104])
    req.add_fetch("output", BladeRequest.DT_FLOAT)
    resp = client.predict(req)
    out["blade"] = {
        "shape": resp.get_tensor_shape("output"),
        "values": list(resp.get_values("output", BladeRequest.DT_FLOAT))[:3],
    }

    tf = TFRequest(signature_name="predict_words")
    tf.add_feed("input_data", [1, 360, 128], TFRequest.DT_FLOAT, [0.8] * 46080)
    tf.add_feed("input_length", [1], TFRequest.DT_INT32, [187])
    tf.add_feed("start_token", [1], TFRequest.DT_INT32, [104])
    tf.add_fetch("output")
    tf.add_fetch("length")
    resp = client.predict(tf)
    out["blade_tf"] = {
        "shape": resp.get_tensor_shape("output"),
        "length": list(resp.get_values("length")),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
