"""PAI-EAS service discovery backed by Redis: registration, heartbeat and the upstreams route.

With ``discovery_url`` set, each server registers every model it serves, once the model is
ready, under its advertised ``ip:port`` with a weight. In Redis (one database shared by the
replicas), for each service (model name)::

    servekit:discovery:<service>          sorted set: member "ip:port", score = expiry (ms,
                                          on the Redis clock, so replicas' clocks may differ)
    servekit:discovery:<service>:weights  hash: "ip:port" -> weight

A heartbeat every ``discovery_ttl / 3`` seconds pushes the expiry forward (and registers
again after Redis lost its data); a replica that dies drops out when its expiry passes. A
replica that drains removes itself first. Expired members are deleted by whoever lists.

``GET /api/v1/servicediscovery/upstreams/<service>`` answers in the EAS format the
``eas-prediction`` SDK's ``ENDPOINT_TYPE_DIRECT`` reads::

    {"endpoints": {"items": [{"ip": "10.0.0.5", "port": 8000, "weight": 100}, ...]}}

Without Redis it lists this server alone (when the model is ready).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from servekit.errors import ModelNotFound, Unavailable
from servekit.server.asgi import send_json
from servekit.server.routing import Request, Route
from servekit.server.runtime import ModelRegistry
from servekit.settings import ServerSettings

if TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__ = ["Announcer", "DiscoveryRoutes", "DiscoveryStore", "Upstream", "advertised_address"]

log = logging.getLogger("servekit.server.discovery")

KEY_PREFIX = "servekit:discovery:"
ROUTE = "/api/v1/servicediscovery/upstreams/{service}"
_WILDCARDS = ("", "0.0.0.0", "::", "[::]")

# KEYS: members, weights; ARGV: address, ttl ms, weight
_REGISTER = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return 1
"""
# KEYS: members, weights; returns [address, weight, address, weight, ...] of live members
_LIST = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
if #dead > 0 then
  redis.call('ZREM', KEYS[1], unpack(dead))
  redis.call('HDEL', KEYS[2], unpack(dead))
