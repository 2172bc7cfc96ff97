"""A real servekit App under a real uvicorn server (uvloop, httptools) on a loopback port.

Fixtures:
- ``serve(models, wait_ready=True, **app_settings)``: start a server, return a ``LiveServer``;
  every server is stopped at teardown (gates are opened first, so nothing hangs).
- ``serve_shared``: the same, module-scoped, for servers many tests only read from.
- ``make_gate()`` / ``gate``: a ``Gate`` a model's ``predict`` or ``load`` blocks on, so tests
  decide exactly when slow work proceeds instead of sleeping.
- ``wait_until(predicate, what, timeout=5)``: poll a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from servekit.server import App
from servekit.server.runtime import ModelRuntime

STEP = 0.002  # polling interval while waiting for a condition
GATE_TIMEOUT = 20.0  # a gate nobody opens fails the model call instead of hanging forever


class Gate:
    """Blocks callers of ``block()`` until ``open()``; ``entered`` tells that one arrived."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self._open = threading.Event()

    def block(self) -> None:
        self.entered.set()
        if not self._open.wait(GATE_TIMEOUT):
            raise TimeoutError("test gate was never opened")

    def open(self) -> None:
        self._open.set()

    def wait_entered(self, timeout: float = 5.0) -> None:
        assert self.entered.wait(timeout), "nothing reached the gate in time"


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting until {what}")
        time.sleep(STEP)


class LiveServer:
    """One App served by uvicorn in a background thread with its own event loop."""

    def __init__(self, app: App, **config: Any) -> None:
        self.app = app
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        settings: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": self.port,
            "loop": "uvloop",
            "http": "httptools",
            "lifespan": "on",
            "log_config": None,
            "log_level": "warning",
            "access_log": False,
            "timeout_graceful_shutdown": 10,
        }
        settings.update(config)
        self.config = uvicorn.Config(app, **settings)
        self.server = uvicorn.Server(self.config)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._clients: list[httpx.Client] = []
        self._thread = threading.Thread(target=self._run, name="uvicorn-test", daemon=True)

    def _run(self) -> None:
        with asyncio.Runner(loop_factory=self.config.get_loop_factory()) as runner:
            runner.run(self._serve())

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        await self.server.serve(sockets=[self._sock])

    def start(self, wait_ready: bool) -> None:
        self._thread.start()
        wait_until(
            lambda: self.server.started or not self._thread.is_alive(), "uvicorn started", 10
        )
        assert self.server.started, "uvicorn failed to start (see the captured log)"
        if wait_ready:
            self.call(self.app.wait_loaded())

    def call(self, coro: Awaitable[Any], timeout: float = 10.0) -> Any:
        """Run a coroutine on the server's event loop and return its result."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def runtime(self, name: str, version: str | None = None) -> ModelRuntime:
        return self.app.registry.get(name, version)

    def client(self, **kwargs: Any) -> httpx.Client:
        kwargs.setdefault("timeout", 10.0)
        kwargs.setdefault("limits", httpx.Limits(max_connections=100))
        client = httpx.Client(base_url=self.url, **kwargs)
        self._clients.append(client)
        return client

    def async_client(self, **kwargs: Any) -> httpx.AsyncClient:
        kwargs.setdefault("timeout", 10.0)
        return httpx.AsyncClient(base_url=self.url, **kwargs)

    def raw_exchange(self, request: bytes) -> bytes:
        """Send ``request`` in one write on a fresh connection; read the reply until EOF."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10.0) as sock:
            sock.sendall(request)
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
        return reply

    def accepts_connections(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                return True
        except OSError:
            return False

    def stop(self, timeout: float = 5.0) -> None:
        for client in self._clients:
            client.close()
        self._clients.clear()
        self.server.should_exit = True
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "uvicorn did not stop in time"
        self._sock.close()


@pytest.fixture
def gates() -> Iterator[list[Gate]]:
    made: list[Gate] = []
    yield made
    for gate_ in made:
        gate_.open()


@pytest.fixture
def make_gate(gates: list[Gate]) -> Callable[[], Gate]:
    def make() -> Gate:
        gates.append(Gate())
        return gates[-1]

    return make


@pytest.fixture
def gate(make_gate: Callable[[], Gate]) -> Gate:
    return make_gate()


def _serving(gates: list[Gate]) -> Iterator[Callable[..., LiveServer]]:
    servers: list[LiveServer] = []

    def start(models: list[Any], *, wait_ready: bool = True, **settings: Any) -> LiveServer:
        live = LiveServer(App(models, **settings))
        servers.append(live)
        live.start(wait_ready)
        return live

    yield start
    for gate_ in gates:
        gate_.open()  # let blocked model threads finish so the server can stop
    for live in servers:
        live.stop()


@pytest.fixture
def serve(gates: list[Gate]) -> Iterator[Callable[..., LiveServer]]:
    yield from _serving(gates)


@pytest.fixture(scope="module")
def serve_shared() -> Iterator[Callable[..., LiveServer]]:
    """Like ``serve``, for one server shared by a module's tests (no gates)."""
    yield from _serving([])


@pytest.fixture(name="wait_until")
def wait_until_fixture() -> Callable[..., None]:
    return wait_until
