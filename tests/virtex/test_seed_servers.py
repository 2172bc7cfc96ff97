"""The README's http_server, gunicorn and HttpClient examples, run as written."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from servekit.client.message_client import DEFAULT_URL
from support.servers import LiveServer
from support.virtex_seed import run_seed, start_gunicorn, stop_gunicorn


@pytest.fixture
def image_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Image.Image:
    """The README client's ``path/to/image_file``, relative to the test's working directory."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "path/to").mkdir(parents=True)
    image = Image.new("RGB", (16, 12), (200, 40, 90))
    image.save(tmp_path / "path/to/image_file", format="PNG")
    return image


def _run_seed_client(url: str, monkeypatch: pytest.MonkeyPatch) -> list[np.ndarray]:
    monkeypatch.setenv("SERVEKIT_URL", url)  # HttpClient() with no argument posts here
    prediction: list[np.ndarray] = run_seed("client.py")["prediction"]
    return prediction


@pytest.fixture
def uvicorn_seed_server(seed_path: Path) -> Iterator[str]:
    app = run_seed("server.py")["app"]
    live = LiveServer(app).start()
    yield live.url
    live.stop()


def test_seed_client_posts_an_image_to_the_seed_server_under_uvicorn(
    uvicorn_seed_server: str, image_file: Image.Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    from handlers import expected_prediction

    prediction = _run_seed_client(uvicorn_seed_server, monkeypatch)
    assert len(prediction) == 1 and prediction[0].dtype == np.float32
    np.testing.assert_allclose(prediction[0], expected_prediction(image_file), rtol=1e-6)


def test_seed_server_batches_concurrent_clients(uvicorn_seed_server: str) -> None:
    from handlers import request_handler_x

    from servekit import HttpClient, HttpMessage
    from servekit.codecs import decode_numpy, encode_pil

    image = Image.new("RGB", (4, 4), (1, 2, 3))
    request_handler_x.batch_sizes.clear()
    answers: list[int] = []
    with HttpClient(uvicorn_seed_server) as client:

        def post() -> None:
            reply = client.post(HttpMessage(data=[image] * 4).encode(encode_pil))
            answers.append(len(reply.decode(decode_numpy).data))

        threads = [threading.Thread(target=post) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
    assert answers == [4] * 16
    assert sum(request_handler_x.batch_sizes) == 64
    assert max(request_handler_x.batch_sizes) > 4  # elements of several requests in one batch


def test_http_client_without_a_url_uses_servekit_url_else_the_seed_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from servekit import HttpClient

    monkeypatch.delenv("SERVEKIT_URL", raising=False)
    assert HttpClient().url == DEFAULT_URL == "http://localhost:8081"
    monkeypatch.setenv("SERVEKIT_URL", "http://127.0.0.1:9")
    assert HttpClient().url == "http://127.0.0.1:9"
    assert HttpClient("http://127.0.0.1:10").url == "http://127.0.0.1:10"


def test_seed_gunicorn_command_with_virtex_worker_serves_the_seed_client(
    seed_path: Path, image_file: Image.Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    from handlers import expected_prediction

    server = start_gunicorn("server:app", cwd=seed_path, workers=2)
    try:
        pids = {worker.pid for worker in server.workers()}
        assert len(pids) == 2
        for _ in range(4):
            prediction = _run_seed_client(server.url, monkeypatch)
            np.testing.assert_allclose(prediction[0], expected_prediction(image_file), rtol=1e-6)
    finally:
        stop_gunicorn(server)
    assert server.process.returncode == 0


def test_import_servekit_does_not_import_gunicorn() -> None:
    import subprocess
    import sys

    code = (
        "import sys, servekit\n"
        "assert 'gunicorn' not in sys.modules\n"
        "assert servekit.VirtexWorker.__name__ == 'VirtexWorker'\n"
        "assert 'gunicorn' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