end
local out = {}
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')) do
  out[#out + 1] = member
  out[#out + 1] = redis.call('HGET', KEYS[2], member) or '1'
end
return out
"""


@dataclass(frozen=True)
class Upstream:
    """One replica of a service as the discovery route lists it."""

    ip: str
    port: int
    weight: int

    def document(self) -> dict[str, Any]:
        return {"ip": self.ip, "port": self.port, "weight": self.weight}


def split_address(text: str, what: str = "advertise_address") -> tuple[str, int]:
    """``ip:port`` (``[v6]:port`` for IPv6) as ``(ip, port)``; a ``ValueError`` naming ``what``."""
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{what} must be ip:port (e.g. 10.0.0.5:8000), got {text!r}")
    return host, int(port)


def advertised_address(settings: ServerSettings) -> str:
    """Where clients reach this server: ``advertise_address``, else ``host:port``."""
    if settings.advertise_address:
        split_address(settings.advertise_address)
        return settings.advertise_address
    if settings.host in _WILDCARDS or settings.port == 0:
        raise ValueError(
            f"discovery_url is set but the server listens on {settings.host}:{settings.port}, "
            "which is no address a client can reach: set SERVEKIT_ADVERTISE_ADDRESS "
            "(--advertise-address) to the ip:port clients should use"
        )
    host = settings.host
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    return f"{host}:{settings.port}"


class DiscoveryStore:
    """The replicas of each service in Redis (see the module docstring for the keys)."""

    def __init__(self, url: str, *, timeout: float = 2.0) -> None:
        import redis.asyncio as aioredis

        self.url = url
        self._client: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self._register = self._client.register_script(_REGISTER)
        self._list = self._client.register_script(_LIST)

    @staticmethod
    def keys(service: str) -> list[str]:
        return [KEY_PREFIX + service, KEY_PREFIX + service + ":weights"]

    async def register(self, service: str, address: str, weight: int, ttl: float) -> None:
        await self._register(keys=self.keys(service), args=[address, int(ttl * 1000), weight])

    async def deregister(self, service: str, address: str) -> None:
        members, weights = self.keys(service)
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.zrem(members, address)
            pipe.hdel(weights, address)
            await pipe.execute()

    async def upstreams(self, service: str) -> list[Upstream]:
        flat = await self._list(keys=self.keys(service))
        found = []
        for raw, weight in zip(flat[::2], flat[1::2], strict=True):
            ip, port = split_address(raw.decode(), "a registered address")
            found.append(Upstream(ip, port, int(weight)))
        return found

    async def close(self) -> None:
        await self._client.aclose()


class Announcer:
    """Keeps this server's ready models registered while it serves; leaves before it drains."""

    def __init__(
        self,
        store: DiscoveryStore,
        registry: ModelRegistry,
        address: str,
        *,
        weight: int,
        ttl: float,
    ) -> None:
        self.store = store
        self.registry = registry
        self.address = address
        self.weight = weight
        self.ttl = ttl
        self.registered: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._left = False
        self._failing = False

    def services(self) -> dict[str, bool]:
        """Each model name this server serves, and whether it is ready to be listed."""
        ready: dict[str, bool] = {}
        for runtime in self.registry:
            name = str(runtime.model.name)
            ready[name] = ready.get(name, False) or runtime.ready
        return ready

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while not self._left:
            await self.beat()
            await asyncio.sleep(self.ttl / 3)

    async def beat(self) -> None:
        """Register every ready model (again), deregister those no longer ready."""
        if self._left:
            return
        import redis.exceptions as rex

        try:
            for service, ready in self.services().items():
                if ready:
                    await self.store.register(service, self.address, self.weight, self.ttl)
                    self.registered.add(service)
                elif service in self.registered:
                    await self.store.deregister(service, self.address)
                    self.registered.discard(service)
        except (rex.RedisError, OSError) as exc:
            if not self._failing:
                log.warning("service discovery: cannot register at %s: %s", self.store.url, exc)
            self._failing = True
            return
        if self._failing:
            log.info("service discovery: registered again at %s", self.store.url)
        self._failing = False

    async def leave(self) -> bool:
        """Stop the heartbeat and deregister every model; whether any was registered."""
        if self._left:
            return False
        self._left = True
        was_listed = bool(self.registered)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        import redis.exceptions as rex

        for service in sorted(self.registered):
            try:
                await self.store.deregister(service, self.address)
            except (rex.RedisError, OSError) as exc:
                log.warning(
                    "service discovery: cannot deregister %s (it expires within %.1f s): %s",
                    service,
                    self.ttl,
                    exc,
                )
        self.registered.clear()
        await self.store.close()
        return was_listed


class DiscoveryRoutes:
    """The EAS upstreams route: Redis's live replicas, or this server alone without Redis."""

    def __init__(
        self,
        registry: ModelRegistry,
        store: DiscoveryStore | None = None,
        address: str | None = None,
        weight: int = 100,
    ) -> None:
        self.registry = registry
        self.store = store
        self.address = address
        self.weight = weight

    def routes(self) -> list[Route]:
        return [Route.http("GET", ROUTE, self._upstreams)]

    async def _upstreams(self, request: Request) -> None:
        await request.body()  # a signed request is checked against its (empty) body
        service = request.params["service"]
        if self.store is not None:
            found = await self._listed(service)
        else:
            found = self._self(request, service)
        document = {"endpoints": {"items": [u.document() for u in found]}}
        await send_json(request.send, 200, document)

    async def _listed(self, service: str) -> list[Upstream]:
        import redis.exceptions as rex

        assert self.store is not None  # only called with a store
        try:
            return await self.store.upstreams(service)
        except (rex.RedisError, OSError) as exc:
            raise Unavailable(
                f"service discovery: the registry at {self.store.url} is unreachable: {exc}"
            ) from exc

    def _self(self, request: Request, service: str) -> list[Upstream]:
        runtimes = [rt for rt in self.registry if str(rt.model.name) == service]
        if not runtimes:
            raise ModelNotFound(f"unknown service '{service}' (served: {_names(self.registry)})")
        if not any(rt.ready for rt in runtimes):
            return []
        if self.address:
            ip, port = split_address(self.address)
        else:  # the local end of this connection: reachable, since the client reached it
            ip, port = request.scope["server"]
        return [Upstream(ip, int(port), self.weight)]


def _names(registry: ModelRegistry) -> str:
    names: Iterable[str] = sorted({str(rt.model.name) for rt in registry})
    return ", ".join(names) or "none"
