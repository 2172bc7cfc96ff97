"""servekit: serve Python models fast.

The public API is re-exported here; everything else may change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from servekit.handler import RequestHandler
from servekit.messages import HttpMessage
from servekit.model import Model

if TYPE_CHECKING:
    from servekit.client.message_client import HttpClient
    from servekit.client.v2 import AsyncClient, Client
    from servekit.server.message_app import http_server
    from servekit.virtex_worker import VirtexWorker

# Names whose modules pull in the server or client stack: imported on first use.
_LAZY = {
    "http_server": "servekit.server.message_app",
    "HttpClient": "servekit.client.message_client",
    "Client": "servekit.client.v2",
    "AsyncClient": "servekit.client.v2",
    "VirtexWorker": "servekit.virtex_worker",  # imports gunicorn
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'servekit' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


__all__ = [
    "AsyncClient",
    "Client",
    "HttpClient",
    "HttpMessage",
    "Model",
    "RequestHandler",
    "VirtexWorker",
    "__version__",
    "http_server",
]
