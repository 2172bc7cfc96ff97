"""A bounded on-disk queue of messages a destination could not take yet.

One spool per process and destination: ``<dir>/<destination>/<pid>.<seq>.seg`` segment files
of framed records, and ``<pid>.pos`` naming how far the oldest segment was delivered. A new
spool for the same destination adopts the segments of processes that are gone (renaming
them to its own pid, so two adopters never take the same file) and replays them first.

A record is ``<meta length><value length>`` (two little-endian u32), the JSON list
``[stream, key, headers]`` and the encoded value. A torn last record (a crash mid-write) ends
its segment. Only the channel's sender thread and, at exit, the closing thread use a spool;
a lock keeps them apart.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import tempfile
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from servekit.events.message import Message, encode_value

__all__ = ["Spool", "default_spool_dir", "spool_folder"]

_HEAD = struct.Struct("<II")
SEGMENT_BYTES = 4 << 20
READ_BYTES = 1 << 20
_NAME = re.compile(r"^(\d+)\.(\d+)\.seg$")


def default_spool_dir() -> Path:
    """``<system temp>/servekit-events``."""
    return Path(tempfile.gettempdir()) / "servekit-events"


def spool_folder(root: str | os.PathLike[str] | None, destination: str) -> Path:
    """The folder of ``destination``'s spool files under ``root`` (default: the temp dir)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", destination).strip("_")[:80]
    digest = hashlib.sha1(destination.encode()).hexdigest()[:8]
    return Path(root or default_spool_dir()) / f"{slug}-{digest}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class _Segment:
    path: Path
    start: int  # bytes of this segment already delivered
    size: int
    count: int  # records not yet delivered


def _encode(message: Message) -> bytes:
    meta = orjson.dumps([message.stream, message.key, message.headers])
    value = encode_value(message.value)
    return _HEAD.pack(len(meta), len(value)) + meta + value


def _decode(data: bytes, offset: int) -> tuple[Message, int] | None:
    """The record at ``offset`` and the offset after it; ``None`` past the last whole one."""
    if offset + _HEAD.size > len(data):
        return None
    meta_len, value_len = _HEAD.unpack_from(data, offset)
    end = offset + _HEAD.size + meta_len + value_len
    if end > len(data):
        return None
    meta_end = offset + _HEAD.size + meta_len
    stream, key, headers = orjson.loads(data[offset + _HEAD.size : meta_end])
    headers = tuple((str(k), str(v)) for k, v in headers)
    return Message(stream, data[meta_end:end], key, headers), end


def _count(data: bytes, offset: int) -> tuple[int, int]:
    """Whole records from ``offset`` on, and the offset after the last of them."""
    count = 0
    while offset + _HEAD.size <= len(data):
        meta_len, value_len = _HEAD.unpack_from(data, offset)
        end = offset + _HEAD.size + meta_len + value_len
        if end > len(data):
            break
        count, offset = count + 1, end
    return count, offset


