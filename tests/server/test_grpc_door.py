"""The published ``tritonclient.grpc`` works unchanged against ``--grpc-port``, on the same
server that answers ``tritonclient.http``: health, metadata, infer (raw and typed contents),
async_infer, a stream of 200 requests, batching, token, deadline, cancellation, errors."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2

import servekit
from servekit.protocol.v2_grpc import SERVICE

InferenceServerException = grpcclient.InferenceServerException


class Echo(servekit.Model):
    """Each row back as it came, after 2 ms (requests arriving meanwhile queue up and share
    the next call); counts its predict calls and rows."""

    name = "echo"
    max_batch_size = 64
    max_latency_ms = 2.0

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.rows = 0
        self.lock = threading.Lock()

    def predict(self, batch: list[Any]) -> list[Any]:
        with self.lock:
            self.calls += 1
            self.rows += len(batch)
        time.sleep(0.002)
        return list(batch)


class Doubler(servekit.Model):
    name = "doubler"
    version = "2"
    inputs = [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}]
    outputs = [{"name": "y", "datatype": "FP32", "shape": [-1, 3]}]

    def predict(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        return [row * 2 for row in batch]


class Gated(servekit.Model):
    """Blocks in predict on a gate; remembers every row it ran."""

    name = "gated"
    max_batch_size = 1

    def __init__(self, gate: Any) -> None:
        super().__init__()
        self.gate = gate
        self.seen: list[float] = []

    def predict(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        self.gate.block()
        self.seen += [float(row[0]) for row in batch]
        return batch


@pytest.fixture(scope="module")
def live(serve_shared: Callable[..., Any]) -> Any:
    return serve_shared([Echo(), Doubler()], grpc_port=0)


@pytest.fixture
def client(live: Any) -> Any:
    triton = grpcclient.InferenceServerClient(f"127.0.0.1:{live.app.grpc_port}")
    yield triton
    triton.close()


def _input(name: str, array: np.ndarray, datatype: str) -> Any:
    tensor = grpcclient.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


def _stub(port: int) -> tuple[Any, Callable[..., Any]]:
    """tritonclient's generated messages on a plain channel, for typed contents."""
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    infer = channel.unary_unary(
        f"/{SERVICE}/ModelInfer",
        request_serializer=service_pb2.ModelInferRequest.SerializeToString,
        response_deserializer=service_pb2.ModelInferResponse.FromString,
    )
    return channel, infer


def test_health_and_metadata_rpcs(client: Any) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("echo")
    assert client.is_model_ready("doubler", "2")
    server = client.get_server_metadata(as_json=True)
    assert server["name"] == "servekit" and "version" in server
    meta = client.get_model_metadata("doubler", as_json=True)
    assert meta["name"] == "doubler" and meta["versions"] == ["2"]
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": ["-1", "3"]}]
    assert meta["outputs"][0]["name"] == "y"


ARRAYS = {
    "FP32": np.arange(12, dtype=np.float32).reshape(4, 3) / 7,
    "INT64": np.array([[2**40, -3], [7, 0]], dtype=np.int64),
    "FP16": np.array([[0.5, -1.25], [65504, 3]], dtype=np.float16),
    "BYTES": np.array([[b"ab", b"\x00\xff"], [b"", "é".encode()]], dtype=object),
    "BOOL": np.array([[True], [False]]),
    "UINT8": np.array([[0, 255, 7]], dtype=np.uint8),
}


@pytest.mark.parametrize("datatype", list(ARRAYS))
def test_infer_raw_contents_round_trips_every_datatype_as_http_does(
    live: Any, client: Any, datatype: str
) -> None:
    array = ARRAYS[datatype]
    result = client.infer("echo", [_input("x", array, datatype)])
    got = result.as_numpy("output-0")
    assert got.dtype == array.dtype and got.shape == array.shape
    np.testing.assert_array_equal(got, array)
    over_http = httpclient.InferenceServerClient(f"127.0.0.1:{live.port}")
    try:
        tensor = httpclient.InferInput("x", list(array.shape), datatype)
        tensor.set_data_from_numpy(array, binary_data=True)
        np.testing.assert_array_equal(over_http.infer("echo", [tensor]).as_numpy("output-0"), got)
    finally:
        over_http.close()


