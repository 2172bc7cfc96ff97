"""HTTP/1.1 without I/O: the base URL, the request head, the response head, the transport's
settings and error messages.

Shared by the blocking :class:`~servekit.client.Transport` and the asyncio
:class:`~servekit.client.AsyncTransport`, which only move the bytes.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar
from urllib.parse import urlsplit

from servekit.client._errors import ConnectError, ProtocolError, RequestTimeout
from servekit.client._retry import Retry

NO_BODY_STATUSES = frozenset({204, 304})
MAX_HEAD = 64 * 1024
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS"})
SMALL_BODY = 64 * 1024  # below this, headers and body go out in one write
# what ``body_size`` returns when the body is not a byte count
NO_BODY = -1  # HEAD, 1xx, 204, 304: nothing follows the head
CHUNKED = -2  # Transfer-Encoding: chunked
UNTIL_CLOSE = -3  # no framing: the body runs until the server closes

C = TypeVar("C")


@dataclass
class Response:
    """A complete HTTP response; header names are lower-case."""

    status: int
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Origin:
    """Where a base URL points, and the path and query every request gets."""

    scheme: str
    host: str
    port: int
    prefix: str
    query: str
    host_header: str

    @classmethod
    def parse(cls, base_url: str) -> Origin:
        """``http(s)://host[:port][/prefix][?query]``; a bare ``host:port`` means http."""
        parts = urlsplit(base_url if "://" in base_url else f"http://{base_url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        return cls(
            scheme=parts.scheme,
            host=parts.hostname,
            port=parts.port or (443 if parts.scheme == "https" else 80),
            prefix=parts.path.rstrip("/"),
            query=parts.query,
            host_header=parts.netloc.rpartition("@")[2],
        )

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host_header}{self.prefix}"

    def head(
        self,
        method: str,
        path: str,
        length: int,
        headers: Mapping[str, str],
        token: str = "",
    ) -> bytes:
        """The request line and headers; ``Authorization: Bearer <token>`` unless given."""
        merged = dict(headers)
        if token and not any(k.lower() == "authorization" for k in merged):
            merged["Authorization"] = f"Bearer {token}"
        target = self.prefix + path
        if self.query:
            target += ("&" if "?" in target else "?") + self.query
        lines = [f"{method} {target or '/'} HTTP/1.1", f"Host: {self.host_header}"]
        if not any(k.lower() == "content-length" for k in merged):
            lines.append(f"Content-Length: {length}")
        lines += [f"{k}: {v}" for k, v in merged.items()]
        if any("\r" in line or "\n" in line for line in lines):
            raise ValueError("header names, values and the path must not contain CR or LF")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def parse_head(raw: bytes | bytearray) -> tuple[int, str, dict[str, str]]:
    """Status, HTTP version and lower-cased headers of a response head (without CRLFCRLF)."""
    text = bytes(raw).decode("latin-1")
    status_line, *lines = text.split("\r\n")
    version, _, rest = status_line.partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/") or not (code.isascii() and code.isdigit()):
        raise ProtocolError(f"invalid HTTP response: bad status line {status_line[:80]!r}")
    status = int(code)
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        key = name.strip().lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return status, version, headers


def keep_alive(version: str, headers: Mapping[str, str]) -> bool:
    """Whether the connection may carry another request after this response."""
    connection = headers.get("connection", "").lower()
    if version == "HTTP/1.0":
        return "keep-alive" in connection
    return "close" not in connection


def body_size(method: str, status: int, headers: Mapping[str, str]) -> int:
    """The response body's Content-Length, or ``NO_BODY``, ``CHUNKED`` or ``UNTIL_CLOSE``."""
    if method == "HEAD" or status in NO_BODY_STATUSES or 100 <= status < 200:
        return NO_BODY
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return CHUNKED
    raw = headers.get("content-length")
    if raw is None:
        return UNTIL_CLOSE
    try:
        size = int(raw)
    except ValueError:
        raise ProtocolError(f"invalid HTTP response: bad Content-Length {raw!r}") from None
    if size < 0:
        raise ProtocolError(f"invalid HTTP response: bad Content-Length {raw!r}")
    return size


def chunk_size(line: bytes) -> int:
    """The size on a chunked body's size line."""
    try:
        return int(line.split(b";", 1)[0].strip(), 16)
    except ValueError:
        raise ProtocolError(f"invalid HTTP response: bad chunk size {line[:40]!r}") from None


class TransportBase(Generic[C]):
    """What both transports hold and say, apart from moving bytes: settings, request heads,
    URLs, the idle connections (of type ``C``) and the messages of transport errors."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 5.0,
        retry: Retry | None = None,
        max_connections: int = 100,
        token: str = "",
        headers: Mapping[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.origin = Origin.parse(base_url)
        self.base_url = self.origin.base_url
        self._ssl: ssl.SSLContext | None = None
        if self.origin.scheme == "https":
            self._ssl = ssl_context or ssl.create_default_context()
        self.timeout = timeout
        self.retry = retry or Retry()
        self.max_connections = max_connections
        self.token = token
        self.headers = dict(headers or {})
        self._idle: list[C] = []
        self._setup()

    def _setup(self) -> None:
        """Set up what one transport adds to the pool (the blocking one: its lock)."""

    def url(self, path: str) -> str:
        """The full URL of ``path`` (for messages)."""
        return f"{self.base_url}{path}"

    def _head(self, method: str, path: str, length: int, extra: Mapping[str, str] | None) -> bytes:
        return self.origin.head(method, path, length, {**self.headers, **(extra or {})}, self.token)

    def _timed_out(self) -> RequestTimeout:
        return RequestTimeout(f"{self.base_url}: no response within the timeout")

    def _connect_timed_out(self) -> ConnectError:
        return ConnectError(f"{self.base_url}: timed out connecting", sent=False)

    def _cannot_connect(self, exc: OSError) -> ConnectError:
        return ConnectError(f"{self.base_url}: cannot connect: {exc}", sent=False)

    def _connection_failed(self, exc: Exception) -> ConnectError:
        return ConnectError(f"{self.base_url}: connection failed: {exc}")

    def _closed_twice(self) -> ConnectError:
        return ConnectError(f"{self.base_url}: connection closed by the server twice")

    def _bad_response(self, message: str) -> ProtocolError:
        return ProtocolError(f"{self.base_url}: {message}")
