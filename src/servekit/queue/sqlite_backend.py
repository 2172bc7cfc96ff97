"""SQLite backend: the embedded default, durable across a restart of the process.

One database file per queue, in WAL mode. Every call runs on one dedicated thread that owns
the connection, so the event loop never blocks and no two transactions interleave. One process
owns a file at a time: opening it ends the sessions of consumers left over from a previous run,
so what they held goes back to their groups at once.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import orjson

from servekit.queue.backend import Backend, Superseded
from servekit.queue.record import GroupInfo, Position, Record, Stats

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records(
    idx INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL,
    tags BLOB NOT NULL,
    data BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS records_request_id ON records(request_id);
CREATE TABLE IF NOT EXISTS groups(gid TEXT PRIMARY KEY, cursor INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS pending(
    gid TEXT NOT NULL, idx INTEGER NOT NULL, uid TEXT NOT NULL, deliveries INTEGER NOT NULL,
    PRIMARY KEY(gid, idx)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS pending_uid ON pending(gid, uid);
CREATE INDEX IF NOT EXISTS pending_idx ON pending(idx);
CREATE TABLE IF NOT EXISTS consumers(
    gid TEXT NOT NULL, uid TEXT NOT NULL, token TEXT NOT NULL, expires REAL NOT NULL,
    PRIMARY KEY(gid, uid));
CREATE TABLE IF NOT EXISTS counters(name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO counters VALUES('length', 0);
CREATE TRIGGER IF NOT EXISTS records_added AFTER INSERT ON records BEGIN
    UPDATE counters SET value = value + 1 WHERE name = 'length';
END;
CREATE TRIGGER IF NOT EXISTS records_removed AFTER DELETE ON records BEGIN
    UPDATE counters SET value = value - 1 WHERE name = 'length';
    DELETE FROM pending WHERE idx = OLD.idx;
END;
"""

_COLUMNS = "idx, data, tags, request_id"


def _record(row: tuple[Any, ...]) -> Record:
    return Record(index=row[0], data=bytes(row[1]), tags=orjson.loads(row[2]), request_id=row[3])


def _marks(n: int) -> str:
    return ",".join("?" * n)


def _chunks(items: Sequence[int], size: int = 500) -> list[Sequence[int]]:
    """Split a long IN (...) list: SQLite caps the number of bound parameters."""
    return [items[i : i + size] for i in range(0, len(items), size)]


