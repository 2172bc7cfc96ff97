"""mlrun's V2ModelServer on real servers: routes, bodies, hooks, batching, errors."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from servekit.serving import Event, V2ModelServer
from server.conftest import Gate, LiveServer

Serve = Callable[..., LiveServer]


class Doubler(V2ModelServer):
    """Doubles every value; records each predict call's row count; may block on a gate."""

    def __init__(self, *args: Any, gate: Gate | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[int] = []
        self.gate = gate
        self.lock = threading.Lock()

    def load(self) -> None:
        self.model = 2

    def predict(self, request: dict[str, Any]) -> list[Any]:
        with self.lock:
            self.calls.append(len(request["inputs"]))
            first = len(self.calls) == 1
        if first and self.gate is not None:
            self.gate.block()
        if any(-1 in row for row in request["inputs"]):
            raise RuntimeError("row with -1")
        return [[self.model * x for x in row] for row in request["inputs"]]

    def explain(self, request: dict[str, Any]) -> Any:
        return {"why": len(request["inputs"])}

    def op_echo(self, event: Event) -> dict[str, Any]:
        return {
            "body": event.body,
            "path": event.path,
            "method": event.method,
            "id": event.id,
            "user": event.headers.get("x-user"),
        }

    def op_param(self, event: Event) -> Any:
        return {key: self.get_param(key, "none") for key in event.body["keys"]}


def post(live: LiveServer, path: str, body: Any) -> httpx.Response:
    return live.client().post(path, json=body)


def rows_of(i: int) -> list[list[int]]:
    """Request i's rows: 1 to 3 rows of two values each, all distinct."""
    return [[i, 1000 + r] for r in range(1 + i % 3)]


def doubled(rows: list[list[int]]) -> list[list[int]]:
    return [[2 * x for x in row] for row in rows]


def queued(live: LiveServer, name: str) -> int:
    return int(live.runtime(name).batcher.queued_items)


def test_rows_body_is_answered_in_mlruns_shape(serve: Serve) -> None:
    live = serve([Doubler(name="doubler").as_model()])
    reply = post(live, "/v2/models/doubler/infer", {"id": "a1", "inputs": [[1, 2], [3, 4]]})
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"id": "a1", "model_name": "doubler", "outputs": [[2, 4], [6, 8]]}
    made = post(live, "/v2/models/doubler/infer", {"inputs": [[1]]}).json()
    assert made["outputs"] == [[2]] and len(made["id"]) == 32  # no id sent: one is made


@pytest.mark.parametrize(
    "path",
    [
        "/v2/models/iris/infer",
        "/v2/models/iris/predict",
        "/v2/models/iris/versions/v7/infer",
        "/v2/models/iris/versions/v7/predict",
    ],
)
def test_name_version_splits_and_every_mlrun_route_answers(serve: Serve, path: str) -> None:
    server = Doubler(name="iris:v7")
    assert (server.name, server.version) == ("iris", "v7")
    live = serve([server.as_model()])
    reply = post(live, path, {"id": 3, "inputs": [[5]]})
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"id": 3, "model_name": "iris", "model_version": "v7", "outputs": [[10]]}


def test_concurrent_requests_share_one_predict_and_each_gets_its_own_rows(
    serve: Serve, gate: Gate, wait_until: Callable[..., None]
) -> None:
    server = Doubler(name="doubler", gate=gate, max_batch_size=16)
    live = serve([server.as_model()])
    with ThreadPoolExecutor(16) as pool:
        first = pool.submit(post, live, "/v2/models/doubler/infer", {"id": 0, "inputs": rows_of(0)})
        gate.wait_entered()
        replies = {
            i: pool.submit(post, live, "/v2/models/doubler/infer", {"id": i, "inputs": rows_of(i)})
            for i in range(1, 16)
        }
        wait_until(lambda: queued(live, "doubler") == 15, "15 requests are queued")
        gate.open()
        replies[0] = first
        for i, future in replies.items():
            reply = future.result()
            assert reply.status_code == 200, reply.text
            assert reply.json()["id"] == i
            assert reply.json()["outputs"] == doubled(rows_of(i))
    # the first request alone, then the 15 queued ones in ONE predict (all their rows)
    assert server.calls == [1, sum(len(rows_of(i)) for i in range(1, 16))]


def test_without_max_batch_size_each_request_has_its_own_predict_as_in_mlrun(
    serve: Serve, gate: Gate, wait_until: Callable[..., None]
) -> None:
    server = Doubler(name="doubler", gate=gate)
    live = serve([server.as_model()])
    assert live.runtime("doubler").policy.max_batch_size == 1
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(post, live, "/v2/models/doubler/infer", {"inputs": rows_of(0)})]
        gate.wait_entered()
        futures += [
            pool.submit(post, live, "/v2/models/doubler/infer", {"inputs": rows_of(i)})
            for i in range(1, 4)
        ]
        wait_until(lambda: queued(live, "doubler") == 3, "3 requests are queued")
        gate.open()
        assert [f.result().json()["outputs"] for f in futures] == [
            doubled(rows_of(i)) for i in range(4)
        ]
    assert sorted(server.calls) == sorted(len(rows_of(i)) for i in range(4))  # one call each


