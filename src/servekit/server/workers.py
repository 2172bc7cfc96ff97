"""``servekit serve --workers N``: N uvicorn server processes on one socket, kept alive.

uvicorn's own supervisor replaces a dead worker at once, forever: a worker that dies each
time it starts (a crash while loading a model) is restarted about once a second, each time
with a traceback. Here a worker that dies is replaced after a delay that doubles with each
death in a row (0, 0.5, 1, 2, … up to 30 s; the count resets once a worker has lived
:data:`STABLE_AFTER` seconds), and each death is logged with how it ended and the delay.
A worker whose app failed to start (uvicorn's exit code 3) would fail the same way again,
so it stops the server. SIGTERM or SIGINT closes the parent's copy of the listening socket,
stops every worker (each stops accepting, answers what it accepted, drains its queued work)
and returns 0.

Metrics: the workers share a temporary folder (:func:`servekit.server.metrics.share_across_workers`)
so a scrape answered by any worker shows the sum over all of them; a dead worker's file is
marked dead (its counters stay in the sum, its gauges leave it); the folder goes at exit.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from types import FrameType

import uvicorn

from servekit.server.metrics import mark_dead, share_across_workers

log = logging.getLogger("servekit.server")

#: uvicorn's exit code for a worker whose app or lifespan startup failed.
STARTUP_FAILURE = 3
#: A worker that lived this long (seconds) was healthy: its death starts a new count.
STABLE_AFTER = 10.0
FIRST_DELAY = 0.5
MAX_DELAY = 30.0
POLL = 0.1

multiprocessing.allow_connection_pickling()  # the listening socket goes to spawned workers
_spawn = multiprocessing.get_context("spawn")


def restart_delay(deaths_in_a_row: int) -> float:
    """Seconds to wait before replacing a worker after its ``deaths_in_a_row``-th death."""
    if deaths_in_a_row <= 1:
        return 0.0
    return min(FIRST_DELAY * 2.0 ** (deaths_in_a_row - 2), MAX_DELAY)


def _serve_one(config: uvicorn.Config, sockets: list[socket.socket], metrics_dir: str) -> None:
    """A worker process: logging as configured, then one uvicorn server on the shared socket."""
    config.configure_logging()
    share_across_workers(metrics_dir)
    # Ctrl-C reaches the whole process group: no traceback here, the parent reports
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(config).run(sockets=sockets)


def _how_it_ended(code: int | None) -> str:
    if code is not None and code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


@dataclass
class _Slot:
    """One worker position: its current process and its run of quick deaths."""

    index: int
    process: BaseProcess | None = None
    started: float = 0.0
    deaths: int = 0
    due: float = 0.0


class Workers:
    """Runs ``count`` workers serving ``config`` (a uvicorn config with an import-string app)."""

    def __init__(
        self,
        config: uvicorn.Config,
        count: int,
        *,
        stop_timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.slots = [_Slot(i) for i in range(count)]
        self.stop_timeout = stop_timeout
        self.clock = clock
        self._stop_signal: int | None = None
        self.metrics_dir = ""

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT (0) or a worker's startup failure (3)."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        sock = self.config.bind_socket()
        self.metrics_dir = tempfile.mkdtemp(prefix="servekit-metrics-")
        try:
            return self._supervise(sock)
        finally:
            # first: once the workers close theirs, a new connection is refused at once
            # instead of waiting in a backlog nobody accepts from
            sock.close()
            self._stop_all()
            shutil.rmtree(self.metrics_dir, ignore_errors=True)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stop_signal = signum

    def _supervise(self, sock: socket.socket) -> int:
        while self._stop_signal is None:
            now = self.clock()
            for slot in self.slots:
                if slot.process is None and now >= slot.due:
                    self._start(slot, sock)
            sentinels = [s.process.sentinel for s in self.slots if s.process is not None]
            multiprocessing.connection.wait(sentinels, POLL)
            for slot in self.slots:
                if slot.process is not None and not slot.process.is_alive():
                    if self._stop_signal is not None:
                        break
                    if self._buried(slot):
                        return STARTUP_FAILURE
        log.info("received %s: stopping the workers", signal.Signals(self._stop_signal).name)
        return 0

    def _start(self, slot: _Slot, sock: socket.socket) -> None:
        args = (self.config, [sock], self.metrics_dir)
        slot.process = _spawn.Process(target=_serve_one, args=args)
        slot.process.start()
        slot.started = self.clock()
        log.info("worker %d started (pid %s)", slot.index, slot.process.pid)

    def _buried(self, slot: _Slot) -> bool:
        """Record a dead worker and schedule its replacement; True if the server must stop."""
        assert slot.process is not None
        process, slot.process = slot.process, None
        process.join()
        if process.pid is not None:
            mark_dead(self.metrics_dir, process.pid)
        code, lived = process.exitcode, self.clock() - slot.started
        ended = _how_it_ended(code)
        if code == STARTUP_FAILURE:
            log.error("worker %d (pid %s) failed to start: stopping", slot.index, process.pid)
            return True
        slot.deaths = 1 if lived >= STABLE_AFTER else slot.deaths + 1
        delay = restart_delay(slot.deaths)
        slot.due = self.clock() + delay
        log.error(
            "worker %d (pid %s) %s after %.1f s; replacing it in %.1f s (death %d in a row)",
            slot.index, process.pid, ended, lived, delay, slot.deaths,
        )  # fmt: skip
        return False

    def _stop_all(self) -> None:
        running = [s.process for s in self.slots if s.process is not None and s.process.is_alive()]
        for process in running:
            process.terminate()  # SIGTERM: the worker drains its queued work, then exits
        deadline = time.monotonic() + self.stop_timeout
        for process in running:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.error("worker pid %s did not stop in time: killing it", process.pid)
                process.kill()
                process.join()
