"""``servekit serve`` replicas as real subprocesses on loopback ports, registered in Redis."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from support.redis_server import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
MODELS_FILE = "tests/server/cli_models.py"
DISCOVERY = "/api/v1/servicediscovery/upstreams/"


class Replica:
    """One ``servekit serve`` process; its log is kept for failure messages."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc = proc
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self.http = httpx.Client(base_url=self.url, timeout=10.0)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def ready(self) -> bool:
        assert self.proc.poll() is None, f"replica exited early:\n{self.output()}"
        try:
            return self.http.get("/v2/health/ready").status_code == 200
        except httpx.TransportError:
            return False

    def listed(self, service: str = "echo") -> list[int]:
        """The ports this replica's discovery route lists for ``service``."""
        answer = self.http.get(DISCOVERY + service)
        assert answer.status_code == 200, answer.text
        return sorted(item["port"] for item in answer.json()["endpoints"]["items"])

    def completed(self, model: str = "echo") -> int:
        """Requests this replica answered, from its own /metrics."""
        text = self.http.get("/metrics").text
        found = re.search(rf'^servekit_completed_total{{model="{model}"}} (\S+)$', text, re.M)
        return int(float(found.group(1))) if found else 0

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@contextmanager
def replicas(
    count: int,
    tmp_path: Path,
    *args: str,
    target: str = f"{MODELS_FILE}:Echo",
    env: dict[str, str] | None = None,
    envs: list[dict[str, str]] | None = None,
) -> Iterator[list[Replica]]:
    """``count`` replicas serving ``target`` with ``args``; waits until all are ready."""
    started: list[Replica] = []
    try:
        for i in range(count):
            port = free_port()
            log = tmp_path / f"replica-{port}.log"
            full_env = {**os.environ, **(env or {}), **((envs or [{}] * count)[i])}
            command = [sys.executable, "-m", "servekit", "serve", target, "--port", str(port)]
            with log.open("wb") as sink:
                proc = subprocess.Popen(
                    [*command, "--log-level", "warning", *args],
                    cwd=ROOT,
                    env=full_env,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                )
            started.append(Replica(proc, port, log))
        for replica in started:
            wait_until(replica.ready, 30, f"replica on port {replica.port} ready")
        yield started
    finally:
        for replica in started:
            replica.stop()


def wait_listed(replica: Replica, ports: list[int], timeout: float, service: str = "echo") -> float:
    """Wait until ``replica`` lists exactly ``ports``; returns the seconds it took."""
    start = time.monotonic()
    wait_until(lambda: replica.listed(service) == sorted(ports), timeout, f"list == {ports}")
    return time.monotonic() - start
