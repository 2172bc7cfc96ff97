"""System metrics as structured events, with pyraisdk's keys, every ``interval`` seconds.

- ``pyraisys_CpuUtilization``: percent (0 to 100) of all cores busy, averaged over the interval
  (``psutil.cpu_percent`` since the previous report); ``Code`` empty.
- ``pyraisys_MemoryUtilization``: percent (0 to 100) of RAM in use when reported
  (``psutil.virtual_memory().percent``); ``Code`` empty.
- ``pyraisys_GpuUtilization``: fraction (0 to 1) of the time a kernel ran on the device over NVML's
  last sample period; one event per device, ``Code`` the device index.
- ``pyraisys_GpuMemoryUtilization``: fraction (0 to 1) of the device's memory in use; one event
  per device, ``Code`` the device index.

GPU values are fractions, CPU and memory percents, as pyraisdk reports them. Without NVML
(``nvidia-ml-py`` not installed, no driver, no device) there are no GPU events.
One reporter per process: :func:`start` replaces the running one; a forked child has none
until :func:`start` runs in it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import psutil

from servekit.events.records import emit_structured

__all__ = [
    "CPU",
    "GPU",
    "GPU_MEMORY",
    "MEMORY",
    "SystemMetricsReporter",
    "current",
    "start",
    "stop",
]

log = logging.getLogger("servekit.events")

CPU = "pyraisys_CpuUtilization"
MEMORY = "pyraisys_MemoryUtilization"
GPU = "pyraisys_GpuUtilization"
GPU_MEMORY = "pyraisys_GpuMemoryUtilization"

Emit = Callable[[str, str, float], None]


def _emit(key: str, code: str, numeric: float) -> None:
    emit_structured(key, code, numeric)


class _Nvml:
    """NVML opened once by the reporter's thread; ``None`` devices when it cannot be."""

    def __init__(self) -> None:
        self._nvml: ModuleType | None = None
        self._handles: list[Any] = []

    def open(self) -> None:
        try:
            import pynvml  # type: ignore[import-untyped,unused-ignore]
        except ImportError:
            log.debug("system metrics: no GPU events (nvidia-ml-py is not installed)")
            return
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:  # no driver library, no device
            log.debug("system metrics: no GPU events (NVML: %s)", exc)
            return
        try:
            count = pynvml.nvmlDeviceGetCount()
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        except pynvml.NVMLError as exc:
            log.debug("system metrics: no GPU events (NVML: %s)", exc)
            pynvml.nvmlShutdown()
            return
        if not self._handles:
            log.debug("system metrics: no GPU events (NVML sees no device)")
        self._nvml = pynvml

    def sample(self) -> Iterator[tuple[str, str, float]]:
        nvml = self._nvml
        if nvml is None:
            return
        for index, handle in enumerate(self._handles):
            try:
                busy = nvml.nvmlDeviceGetUtilizationRates(handle).gpu / 100.0
                memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            except nvml.NVMLError as exc:  # a device lost or busy: skip it this time
                log.debug("system metrics: GPU %d: %s", index, exc)
                continue
            yield GPU, str(index), busy
            if memory.total:
                yield GPU_MEMORY, str(index), memory.used / memory.total

    def close(self) -> None:
        if self._nvml is not None:
            self._nvml.nvmlShutdown()
            self._nvml = None


class SystemMetricsReporter:
    """A daemon thread emitting CPU, memory and GPU use every ``interval`` seconds."""

    def __init__(self, interval: float = 60.0, emit: Emit = _emit) -> None:
        if not interval > 0:
            raise ValueError(f"sys_metrics_interval must be > 0 seconds, not {interval!r}")
        self.interval = interval
        self._emit = emit
        self._stop = threading.Event()
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._run, name="servekit-sysmetrics", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        """The thread runs (in this process)."""
        return self._pid == os.getpid() and self._thread.is_alive()

    def stop(self, timeout: float = 1.0) -> None:
        """Ask the thread to end and wait up to ``timeout`` seconds for it."""
        self._stop.set()
        if self.alive and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        nvml = _Nvml()
        nvml.open()
        psutil.cpu_percent(None)  # the first call only starts the measuring window
        try:
            while not self._stop.wait(self.interval):
                self._report(nvml)
        finally:
            nvml.close()

    def _report(self, nvml: _Nvml) -> None:
        self._emit(CPU, "", psutil.cpu_percent(None))
        self._emit(MEMORY, "", psutil.virtual_memory().percent)
        for key, code, value in nvml.sample():
            self._emit(key, code, value)


_reporter: SystemMetricsReporter | None = None
_lock = threading.Lock()


def start(interval: float = 60.0) -> SystemMetricsReporter:
    """The process's reporter at ``interval`` (the running one if it has that interval)."""
    global _reporter
    with _lock:
        old = _reporter
        if old is not None and old.alive and old.interval == interval:
            return old
        reporter = SystemMetricsReporter(interval)
        if old is not None:
            old.stop()
        reporter.start()
        _reporter = reporter
        return reporter


def stop(timeout: float = 1.0) -> None:
    """Stop the process's reporter, if one runs."""
    global _reporter
    with _lock:
        old, _reporter = _reporter, None
    if old is not None:
        old.stop(timeout)


def current() -> SystemMetricsReporter | None:
    """The reporter running in this process, if any."""
    reporter = _reporter
    return reporter if reporter is not None and reporter.alive else None


def _forget_in_child() -> None:
    global _reporter, _lock
    _reporter = None
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
