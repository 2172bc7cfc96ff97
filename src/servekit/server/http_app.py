"""The one HTTP kit: route sets served as an ASGI app with one token check, one body limit,
one error renderer and one lifespan handler.

Every HTTP door (v2 + EAS in :class:`~servekit.server.app.App`, the EAS queue door, the
Virtex message door) is a list of :class:`~servekit.server.routing.Route` on an
:class:`HttpApp`. The token is checked from the headers before any body is read; health
routes are public so probes work.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from servekit.batching.failures import reported
from servekit.errors import Cancelled, ModelError, ServekitError
from servekit.server import openapi
from servekit.server.asgi import Receive, Scope, Send, error_response, run_lifespan, send_error
from servekit.server.auth import TokenGuard
from servekit.server.metrics import count_unrouted
from servekit.server.routing import Request, Route, Router

log = logging.getLogger("servekit.server")

Hook = Callable[[], Awaitable[None]]

__all__ = ["HttpApp", "deny_websocket"]


class HttpApp:
    """An ASGI app serving ``routes``; ``startup``/``shutdown`` run in the lifespan.

    The token rules are ``guard``'s (else a guard for ``token`` with the default EAS rules).

    ``GET /openapi.json`` describes every route (``api`` gives its title and the values of
    path parameters) and ``GET /docs`` renders it (:mod:`servekit.server.openapi`).

    A failing ``startup`` is reported to the server (``lifespan.startup.failed``), which then
    exits instead of serving a half-started app.
    """

    def __init__(
        self,
        routes: Iterable[Route],
        *,
        token: str | None = None,
        guard: TokenGuard | None = None,
        max_body_size: int = 64 * 1024 * 1024,
        startup: Hook | None = None,
        shutdown: Hook | None = None,
        api: openapi.ApiInfo | None = None,
    ) -> None:
        self.api = api or openapi.ApiInfo()
        # first, so a catch-all template (the Virtex door's) does not take them
        self.router = Router([*openapi.routes(self), *routes])
        self.guard = guard or TokenGuard(token)
        self.max_body_size = max_body_size
        self._startup = startup
        self._shutdown = shutdown

    async def startup(self) -> None:
        if self._startup is not None:
            await self._startup()

    async def shutdown(self) -> None:
        if self._shutdown is not None:
            await self._shutdown()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self.handle_http(scope, receive, send)
        elif kind == "websocket":
            await self.handle_websocket(scope, receive, send)
        elif kind == "lifespan":
            await run_lifespan(receive, send, self.startup, self.shutdown)

    async def handle_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        # An error answered here is counted in the request metrics unless a model's runtime
        # counted it (every outcome of ModelRuntime.infer is): no route, 401, 404 unknown
        # model, 400 malformed body, 413 reach no model and count as door "http", model "".
        started = time.perf_counter()
        template = ""
        try:
            route, params = self.router.resolve(scope)
            template = route.template
            if not route.public:
                self.guard.check(scope)
            await route.handler(self._request(scope, receive, send, params))
        except Cancelled:
            return  # the client is gone: nobody to answer
        except ServekitError as exc:
            count_unrouted(exc, exc.status, template, started)
            await send_error(send, exc)
        except Exception as exc:  # a boundary: answer 500, keep serving everyone else
            if not reported(exc):  # the batcher logs model failures itself, rate-limited
                log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            count_unrouted(exc, 500, template, started)
            await send_error(send, ModelError(f"internal error: {type(exc).__name__}: {exc}"))

    async def handle_websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            route, params = self.router.resolve(scope)
            self.guard.check(scope)
        except ServekitError as exc:
            if (await receive())["type"] == "websocket.connect":
                await deny_websocket(scope, send, exc)
            return
        await route.handler(self._request(scope, receive, send, params))

    def _request(
        self, scope: Scope, receive: Receive, send: Send, params: dict[str, str]
    ) -> Request:
        return Request(scope, receive, send, params, self.guard, self.max_body_size)


async def deny_websocket(scope: Scope, send: Send, error: ServekitError) -> None:
    """Refuse a WebSocket handshake with an HTTP answer where the server allows it."""
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": 1008})
        return
    status, headers, body = error_response(error)
    await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": body})
