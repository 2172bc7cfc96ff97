"""Redis Streams backend: one queue shared by every servekit process that names it.

Records live in a stream, consumer groups are Redis consumer groups (cursor = last delivered
id, pending entries list = held records), consumer leases are keys with a time to live, and
every state change is one Lua script (``redis_lua.py``), so concurrent servers never hand a
record to two live consumers of a group. Needs Redis >= 6.2; use ``appendonly yes`` for a queue
that survives a Redis restart. Requires the ``redis`` package (``pip install servekit[redis]``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import orjson

from servekit.errors import Unavailable
from servekit.queue.backend import Backend, Superseded
from servekit.queue.record import GroupInfo, Position, Record, Stats
from servekit.queue.redis_lua import SCRIPTS


def _id(index: int) -> str:
    return f"{index}-0"


def _index(entry_id: bytes | str) -> int:
    raw = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(raw.partition("-")[0])


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _entry(entry: Sequence[Any]) -> Record:
    entry_id, raw = entry  # raw: a dict from redis-py, a flat list from a Lua script
    if isinstance(raw, dict):
        fields = {_text(k): v for k, v in raw.items()}
    else:
        fields = {_text(raw[i]): raw[i + 1] for i in range(0, len(raw), 2)}
    return Record(
        index=_index(entry_id),
        data=bytes(fields.get("d", b"")),
        tags=orjson.loads(fields.get("t", b"{}")),
        request_id=_text(fields.get("r", b"")),
    )


class RedisBackend(Backend):
    """A queue named ``name`` in the Redis at ``url`` (or on an existing ``redis.asyncio`` client).

    Keys share the hash tag ``{name}``: ``servekit:queue:{name}:s`` (stream), ``…:n`` (index
    counter), ``…:r`` (request ids), ``…:c:<len>:<gid>:<uid>`` (consumer leases).
    """

    kind = "redis"

    def __init__(
        self,
        name: str,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        client: Any | None = None,
        poll_interval: float = 0.05,
        prefix: str = "servekit:queue",
    ) -> None:
        self.name = name
        self.url = url
        self.poll_interval = poll_interval
        self._client = client
        self._owns_client = client is None
        base = f"{prefix}:{{{name}}}"
        self._keys = [f"{base}:s", f"{base}:n", f"{base}:r"]
        self._alive_base = f"{base}:c:"
        self._scripts: dict[str, Any] = {}

    async def open(self) -> None:
        if self._client is None:
            try:
                import redis.asyncio as aioredis
            except ImportError as exc:  # pragma: no cover - depends on the install
                raise ImportError(
                    "the Redis queue backend needs the redis package: pip install servekit[redis]"
                ) from exc
            self._client = aioredis.Redis.from_url(self.url)
            self._owns_client = True
            async with self._store_errors():
                await self._client.ping()  # fail fast on a wrong URL; warm one connection
        if not self._scripts:
            self._scripts = {k: self._client.register_script(v) for k, v in SCRIPTS.items()}

    async def close(self) -> None:
        if self._client is not None and self._owns_client:
            await self._client.aclose()
            self._client = None
            self._scripts = {}

    async def _call(self, script: str, *args: Any) -> Any:
        if not self._scripts:
            await self.open()
        async with self._store_errors():
            return await self._scripts[script](keys=self._keys, args=list(args))

    @contextlib.asynccontextmanager
    async def _store_errors(self) -> AsyncIterator[None]:
        """Redis unreachable or timing out -> ``Unavailable`` (503): retry later."""
        import redis.exceptions as rex

        try:
            yield
        except (rex.ConnectionError, rex.TimeoutError) as exc:
            raise Unavailable(f"queue store {self.url} unreachable: {exc}") from exc

    def _alive_prefix(self, gid: str) -> str:
        return f"{self._alive_base}{len(gid.encode())}:{gid}:"

    def _alive(self, gid: str, uid: str) -> str:
        return self._alive_prefix(gid) + uid

    # -- records --------------------------------------------------------------------------

    async def append_many(
        self, items: Sequence[tuple[bytes, Mapping[str, str], str]], max_length: int
    ) -> list[int]:
        args: list[Any] = [max_length]
        for data, tags, request_id in items:
            args += [data, request_id, orjson.dumps(dict(tags))]
        return [int(i) for i in await self._call("put", *args)]

    async def range(self, start: int, count: int) -> list[Record]:
        if self._client is None:
            await self.open()
        assert self._client is not None
        low = _id(start) if start > 0 else "-"
        async with self._store_errors():
            entries = await self._client.xrange(self._keys[0], low, "+", count=count)
        return [_entry(e) for e in entries]

    async def find(self, request_id: str) -> Record | None:
        if self._client is None:
            await self.open()
        assert self._client is not None
        async with self._store_errors():
            index = await self._client.hget(self._keys[2], request_id)
            if index is None:
                return None
            entry_id = _id(int(index))
            entries = await self._client.xrange(self._keys[0], entry_id, entry_id)
        return _entry(entries[0]) if entries else None

    async def delete(self, indexes: Sequence[int]) -> list[int]:
        wanted = sorted(set(indexes))
        if not wanted:
            return []
        return [int(i) for i in await self._call("delete", *map(_id, wanted))]

    async def truncate(self, before: int) -> int:
        return int(await self._call("truncate", max(before, 0)))

    async def stats(self) -> Stats:
        length, added, first, *groups = await self._call("stats", self._alive_base)
        infos = tuple(
            GroupInfo(_text(g[0]), int(g[1]), int(g[2]), int(g[3]))
            for g in sorted(groups, key=lambda g: g[0])
        )
        return Stats(
            length=int(length),
            entries_added=int(added),
            first_index=None if first < 0 else int(first),
            last_index=int(added) if added > 0 else None,
            groups=infos,
        )

    async def position(self, index: int, gid: str) -> Position | None:
        found = await self._call("position", _id(index), gid)
        if found is None:
            return None
        consumer, pending, ahead = found
        return Position(_text(consumer), bool(pending), int(ahead))

    # -- consumers ------------------------------------------------------------------------

    async def join(self, gid: str, uid: str, token: str, start: int, lease: float) -> None:
        start_id = _id(start - 1) if start > 1 else "0"
        await self._call("join", gid, start_id, self._alive(gid, uid), token, _ms(lease))

    async def heartbeat(self, gid: str, uid: str, token: str, lease: float) -> bool:
        return bool(await self._call("heartbeat", self._alive(gid, uid), token, _ms(lease)))

    async def leave(self, gid: str, uid: str, token: str) -> None:
        await self._call("leave", gid, uid, self._alive(gid, uid), token)

    async def held(self, gid: str, uid: str, token: str, count: int) -> list[Record]:
        found = await self._call("held", gid, uid, self._alive(gid, uid), token, count)
        return self._records(found, gid, uid)

    async def claim(self, gid: str, uid: str, token: str, window: int) -> list[Record]:
        found = await self._call(
            "claim", gid, uid, self._alive(gid, uid), token, window, self._alive_prefix(gid)
        )
        return self._records(found, gid, uid)

    @staticmethod
    def _records(found: Any, gid: str, uid: str) -> list[Record]:
        if isinstance(found, int):
            raise Superseded(f"consumer {uid!r} of group {gid!r} has another session")
        return sorted((_entry(e) for e in found if e), key=lambda r: r.index)

    async def ack(self, gid: str, indexes: Sequence[int]) -> list[int]:
        wanted = sorted(set(indexes))
        if not wanted:
            return []
        return [int(i) for i in await self._call("ack", gid, *map(_id, wanted))]


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
