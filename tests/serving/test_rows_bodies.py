"""Both body styles on a plain servekit.Model: v2 tensors as before, mlrun rows when the body
says so unambiguously (``inputs`` a list whose first element is not an object)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from servekit import Model
from server.conftest import LiveServer

Serve = Callable[..., LiveServer]


class Triple(Model):
    name = "triple"
    version = "3"

    def predict(self, batch: list[Any]) -> list[Any]:
        return [np.asarray(row) * 3 for row in batch]


class Whole(Model):
    """Takes the whole request as one item (no rows): answers its sum."""

    name = "whole"
    batch_rows = False

    def predict(self, batch: list[Any]) -> list[Any]:
        return [float(np.sum(item)) for item in batch]


def test_a_plain_model_answers_a_rows_body(serve: Serve) -> None:
    live = serve([Triple()])
    reply = live.client().post(
        "/v2/models/triple/infer", json={"id": "r", "inputs": [[1, 2], [3, 4]]}
    )
    assert reply.status_code == 200, reply.text
    assert reply.json() == {
        "id": "r",
        "model_name": "triple",
        "model_version": "3",
        "outputs": [[3, 6], [9, 12]],
    }
    scalars = live.client().post("/v2/models/triple/infer", json={"inputs": [1.5, 2]}).json()
    assert scalars["outputs"] == [4.5, 6.0]


def test_a_model_without_rows_gets_the_whole_rows_array_as_one_item(serve: Serve) -> None:
    live = serve([Whole()])
    reply = live.client().post("/v2/models/whole/infer", json={"id": 1, "inputs": [[1, 2], [3, 4]]})
    assert reply.json() == {"id": 1, "model_name": "whole", "outputs": 10.0}


def test_v2_tensor_bodies_are_answered_as_before(serve: Serve) -> None:
    live = serve([Triple()])
    body = {
        "id": "t",
        "inputs": [{"name": "x", "shape": [2, 2], "datatype": "INT64", "data": [1, 2, 3, 4]}],
    }
    reply = live.client().post("/v2/models/triple/infer", json=body)
    assert reply.status_code == 200, reply.text
    assert reply.json() == {
        "id": "t",
        "model_name": "triple",
        "model_version": "3",
        "outputs": [
            {"name": "output-0", "datatype": "INT64", "shape": [2, 2], "data": [3, 6, 9, 12]}
        ],
    }


def test_a_broken_tensor_body_keeps_its_v2_error(serve: Serve) -> None:
    live = serve([Triple()])
    for body in ({"inputs": [{"name": "x"}]}, {"inputs": []}, {"data": [[1]]}, [[1, 2]]):
        reply = live.client().post("/v2/models/triple/infer", json=body)
        assert reply.status_code == 400, (body, reply.text)
        assert "outputs" not in reply.json()
