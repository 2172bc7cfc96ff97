"""The Blade request formats: the published SDK's BladeRequest and blade_tf_request.TFRequest
against a live server, and the decoder's answers to what a client gets wrong."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

import servekit
from servekit.errors import BadRequest, ModelError
from servekit.protocol.eas_blade import decode_blade_request, encode_blade_response
from servekit.protocol.eas_pb import blade_predict_pb2 as blade_pb
from servekit.server import App
from support.servers import LiveServer

SCRIPT = str(Path(__file__).with_name("blade_sdk_script.py"))


class Speech(servekit.Model):
    """Sums each frame of ``input_data``; echoes ``input_length`` back as int64 ``length``."""

    name = "nlp_model_example"
    eas_format = "blade"

    def predict(self, batch: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        return [
            {
                "output": feeds["input_data"].sum(axis=-1),
                "length": feeds["input_length"].astype(np.int64),
                "token": feeds["start_token"],
            }
            for feeds in batch
        ]


@pytest.fixture
def server() -> Iterator[LiveServer]:
    live = LiveServer(App([Speech()])).start()
    yield live
    live.stop()


def test_the_seed_blade_demos_run_with_the_published_sdk(server, eas_sdk_python):
    done = subprocess.run(
        [eas_sdk_python, SCRIPT, server.url, "nlp_model_example"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert "Cannot set blade.Request.tf_signature_name to None" in out["no_signature"]
    assert out["blade"]["shape"] == [1, 360]
    assert out["blade"]["values"] == pytest.approx([0.8 * 128] * 3, rel=1e-5)
    assert out["blade_tf"] == {"shape": [1, 360], "length": [187]}


def request(*feeds: blade_pb.Array, fetches: tuple[tuple[str, int], ...] = ()) -> bytes:
    message = blade_pb.Request(tf_signature_name="s")
    message.inputs.extend(feeds)
    for name, data_type in fetches:
        message.output_info.add(name_in_dl_model=name, data_type=data_type)
    return message.SerializeToString()


def feed(name: str, shape: list[int], **values: Any) -> blade_pb.Array:
    array = blade_pb.Array(name_in_dl_model=name, batchsize=1, **values)
    array.shape.dim.extend(shape)
    return array


def test_each_values_field_gives_its_dtype():
    feeds, fetches = decode_blade_request(
        request(
            feed("f", [2], float_val=[0.5, 1.5]),
            feed("i", [1, 1], int_val=[-7]),
            feed("l", [1], int64_val=[2**40]),
            feed("s", [2], string_val=[b"a", "é".encode()]),
            fetches=(("out", blade_pb.DT_INT64),),
        )
    )
    assert feeds["f"].dtype == np.float32 and feeds["i"].dtype == np.int32
    assert feeds["i"].shape == (1, 1) and feeds["l"].tolist() == [2**40]
    assert feeds["s"].tolist() == [b"a", "é".encode()]
    assert fetches == [("out", blade_pb.DT_INT64)]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\xff\xff", "not a valid Blade Request"),
        (request(), "no inputs"),
        (request(feed("x", [2, 2], float_val=[1.0])), "feed 'x': shape [2, 2] needs 4 values"),
        (request(feed("x", [1], float_val=[1.0], int_val=[1])), "both float_val and int_val"),
        (request(feed("", [1], float_val=[1.0])), "input 0 has no name"),
        (request(feed("x", [1], float_val=[1]), feed("x", [1], float_val=[2])), "given twice"),
        (request(feed("x", [-1], float_val=[])), "negative dimension"),
    ],
)
def test_what_a_client_gets_wrong_is_a_bad_request_saying_what(body, message):
    with pytest.raises(BadRequest, match=re.escape(message)):
        decode_blade_request(body)


def test_a_fetch_converts_the_output_and_every_output_carries_its_batch_size():
    body = encode_blade_response(
        {"a": np.arange(6, dtype=np.float64).reshape(2, 3), "b": np.array([1, 2], np.uint8)},
        [("a", blade_pb.DT_INT32), ("b", blade_pb.DT_UNKNOWN)],
    )
    a, b = blade_pb.Response.FromString(body).outputs
    assert (a.name_in_dl_model, a.batchsize, list(a.shape.dim)) == ("a", 2, [2, 3])
    assert list(a.int_val) == [0, 1, 2, 3, 4, 5] and not a.float_val
    assert list(b.int_val) == [1, 2] and b.batchsize == 2


def test_without_fetches_every_output_keeps_its_own_field():
    outputs = {"f": np.float64(2.5), "l": np.array([2**40]), "s": np.array(["x"])}
    got = {
        o.name_in_dl_model: o
        for o in blade_pb.Response.FromString(encode_blade_response(outputs)).outputs
    }
    assert list(got["f"].float_val) == [2.5] and got["f"].batchsize == 1
    assert list(got["l"].int64_val) == [2**40] and list(got["s"].string_val) == [b"x"]


def test_unknown_fetch_is_a_bad_request_and_an_unfit_output_a_model_error():
    with pytest.raises(BadRequest, match="fetch 'zz' is not an output"):
        encode_blade_response({"a": np.zeros(1)}, [("zz", blade_pb.DT_FLOAT)])
    with pytest.raises(ModelError, match="does not fit int_val"):
        encode_blade_response({"a": np.array([2**40])}, [("a", blade_pb.DT_INT32)])
    with pytest.raises(ModelError, match="dict of outputs"):
        encode_blade_response([1, 2])  # type: ignore[arg-type]


def test_a_bad_blade_body_over_http_is_a_400_naming_the_feed(server):
    body = request(feed("input_data", [2], float_val=[1.0]))
    answer = httpx.post(f"{server.url}/api/predict/nlp_model_example", content=body)
    assert answer.status_code == 400
    assert "feed 'input_data'" in answer.json()["error"]