class SqliteBackend(Backend):
    """A queue stored in one SQLite file (``path``), or in memory for ``":memory:"``."""

    kind = "sqlite"

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: str = "NORMAL",
        clock: Callable[[], float] = time.time,
        poll_interval: float = 0.5,
    ) -> None:
        self.path = str(path)
        self.synchronous = synchronous
        self.poll_interval = poll_interval
        self._clock = clock
        self._db: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None

    # -- plumbing -------------------------------------------------------------------------

    async def open(self) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="servekit-sqlite")
            await self._run(self._connect)

    async def close(self) -> None:
        if self._executor is not None:
            await self._run(self._disconnect)
            self._executor.shutdown(wait=True)
            self._executor = None

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            await self.open()
        assert self._executor is not None
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _connect(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={self.synchronous}")
        db.executescript(_SCHEMA)
        db.execute("DELETE FROM consumers")  # sessions of a previous process are over
        self._db = db

    def _disconnect(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _tx(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        db = self._db
        assert db is not None, "SqliteBackend used before open()"
        db.execute("BEGIN IMMEDIATE")
        try:
            result = fn(db)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return result

    async def _tx_async(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._run(self._tx, fn)

    # -- records --------------------------------------------------------------------------

    async def append_many(
        self, items: Sequence[tuple[bytes, Mapping[str, str], str]], max_length: int
    ) -> list[int]:
        rows = [(rid, orjson.dumps(dict(tags)), data) for data, tags, rid in items]

        def put(db: sqlite3.Connection) -> list[int]:
            room = len(rows)
            if max_length > 0:
                (length,) = db.execute("SELECT value FROM counters WHERE name='length'").fetchone()
                room = max(0, min(room, max_length - length))
            indexes = []
            for row in rows[:room]:
                cur = db.execute(
                    "INSERT INTO records(request_id, tags, data) VALUES (?, ?, ?)", row
                )
                assert cur.lastrowid is not None
                indexes.append(cur.lastrowid)
            return indexes + [-1] * (len(rows) - room)

        return await self._tx_async(put)

    async def range(self, start: int, count: int) -> list[Record]:
        def read(db: sqlite3.Connection) -> list[Record]:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM records WHERE idx >= ? ORDER BY idx LIMIT ?",
                (start, count),
            ).fetchall()
            return [_record(r) for r in rows]

        return await self._run(self._read, read)

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        assert self._db is not None, "SqliteBackend used before open()"
        return fn(self._db)

    async def find(self, request_id: str) -> Record | None:
        def read(db: sqlite3.Connection) -> Record | None:
            row = db.execute(
                f"SELECT {_COLUMNS} FROM records WHERE request_id = ? ORDER BY idx LIMIT 1",
                (request_id,),
            ).fetchone()
            return None if row is None else _record(row)

        return await self._run(self._read, read)

    async def delete(self, indexes: Sequence[int]) -> list[int]:
        wanted = sorted(set(indexes))

        def remove(db: sqlite3.Connection) -> list[int]:
            found: list[int] = []
            for part in _chunks(wanted):
                sql = f"SELECT idx FROM records WHERE idx IN ({_marks(len(part))})"
                found.extend(r[0] for r in db.execute(sql, part))
            for part in _chunks(found):
                db.execute(f"DELETE FROM records WHERE idx IN ({_marks(len(part))})", part)
            return found

        return await self._tx_async(remove)

    async def truncate(self, before: int) -> int:
        def trim(db: sqlite3.Connection) -> int:
            return db.execute("DELETE FROM records WHERE idx < ?", (before,)).rowcount

        return await self._tx_async(trim)

    async def stats(self) -> Stats:
        now = self._clock()

        def read(db: sqlite3.Connection) -> Stats:
            (length,) = db.execute("SELECT value FROM counters WHERE name='length'").fetchone()
            seq = db.execute("SELECT seq FROM sqlite_sequence WHERE name='records'").fetchone()
            first = db.execute("SELECT MIN(idx) FROM records").fetchone()[0]
            groups = tuple(
                GroupInfo(gid, cursor, pending, consumers)
                for gid, cursor, pending, consumers in db.execute(
                    "SELECT g.gid, g.cursor,"
                    " (SELECT COUNT(*) FROM pending p WHERE p.gid = g.gid),"
                    " (SELECT COUNT(*) FROM consumers c WHERE c.gid = g.gid AND c.expires > ?)"
                    " FROM groups g ORDER BY g.gid",
                    (now,),
                )
            )
            last = None if seq is None else seq[0]
            return Stats(length, last or 0, first, last, groups)

        return await self._run(self._read, read)

    async def position(self, index: int, gid: str) -> Position | None:
        def read(db: sqlite3.Connection) -> Position | None:
            if db.execute("SELECT 1 FROM records WHERE idx = ?", (index,)).fetchone() is None:
                return None
            row = db.execute(
                "SELECT uid FROM pending WHERE gid = ? AND idx = ?", (gid, index)
            ).fetchone()
            if row is not None:
                return Position(row[0], True, 0)
            cursor_row = db.execute("SELECT cursor FROM groups WHERE gid = ?", (gid,)).fetchone()
            cursor = 0 if cursor_row is None else cursor_row[0]
            if index <= cursor:
                return Position("", False, 0)
            (ahead,) = db.execute(
                "SELECT COUNT(*) FROM records WHERE idx > ? AND idx < ?", (cursor, index)
            ).fetchone()
            return Position("", False, ahead)

        return await self._run(self._read, read)

    # -- consumers ------------------------------------------------------------------------

    async def join(self, gid: str, uid: str, token: str, start: int, lease: float) -> None:
        expires = self._clock() + lease

        def enter(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT OR IGNORE INTO groups(gid, cursor) VALUES (?, ?)", (gid, max(start - 1, 0))
            )
            db.execute(
                "INSERT OR REPLACE INTO consumers(gid, uid, token, expires) VALUES (?, ?, ?, ?)",
                (gid, uid, token, expires),
            )

        await self._tx_async(enter)

    async def heartbeat(self, gid: str, uid: str, token: str, lease: float) -> bool:
        expires = self._clock() + lease

        def beat(db: sqlite3.Connection) -> bool:
            cur = db.execute(
                "UPDATE consumers SET expires = ? WHERE gid = ? AND uid = ? AND token = ?",
                (expires, gid, uid, token),
            )
            return cur.rowcount == 1

        return await self._tx_async(beat)

    async def leave(self, gid: str, uid: str, token: str) -> None:
        def exit_(db: sqlite3.Connection) -> None:
            db.execute(
                "DELETE FROM consumers WHERE gid = ? AND uid = ? AND token = ?", (gid, uid, token)
            )

        await self._tx_async(exit_)

    @staticmethod
    def _check_session(db: sqlite3.Connection, gid: str, uid: str, token: str) -> None:
        row = db.execute(
            "SELECT token FROM consumers WHERE gid = ? AND uid = ?", (gid, uid)
        ).fetchone()
        if row is None or row[0] != token:
            raise Superseded(f"consumer {uid!r} of group {gid!r} has another session")

    async def held(self, gid: str, uid: str, token: str, count: int) -> list[Record]:
        def resend(db: sqlite3.Connection) -> list[Record]:
            self._check_session(db, gid, uid, token)
            rows = db.execute(
                f"SELECT {', '.join('r.' + c for c in _COLUMNS.split(', '))}"
                " FROM pending p JOIN records r ON r.idx = p.idx"
                " WHERE p.gid = ? AND p.uid = ? ORDER BY p.idx LIMIT ?",
                (gid, uid, count),
            ).fetchall()
            db.executemany(
                "UPDATE pending SET deliveries = deliveries + 1 WHERE gid = ? AND idx = ?",
                [(gid, r[0]) for r in rows],
            )
            return [_record(r) for r in rows]

        return await self._tx_async(resend)

    async def claim(self, gid: str, uid: str, token: str, window: int) -> list[Record]:
        now = self._clock()

        def take(db: sqlite3.Connection) -> list[Record]:
            self._check_session(db, gid, uid, token)
            (holding,) = db.execute(
                "SELECT COUNT(*) FROM pending WHERE gid = ? AND uid = ?", (gid, uid)
            ).fetchone()
            free = window - holding
            if free <= 0:
                return []
            orphans = [
                r[0]
                for r in db.execute(
                    "SELECT p.idx FROM pending p WHERE p.gid = ? AND p.uid <> ? AND NOT EXISTS"
                    " (SELECT 1 FROM consumers c WHERE c.gid = p.gid AND c.uid = p.uid"
                    "  AND c.expires > ?) ORDER BY p.idx LIMIT ?",
                    (gid, uid, now, free),
                )
            ]
            records: list[Record] = []
            if orphans:
                db.execute(
                    "UPDATE pending SET uid = ?, deliveries = deliveries + 1"
                    f" WHERE gid = ? AND idx IN ({_marks(len(orphans))})",
                    (uid, gid, *orphans),
                )
                rows = db.execute(
                    f"SELECT {_COLUMNS} FROM records WHERE idx IN ({_marks(len(orphans))})"
                    " ORDER BY idx",
                    orphans,
                ).fetchall()
                records.extend(_record(r) for r in rows)
            rest = free - len(orphans)
            if rest > 0:
                (cursor,) = db.execute("SELECT cursor FROM groups WHERE gid = ?", (gid,)).fetchone()
                rows = db.execute(
                    f"SELECT {_COLUMNS} FROM records WHERE idx > ? ORDER BY idx LIMIT ?",
                    (cursor, rest),
                ).fetchall()
                if rows:
                    db.executemany(
                        "INSERT INTO pending(gid, idx, uid, deliveries) VALUES (?, ?, ?, 1)",
                        [(gid, r[0], uid) for r in rows],
                    )
                    db.execute("UPDATE groups SET cursor = ? WHERE gid = ?", (rows[-1][0], gid))
                    records.extend(_record(r) for r in rows)
            return records

        return await self._tx_async(take)

    async def ack(self, gid: str, indexes: Sequence[int]) -> list[int]:
        wanted = sorted(set(indexes))

        def commit(db: sqlite3.Connection) -> list[int]:
            done = [
                i
                for i in wanted
                if db.execute("DELETE FROM pending WHERE gid = ? AND idx = ?", (gid, i)).rowcount
            ]
            for part in _chunks(done):
                db.execute(
                    f"DELETE FROM records WHERE idx IN ({_marks(len(part))})"
                    " AND NOT EXISTS (SELECT 1 FROM groups g WHERE g.cursor < records.idx)"
                    " AND NOT EXISTS (SELECT 1 FROM pending p WHERE p.idx = records.idx)",
                    part,
                )
            return done

        return await self._tx_async(commit)
