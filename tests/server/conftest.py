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

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

import support.servers
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


class LiveServer(support.servers.LiveServer):
    """A servekit App under uvicorn, with the HTTP helpers these tests use."""

    def __init__(self, app: App, **config: Any) -> None:
        super().__init__(app, **config)
        self._clients: list[httpx.Client] = []

    def start(self, wait_ready: bool = True) -> LiveServer:  # type: ignore[override]
        super().start()
        if wait_ready:
            self.call(self.app.wait_loaded())
        return self

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

    def stop(self, timeout: float = 10.0) -> None:
        for client in self._clients:
            client.close()
        self._clients.clear()
        super().stop(timeout)


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