def test_max_batch_size_as_a_class_attribute() -> None:
    class Batched(Doubler):
        max_batch_size = 8

    assert Batched().as_model().batch_settings().max_batch_size == 8
    assert Batched(max_batch_size=4).as_model().batch_settings().max_batch_size == 4


def test_requests_that_cannot_merge_run_alone(
    serve: Serve, gate: Gate, wait_until: Callable[..., None]
) -> None:
    server = Doubler(name="doubler", gate=gate, max_batch_size=16)
    live = serve([server.as_model()])
    bodies = [
        {"inputs": [[1, 1]]},
        {"inputs": [[2, 2]], "threshold": 0.5},  # an extra parameter: alone
        {"inputs": [[3, 3, 3]]},  # rows of another width: alone
        {"id": "x", "inputs": [[4, 4], [5, 5]]},  # merges with the first
    ]
    with ThreadPoolExecutor(5) as pool:
        first = pool.submit(post, live, "/v2/models/doubler/infer", {"inputs": [[0, 0]]})
        gate.wait_entered()
        futures = [pool.submit(post, live, "/v2/models/doubler/infer", b) for b in bodies]
        wait_until(lambda: queued(live, "doubler") == 4, "4 requests are queued")
        gate.open()
        assert first.result().status_code == 200
        for body, future in zip(bodies, futures, strict=True):
            assert future.result().json()["outputs"] == doubled(body["inputs"])
    assert sorted(server.calls) == [1, 1, 1, 3]  # the first; two alone; two merged (3 rows)


def test_a_request_that_fails_a_merged_predict_fails_alone(
    serve: Serve, gate: Gate, wait_until: Callable[..., None]
) -> None:
    server = Doubler(name="doubler", gate=gate, max_batch_size=16)
    live = serve([server.as_model()])
    bodies = [{"inputs": [[1, 1]]}, {"inputs": [[-1, 2]]}, {"inputs": [[3, 3]]}]
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(post, live, "/v2/models/doubler/infer", {"inputs": [[0, 0]]})
        gate.wait_entered()
        futures = [pool.submit(post, live, "/v2/models/doubler/infer", b) for b in bodies]
        wait_until(lambda: queued(live, "doubler") == 3, "3 requests are queued")
        gate.open()
        assert first.result().status_code == 200
        replies = [f.result() for f in futures]
    assert [r.status_code for r in replies] == [200, 500, 200]
    assert "row with -1" in replies[1].json()["error"]
    assert replies[2].json()["outputs"] == [[6, 6]]


def test_a_merged_predict_must_return_one_output_per_row(
    serve: Serve, gate: Gate, wait_until: Callable[..., None]
) -> None:
    class Summary(Doubler):
        def predict(self, request: dict[str, Any]) -> Any:
            super().predict(request)
            return {"n": len(request["inputs"])}

    server = Summary(name="summary", gate=gate, max_batch_size=4)
    live = serve([server.as_model()])
    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(post, live, "/v2/models/summary/infer", {"inputs": [[0]]})
        gate.wait_entered()
        futures = [pool.submit(post, live, "/v2/models/summary/infer", {"inputs": [[1]]})] * 1
        futures.append(pool.submit(post, live, "/v2/models/summary/infer", {"inputs": [[2]]}))
        wait_until(lambda: queued(live, "summary") == 2, "2 requests are queued")
        gate.open()
        assert first.result().json()["outputs"] == {"n": 1}  # alone: any answer, as in mlrun
        replies = [f.result() for f in futures]
    assert [r.status_code for r in replies] == [500, 500]
    assert "must return one output per row" in replies[0].json()["error"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"id": 1, "data": [[1]]}, 'Expected key "inputs" in request body'),
        ({"id": 1, "inputs": 5}, 'Expected "inputs" to be a list'),
        ([1, 2], 'Expected key "inputs" in request body'),
    ],
)
def test_validate_errors_are_400_with_mlruns_message(serve: Serve, body: Any, message: str) -> None:
    live = serve([Doubler(name="doubler").as_model()])
    reply = post(live, "/v2/models/doubler/infer", body)
    assert reply.status_code == 400
    assert reply.json() == {"error": message}


def test_preprocess_and_postprocess_see_the_request_and_the_response(serve: Serve) -> None:
    class Hooked(Doubler):
        def preprocess(self, request: Any, operation: str) -> Any:
            return {"id": request["id"], "inputs": [[v] for v in request["values"]]}

        def postprocess(self, request: Any) -> Any:
            return {**request, "post": True}

    live = serve([Hooked(name="hooked").as_model()])
    reply = post(live, "/v2/models/hooked/infer", {"id": "h", "values": [1, 2]})
    assert reply.json() == {"id": "h", "model_name": "hooked", "outputs": [[2], [4]], "post": True}