class Spool:
    """Messages kept on disk in order: :meth:`append`, :meth:`peek`, :meth:`consume`."""

    def __init__(self, folder: Path, max_bytes: int) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self.pid = os.getpid()
        self.lock = threading.RLock()
        self._segments: deque[_Segment] = deque()
        self._seq = 0
        self._writer: tuple[_Segment, int] | None = None  # the segment being written, its fd
        self._peeked: list[int] = []  # end offsets of the records the last peek returned
        self.count = 0
        self.nbytes = 0

    def __len__(self) -> int:
        return self.count

    # adoption of what dead processes left
    def adopt_orphans(self) -> int:
        """Take over the segments of processes that are gone (oldest first); records adopted."""
        try:
            names = os.listdir(self.folder)
        except OSError:
            return 0
        by_pid: dict[int, list[tuple[int, str]]] = {}
        for name in names:
            match = _NAME.match(name)
            if match and int(match[1]) != self.pid:
                by_pid.setdefault(int(match[1]), []).append((int(match[2]), name))
        adopted = 0
        groups = [(pid, sorted(files)) for pid, files in by_pid.items() if not _alive(pid)]
        groups.sort(key=lambda group: self._mtime(group[1][0][1]))
        with self.lock:
            for pid, files in groups:
                adopted += self._adopt(pid, [name for _, name in files])
        return adopted

    def _mtime(self, name: str) -> float:
        try:
            return (self.folder / name).stat().st_mtime
        except OSError:
            return 0.0

    def _adopt(self, pid: int, names: list[str]) -> int:
        position = self.folder / f"{pid}.pos"
        head, head_offset = "", 0
        try:
            head, offset_text = position.read_text().split()
            head_offset = int(offset_text)
        except (OSError, ValueError):
            pass
        adopted = 0
        for name in names:
            mine = self.folder / f"{self.pid}.{self._next_seq()}.seg"
            try:
                os.rename(self.folder / name, mine)  # atomic: one adopter wins each file
                data = mine.read_bytes()
            except OSError:
                continue
            start = head_offset if name == head else 0
            count, end = _count(data, start)
            if count == 0:
                mine.unlink(missing_ok=True)
                continue
            self._segments.append(_Segment(mine, start, end, count))
            self.count += count
            self.nbytes += end - start
            adopted += count
        position.unlink(missing_ok=True)
        if adopted:
            self._save_position()
        return adopted

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    # writing
    def append(self, messages: Sequence[Message]) -> int:
        """Write ``messages`` in order while they fit in ``max_bytes``; how many were written.

        Raises :class:`OSError` when the folder or a segment cannot be written.
        """
        with self.lock:
            records = []
            room = self.max_bytes - self.nbytes
            for message in messages:
                record = _encode(message)
                if len(record) > room:
                    break
                room -= len(record)
                records.append(record)
            if records:
                self._write(b"".join(records), len(records))
            return len(records)

    def _write(self, data: bytes, count: int) -> None:
        if self._writer is None or self._writer[0].size >= SEGMENT_BYTES:
            self._close_writer()
            self.folder.mkdir(parents=True, exist_ok=True)
            path = self.folder / f"{self.pid}.{self._next_seq()}.seg"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            segment = _Segment(path, 0, 0, 0)
            self._segments.append(segment)
            self._writer = (segment, fd)
        segment, fd = self._writer
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        segment.size += len(data)
        segment.count += count
        self.count += count
        self.nbytes += len(data)

    def _close_writer(self) -> None:
        if self._writer is not None:
            os.close(self._writer[1])
            self._writer = None

    # reading
    def peek(self, limit: int) -> list[Message]:
        """Up to ``limit`` of the oldest messages (from one segment), left in the spool."""
        with self.lock:
            self._peeked = []
            if not self._segments:
                return []
            head = self._segments[0]
            with open(head.path, "rb") as file:
                file.seek(head.start)
                remaining = head.size - head.start
                data = file.read(min(READ_BYTES, remaining))
                if _decode(data, 0) is None and len(data) < remaining:  # one large record
                    data += file.read(remaining - len(data))
            messages: list[Message] = []
            offset = 0
            while len(messages) < limit:
                decoded = _decode(data, offset)
                if decoded is None:
                    break
                message, offset = decoded
                messages.append(message)
                self._peeked.append(head.start + offset)
            return messages

    def consume(self, n: int) -> None:
        """Forget the first ``n`` messages of the last :meth:`peek` (they were delivered)."""
        if n <= 0:
            return
        with self.lock:
            head = self._segments[0]
            end = self._peeked[n - 1]
            self.nbytes -= end - head.start
            self.count -= n
            head.start, head.count = end, head.count - n
            self._peeked = []
            if head.count == 0:
                self._segments.popleft()
                if self._writer is not None and self._writer[0] is head:
                    self._close_writer()
                head.path.unlink(missing_ok=True)
            self._save_position()

    def _save_position(self) -> None:
        position = self.folder / f"{self.pid}.pos"
        if not self._segments:
            position.unlink(missing_ok=True)
            return
        head = self._segments[0]
        temporary = position.with_suffix(".pos.tmp")
        temporary.write_text(f"{head.path.name} {head.start}\n")
        os.replace(temporary, position)

    def close(self) -> None:
        """Close the segment being written; an empty spool leaves no files behind."""
        with self.lock:
            self._close_writer()
            if not self._segments:
                (self.folder / f"{self.pid}.pos").unlink(missing_ok=True)
