"""pyraisdk's two record shapes (structured events, unstructured logs), who emits them, and
where they go.

The identity (``Role``, ``Instance``) and the two stream names are module state, set by
:func:`servekit.rlog.initialize`. :func:`emit_structured` is called on the request path, so it
only builds a dict from precomputed strings and a ``datetime``: the JSON encoding happens on
the bus's sender thread.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from servekit.events import get_bus

__all__ = [
    "LEVELS",
    "STRUCTURED_STREAM",
    "UNSTRUCTURED_STREAM",
    "Identity",
    "emit_structured",
    "emit_unstructured",
    "identity",
    "set_fork_hook",
    "set_identity",
    "set_streams",
    "structured",
    "structured_stream",
    "unstructured",
    "unstructured_stream",
]

STRUCTURED_STREAM = "servekit-events"
UNSTRUCTURED_STREAM = "servekit-logs"
LEVELS = ("INFO", "WARN", "ERROR", "FATAL")
UNKNOWN = "unknown"

_now = datetime.now
_UTC = timezone.utc


def _env(*names: str) -> str:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return UNKNOWN


@dataclass(frozen=True)
class Identity:
    """Who emits: ``Role`` and ``Instance`` of every record."""

    role: str = "RemoteModel"
    instance: str = UNKNOWN

    @classmethod
    def default(cls) -> Identity:
        """pyraisdk's default: role ``RemoteModel``, instance
        ``{ENDPOINT_NAME or MODEL_NAME}|{ENDPOINT_VERSION}|{hostname}`` (``unknown`` if missing)."""
        host = socket.gethostname() or UNKNOWN
        name = _env("ENDPOINT_NAME", "MODEL_NAME")
        return cls(instance=f"{name}|{_env('ENDPOINT_VERSION')}|{host}")


_identity = Identity.default()
_role, _instance = _identity.role, _identity.instance
_structured_stream = STRUCTURED_STREAM
_unstructured_stream = UNSTRUCTURED_STREAM


def identity() -> Identity:
    """The identity records carry now."""
    return _identity


def set_identity(new: Identity) -> None:
    """Carry ``new`` in every record from now on."""
    global _identity, _role, _instance
    _identity, _role, _instance = new, new.role, new.instance


def structured_stream() -> str:
    """The topic / stream / file stream of structured events (``servekit-events``)."""
    return _structured_stream


def unstructured_stream() -> str:
    """The topic / stream of unstructured logs (``servekit-logs``)."""
    return _unstructured_stream


def set_streams(structured: str | None = None, unstructured: str | None = None) -> None:
    """Name the two destinations (``None``: the default name)."""
    global _structured_stream, _unstructured_stream
    _structured_stream = structured or STRUCTURED_STREAM
    _unstructured_stream = unstructured or UNSTRUCTURED_STREAM


def structured(
    key: str, code: str, numeric: float, detail: str = "", corr_id: str = "", elem: int = -1
) -> dict[str, Any]:
    """A structured event, with pyraisdk's field names."""
    return {
        "Key": key,
        "Role": _role,
        "Instance": _instance,
        "CorrelationId": corr_id,
        "Element": elem,
        "Code": code,
        "Numeric": numeric,
        "Detail": detail,
        "Timestamp": _now(_UTC),
    }


def unstructured(
    level: str, message: str, corr_id: str = "", elem: int = -1, context: str = ""
) -> dict[str, Any]:
    """An unstructured log record (``level`` one of INFO, WARN, ERROR, FATAL)."""
    return {
        "Level": level,
        "Role": _role,
        "Instance": _instance,
        "Context": context,
        "Message": message,
        "CorrelationId": corr_id,
        "Element": elem,
        "Timestamp": _now(_UTC),
    }


def emit_structured(
    key: str, code: str, numeric: float, detail: str = "", corr_id: str = "", elem: int = -1
) -> None:
    """Publish one structured event; never blocks, never raises (the request path calls it)."""
    if _pending is not None:
        _resume_in_child()
    get_bus().publish(
        _structured_stream,
        structured(key, code, numeric, detail, corr_id, elem),
        key=_instance,  # one instance's records stay in order on one partition
    )


def emit_unstructured(
    level: str, message: str, corr_id: str = "", elem: int = -1, context: str = ""
) -> None:
    """Publish one unstructured log record; never blocks."""
    if _pending is not None:
        _resume_in_child()
    get_bus().publish(
        _unstructured_stream,
        unstructured(level, message, corr_id, elem, context),
        key=_instance,
    )


# A forked child inherits this module's state but not the parent's threads. What the parent
# set up (the bus's sink, the system metrics reporter) is set up again, once, by the hook
# servekit.rlog registers, from the child's first record.
_fork_hook: Callable[[], None] | None = None
_pending: Callable[[], None] | None = None
_pending_lock = threading.Lock()


def set_fork_hook(hook: Callable[[], None] | None) -> None:
    """Run ``hook`` in a forked child before its first record (``None``: nothing to run);
    what was pending in this process is done."""
    global _fork_hook, _pending
    _fork_hook, _pending = hook, None


def _resume_in_child() -> None:
    global _pending
    with _pending_lock:
        hook, _pending = _pending, None
    if hook is not None:
        hook()


def _after_fork_in_child() -> None:
    global _pending, _pending_lock
    _pending_lock = threading.Lock()
    _pending = _fork_hook


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