def test_explain_route_calls_explain(serve: Serve) -> None:
    live = serve(
        [Doubler(name="doubler").as_model(), V2ModelServer(name="plain", model=1).as_model()]
    )
    reply = post(live, "/v2/models/doubler/explain", {"id": 9, "inputs": [[1], [2]]})
    assert reply.json() == {"id": 9, "model_name": "doubler", "outputs": {"why": 2}}
    missing = post(live, "/v2/models/plain/explain", {"inputs": [[1]]})
    assert missing.status_code == 501 and "has no explain()" in missing.json()["error"]


def test_op_routes_call_op_methods_with_an_event(serve: Serve) -> None:
    live = serve([Doubler(name="doubler").as_model()])
    reply = live.client().post(
        "/v2/models/doubler/echo", json={"id": "e", "x": [1]}, headers={"X-User": "ann"}
    )
    assert reply.status_code == 200, reply.text
    assert reply.json() == {
        "body": {"id": "e", "x": [1]},
        "path": "/echo",
        "method": "POST",
        "id": "e",
        "user": "ann",  # the event carries the request's headers
    }
    unknown = post(live, "/v2/models/doubler/nope", {})
    assert unknown.status_code == 404
    assert "no operation 'nope'" in unknown.json()["error"] and "echo" in unknown.json()["error"]


def test_get_param_reads_keywords_then_the_environment(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SERVEKIT_PARAM_THRESHOLD", "0.7")
    monkeypatch.setenv("SERVEKIT_PARAM_MY_PARAM", "from env")
    server = Doubler(name="doubler", my_param=5)
    assert server.get_param("my_param") == 5  # keyword first
    assert server.get_param("threshold") == "0.7"  # then SERVEKIT_PARAM_<KEY>
    assert server.get_param("absent", 1) == 1
    live = serve([server.as_model()])
    reply = post(live, "/v2/models/doubler/param", {"keys": ["my_param", "threshold", "absent"]})
    assert reply.json() == {"my_param": 5, "threshold": "0.7", "absent": "none"}


def test_input_path_selects_the_request_and_result_path_writes_the_answer(serve: Serve) -> None:
    server = Doubler(name="doubler", input_path="data.request", result_path="answer.model")
    live = serve([server.as_model()])
    body = {"data": {"request": {"id": "p", "inputs": [[1, 2]]}}, "other": 1}
    reply = post(live, "/v2/models/doubler/infer", body)
    assert reply.status_code == 200, reply.text
    assert reply.json() == {
        **body,
        "answer": {"model": {"id": "p", "model_name": "doubler", "outputs": [[2, 4]]}},
    }
    missing = post(live, "/v2/models/doubler/infer", {"other": 1})
    assert missing.status_code == 400 and "input_path 'data.request'" in missing.json()["error"]


def test_a_model_given_to_the_constructor_is_ready_without_load(serve: Serve) -> None:
    class NoLoad(Doubler):
        def load(self) -> None:
            raise AssertionError("load must not run when a model object was given")

    server = NoLoad(name="given", model=3)
    assert server.ready
    live = serve([server.as_model()])
    assert post(live, "/v2/models/given/infer", {"inputs": [[1]]}).json()["outputs"] == [[3]]


def test_a_model_that_is_not_ready_refuses_inference(
    serve: Serve, gate: Gate, wait_until: Callable[..., None]
) -> None:
    class Slow(Doubler):
        def load(self) -> None:
            gate.block()
            super().load()

    server = Slow(name="slow")
    live = serve([server.as_model()], wait_ready=False)
    gate.wait_entered()
    loading = post(live, "/v2/models/slow/infer", {"inputs": [[1]]})
    assert loading.status_code == 503 and "loading" in loading.json()["error"]
    not_yet = httpx.get(f"{live.url}/v2/models/slow/ready")
    assert (not_yet.status_code, not_yet.text) == (408, "model not ready")  # as mlrun answers
    gate.open()
    wait_until(lambda: live.runtime("slow").ready, "the model loaded")
    assert server.ready
    assert httpx.get(f"{live.url}/v2/models/slow/ready").status_code == 200
    server.ready = False  # the model says it cannot serve (mlrun's flag)
    refused = post(live, "/v2/models/slow/infer", {"inputs": [[1]]})
    assert refused.status_code == 503
    assert refused.json() == {"error": "model slow is not ready yet"}
    assert httpx.get(f"{live.url}/v2/models/slow/ready").status_code == 408


def test_load_failure_is_recorded_as_mlrun_does(serve: Serve) -> None:
    class Broken(V2ModelServer):
        def load(self) -> None:
            raise OSError("no weights")

    server = Broken(name="broken")
    live = serve([server.as_model()])
    assert isinstance(server.error, OSError) and not server.ready
    reply = post(live, "/v2/models/broken/infer", {"inputs": [[1]]})
    assert reply.status_code == 503 and "failed to load model broken, no weights" in reply.text
