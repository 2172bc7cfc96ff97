"""The servers: the one runtime call into the batcher and the doors in front of it.

``App`` (the v2 + EAS ASGI app) is imported on first use, so that importing a light module
of this package (``servekit.server.runtime`` for the thread API) does not load every door.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from servekit.server.app import App


def __getattr__(name: str) -> Any:
    if name == "App":
        from servekit.server.app import App

        return App
    raise AttributeError(f"module 'servekit.server' has no attribute {name!r}")


__all__ = ["App"]
