"""pyraisdk's ``rlog``: structured events and leveled logs with pyraisdk's records, on the
process's event bus (:mod:`servekit.events`).

``from pyraisdk import rlog`` becomes ``from servekit import rlog``; the calls stay the same.
Every call only queues a record and returns (the bus encodes and delivers it); calls made
before :func:`initialize` go to the bus's default destination (``SERVEKIT_EVENTS_URL``, else
stdout). Each log line is also passed to the Python logger ``servekit.rlog`` at its level
(WARN → WARNING, FATAL → CRITICAL), which prints nothing unless the application configured
logging.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from servekit import events
from servekit.events import records, sysmetrics
from servekit.events.records import Identity, emit_unstructured
from servekit.events.sinks import Sink

__all__ = [
    "errorcf",
    "errorf",
    "event",
    "fatalcf",
    "fatalf",
    "flush",
    "infocf",
    "infof",
    "initialize",
    "shutdown",
    "warncf",
    "warnf",
]

log = logging.getLogger("servekit.rlog")
log.addHandler(logging.NullHandler())  # mirrored lines print only where the app logs

SinkSpec = str | Sequence[str | Sink] | Sink
_PY_LEVEL = {
    "INFO": logging.INFO,
    "WARN": logging.WARNING,
    "ERROR": logging.ERROR,
    "FATAL": logging.CRITICAL,
}


@dataclass(frozen=True)
class _Config:
    sink: SinkSpec | None
    event_hubs: tuple[str | None, str | None, str | None]  # conn_str, hostname, client_id
    structured: str | None
    unstructured: str | None
    identity: Identity
    sys_metrics_interval: float | None  # None: no reporter


_config: _Config | None = None
_lock = threading.Lock()


def _env(value: str | None, name: str) -> str | None:
    return value if value is not None else (os.environ.get(name) or None)


def _eh_hostname(value: str | None) -> str | None:
    if value is not None:
        return value
    namespace = os.environ.get("EVENTHUB_NAMESPACE")
    if not namespace:
        return None
    if "." in namespace:  # already the fully qualified namespace
        return namespace
    suffix = os.environ.get("SERVICEBUS_ENDPOINT_SUFFIX", "servicebus.windows.net")
    return f"{namespace}.{suffix}"


def initialize(
    eh_hostname: str | None = None,
    client_id: str | None = None,
    eh_conn_str: str | None = None,
    eh_structured: str | None = None,
    eh_unstructured: str | None = None,
    role: str | None = None,
    instance: str | None = None,
    sys_metrics_enable: bool = True,
    sys_metrics_interval: float = 60,
    sink: SinkSpec | None = None,
) -> None:
    """Set who emits, where records go and the system metrics reporter.

    Arguments left ``None`` are read from pyraisdk's environment variables. Records go to
    ``sink`` (a URL, a list of URLs or sinks), else to ``SERVEKIT_EVENTS_URL``, else to Event
    Hubs' Kafka endpoint when a connection string or namespace is set, else to stdout. A
    second call with the same arguments does nothing; with others, it applies them.
    """
    global _config
    if sys_metrics_enable and not sys_metrics_interval > 0:
        raise ValueError(f"sys_metrics_interval must be > 0 seconds, not {sys_metrics_interval!r}")
    default = Identity.default()
    config = _Config(
        sink=sink,
        event_hubs=(
            _env(eh_conn_str, "EVENTHUB_CONN_STRING"),
            _eh_hostname(eh_hostname),
            _env(client_id, "UAI_CLIENT_ID"),
        ),
        structured=_env(eh_structured, "EVENTHUB_AUX_STRUCTURED"),
        unstructured=_env(eh_unstructured, "EVENTHUB_AUX_UNSTRUCTURED"),
        identity=Identity(role or default.role, instance or default.instance),
        sys_metrics_interval=float(sys_metrics_interval) if sys_metrics_enable else None,
    )
    with _lock:
        if config == _config and _applied_here():
            return
        old, _config = _config, config
        _apply(config, old)


_applied_pid = os.getpid()


def _applied_here() -> bool:
    return _applied_pid == os.getpid()


def _bus_sink(config: _Config) -> Callable[[], SinkSpec] | None:
    """What makes the bus's destination, ``None`` to leave the bus to its own settings."""
    if config.sink is not None:
        given = config.sink
        return lambda: given
    if os.environ.get("SERVEKIT_EVENTS_URL"):
        return None
    conn_str, hostname, client_id = config.event_hubs
    if not (conn_str or hostname):
        return None
    for name, stream in (("structured", config.structured), ("unstructured", config.unstructured)):
        if not stream:
            log.warning(
                "rlog: Event Hubs is set but no %s event hub is named (eh_%s /"
                " EVENTHUB_AUX_%s): %s records go to the event hub %r",
                name,
                name,
                name.upper(),
                name,
                records.STRUCTURED_STREAM if name == "structured" else records.UNSTRUCTURED_STREAM,
            )

    def event_hubs() -> SinkSpec:
        from servekit.events.eventhubs import (  # type: ignore[import-not-found,unused-ignore]
            event_hubs_sink,
        )

        made: Sink = event_hubs_sink(conn_str=conn_str, hostname=hostname, client_id=client_id)
        return made

    return event_hubs


