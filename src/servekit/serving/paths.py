"""mlrun's ``input_path`` / ``result_path``: dotted paths into a request body."""

from __future__ import annotations

from typing import Any


def get_in(body: Any, dotted: str) -> Any:
    """``body["a"]["b"]`` for ``"a.b"`` (list indexes as numbers)."""
    value = body
    for key in dotted.split("."):
        if isinstance(value, list):
            value = value[int(key)]
        elif isinstance(value, dict):
            value = value[key]
        else:
            raise TypeError(f"input_path {dotted!r} supports only dict-like event bodies")
    return value


def update_in(body: Any, dotted: str, value: Any) -> Any:
    """Write ``value`` at ``"a.b"`` in ``body`` (dicts made as needed); return ``body``."""
    if not isinstance(body, dict):
        raise TypeError(f"result_path {dotted!r} supports only dict-like event bodies")
    node = body
    *parents, last = dotted.split(".")
    for key in parents:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[last] = value
    return body
