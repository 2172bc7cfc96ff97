"""Bugs schemathesis found through /openapi.json, each pinned against a real server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import servekit


class Echo(servekit.Model):
    name = "echo"

    def predict(self, batch: list[Any]) -> list[Any]:
        return batch


def test_a_shape_too_large_to_allocate_with_little_data_is_a_400(
    serve: Callable[..., Any],
) -> None:
    # 2**59 FP16 elements (1 EiB) declared, two rows of data sent: the chunked JSON decoder
    # allocated the declared size first, and the MemoryError came back as a 500
    live = serve([Echo()])
    tensor = {"name": "x", "datatype": "FP16", "shape": [2**30, 2**29], "data": [[1.0], [2.0]]}
    response = live.client().post("/v2/models/echo/infer", json={"inputs": [tensor]})
    assert response.status_code == 400, response.text
    assert response.json() == {
        "error": f"input 'x': shape [{2**30}, {2**29}] has {2**59} elements but data has 2"
    }
