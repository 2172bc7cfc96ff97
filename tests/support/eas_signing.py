"""Sign requests as the PAI-EAS client does, against a clock the test moves."""

from __future__ import annotations

import email.utils
import hashlib
import time

from servekit.protocol.eas_auth import eas_signature


class Clock:
    """Wall time (Unix seconds) that only moves when a test says so."""

    def __init__(self, now: float | None = None) -> None:
        self.now = float(int(time.time() if now is None else now))

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def http_date(unix: float) -> str:
    """``Mon, 30 Nov 2026 11:04:26 GMT``."""
    return email.utils.formatdate(unix, usegmt=True)


def signed(
    token: str,
    method: str,
    path: str,
    body: bytes = b"",
    *,
    date: str,
    content_type: str = "application/octet-stream",
) -> dict[str, str]:
    """The headers of a request signed with ``token``: Content-MD5, Content-Type, Date, EAS."""
    md5 = hashlib.md5(body, usedforsecurity=False).hexdigest()
    signature = eas_signature(
        token, method=method, path=path, content_md5=md5, content_type=content_type, date=date
    )
    return {
        "Content-MD5": md5,
        "Content-Type": content_type,
        "Date": date,
        "Authorization": f"EAS {signature}",
    }
