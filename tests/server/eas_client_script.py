"""Drive a live server with the published ``eas-prediction`` PredictClient, unchanged.

Run by an interpreter that has the SDK: ``python eas_client_script.py ENDPOINT SERVICE KIND
[TOKEN]`` with KIND ``string``, ``tf`` or ``torch``; prints a JSON line with what the SDK
read back, or ``{"error": ..., "code": ...}`` if it raised.
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    from eas_prediction import (
        PredictClient,
        StringRequest,
        TFRequest,
        TorchRequest,
    )

    endpoint, service, kind = sys.argv[1:4]
    token = sys.argv[4] if len(sys.argv) > 4 else ""
    client = PredictClient(endpoint, service)
    if token:
        client.set_token(token)
    client.set_retry_count(1)
    client.set_timeout(5000)
    client.init()
    try:
        if kind == "string":
            response = client.predict(StringRequest("hello servekit"))
            out = {"body": response.response_data.decode("utf-8")}
        elif kind == "tf":
            request = TFRequest("serving_default")
            request.add_feed("x", [2, 2], TFRequest.DT_FLOAT, [1.0, 2.0, 3.0, 4.0])
            request.add_fetch("doubled")
            response = client.predict(request)
            out = {
                "shape": list(response.get_tensor_shape("doubled")),
                "values": list(response.get_values("doubled")),
            }
        else:
            request = TorchRequest()
            request.add_feed(0, [3], TorchRequest.DT_FLOAT, [1.0, 2.0, 3.0])
            response = client.predict(request)
            out = {
                "shape": list(response.get_tensor_shape(0)),
                "values": list(response.get_values(0)),
            }
    except Exception as exc:  # report what the SDK raised to the test
        out = {"error": str(exc), "code": getattr(exc, "code", None)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
