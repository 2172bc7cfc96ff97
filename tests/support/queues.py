"""Queue fixtures for every test package: queues on both backends, worker processes, doors.

Imported by ``tests/conftest.py``, so the queue, server and client tests share them.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from servekit.queue import QueueService, SqliteBackend
from servekit.queue.redis_backend import RedisBackend
from support.redis_server import free_port, wait_until

T = TypeVar("T")

BACKENDS = ["sqlite", "redis"]
TEST_LEASE = 0.6  # seconds: how long a dead consumer keeps its records in these tests
TEST_POLL = 0.02


_names = itertools.count()


class QueueFactory:
    """Builds fresh, unstarted queues on one backend; each call is a new empty queue."""

    def __init__(self, kind: str, tmp_path: Path, redis_url: str | None) -> None:
        self.kind = kind
        self.tmp_path = tmp_path
        self.redis_url = redis_url

    def backend(self, name: str) -> SqliteBackend | RedisBackend:
        if self.kind == "sqlite":
            return SqliteBackend(self.tmp_path / f"{name}.db", poll_interval=TEST_POLL)
        assert self.redis_url is not None
        return RedisBackend(name, self.redis_url, poll_interval=TEST_POLL)

    def __call__(self, name: str | None = None, **options: Any) -> QueueService:
        name = name or f"q{next(_names)}-{time.monotonic_ns()}"
        options.setdefault("lease", TEST_LEASE)
        return QueueService(self.backend(name), name=name, **options)


@pytest.fixture(params=BACKENDS)
def make_queue(request: pytest.FixtureRequest, tmp_path: Path) -> QueueFactory:
    url = None
    if request.param == "redis":
        url = request.getfixturevalue("redis_server").url
    return QueueFactory(request.param, tmp_path, url)


def run(coro: Awaitable[T], timeout: float = 30.0) -> T:
    """Run one scenario on a fresh event loop, bounded in time."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


@pytest.fixture
def arun() -> Callable[..., Any]:
    """``arun(coro, timeout=30)``: run one async scenario, bounded in time."""
    return run


class Worker:
    """``tests/queue/worker.py`` in a child process, its stdout read line by line."""

    def __init__(self, *args: str) -> None:
        import queue as _queue
        import sys
        import threading

        script = Path(__file__).parents[1] / "queue" / "worker.py"
        self.process = subprocess.Popen(
            [sys.executable, str(script), *args],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.lines: _queue.Queue[str] = _queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.strip())
        self.lines.put("<eof>")

    def expect(self, count: int, prefix: str, timeout: float = 20.0) -> list[str]:
        """Read lines until ``count`` of them start with ``prefix``; return those."""
        import queue as _queue

        found: list[str] = []
        deadline = time.monotonic() + timeout
        while len(found) < count:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.001))
            except _queue.Empty:
                raise AssertionError(f"worker printed {found} before timing out") from None
            if line == "<eof>":
                raise AssertionError(f"worker exited ({self.process.wait()}) after {found}")
            if line.startswith(prefix):
                found.append(line)
        return found

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout)


@pytest.fixture
def spawn() -> Iterator[Callable[..., Worker]]:
    """Start worker processes; any still running at the end of the test is killed."""
    started: list[Worker] = []

    def start(*args: str) -> Worker:
        worker = Worker(*args)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.kill()
        if worker.process.stdout is not None:
            worker.process.stdout.close()


class DoorServer:
    """A ``QueueDoor`` served by uvicorn in a thread on a free loopback port."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        import threading

        import uvicorn

        self.port = port or free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> DoorServer:
        self.thread.start()
        wait_until(lambda: self.server.started, 10, "uvicorn to start")
        self.loop = self.server.servers[0].get_loop()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        assert not self.thread.is_alive(), "uvicorn did not stop:\n" + self._stuck()

    def _stuck(self) -> str:
        """Where the server's tasks wait (diagnostics for a server that will not stop)."""
        lines = []
        for task in list(asyncio.all_tasks(self.loop)):
            lines.append(repr(task))
            coro: Any = task.get_coro()
            while coro is not None and hasattr(coro, "cr_frame"):
                frame = coro.cr_frame
                if frame is not None:
                    lines.append(
                        f"    {frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}"
                    )
                coro = coro.cr_await
        return "\n".join(lines)


@pytest.fixture
def serve_door(make_queue: QueueFactory) -> Iterator[Callable[..., DoorServer]]:
    """``serve_door(names=("svc", "svc/sink"), token=None, **queue_options)`` -> running server."""
    from servekit.server.queue_door import QueueDoor

    running: list[DoorServer] = []

    def start(
        names: tuple[str, ...] = ("svc", "svc/sink"), token: str | None = None, **options: Any
    ) -> DoorServer:
        stamp = time.monotonic_ns()
        queues = {n: make_queue(f"{n.replace('/', '-')}-{stamp}", **options) for n in names}
        server = DoorServer(QueueDoor(queues, token=token)).__enter__()
        running.append(server)
        return server

    yield start
    for server in running:
        server.__exit__()


@pytest.fixture
def door_on_port() -> Iterator[Callable[..., DoorServer]]:
    """``door_on_port(queues, port=None)``: serve a ``QueueDoor`` of ``queues``; stopped at the
    end unless the test stopped it (``server.__exit__()``) already."""
    from servekit.server.queue_door import QueueDoor

    running: list[DoorServer] = []

    def start(queues: dict[str, QueueService], port: int | None = None) -> DoorServer:
        server = DoorServer(QueueDoor(queues), port=port).__enter__()
        running.append(server)
        return server

    yield start
    for server in running:
        if server.thread.is_alive():
            server.__exit__()
