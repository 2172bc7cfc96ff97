"""Destinations for events: the interface, stdout and JSON-lines files, and URL parsing.

A sink delivers a batch of :class:`Message` in order. It raises :class:`SinkUnavailable`
(with how many leading messages it did deliver) when the destination cannot take them now;
the bus then spools the rest and retries later. Kafka and Redis live in their own modules,
imported only when a URL names them.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Protocol
from urllib.parse import parse_qs, urlsplit

import orjson

from servekit.events.message import Message, encode_value

__all__ = ["FileSink", "Sink", "SinkUnavailable", "StdoutSink", "open_sink", "render_line"]


class SinkUnavailable(Exception):
    """The destination cannot take events now; ``delivered`` leading messages did arrive."""

    def __init__(self, message: str, delivered: int = 0) -> None:
        super().__init__(message)
        self.delivered = delivered


class Sink(Protocol):
    """Where a channel of the bus delivers its messages."""

    name: str

    def send(self, batch: Sequence[Message]) -> None:
        """Deliver every message of ``batch`` in order, or raise :class:`SinkUnavailable`."""

    def close(self) -> None:
        """Release connections and files (after the last :meth:`send`)."""


def render_line(message: Message) -> bytes:
    """A message as one JSON line: ``{"stream", "key", "headers", "value"}`` (as Kafka holds it)."""
    value = encode_value(message.value)
    head: dict[str, object] = {"stream": message.stream}
    if message.key is not None:
        head["key"] = message.key
    if message.headers:
        head["headers"] = dict(message.headers)
    # splice the already-encoded value in instead of decoding and re-encoding it
    return orjson.dumps(head)[:-1] + b',"value":' + value + b"}\n"


class StdoutSink:
    """One JSON line per message on standard output (or another text stream)."""

    name = "stdout"

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream

    def send(self, batch: Sequence[Message]) -> None:
        out = self._stream or sys.stdout
        lines = b"".join([render_line(m) for m in batch])
        try:
            raw = getattr(out, "buffer", None)  # the bytes under a text stream: no re-encoding
            if raw is not None:
                out.flush()  # text written before goes first
                raw.write(lines)
                raw.flush()
            else:
                out.write(lines.decode("utf-8"))
                out.flush()
        except (OSError, ValueError) as exc:  # a closed pipe, a closed file
            raise SinkUnavailable(f"stdout: {exc}") from exc

    def close(self) -> None:
        return None


class FileSink:
    """JSON lines appended to ``path``, rotated by size: ``path.1`` … ``path.N``."""

    def __init__(self, path: str | os.PathLike[str], max_bytes: int = 100 << 20, backups: int = 5):
        self.path = Path(path)
        self.name = f"file://{self.path}"
        self.max_bytes = max_bytes
        self.backups = backups
        self._file: IO[bytes] | None = None
        self._lock = threading.Lock()

    def send(self, batch: Sequence[Message]) -> None:
        data = b"".join(render_line(m) for m in batch)
        with self._lock:
            try:
                file = self._open()
                if self.max_bytes and file.tell() and file.tell() + len(data) > self.max_bytes:
                    self._rotate()
                    file = self._open()
                file.write(data)
                file.flush()
            except OSError as exc:
                self._close()
                raise SinkUnavailable(f"{self.name}: {exc}") from exc

    def _open(self) -> IO[bytes]:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "ab")  # noqa: SIM115 - held open across sends
        return self._file

    def _rotate(self) -> None:
        self._close()
        if self.backups <= 0:
            self.path.unlink(missing_ok=True)
            return
        for index in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{index + 1}"))
        self.path.replace(self.path.with_name(f"{self.path.name}.1"))

    def _close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            finally:
                self._file = None

    def close(self) -> None:
        with self._lock:
            self._close()


def open_sink(url: str) -> Sink:
    """The sink a URL names: ``stdout``, ``file:///path.jsonl?max_bytes=&backups=``,
    ``kafka://host:port[,host:port][?librdkafka.key=value]``, ``redis://host:port/db[?maxlen=N]``."""
    if url in ("stdout", "-", "stdout://"):
        return StdoutSink()
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    if parts.scheme == "file":
        path = parts.path or parts.netloc
        if not path:
            raise ValueError(
                f"event sink {url!r}: a file URL needs a path (file:///var/log/x.jsonl)"
            )
        return FileSink(
            path,
            max_bytes=int(query.get("max_bytes", 100 << 20)),
            backups=int(query.get("backups", 5)),
        )
    if parts.scheme == "kafka":
        from servekit.events.kafka_sink import KafkaSink

        return KafkaSink.from_url(url)
    if parts.scheme in ("redis", "rediss", "unix"):
        from servekit.events.redis_sink import RedisSink

        return RedisSink.from_url(url)
    raise ValueError(
        f"unknown event sink {url!r}: use stdout, file:///PATH.jsonl, kafka://HOST:PORT"
        " or redis://HOST:PORT/DB"
    )
