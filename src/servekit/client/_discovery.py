"""Replicas of one service, spread by weight: what ``PredictClient``'s DIRECT mode and
``Client(discovery=True)`` send through.

``Balancer.request`` makes one try on the next replica (smooth weighted round robin). A
replica that refuses the connection or answers 503 is skipped for ``SKIP_SECONDS`` (unless
every replica is), so the retry :class:`~servekit.client.Retry` allows lands on another one.
``DiscoveryBalancer`` asks ``GET <endpoint>/api/v1/servicediscovery/upstreams/<service>``
for ``{"endpoints": {"items": [{"ip", "port", "weight"}]}}`` and refreshes it in the
background; where discovery answers nothing usable it sends to the endpoint itself.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping

import orjson

from servekit.client._errors import ClientError, ConnectError, status_error
from servekit.client._http11 import Response
from servekit.client._transport import Transport

__all__ = ["SKIP_SECONDS", "Balancer", "DiscoveryBalancer"]

_log = logging.getLogger("servekit.client.discovery")

#: How long a replica that refused a connection or answered 503 is passed over.
SKIP_SECONDS = 2.0


class Balancer:
    """Backends with weights; each try goes to the next one that is not being skipped."""

    def __init__(
        self,
        backends: list[tuple[str, int]],
        *,
        max_connections: int = 100,
        token: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_connections = max_connections
        self.token = token
        self._clock = clock
        self._lock = threading.Lock()
        self._transports: dict[str, Transport] = {}
        self._weights: list[tuple[str, int]] = []
        self._current: dict[str, int] = {}
        self._skip_until: dict[str, float] = {}
        self.set_backends(backends)

    @property
    def bases(self) -> list[str]:
        return [base for base, _ in self._weights]

    def set_backends(self, backends: list[tuple[str, int]]) -> None:
        with self._lock:
            self._weights = [(base, max(1, weight)) for base, weight in backends]
            self._current = {base: self._current.get(base, 0) for base, _ in self._weights}
            for base, _ in self._weights:
                if base not in self._transports:
                    self._transports[base] = Transport(
                        base, max_connections=self.max_connections, token=self.token
                    )

    def next(self) -> str:
        """The next backend by smooth weighted round robin, passing over skipped ones."""
        weights = self._weights  # replaced whole by set_backends, never changed in place
        if len(weights) == 1:  # one backend (the usual PredictClient): no lock, no clock
            return weights[0][0]
        with self._lock:
            now = self._clock()
            live = [bw for bw in self._weights if self._skip_until.get(bw[0], 0.0) <= now]
            chosen = live or self._weights
            if len(chosen) == 1:
                return chosen[0][0]
            total = sum(weight for _, weight in chosen)
            for base, weight in chosen:
                self._current[base] += weight
            best = max(chosen, key=lambda bw: self._current[bw[0]])[0]
            self._current[best] -= total
            return best

    def skip(self, base: str) -> None:
        with self._lock:
            self._skip_until[base] = self._clock() + SKIP_SECONDS

    def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        *,
        timeout: float | None = None,
    ) -> Response:
        """One try on the next backend; a failure answer raises its status error."""
        base = self.next()
        try:
            response = self._transports[base].send(method, path, body, headers, timeout=timeout)
        except ConnectError as exc:
            if not exc.sent:  # refused: nothing listens there (stopped, or not yet up)
                self.skip(base)
            raise
        if not 200 <= response.status < 300:
            if response.status == 503:  # loading or draining: try the others first
                self.skip(base)
            raise status_error(response.status, response.body, response.headers, where=base + path)
        return response

    def close(self) -> None:
        with self._lock:
            transports = list(self._transports.values())
        for transport in transports:
            transport.close()


class DiscoveryBalancer(Balancer):
    """The instances EAS service discovery at ``endpoint`` lists, refreshed in the background."""

    def __init__(
        self,
        endpoint: str,
        service: str,
        *,
        interval: float = 3.0,
        timeout: float = 5.0,
        max_connections: int = 100,
        token: str = "",
    ) -> None:
        self._discovery = Transport(endpoint, timeout=timeout, token=token)
        internal = os.getenv("NAMESPACE") and os.getenv("POD_NAME")
        self._path = f"/api/v1/servicediscovery/upstreams/{service.split('/')[0]}" + (
            "?internal=true" if internal else ""
        )
        self.endpoint = endpoint
        self._no_discovery = False
        found = self.discover()
        super().__init__(found or [(endpoint, 1)], max_connections=max_connections, token=token)
        self._stop = threading.Event()
        self._interval = interval
        self._thread = threading.Thread(target=self._refresh, name="eas-discovery", daemon=True)
        self._thread.start()

    def discover(self) -> list[tuple[str, int]]:
        """The instances the discovery route lists; empty if it gave nothing usable."""
        try:
            response = self._discovery.send("GET", self._path)
        except ClientError as exc:
            _log.warning("service discovery at %s failed: %s", self.endpoint, exc)
            return []
        if response.status == 404 and b"unknown service" not in response.body:
            self._no_discovery = True  # not a discovery service: stop asking
        if response.status != 200:
            _log.warning(
                "service discovery at %s answered %d; keeping the instances known",
                self.endpoint,
                response.status,
            )
            return []
        try:
            items = orjson.loads(response.body)["endpoints"]["items"]
            return [(_base(h["ip"], h["port"]), int(h.get("weight", 1))) for h in items]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            _log.warning("service discovery at %s sent an unusable answer: %r", self.endpoint, exc)
            return []

    def _refresh(self) -> None:
        while not self._no_discovery and not self._stop.wait(self._interval):
            found = self.discover()
            if found:
                self.set_backends(found)

    def close(self) -> None:
        self._stop.set()
        self._discovery.close()
        super().close()


def _base(ip: str, port: int) -> str:
    return f"http://[{ip}]:{port}" if ":" in ip else f"http://{ip}:{port}"
