"""Virtex's two metrics modes for ``http_server``: a scrape endpoint per worker, or pushes.

Scrape: each process serves Prometheus text on the first free port of
``metrics_port … metrics_port + SCRAPE_PORT_SPAN - 1`` (Virtex's "the first instance takes
``metrics_port``, each next worker the next port, occupied ports skipped"). Push: each process
PUTs its metrics to a Pushgateway every ``metrics_interval`` seconds under job ``name`` and
grouping key ``instance=<host>:<pid>``; a failed push is logged and serving goes on.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, push_to_gateway, start_http_server

log = logging.getLogger("servekit.server")

#: How many ports from ``metrics_port`` up a scraping process tries before giving up.
SCRAPE_PORT_SPAN = 64
#: Seconds between repeats of the same push failure in the log.
PUSH_LOG_EVERY = 60.0


def bind_host(metrics_host: str) -> str:
    """``metrics_host`` as an address to bind: Virtex allows ``'http://127.0.0.1'``."""
    return metrics_host.split("://", 1)[-1].rstrip("/")


@dataclass
class ScrapeServer:
    """A Prometheus endpoint on its own thread; ``port`` is the one it took."""

    port: int
    _server: WSGIServer
    _thread: threading.Thread

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def start_scrape_server(
    registry: CollectorRegistry, host: str, first_port: int, span: int = SCRAPE_PORT_SPAN
) -> ScrapeServer:
    """Serve ``registry`` on the first port from ``first_port`` that is free (atomic bind)."""
    address = bind_host(host)
    for port in range(first_port, first_port + span):
        try:
            server, thread = start_http_server(port, addr=address, registry=registry)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise OSError(
                    exc.errno, f"metrics_mode='scrape' cannot bind {address}:{port}: {exc}"
                ) from exc
            continue
        log.info("metrics for scraping on http://%s:%d/metrics", address, port)
        return ScrapeServer(port, server, thread)
    last = first_port + span - 1
    raise OSError(
        errno.EADDRINUSE,
        f"metrics_mode='scrape': every port from metrics_port={first_port} to {last}"
        f" on {address} is taken; choose a metrics_port with a free block above it",
    )


@dataclass
class Pusher:
    """Pushes ``registry`` to the Pushgateway at ``gateway`` every ``interval`` seconds."""

    registry: CollectorRegistry
    gateway: str
    job: str
    interval: float
    grouping_key: dict[str, str] = field(
        default_factory=lambda: {"instance": f"{socket.gethostname()}:{os.getpid()}"}
    )
    pushes: int = 0
    failures: int = 0
    _failing_since_log: float | None = None

    async def run(self) -> None:
        """Push until cancelled; one push at a time, the next ``interval`` after the last."""
        while True:
            await asyncio.sleep(self.interval)
            await self.push()

    async def push(self) -> bool:
        """Push once; a failure is logged (at most every PUSH_LOG_EVERY s), never raised."""
        try:
            await asyncio.to_thread(
                push_to_gateway,
                self.gateway,
                job=self.job,
                registry=self.registry,
                grouping_key=self.grouping_key,
                timeout=max(1.0, min(self.interval * 10, 10.0)),
            )
        # URLError and HTTPError are OSErrors (gateway down or refusing); ValueError: a bad URL
        except (OSError, ValueError) as exc:
            self._failed(exc)
            return False
        self.pushes += 1
        if self._failing_since_log is not None:
            log.warning("pushing metrics to %s works again", self.gateway)
            self._failing_since_log = None
        return True

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        now = time.monotonic()
        if self._failing_since_log is None or now - self._failing_since_log >= PUSH_LOG_EVERY:
            log.warning(
                "pushing metrics to the Pushgateway at %s failed (%d failures so far): %s",
                self.gateway,
                self.failures,
                exc,
            )
            self._failing_since_log = now