def _apply(config: _Config, old: _Config | None) -> None:
    global _applied_pid
    records.set_identity(config.identity)
    records.set_streams(config.structured, config.unstructured)
    make_sink = _bus_sink(config)
    if old is None or _bus_sink_key(old) != _bus_sink_key(config) or not _applied_here():
        if make_sink is not None:
            events.configure(make_sink())
        elif old is not None:
            events.configure()  # back to the bus's own settings
    if config.sys_metrics_interval is None:
        sysmetrics.stop()
    else:
        sysmetrics.start(config.sys_metrics_interval)
    _applied_pid = os.getpid()
    records.set_fork_hook(_resume_in_child)


def _bus_sink_key(config: _Config) -> tuple[object, ...]:
    if config.sink is not None:
        return ("sink", config.sink)
    if os.environ.get("SERVEKIT_EVENTS_URL"):
        return ("env",)
    return ("event_hubs", config.event_hubs)


def _resume_in_child() -> None:
    # a forked child: make its own bus destination and reporter from the parent's settings
    config = _config
    if config is not None:
        _apply(config, None)


def _new_lock_in_child() -> None:
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock_in_child)


def shutdown(timeout: float = 5.0) -> bool:
    """Stop the system metrics reporter, flush, and forget the settings (the next
    :func:`initialize` applies its arguments in full). ``False`` if the flush timed out."""
    global _config
    with _lock:
        _config = None
        records.set_fork_hook(None)
    sysmetrics.stop()
    return events.flush(timeout)


def flush(timeout: float = 10.0) -> bool:
    """Wait up to ``timeout`` seconds for queued records to be delivered."""
    return events.flush(timeout)


def event(
    key: str, code: str, numeric: float, detail: str = "", corr_id: str = "", elem: int = -1
) -> None:
    """A structured event: ``key`` names it, ``code`` and ``numeric`` carry its value."""
    records.emit_structured(key, code, numeric, detail, corr_id, elem)


def _message(fmt: str, args: tuple[Any, ...]) -> str:
    if not args:
        return fmt if isinstance(fmt, str) else _safe_repr(fmt)
    try:
        return fmt % args
    except Exception as exc:  # a caller's bad format/args pair: log it raw, never raise
        failure = f"{type(exc).__name__}: {_safe_str(exc)}"
        return f"{_safe_repr(fmt)} % {_safe_repr(args)} [format failed: {failure}]"


def _safe_repr(value: object) -> str:
    try:
        return repr(value)
    except Exception as exc:  # a broken __repr__ of the caller's object
        return f"<{type(value).__name__} object, repr failed: {type(exc).__name__}>"


def _safe_str(value: object) -> str:
    try:
        return str(value)
    except Exception:  # a broken __str__: its repr will do
        return _safe_repr(value)


def _with_exception(message: str, ex: BaseException | None) -> str:
    if ex is None:
        return message
    return message + "\n" + "".join(traceback.format_exception(ex)).rstrip("\n")


def _log(level: str, corr_id: str, elem: int, context: str, message: str) -> None:
    emit_unstructured(level, message, corr_id, elem, context)
    py_level = _PY_LEVEL[level]
    if log.isEnabledFor(py_level):
        suffix = f"  {{CorrId: {corr_id}, Elem: {elem}}}" if corr_id else ""
        log.log(py_level, "%s%s", message, suffix)


def _caller(depth: int = 2) -> str:
    frame = sys._getframe(depth)
    return f"{frame.f_globals.get('__name__', '?')}:{frame.f_lineno}"


def infof(fmt: str, *args: Any) -> None:
    """An INFO line: ``fmt % args``."""
    _log("INFO", "", -1, "", _message(fmt, args))


def infocf(corr_id: str, elem: int, fmt: str, *args: Any) -> None:
    """An INFO line for request ``corr_id``, element ``elem``."""
    _log("INFO", corr_id, elem, "", _message(fmt, args))


def warnf(fmt: str, *args: Any) -> None:
    """A WARN line."""
    _log("WARN", "", -1, "", _message(fmt, args))


def warncf(corr_id: str, elem: int, fmt: str, *args: Any) -> None:
    """A WARN line for request ``corr_id``, element ``elem``."""
    _log("WARN", corr_id, elem, "", _message(fmt, args))


def errorf(fmt: str, *args: Any) -> None:
    """An ERROR line; ``Context`` is the caller's ``module:line``."""
    _log("ERROR", "", -1, _caller(), _message(fmt, args))


def errorcf(corr_id: str, elem: int, ex: BaseException | None, fmt: str, *args: Any) -> None:
    """An ERROR line for request ``corr_id``, ``ex`` and its traceback appended."""
    _log("ERROR", corr_id, elem, _caller(), _with_exception(_message(fmt, args), ex))


def fatalf(fmt: str, *args: Any) -> None:
    """A FATAL line; ``Context`` is the caller's ``module:line``."""
    _log("FATAL", "", -1, _caller(), _message(fmt, args))


def fatalcf(corr_id: str, elem: int, ex: BaseException | None, fmt: str, *args: Any) -> None:
    """A FATAL line for request ``corr_id``, ``ex`` and its traceback appended."""
    _log("FATAL", corr_id, elem, _caller(), _with_exception(_message(fmt, args), ex))
