"""A jobs service under a real server on 127.0.0.1 (HTTP: uvicorn; TCP: the jobs door on its
own event loop), its messages in a JSON-lines file (or Kafka), real clients."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobs import pipelines
from jobs.helpers import JobsHttpServer, JobsTcpServer, TcpClient
from servekit.jobs.config import JobConfig
from servekit.jobs.service import JobsService
from servekit.settings import JobSettings


@pytest.fixture
def make_service(tmp_path: Path) -> Iterator[Callable[..., JobsService]]:
    """``make_service(events_url=None, environ={}, **settings)``: a loaded service whose
    messages go to ``tmp_path/events.jsonl`` unless told otherwise."""
    made: list[JobsService] = []

    def make(
        events_url: str | None = None, environ: dict[str, str] | None = None, **settings: Any
    ) -> JobsService:
        url = events_url or f"file://{tmp_path / 'events.jsonl'}"
        job_settings = JobSettings(
            work_dir=str(tmp_path / "work"), log_dir=str(tmp_path / "log"), **settings
        )
        config = JobConfig.resolve(job_settings, environ or {}).replace(events_url=url)
        if environ and "BOOTSTRAP_SERVERS" in environ and events_url is None:
            config = config.replace(events_url=JobConfig.resolve(None, environ).events_url)
        service = JobsService([pipelines.Trainer], config)
        service.load()
        made.append(service)
        return service

    pipelines.RELEASE.clear()
    yield make
    pipelines.RELEASE.set()
    for service in made:
        for job in service.runner.jobs():
            job.cancel()
        service.close(5)


@pytest.fixture
def http_server(
    make_service: Callable[..., JobsService],
) -> Iterator[Callable[..., tuple[JobsHttpServer, httpx.Client]]]:
    servers: list[JobsHttpServer] = []
    clients: list[httpx.Client] = []

    def start(**kwargs: Any) -> tuple[JobsHttpServer, httpx.Client]:
        server = JobsHttpServer(make_service(**kwargs)).start()
        servers.append(server)
        client = httpx.Client(base_url=server.url, timeout=10)
        clients.append(client)
        return server, client

    yield start
    for client in clients:
        client.close()
    for server in servers:
        server.stop()


@pytest.fixture
def tcp_server(make_service: Callable[..., JobsService]) -> Iterator[Callable[..., Any]]:
    servers: list[JobsTcpServer] = []
    clients: list[TcpClient] = []

    def start(**kwargs: Any) -> tuple[JobsTcpServer, TcpClient]:
        server = JobsTcpServer(make_service(**kwargs))
        servers.append(server)
        client = TcpClient(server.port)
        clients.append(client)
        return server, client

    yield start
    for client in clients:
        client.close()
    for server in servers:
        server.stop()
