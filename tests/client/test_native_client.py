"""servekit.Client / AsyncClient against a real server, and tritonclient.http unchanged."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import numpy as np
import pytest

import servekit
from servekit.client import HTTPStatusError
from servekit.server import App
from support.servers import LiveServer


class Scale(servekit.Model):
    name = "scale"
    version = "1"

    def predict(self, batch: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        return [{"scaled": row * 2, "total": np.float64(row.sum())} for row in batch]


class Words(servekit.Model):
    name = "words"

    def predict(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        return [np.array([w.decode().upper().encode() for w in row], dtype=object) for row in batch]


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    app = App([Scale(), Words()], token="tok")
    live = LiveServer(app).start()
    live.call(app.wait_loaded())
    yield live
    live.stop()


@pytest.mark.parametrize("binary", [False, True])
def test_infer_round_trips_numpy_arrays(server: LiveServer, binary: bool) -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    with servekit.Client(server.url, token="tok", binary=binary) as client:
        out = client.infer("scale", {"x": x})
    np.testing.assert_array_equal(out["scaled"], x * 2)
    assert out["scaled"].dtype == np.float32
    np.testing.assert_allclose(out["total"], x.sum(axis=1))


def test_infer_bytes_tensors_and_output_selection(server: LiveServer) -> None:
    words = np.array([[b"a", b"bc"], [b"d", "é".encode()]], dtype=object)
    with servekit.Client(server.url, token="tok", binary=True) as client:
        out = client.infer("words", {"w": words})
        only = client.infer("scale", {"x": np.ones((1, 2), np.float32)}, outputs=["total"])
    assert out["output-0"].tolist() == [[b"A", b"BC"], [b"D", "É".encode()]]
    assert list(only) == ["total"]


def test_ready_live_metadata(server: LiveServer) -> None:
    with servekit.Client(server.url, token="tok") as client:
        assert client.live() and client.ready() and client.ready("scale", "1")
        assert client.metadata("scale")["versions"] == ["1"]
        assert client.metadata()["name"] == "servekit"


def test_errors_carry_the_status_and_the_servers_message(server: LiveServer) -> None:
    with servekit.Client(server.url, token="tok") as client:
        with pytest.raises(HTTPStatusError, match="unknown model 'nope'") as info:
            client.infer("nope", {"x": np.ones((1, 1))})
        assert info.value.status == 404
    with servekit.Client(server.url, token="wrong") as client:
        with pytest.raises(HTTPStatusError) as info:
            client.infer("scale", {"x": np.ones((1, 1), np.float32)})
        assert info.value.status == 401


def test_async_client_runs_concurrent_requests(server: LiveServer) -> None:
    async def scenario() -> list[dict[str, np.ndarray]]:
        async with servekit.AsyncClient(server.url, token="tok") as client:
            return await asyncio.gather(
                *(client.infer("scale", {"x": np.full((1, 2), i, np.float32)}) for i in range(20))
            )

    results = asyncio.run(scenario())
    assert [float(r["scaled"][0, 0]) for r in results] == [2.0 * i for i in range(20)]


@pytest.mark.parametrize("binary", [False, True])
def test_published_tritonclient_works_unchanged(server: LiveServer, binary: bool) -> None:
    http = pytest.importorskip("tritonclient.http")
    client = http.InferenceServerClient(f"127.0.0.1:{server.port}")
    headers = {"Authorization": "Bearer tok"}
    assert client.is_server_live(headers=headers)
    assert client.is_model_ready("scale", headers=headers)
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    inp = http.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    wanted = [http.InferRequestedOutput("scaled", binary_data=binary)]
    result = client.infer("scale", [inp], outputs=wanted, headers=headers)
    np.testing.assert_array_equal(result.as_numpy("scaled"), x * 2)
    client.close()
