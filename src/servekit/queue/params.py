"""Query-string values of the EAS queue protocol, parsed strictly (bad value -> ``BadRequest``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import parse_qsl

from servekit.errors import BadRequest

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def parse_query(raw: bytes) -> dict[str, str]:
    """The query string as a dict (the last value of a repeated name wins)."""
    try:
        return dict(parse_qsl(raw.decode("latin-1"), keep_blank_values=True, errors="strict"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(f"query string is not valid UTF-8 percent-encoding: {exc}") from exc


def is_reserved(name: str) -> bool:
    """``_index_``-style control names and ``requestId`` are not tags."""
    return (len(name) > 2 and name.startswith("_") and name.endswith("_")) or name == "requestId"


def tags_of(query: Mapping[str, str]) -> dict[str, str]:
    """Every query parameter that is not a control name is a tag."""
    return {k: v for k, v in query.items() if not is_reserved(k)}


def request_id(query: Mapping[str, str]) -> str | None:
    """``requestId``: it travels back in a response header, so printable ASCII, 1-256 long."""
    raw = query.get("requestId")
    if not raw:
        return None
    if len(raw) > 256 or not raw.isascii() or not raw.isprintable():
        raise BadRequest("requestId must be 1 to 256 printable ASCII characters")
    return raw


def boolean(query: Mapping[str, str], name: str, default: bool) -> bool:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise BadRequest(f"{name} must be true or false, not {raw!r}")


def integer(
    query: Mapping[str, str], name: str, default: int | None, *, low: int = 0, high: int = 2**63
) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        if default is None:
            raise BadRequest(f"{name} is required")
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise BadRequest(f"{name} must be an integer, not {raw!r}") from None
    if not low <= value <= high:
        raise BadRequest(f"{name} must be between {low} and {high}, not {value}")
    return value


def indexes(query: Mapping[str, str], name: str = "_indexes_") -> list[int]:
    raw = query.get(name, "")
    parts = [p.strip() for p in raw.split(",") if p.strip()]
    if not parts:
        raise BadRequest(f"{name} must list one or more indexes, like 3,4,5")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise BadRequest(f"{name} must be comma-separated integers, not {raw!r}") from None
    if any(v < 0 for v in values):
        raise BadRequest(f"{name} must not hold negative indexes")
    return values


def duration(query: Mapping[str, str], name: str, default: float, *, limit: float) -> float:
    """Seconds from ``5s``, ``500ms``, ``1m30s`` (Go style) or a bare number of seconds."""
    raw = query.get(name)
    if raw is None or raw.strip() == "":
        return default
    text = raw.strip()
    try:
        seconds = float(text)
    except ValueError:
        parts = _DURATION_PART.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise BadRequest(f"{name} must be a duration like 5s or 500ms, not {raw!r}") from None
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    if seconds != seconds or seconds < 0:  # NaN or negative
        raise BadRequest(f"{name} must not be negative, not {raw!r}")
    return min(seconds, limit)
