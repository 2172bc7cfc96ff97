"""Servers, clients and readers for the jobs tests."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import support.servers
from servekit.jobs.serve import serve_uvicorn, start_tcp
from servekit.jobs.service import JobsService


class JobsHttpServer(support.servers.LiveServer):
    """The jobs HTTP app under uvicorn, announcing READY as ``jobs.run()`` does."""

    def __init__(self, service: JobsService) -> None:
        from servekit.jobs.http_door import jobs_http_app

        self.service = service
        super().__init__(jobs_http_app(service))

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        await serve_uvicorn(self.server, self.service, [self._sock])


class JobsTcpServer:
    """The jobs TCP door on an event loop in a thread."""

    def __init__(self, service: JobsService) -> None:
        self.service = service
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        door = asyncio.run_coroutine_threadsafe(start_tcp(service, "127.0.0.1", 0), self.loop)
        self.door = door.result(10)
        self.port = self.door.port

    def stop(self) -> None:
        async def close() -> None:
            await self.door.close()
            await self.service.stop(5)

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


class TcpClient:
    """dubhe's framing: 4-byte signed big-endian length + JSON, as dubhe's server reads it."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)

    def send(self, message: Any) -> None:
        body = json.dumps(message).encode()
        self.sock.sendall(struct.pack("!i", len(body)) + body)

    def receive(self) -> Any:
        (length,) = struct.unpack("!i", self._exactly(4))
        return json.loads(self._exactly(length))

    def ask(self, message: Any) -> Any:
        self.send(message)
        return self.receive()

    def _exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            assert chunk, "server closed the connection"
            data += chunk
        return data

    def close(self) -> None:
        self.sock.close()


def read_messages(path: Path) -> list[dict[str, Any]]:
    """Every message of a file sink: ``{"stream", "key", "value"}``."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting until {what}")
        time.sleep(0.01)
