"""The HTTP server: an ASGI app on uvicorn speaking the Open Inference Protocol (v2)."""

from servekit.server.app import App

__all__ = ["App"]