def test_requested_outputs_and_ids_come_back(client: Any) -> None:
    x = np.ones((2, 3), np.float32)
    wanted = [grpcclient.InferRequestedOutput("y")]
    result = client.infer("doubler", [_input("x", x, "FP32")], outputs=wanted, request_id="r-7")
    np.testing.assert_array_equal(result.as_numpy("y"), x * 2)
    response = result.get_response()
    assert response.id == "r-7" and response.model_name == "doubler"
    assert response.model_version == "2"


@pytest.mark.parametrize(
    ("datatype", "field", "values", "expected"),
    [
        ("FP32", "fp32_contents", [1.5, -2.0], np.array([1.5, -2.0], np.float32)),
        ("INT8", "int_contents", [-128, 127], np.array([-128, 127], np.int8)),
        ("UINT64", "uint64_contents", [2**63], np.array([2**63], np.uint64)),
        ("BYTES", "bytes_contents", [b"a", b"\xff"], np.array([b"a", b"\xff"], object)),
        ("BOOL", "bool_contents", [True, False], np.array([True, False])),
    ],
)
def test_typed_contents_decode_to_the_same_arrays(
    live: Any, datatype: str, field: str, values: list[Any], expected: np.ndarray
) -> None:
    channel, infer = _stub(live.app.grpc_port)
    with channel:
        request = service_pb2.ModelInferRequest(model_name="echo")
        tensor = request.inputs.add(name="x", datatype=datatype, shape=[len(values)])
        getattr(tensor.contents, field).extend(values)
        response = infer(request, timeout=10)
    out = response.outputs[0]
    assert out.datatype == datatype and list(out.shape) == [len(values)]
    got = grpcclient.InferResult(response).as_numpy("output-0")
    np.testing.assert_array_equal(got, expected)


def test_typed_contents_errors_name_the_input(live: Any) -> None:
    channel, infer = _stub(live.app.grpc_port)
    with channel:
        fp16 = service_pb2.ModelInferRequest(model_name="echo")
        fp16.inputs.add(name="h", datatype="FP16", shape=[1]).contents.fp32_contents.append(1)
        with pytest.raises(grpc.RpcError) as caught:
            infer(fp16, timeout=10)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "FP16 has no typed contents" in caught.value.details()
        wrong = service_pb2.ModelInferRequest(model_name="echo")
        wrong.inputs.add(name="x", datatype="FP32", shape=[1]).contents.int64_contents.append(1)
        with pytest.raises(grpc.RpcError) as caught:
            infer(wrong, timeout=10)
        assert "contents.fp32_contents, got contents.int64_contents" in caught.value.details()


def test_async_infer_answers_every_callback(client: Any) -> None:
    answers: queue.Queue[tuple[int, Any, Any]] = queue.Queue()
    for i in range(20):
        x = np.full((1, 2), i, np.float32)
        client.async_infer(
            "echo",
            [_input("x", x, "FP32")],
            lambda result, error, i=i: answers.put((i, result, error)),
        )
    for _ in range(20):
        i, result, error = answers.get(timeout=10)
        assert error is None
        np.testing.assert_array_equal(result.as_numpy("output-0"), np.full((1, 2), i))


def test_a_stream_of_200_requests_is_answered_and_batched(live: Any, client: Any) -> None:
    model = live.runtime("echo").model
    answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
    calls_before, rows_before = model.calls, model.rows
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        for i in range(200):
            x = np.full((1, 4), i, np.float32)
            client.async_stream_infer("echo", [_input("x", x, "FP32")], request_id=str(i))
        got = {}
        for _ in range(200):
            result, error = answers.get(timeout=20)
            assert error is None
            got[result.get_response().id] = result.as_numpy("output-0")
    finally:
        client.stop_stream()
    assert sorted(got, key=int) == [str(i) for i in range(200)]
    for i in range(200):
        np.testing.assert_array_equal(got[str(i)], np.full((1, 4), i, np.float32))
    assert model.rows - rows_before == 200
    assert model.calls - calls_before < 200  # requests shared predict calls


