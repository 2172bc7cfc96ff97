"""HTTP/1.1 without I/O: the base URL, the request head, the response head.

Shared by the blocking :class:`~servekit.client.Transport` and the asyncio
:class:`~servekit.client.AsyncTransport`, which only move the bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from servekit.client._errors import ProtocolError

NO_BODY_STATUSES = frozenset({204, 304})
MAX_HEAD = 64 * 1024
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS"})


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


def content_length(headers: Mapping[str, str]) -> int | None:
    """The declared body length; None when the body is not length-delimited."""
    raw = headers.get("content-length")
    if raw is None:
        return None
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
