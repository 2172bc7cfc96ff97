"""Helpers for the Virtex seed examples: run a seed block, gunicorn from the seed command.

``tests/virtex/seed/`` holds each code block of ``../shared/seeds/virtex.md`` verbatim but
for its import lines; ``handlers.py`` defines the ``request_handler_x`` the README leaves out.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

SEED = Path(__file__).parent.parent / "virtex" / "seed"
#: The port the README's push example names; the fixture takes it when it is free.
SEED_PUSH_PORT = 9091


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def run_seed(name: str, **replace: str) -> dict[str, Any]:
    """Execute one seed block (``replace`` maps literal text to substitute) and return globals."""
    text = (SEED / name).read_text()
    for old, new in replace.items():
        assert old in text, f"{old!r} is not in {name}"
        text = text.replace(old, new)
    namespace: dict[str, Any] = {"__name__": "seed"}
    exec(compile(text, str(SEED / name), "exec"), namespace)
    return namespace


def wait_until(check: Any, timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


@dataclass
class Gunicorn:
    """A ``gunicorn`` master started from the README's command."""

    process: subprocess.Popen[bytes]
    url: str

    def workers(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children()

    def listening_ports(self, worker: psutil.Process) -> set[int]:
        return {
            c.laddr.port
            for c in worker.net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN
        }


def seed_gunicorn_command(app: str, port: int, workers: int = 2) -> list[str]:
    """``seed/gunicorn.sh`` with ``server:app``, ``--workers`` and ``--bind`` set for a test."""
    words = shlex.split((SEED / "gunicorn.sh").read_text().replace("\\\n", " "))
    assert words[:2] == ["gunicorn", "server:app"], words
    words[1] = app
    words[words.index("--workers") + 1] = str(workers)
    words[words.index("--bind") + 1] = f"127.0.0.1:{port}"
    return [sys.executable, "-m", "gunicorn", *words[1:]]


def ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def start_gunicorn(app: str, cwd: Path, workers: int = 2) -> Gunicorn:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SEED), str(cwd)])}
    process = subprocess.Popen(
        seed_gunicorn_command(app, port, workers),
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    server = Gunicorn(process, f"http://127.0.0.1:{port}")
    try:
        wait_until(lambda: process.poll() is not None or ready(server.url), what="gunicorn")
        assert process.poll() is None, f"gunicorn exited: {process.communicate()[0].decode()}"
        wait_until(lambda: len(server.workers()) == workers, what=f"{workers} workers")
    except BaseException:
        stop_gunicorn(server)
        raise
    return server


def stop_gunicorn(server: Gunicorn) -> None:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
    try:
        server.process.wait(20)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(5)
        raise AssertionError("gunicorn did not stop within 20 s of SIGTERM") from None
    finally:
        if server.process.stdout is not None:
            server.process.stdout.close()