def test_stream_reports_a_bad_request_and_goes_on(client: Any) -> None:
    answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        client.async_stream_infer("nope", [_input("x", np.ones((1, 1), np.float32), "FP32")])
        client.async_stream_infer("echo", [_input("x", np.ones((1, 1), np.float32), "FP32")])
        results = [answers.get(timeout=10) for _ in range(2)]
    finally:
        client.stop_stream()
    errors = [e for _, e in results if e is not None]
    assert len(errors) == 1 and "unknown model 'nope'" in errors[0].message()
    assert any(r is not None and r.as_numpy("output-0") is not None for r, _ in results)


def test_concurrent_requests_share_predict_calls(live: Any, client: Any) -> None:
    model = live.runtime("echo").model
    calls_before = model.calls
    answers: queue.Queue[Any] = queue.Queue()
    x = np.ones((1, 8), np.float32)
    for _ in range(200):
        client.async_infer(
            "echo", [_input("x", x, "FP32")], lambda result, error: answers.put(error)
        )
    assert [answers.get(timeout=20) for _ in range(200)] == [None] * 200
    assert model.calls - calls_before < 200


def test_unknown_model_is_not_found(client: Any) -> None:
    with pytest.raises(InferenceServerException) as caught:
        client.infer("nope", [_input("x", np.ones((1, 1), np.float32), "FP32")])
    assert caught.value.status() == "StatusCode.NOT_FOUND"
    assert "unknown model 'nope'" in caught.value.message()
    with pytest.raises(InferenceServerException) as caught:
        client.is_model_ready("nope")
    assert caught.value.status() == "StatusCode.NOT_FOUND"


def test_bad_input_is_invalid_argument_and_the_server_keeps_serving(client: Any) -> None:
    wrong_type = np.ones((2, 3), np.int32)
    with pytest.raises(InferenceServerException) as caught:
        client.infer("doubler", [_input("x", wrong_type, "INT32")])
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "expects FP32" in caught.value.message()
    short = _input("x", np.ones((2, 3), np.float32), "FP32")
    short._get_tensor().shape[:] = [2, 4]  # 6 values sent for a [2, 4] shape
    with pytest.raises(InferenceServerException) as caught:
        client.infer("echo", [short])
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
    x = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(
        client.infer("doubler", [_input("x", x, "FP32")]).as_numpy("y"), x * 2
    )


def test_a_token_is_needed_in_metadata_but_health_is_open(serve: Callable[..., Any]) -> None:
    live = serve([Echo()], grpc_port=0, token="s3cret")
    triton = grpcclient.InferenceServerClient(f"127.0.0.1:{live.app.grpc_port}")
    x = [_input("x", np.ones((1, 2), np.float32), "FP32")]
    try:
        assert triton.is_server_live() and triton.is_server_ready()
        assert triton.is_model_ready("echo")
        for call in (lambda: triton.infer("echo", x), lambda: triton.get_model_metadata("echo")):
            with pytest.raises(InferenceServerException) as caught:
                call()
            assert caught.value.status() == "StatusCode.UNAUTHENTICATED"
            assert "authorization: Bearer <token>" in caught.value.message()
        with pytest.raises(InferenceServerException) as caught:
            triton.infer("echo", x, headers={"authorization": "Bearer wrong"})
        assert caught.value.status() == "StatusCode.UNAUTHENTICATED"
        for given in ("Bearer s3cret", "s3cret"):
            result = triton.infer("echo", x, headers={"authorization": given})
            assert result.as_numpy("output-0").shape == (1, 2)
    finally:
        triton.close()


