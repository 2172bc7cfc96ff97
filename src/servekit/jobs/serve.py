"""Starting a jobs service: :func:`run` (``python app.py``), :func:`serve_target`
(``servekit serve app.py``), and the pieces both use to announce READY once listening."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Mapping, Sequence
from typing import Any

import uvicorn

from servekit.jobs.config import JobConfig
from servekit.jobs.http_door import jobs_http_app
from servekit.jobs.logs import log, setup_service_log
from servekit.jobs.pipeline import find_pipelines, registered
from servekit.jobs.service import JobsService, PipelineLoadError
from servekit.jobs.tcp_door import JobsTcpDoor
from servekit.server.auth import TokenGuard
from servekit.server.http_protocol import http_protocol
from servekit.settings import JobSettings, ServerSettings, with_overrides

__all__ = ["run", "serve_target", "serve_uvicorn", "start_tcp"]

_STEP = 0.01


def run(
    pipeline: type | Sequence[type] | None = None,
    *,
    host: str | None = None,
    port: int | None = None,
    protocol: str | None = None,
    **settings: Any,
) -> None:
    """Serve ``pipeline`` (default: every ``@pipeline()`` class defined so far) until stopped.

    Keywords not given come from ``SERVEKIT_JOBS_*``, then dubhe's ``PORT``, ``protocol``,
    then defaults (0.0.0.0:8030, HTTP); see :class:`~servekit.settings.JobSettings`.
    """
    if pipeline is None:
        pipelines = registered()
    elif isinstance(pipeline, type):
        pipelines = [pipeline]
    else:
        pipelines = list(pipeline)
    given = {"host": host, "port": port, "protocol": protocol, **settings}
    job_settings = JobSettings(**{k: v for k, v in given.items() if v is not None})
    _serve(pipelines, JobConfig.resolve(job_settings))


def serve_target(target: str, given: Mapping[str, Any]) -> int:
    """``servekit serve app.py``: serve the ``@pipeline()`` classes of a file or module.

    Of the ``serve`` flags, ``--host`` and ``--port`` apply; the rest are ignored (a warning).
    """
    from servekit.server.loader import TargetError, import_module

    expected = (
        "expected MODULE:ATTR or FILE.py:ATTR (models), or a file of @jobs.pipeline() classes"
    )
    try:
        module = import_module(target)
    except TargetError as exc:
        raise TargetError(f"{exc}; {expected}") from None
    pipelines = find_pipelines(module)
    if not pipelines:
        raise TargetError(f"{target} defines no @pipeline() class; {expected}")
    overrides = {k: given[k] for k in ("host", "port") if k in given}
    ignored = sorted(set(given) - set(overrides))
    config = JobConfig.resolve(JobSettings(**overrides))
    setup_service_log(config.log_dir)
    if ignored:
        log.warning("jobs service: ignoring %s (only --host and --port apply)", ", ".join(ignored))
    return _serve(pipelines, config, logs_ready=True)


def _serve(pipelines: Sequence[type], config: JobConfig, *, logs_ready: bool = False) -> int:
    if not logs_ready:
        setup_service_log(config.log_dir)
    service = JobsService(pipelines, config)
    try:
        service.load()
    except PipelineLoadError as exc:
        log.error("not serving: %s", exc)
        service.close()
        raise SystemExit(2) from exc
    log.info(
        "jobs service (%s) on %s:%d; messages to %s (status topic %s, result topic %s)",
        config.protocol.upper(),
        config.host,
        config.port,
        config.events_url or "the process event bus",
        config.topic_status,
        config.topic_result,
    )
    try:
        asyncio.run(_main(service, config))
    finally:
        service.close()
    return 0


async def _main(service: JobsService, config: JobConfig) -> None:
    server_settings = with_overrides(ServerSettings, None, {})
    if config.protocol == "http":
        app = jobs_http_app(
            service,
            guard=TokenGuard.from_settings(server_settings),
            max_body_size=server_settings.max_body_size,
        )
        options: dict[str, Any] = {
            "host": config.host,
            "port": config.port,
            "http": http_protocol(server_settings),  # servekit's header and connection limits
            "lifespan": "on",
            "log_config": None,
            "access_log": False,
        }
        uv_config = uvicorn.Config(app, **options)
        await serve_uvicorn(uvicorn.Server(uv_config), service)
        return
    door = await start_tcp(
        service,
        config.host,
        config.port,
        token=server_settings.token_value,
        max_frame_size=server_settings.tcp_max_frame_size,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await door.close()
    await service.stop()


async def serve_uvicorn(
    server: uvicorn.Server, service: JobsService, sockets: list[Any] | None = None
) -> None:
    """Run ``server`` (its app serves ``service``) and announce READY once it listens."""
    serving = asyncio.ensure_future(server.serve(sockets=sockets))
    while not server.started and not serving.done():
        await asyncio.wait({serving}, timeout=_STEP)
    if server.started:
        service.announce_ready()
    await serving


async def start_tcp(
    service: JobsService, host: str, port: int, **door_settings: Any
) -> JobsTcpDoor:
    """Start ``service`` and a TCP door on ``host:port``; READY once it listens."""
    await service.start()
    door = JobsTcpDoor(service, **door_settings)
    bound = await door.start(host, port)
    logging.getLogger("servekit.jobs").info("TCP door listening on %s:%d", host, bound)
    service.announce_ready()
    return door
