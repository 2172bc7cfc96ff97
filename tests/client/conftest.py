"""A small raw-ASGI EAS server on a loopback port, built on servekit's EAS protocol functions.

Routes (``POST /api/predict/<service>``; the service name picks the behaviour):

- ``echo``: the body back. ``tf``: a TensorFlow model (``doubled`` = 2·x, ``total`` = sum x,
  ``signature``). ``torch``: a PyTorch model (``input 0 + 1``, ``input 0 * 10``).
- ``flaky-<n>-<tag>``: 503 for the first ``n`` calls, then the body back.
- ``bad-<tag>``: always 400 with a JSON error. ``down-<tag>``: always 503.
- ``slow-<ms>-<tag>``: waits ``ms`` milliseconds, then the body back.
- ``chunks``: the body back in three chunks, so with chunked transfer encoding.
- ``query``: the request's query string back.
- ``GET /api/v1/servicediscovery/upstreams/echo``: this server as the only instance.

With a token, every predict request must pass ``check_authorization`` (body included).
``EasServer.calls`` counts requests per path.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pytest
import uvicorn

from servekit.errors import ServekitError
from servekit.protocol.eas import (
    decode_tf_request,
    decode_torch_request,
    encode_tf_response,
    encode_torch_response,
)
from servekit.protocol.eas_auth import check_authorization

PREDICT = "/api/predict/"
DISCOVERY = "/api/v1/servicediscovery/upstreams/"


class EasApp:
    """The ASGI app; its state is read by tests."""

    def __init__(self, token: str = "") -> None:
        self.token = token
        self.port = 0
        self.calls: collections.Counter[str] = collections.Counter()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await _read_body(receive)
        path = scope["path"]
        self.calls[path] += 1
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            if path.endswith("/query"):
                body = scope["query_string"]
            status, out = await self._route(scope["method"], path, headers, body)
        except ServekitError as exc:
            status, out = exc.status, orjson.dumps({"error": exc.message})
        if path.endswith("/chunks") and status == 200:
            await _send_chunked(send, out)
            return
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-length", str(len(out)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": out})

    async def _route(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes]:
        if method == "GET" and path == DISCOVERY + "echo":
            items = [{"ip": "127.0.0.1", "port": self.port, "weight": 1}]
            return 200, orjson.dumps({"endpoints": {"items": items}})
        if method != "POST" or not path.startswith(PREDICT):
            return 404, orjson.dumps({"error": f"no route {method} {path}"})
        if not check_authorization(
            self.token, method=method, path=path, headers=headers, body=body
        ):
            return 401, orjson.dumps({"error": "missing or wrong token"})
        service = path[len(PREDICT) :]
        kind, _, rest = service.partition("-")
        if kind == "tf":
            feeds, fetches, signature = decode_tf_request(body)
            x = feeds["x"]
            outputs = {
                "doubled": x * 2,
                "total": np.array([x.sum()], dtype=x.dtype),
                "signature": np.array([signature], dtype=object),
            }
            return 200, encode_tf_response(outputs, fetches)
        if kind == "torch":
            feeds, output_filter = decode_torch_request(body)
            return 200, encode_torch_response([feeds[0] + 1, feeds[0] * 10], output_filter)
        if kind == "flaky" and self.calls[path] <= int(rest.split("-")[0]):
            return 503, orjson.dumps({"error": "warming up"})
        if kind == "bad":
            return 400, orjson.dumps({"error": "feed 'x' is malformed"})
        if kind == "down":
            return 503, b"service down"
        if kind == "slow":
            await asyncio.sleep(int(rest.split("-")[0]) / 1000)
        return 200, body


async def _read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _send_chunked(send: Any, body: bytes) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    third = max(1, len(body) // 3)
    pieces = [body[:third], body[third : 2 * third], body[2 * third :]]
    for piece in pieces:
        await send({"type": "http.response.body", "body": piece, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


class EasServer:
    """Serve an app with uvicorn in a thread, on a free loopback port."""

    def __init__(self, app: EasApp, **config: Any) -> None:
        self.app = app
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = app.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        cfg = uvicorn.Config(
            app, lifespan="off", ws="none", log_level="warning", access_log=False, **config
        )
        self.server = uvicorn.Server(cfg)
        self.thread = threading.Thread(target=self.server.run, args=([self.sock],), daemon=True)

    @property
    def calls(self) -> collections.Counter[str]:
        return self.app.calls

    def __enter__(self) -> EasServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test EAS server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


@pytest.fixture(scope="module")
def eas_server() -> Iterator[EasServer]:
    """An open EAS server (no token)."""
    with EasServer(EasApp()) as server:
        yield server


@pytest.fixture(scope="module")
def token_server() -> Iterator[EasServer]:
    """An EAS server whose service token is ``s3cret``."""
    with EasServer(EasApp(token="s3cret")) as server:
        yield server


@pytest.fixture(scope="module")
def short_keepalive_server() -> Iterator[EasServer]:
    """An open EAS server that closes idle keep-alive connections after one second."""
    with EasServer(EasApp(), timeout_keep_alive=1) as server:
        yield server
