"""Redis Streams as a destination of the event bus (redis-py, imported only when used).

``redis://host:port/db?maxlen=N`` (also ``rediss://`` and ``unix://``): each message becomes
``XADD <stream> MAXLEN ~ N * value <json> [key <key>] [headers <json object>]``, one pipeline
per batch. A connection or timeout error raises :class:`SinkUnavailable` (nothing of the
batch counts as delivered, so a retry may repeat some: at least once). A command Redis
refuses (a key of another type) is counted in :attr:`RedisSink.rejected` and skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson

from servekit.events.message import Message, encode_value
from servekit.events.sinks import SinkUnavailable

try:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry
    from redis.typing import EncodableT, FieldT
except ImportError as exc:  # pragma: no cover - redis is installed with servekit[redis]
    raise ImportError(
        "the redis:// event sink needs redis-py: pip install servekit[redis]"
    ) from exc

__all__ = ["DEFAULT_MAXLEN", "RedisSink"]

log = logging.getLogger("servekit.events.redis")

DEFAULT_MAXLEN = 100_000


class RedisSink:
    """``XADD``s each batch in one pipeline; streams trimmed to about ``maxlen`` entries."""

    def __init__(
        self,
        url: str,
        *,
        maxlen: int | None = DEFAULT_MAXLEN,
        timeout: float = 5.0,
    ) -> None:
        parts = urlsplit(url)
        self.maxlen = maxlen
        self.rejected = 0
        host = parts.hostname or "localhost"
        self.name = f"{parts.scheme}://{host}:{parts.port or 6379}{parts.path or '/0'}"
        if parts.scheme == "unix":
            self.name = f"unix://{parts.path}"
        # no retries inside redis-py: the bus retries with backoff and spools meanwhile
        self._client = redis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=min(timeout, 2.0),
            retry=Retry(NoBackoff(), 0),
        )

    @classmethod
    def from_url(cls, url: str) -> RedisSink:
        """A sink for ``redis://host:port/db?maxlen=N`` (``maxlen=0``: no trimming)."""
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        given = query.pop("maxlen", None)
        try:
            maxlen = DEFAULT_MAXLEN if given is None else int(given)
        except ValueError:
            raise ValueError(f"Redis sink {url!r}: maxlen must be a whole number") from None
        rest = urlunsplit(parts._replace(query=urlencode(query)))
        return cls(rest, maxlen=maxlen or None)

    def send(self, batch: Sequence[Message]) -> None:
        pipe = self._client.pipeline(transaction=False)
        for message in batch:
            fields: dict[FieldT, EncodableT] = {"value": encode_value(message.value)}
            if message.key is not None:
                fields["key"] = message.key
            if message.headers:
                fields["headers"] = orjson.dumps(dict(message.headers))
            pipe.xadd(message.stream, fields, maxlen=self.maxlen, approximate=True)
        try:
            results = pipe.execute(raise_on_error=False)
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            raise SinkUnavailable(f"{self.name}: {exc}") from exc
        for index, (message, result) in enumerate(zip(batch, results, strict=True)):
            if isinstance(result, (redis.ConnectionError, redis.TimeoutError)):
                raise SinkUnavailable(f"{self.name}: {result}", delivered=index)
            if isinstance(result, Exception):
                self.rejected += 1
                log.error("events: %s refused XADD %r: %s", self.name, message.stream, result)

    def close(self) -> None:
        self._client.close()
