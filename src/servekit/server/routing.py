"""One method table for every HTTP door: routes matched on the raw path, 404 and 405 alike.

A route's template is a path of literal segments and ``{name}`` parameters; a last
``{name:path}`` parameter takes the rest of the path (queue names such as ``svc/sink``).
Matching happens on the raw (still percent-encoded) path split at ``/``, and each segment is
decoded afterwards, so ``doubler%2Finfer`` is one segment: a model name, never a route.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import unquote

from servekit.errors import NotFound, ServekitError
from servekit.server.asgi import Receive, Scope, Send, read_body
from servekit.server.auth import TokenGuard

__all__ = ["MethodNotAllowed", "Request", "Route", "Router"]


@dataclass(slots=True)
class Request:
    """What a route handler gets: the ASGI triple, the path parameters, body rules."""

    scope: Scope
    receive: Receive
    send: Send
    params: dict[str, str] = field(default_factory=dict)
    guard: TokenGuard | None = None
    max_body_size: int = 64 * 1024 * 1024

    async def body(self, limit: int | None = None, setting: str | None = None) -> bytes:
        """The whole body, bounded (413 naming ``setting``), matched to a signed digest (401)."""
        body = await read_body(self.scope, self.receive, limit or self.max_body_size, setting)
        if self.guard is not None:
            self.guard.check_body(self.scope, body)
        return body

    @property
    def method(self) -> str:
        return str(self.scope["method"])

    @property
    def path(self) -> str:
        return str(self.scope["path"])


Handler = Callable[[Request], Awaitable[None]]


class MethodNotAllowed(ServekitError):
    """405: the path exists but not for this method; ``Allow`` lists those it has."""

    status = 405

    def __init__(self, method: str, path: str, allowed: Iterable[str]) -> None:
        self.allowed = sorted(set(allowed))
        super().__init__(
            f"method {method} is not allowed on {path} (allowed: {', '.join(self.allowed)})"
        )

    def headers(self) -> dict[str, str]:
        return {"allow": ", ".join(self.allowed)}


@dataclass(frozen=True, slots=True)
class Route:
    """``methods`` on ``template`` go to ``handler``; ``public`` routes skip the token."""

    methods: frozenset[str]
    template: str
    handler: Handler
    public: bool = False
    websocket: bool = False

    @classmethod
    def http(
        cls, methods: str | Iterable[str], template: str, handler: Handler, *, public: bool = False
    ) -> Route:
        wanted = {methods} if isinstance(methods, str) else set(methods)
        if "GET" in wanted:
            wanted.add("HEAD")  # uvicorn sends a HEAD response without its body
        return cls(frozenset(wanted), template, handler, public)

    @classmethod
    def ws(cls, template: str, handler: Handler) -> Route:
        return cls(frozenset({"WEBSOCKET"}), template, handler, websocket=True)


class _Pattern:
    __slots__ = ("checks", "last", "literals", "params", "rest")

    def __init__(self, template: str) -> None:
        parts = template.strip("/").split("/") if template.strip("/") else []
        self.literals: list[str | None] = []
        self.rest: str | None = None
        for i, part in enumerate(parts):
            if part.startswith("{") and part.endswith("}"):
                name, _, kind = part[1:-1].partition(":")
                if kind == "path":
                    if i != len(parts) - 1:
                        raise ValueError(f"{{{part}}} must end the template {template!r}")
                    self.rest = name
                    break
                self.literals.append(None)
            else:
                self.literals.append(part)
        names = [p[1:-1] for p in parts[: len(self.literals)] if p.startswith("{")]
        self.checks = [(i, lit) for i, lit in enumerate(self.literals) if lit is not None]
        slots = [i for i, lit in enumerate(self.literals) if lit is None]
        self.params = list(zip(slots, names, strict=True))
        #: the last segment when it is literal and nothing follows (the router's index)
        self.last = self.literals[-1] if self.literals and self.rest is None else None

    def match(self, segments: list[str]) -> dict[str, str] | None:
        n = len(self.literals)
        if len(segments) < n or (self.rest is None and len(segments) != n):
            return None
        for i, literal in self.checks:  # literals first: cheap, and most candidates stop here
            if segments[i] != literal:
                return None
        params: dict[str, str] = {}
        for i, name in self.params:
            value = unquote(segments[i])
            if not value or "/" in value:  # an encoded slash names nothing we serve
                return None
            params[name] = value
        if self.rest is not None:
            rest = segments[n:]
            if not rest or not rest[0]:
                return None
            params[self.rest] = unquote("/".join(rest))
        return params


_CACHED_PATHS = 1024


class Router:
    """Finds the route for a request: its handler and parameters, else 404 or 405.

    Templates are tried in the order they were first added; the first one matching the path
    decides, so ``POST …/ready`` is a 405 rather than a custom operation named ``ready``.
    """

    def __init__(self, routes: Iterable[Route] = ()) -> None:
        self._templates: list[tuple[_Pattern, dict[str, Route]]] = []
        self._by_template: dict[str, dict[str, Route]] = {}
        self._by_length: dict[int, dict[str | None, list[tuple[_Pattern, dict[str, Route]]]]] = {}
        # (method, raw path) -> its route and parameters: the hot routes repeat to the byte
        self._resolved: dict[tuple[str, bytes], tuple[Route, dict[str, str]]] = {}
        for route in routes:
            self.add(route)

    def add(self, route: Route) -> None:
        methods = self._by_template.get(route.template)
        if methods is None:
            methods = self._by_template[route.template] = {}
            self._templates.append((_Pattern(route.template), methods))
            self._by_length.clear()  # rebuilt on the next request
        self._resolved.clear()
        for method in route.methods:
            if method in methods:
                raise ValueError(f"{method} {route.template} is routed twice")
            methods[method] = route

    def _candidates(self, segments: list[str]) -> list[tuple[_Pattern, dict[str, Route]]]:
        """The templates that can match ``segments``, in order (indexed by length and the
        last segment, so ``…/infer`` is not tried against ``…/ready``)."""
        length = len(segments)
        index = self._by_length.get(length)
        if index is None:
            fits = [
                (pattern, methods)
                for pattern, methods in self._templates
                if len(pattern.literals) == length
                or (pattern.rest is not None and len(pattern.literals) < length)
            ]
            index = self._by_length[length] = {
                last: [c for c in fits if c[0].last is None or c[0].last == last]
                for last in {c[0].last for c in fits} | {None}
            }
        last = segments[-1] if segments else None
        found = index.get(last)
        return found if found is not None else index[None]

    def resolve(self, scope: Scope) -> tuple[Route, dict[str, str]]:
        """The route and its parameters; ``NotFound`` or ``MethodNotAllowed`` otherwise.

        Handlers must treat the parameters as read-only: a path seen before gets the same
        dict again (a bounded cache of recent paths, cleared when full).
        """
        raw: bytes = scope.get("raw_path") or scope["path"].encode("latin-1")
        method = "WEBSOCKET" if scope["type"] == "websocket" else scope["method"]
        key = (method, raw)
        found = self._resolved.get(key)
        if found is not None:
            return found
        found = self._resolve(scope, raw, method)
        if len(self._resolved) >= _CACHED_PATHS:
            self._resolved.clear()
        self._resolved[key] = found
        return found

    def _resolve(self, scope: Scope, raw: bytes, method: str) -> tuple[Route, dict[str, str]]:
        segments = raw.partition(b"?")[0].decode("latin-1").strip("/").split("/")
        if segments == [""]:
            segments = []
        for pattern, methods in self._candidates(segments):
            params = pattern.match(segments)
            if params is None:
                continue
            route = methods.get(method)
            if route is not None:
                return route, params
            allowed = [m for m in methods if m != "WEBSOCKET"]
            if method == "WEBSOCKET" or not allowed:
                break
            raise MethodNotAllowed(method, scope["path"], allowed)
        raise NotFound(f"no route for {method} {scope['path']}")

    def routes(self) -> list[Route]:
        """Every route, once each."""
        seen: dict[int, Route] = {}
        for _, methods in self._templates:
            for route in methods.values():
                seen.setdefault(id(route), route)
        return list(seen.values())
