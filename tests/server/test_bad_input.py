"""Every kind of bad input gets a JSON error naming the problem, the right status, and the
server keeps serving good requests afterwards."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import orjson
import pytest

import servekit

GOOD = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 1], "data": [1, 2]}]}
BODY_LIMIT = 1024


class Echo(servekit.Model):
    """Answers each row unchanged; with a gate, each batch waits for it; records batches."""

    name = "echo"

    def __init__(self, gate: Any = None, **settings: Any) -> None:
        super().__init__(**settings)
        self.gate = gate
        self.batches: list[list[float]] = []

    def predict(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        self.batches.append([float(row.ravel()[0]) for row in batch])
        if self.gate is not None:
            self.gate.block()
        return batch


class SlowLoad(Echo):
    name = "slowload"

    def load(self) -> None:
        self.gate.block()

    def predict(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        return batch


class BrokenLoad(Echo):
    name = "broken"

    def load(self) -> None:
        raise RuntimeError("weights file /models/broken.bin is missing")


def assert_good(client: Any, path: str = "/v2/models/echo/infer") -> None:
    response = client.post(path, json=GOOD)
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == [1.0, 2.0]


def assert_error(response: Any, status: int, *fragments: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    message = response.json()["error"]
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def one_row(value: float) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1], "data": [value]}]}


@pytest.fixture(scope="module")
def shared(serve_shared):
    return serve_shared([Echo(name="echo:1")], max_body_size=BODY_LIMIT)


def tensor(shape: list[int], data: list[Any], datatype: str = "FP32") -> dict[str, Any]:
    return {"inputs": [{"name": "x", "datatype": datatype, "shape": shape, "data": data}]}


INFER = "/v2/models/echo/infer"
TWO_INPUTS_DISAGREE = {
    "inputs": [
        {"name": "x", "datatype": "FP32", "shape": [2], "data": [1, 2]},
        {"name": "y", "datatype": "FP32", "shape": [3], "data": [1, 2, 3]},
    ]
}
BAD_REQUESTS = [
    # id, method, path, body, status, fragments of the error message
    ("malformed-json", "POST", INFER, b'{"inputs": [', 400, ["malformed JSON"]),
    ("missing-inputs", "POST", INFER, b'{"id": "a"}', 400, ["no 'inputs'"]),
    ("body-not-an-object", "POST", INFER, b"[1, 2]", 400, ["must be a JSON object"]),
    (
        "datatype-data-mismatch",
        "POST",
        INFER,
        tensor([2], ["a", "b"], "INT32"),
        400,
        ["input 'x'", "element 0", "INT32 needs integers"],
    ),
    (
        "shape-count-mismatch",
        "POST",
        INFER,
        tensor([2, 3], [1, 2, 3, 4, 5]),
        400,
        ["input 'x'", "shape [2, 3] has 6 elements but data has 5"],
    ),
    ("unknown-datatype", "POST", INFER, tensor([1], [1], "FLOAT"), 400, ["unknown datatype"]),
    ("zero-rows", "POST", INFER, tensor([0, 3], []), 400, ["input 'x' has no rows", "[0, 3]"]),
    (
        "zero-rows-two-inputs",
        "POST",
        INFER,
        {
            "inputs": [
                tensor([0, 1], [])["inputs"][0],
                {**tensor([0], [])["inputs"][0], "name": "y"},
            ]
        },
        400,
        ["has no rows"],
    ),
    (
        "more-than-64-dimensions",
        "POST",
        INFER,
        tensor([1] * 65, [1]),
        400,
        ["input 'x'", "65 dimensions; at most 64"],
    ),
    (
        "shape-no-array-can-have",
        "POST",
        INFER,
        tensor([0, 2**62, 2**62], []),
        400,
        ["input 'x'", "too large for any array"],
    ),
    ("scalar-input", "POST", INFER, tensor([], [1]), 400, ["scalar", "first dimension"]),
    (
        "inputs-disagree-on-rows",
        "POST",
        INFER,
        TWO_INPUTS_DISAGREE,
        400,
        ["disagree on the number of rows"],
    ),
    (
        "bad-timeout-parameter",
        "POST",
        INFER,
        {**GOOD, "parameters": {"timeout": "soon"}},
        400,
        ["'timeout' must be a non-negative integer of microseconds"],
    ),
    (
        "unknown-model",
        "POST",
        "/v2/models/nope/infer",
        GOOD,
        404,
        ["unknown model 'nope'", "served models: echo"],
    ),
    (
        "unknown-version",
        "POST",
        "/v2/models/echo/versions/9/infer",
        GOOD,
        404,
        ["model 'echo' has no version '9'", "versions: 1"],
    ),
    ("unknown-model-metadata", "GET", "/v2/models/nope", None, 404, ["unknown model 'nope'"]),
    ("get-on-infer", "GET", INFER, None, 405, ["method GET is not allowed", "allowed: POST"]),
    ("post-on-metadata", "POST", "/v2/models/echo", GOOD, 405, ["allowed: GET, HEAD"]),
    ("delete-on-server", "DELETE", "/v2", None, 405, ["method DELETE is not allowed"]),
    ("unknown-v2-route", "GET", "/v2/nothing/here", None, 404, ["no route for GET /v2/nothing"]),
    ("unknown-route", "GET", "/v1/models/echo", None, 404, ["no route for GET /v1/models/echo"]),
    ("too-deep-route", "POST", f"{INFER}/extra", GOOD, 404, ["no route"]),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "fragments"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_REQUESTS],
)
def test_bad_request_gets_json_error_and_server_keeps_serving(
    shared, method, path, body, status, fragments
):
    client = shared.client()
    content = body if isinstance(body, bytes) or body is None else orjson.dumps(body)
    response = client.request(method, path, content=content)
    assert_error(response, status, *fragments)
    assert_good(client)


def test_bad_timeout_header_is_400(shared):
    client = shared.client()
    response = client.post(
        "/v2/models/echo/infer", json=GOOD, headers={"X-Request-Timeout-Ms": "later"}
    )
    assert_error(response, 400, "X-Request-Timeout-Ms must be a number of milliseconds")
    assert_good(client)


def test_binary_header_longer_than_the_body_is_400(shared):
    client = shared.client()
    response = client.post(
        "/v2/models/echo/infer",
        content=orjson.dumps(GOOD),
        headers={"Inference-Header-Content-Length": "5000"},
    )
    assert_error(response, 400, "Inference-Header-Content-Length is 5000")
    assert_good(client)


def test_body_over_the_limit_with_content_length_is_413(shared):
    client = shared.client()
    big = orjson.dumps(one_row(1.0)) + b" " * (2 * BODY_LIMIT)  # valid JSON, just too big
    response = client.post("/v2/models/echo/infer", content=big)
    assert_error(
        response,
        413,
        f"{len(big)} bytes exceeds the limit of {BODY_LIMIT} bytes",
        "--max-body-size",
    )
    assert_good(client)


def test_chunked_body_over_the_limit_is_413(shared):
    client = shared.client()
    big = orjson.dumps(one_row(1.0)) + b" " * (2 * BODY_LIMIT)
    chunks = [big[i : i + 256] for i in range(0, len(big), 256)]
    response = client.post("/v2/models/echo/infer", content=iter(chunks))
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert_error(response, 413, f"exceeds the limit of {BODY_LIMIT} bytes")
    assert_good(client)


def test_chunked_body_over_the_limit_arriving_in_one_write_is_413(shared):
    # The whole chunked body reaches the server in one segment, so the app's first receive()
    # already holds all of it (more_body=False): the limit must apply to that message too.
    big = orjson.dumps(one_row(1.0)) + b" " * (2 * BODY_LIMIT)
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (big[:256], big[256:]))
    reply = shared.raw_exchange(
        b"POST /v2/models/echo/infer HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
        b"Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
        + chunked
        + b"0\r\n\r\n"
    )
    status_line, _, rest = reply.partition(b"\r\n")
    assert status_line.split()[1] == b"413", reply[:200]
    assert f"exceeds the limit of {BODY_LIMIT} bytes".encode() in rest.partition(b"\r\n\r\n")[2]
    assert_good(shared.client())


def test_request_with_more_rows_than_the_queue_holds_is_413(serve):
    live = serve([Echo(max_queue_size=3)])
    client = live.client()
    too_many = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [4, 1], "data": [1] * 4}]}
    response = client.post("/v2/models/echo/infer", json=too_many)
    assert_error(response, 413, "request has 4 items", "queues at most 3")
    assert_good(client)


def test_full_queue_is_429_with_retry_after(serve, gate, wait_until):
    model = Echo(gate, max_queue_size=2, instances=1)
    live = serve([model])
    client = live.client()
    batcher = live.runtime("echo").batcher
    with ThreadPoolExecutor(3) as pool:
        running = pool.submit(client.post, "/v2/models/echo/infer", json=one_row(1))
        gate.wait_entered()
        queued = [
            pool.submit(client.post, "/v2/models/echo/infer", json=one_row(v)) for v in (2, 3)
        ]
        wait_until(lambda: batcher.queued_items == 2, "the queue is full")
        refused = client.post("/v2/models/echo/infer", json=one_row(4))
        assert_error(refused, 429, "queue is full (2 of 2 items)", "retry later")
        assert refused.headers["retry-after"] == "1"
        gate.open()
        assert running.result(10).status_code == 200
        assert [f.result(10).json()["outputs"][0]["data"] for f in queued] == [[2.0], [3.0]]
    assert 4.0 not in [v for batch in model.batches for v in batch]
    assert batcher.stats.refused == 1
    assert_good(client)


def test_model_still_loading_is_503_until_load_returns(serve, gate):
    live = serve([SlowLoad(gate), Echo()], wait_ready=False)
    client = live.client()
    gate.wait_entered()
    assert_error(client.post("/v2/models/slowload/infer", json=GOOD), 503, "still loading")
    assert client.get("/v2/health/ready").status_code == 503
    not_ready = client.get("/v2/models/slowload/ready")
    assert not_ready.status_code == 503
    assert not_ready.json()["ready"] is False
    assert client.get("/v2/models/slowload").json()["state"] == "loading"
    assert_good(client)  # a loaded neighbour serves meanwhile
    gate.open()
    live.call(live.app.wait_loaded())
    assert client.get("/v2/health/ready").status_code == 200
    assert_good(client, "/v2/models/slowload/infer")


def test_model_whose_load_raised_is_503_naming_the_error(serve):
    live = serve([BrokenLoad(), Echo()])
    client = live.client()
    response = client.post("/v2/models/broken/infer", json=GOOD)
    assert_error(
        response, 503, "failed to load", "RuntimeError: weights file /models/broken.bin is missing"
    )
    assert client.get("/v2/health/ready").status_code == 503
    assert client.get("/v2/models/broken/ready").status_code == 503
    metadata = client.get("/v2/models/broken").json()
    assert metadata["state"] == "failed"
    assert "weights file /models/broken.bin is missing" in metadata["error"]
    assert client.get("/v2/models/echo/ready").status_code == 200
    assert_good(client)


@pytest.mark.parametrize(
    ("parameters", "headers"),
    [
        pytest.param({"timeout": 50_000}, {}, id="parameters-timeout-us"),
        pytest.param({}, {"X-Request-Timeout-Ms": "50"}, id="timeout-header-ms"),
    ],
)
def test_deadline_passed_before_the_model_ran_is_504(serve, gate, parameters, headers):
    model = Echo(gate)
    live = serve([model])
    client = live.client()
    batcher = live.runtime("echo").batcher
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(client.post, "/v2/models/echo/infer", json=one_row(1))
        gate.wait_entered()
        late = client.post(
            "/v2/models/echo/infer",
            json={**one_row(99), "parameters": parameters},
            headers=headers,
        )  # answered while the gate is still closed: the model is busy the whole time
        assert_error(late, 504, "deadline passed", "the model did not run it")
        gate.open()
        assert running.result(10).status_code == 200
    assert_good(client)
    assert model.batches == [[1.0], [1.0, 2.0]]  # the expired row 99 never reached the model
    assert batcher.stats.timed_out == 1


def test_deadline_already_passed_on_arrival_is_504(serve):
    model = Echo()
    live = serve([model])
    client = live.client()
    response = client.post("/v2/models/echo/infer", json={**GOOD, "parameters": {"timeout": 0}})
    assert_error(response, 504, "already passed")
    assert model.batches == []
    assert_good(client)


def test_zero_rows_in_binary_is_400(shared):
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "datatype": "FP32",
                    "shape": [0, 3],
                    "parameters": {"binary_data_size": 0},
                }
            ]
        }
    )
    client = shared.client()
    response = client.post(
        INFER, content=header, headers={"Inference-Header-Content-Length": str(len(header))}
    )
    assert_error(response, 400, "input 'x' has no rows (shape [0, 3])", "at least one row")
    assert_good(client)


class ReturnsNone(servekit.Model):
    name = "forgetful"

    def predict(self, batch: list[Any]) -> Any:
        self.last = batch  # forgot the return


def test_predict_returning_none_says_what_predict_must_return(serve):
    live = serve([ReturnsNone(), Echo()])
    client = live.client()
    response = client.post("/v2/models/forgetful/infer", json=GOOD)
    assert_error(
        response,
        500,
        "model 'forgetful' predict returned None",
        "must return a list with one result per item (2 here)",
    )
    assert_good(client)