def test_a_deadline_that_passes_is_deadline_exceeded_and_never_runs(
    serve: Callable[..., Any], gate: Any
) -> None:
    model = Gated(gate)
    live = serve([model], grpc_port=0)
    triton = grpcclient.InferenceServerClient(f"127.0.0.1:{live.app.grpc_port}")
    blocker: queue.Queue[Any] = queue.Queue()
    try:
        first = [_input("x", np.zeros((1, 1), np.float32), "FP32")]
        triton.async_infer("gated", first, lambda result, error: blocker.put(error))
        gate.wait_entered()
        late = [_input("x", np.ones((1, 1), np.float32), "FP32")]
        with pytest.raises(InferenceServerException) as caught:  # the server's timeout
            triton.infer("gated", late, timeout=50_000)  # microseconds
        assert caught.value.status() == "StatusCode.DEADLINE_EXCEEDED"
        late2 = [_input("x", np.full((1, 1), 2, np.float32), "FP32")]
        with pytest.raises(InferenceServerException) as caught:  # the gRPC deadline
            triton.infer("gated", late2, client_timeout=0.1)
        assert caught.value.status() == "StatusCode.DEADLINE_EXCEEDED"
        gate.open()
        assert blocker.get(timeout=10) is None
        after = [_input("x", np.full((1, 1), 3, np.float32), "FP32")]
        triton.infer("gated", after)
        assert model.seen == [0.0, 3.0]  # the late requests never reached the model
    finally:
        triton.close()


def test_a_cancelled_call_never_reaches_the_model(
    serve: Callable[..., Any], gate: Any, wait_until: Callable[..., None]
) -> None:
    model = Gated(gate)
    live = serve([model], grpc_port=0)
    runtime = live.runtime("gated")
    triton = grpcclient.InferenceServerClient(f"127.0.0.1:{live.app.grpc_port}")
    answers: queue.Queue[Any] = queue.Queue()
    try:
        first = [_input("x", np.zeros((1, 1), np.float32), "FP32")]
        triton.async_infer("gated", first, lambda result, error: answers.put(error))
        gate.wait_entered()
        doomed = [_input("x", np.ones((1, 1), np.float32), "FP32")]
        call = triton.async_infer("gated", doomed, lambda result, error: answers.put(error))
        wait_until(lambda: runtime.batcher.stats.requests == 2, "the second call is queued")
        call.cancel()
        wait_until(lambda: runtime.batcher.stats.cancelled == 1, "the call is cancelled")
        gate.open()
        errors = [answers.get(timeout=10) for _ in range(2)]
        assert errors.count(None) == 1
        assert model.seen == [0.0]
    finally:
        triton.close()


def test_a_message_over_max_body_size_is_resource_exhausted(serve: Callable[..., Any]) -> None:
    live = serve([Echo()], grpc_port=0, max_body_size=4096)
    triton = grpcclient.InferenceServerClient(f"127.0.0.1:{live.app.grpc_port}")
    try:
        with pytest.raises(InferenceServerException) as caught:
            triton.infer("echo", [_input("x", np.ones((1, 4096), np.float32), "FP32")])
        assert caught.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
        small = triton.infer("echo", [_input("x", np.ones((1, 8), np.float32), "FP32")])
        assert small.as_numpy("output-0").shape == (1, 8)
    finally:
        triton.close()


def test_the_grpc_door_stops_with_the_server(serve: Callable[..., Any]) -> None:
    live = serve([Echo()], grpc_port=0)
    port = live.app.grpc_port
    triton = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
    assert triton.is_server_live()
    live.stop()
    with pytest.raises(InferenceServerException) as caught:
        triton.is_server_live()
    assert caught.value.status() == "StatusCode.UNAVAILABLE"
    triton.close()


def test_without_grpcio_the_grpc_port_names_the_extra_to_install() -> None:
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['grpc'] = None\n"
        "import servekit\n"
        "from servekit.server import App\n"
        "class M(servekit.Model):\n"
        "    def predict(self, batch): return batch\n"
        "try:\n"
        "    App([M()], grpc_port=0)\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "pip install servekit[grpc]" in done.stdout, done.stderr
