"""The token rules every door shares: plain token, ``Bearer <token>`` or an EAS signature.

An EAS signature (:mod:`servekit.protocol.eas_auth`) is a credential anyone who saw the
request can send again, so beyond the signature itself a signed request must:

- carry a ``Date`` within ``eas_date_skew`` of the server's clock (in any UTC offset with
  ``eas_date_any_zone``, because the published client writes local time labelled GMT);
- carry no query string: the signature does not cover it, so a signed ``DELETE`` could
  otherwise be replayed with any ``_trunc_``/``_indexes_`` (send the token itself over TLS);
- carry a body whose MD5 is the signed ``Content-MD5`` (:meth:`TokenGuard.check_body`);
- be new: a signature seen before is refused once ``eas_replay_grace`` has passed since it was
  first seen (:class:`ReplayCache`). The grace lets through what the protocol cannot tell
  from a replay: identical requests signed in the same second, and the client's own retries.
"""

from __future__ import annotations

import heapq
import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from servekit.errors import Unauthorized, Unavailable
from servekit.protocol.eas_auth import check_content_md5, date_bounds, parse_date, verify
from servekit.server.asgi import Scope
from servekit.settings import ServerSettings, settings_group, with_overrides

__all__ = ["EasRules", "ReplayCache", "TokenGuard"]

log = logging.getLogger("servekit.server")

_DEFAULTS = ServerSettings.model_fields


@dataclass(frozen=True, slots=True)
class EasRules:
    """How fresh and how new an EAS-signed request must be (see ``ServerSettings``)."""

    date_skew: float = float(_DEFAULTS["eas_date_skew"].default)
    date_any_zone: bool = bool(_DEFAULTS["eas_date_any_zone"].default)
    replay_cache: int = int(_DEFAULTS["eas_replay_cache"].default)
    replay_grace: float = float(_DEFAULTS["eas_replay_grace"].default)

    @classmethod
    def from_settings(cls, settings: ServerSettings) -> EasRules:
        return settings_group(cls, settings, "eas_")


class ReplayCache:
    """Signatures seen recently, each kept until its ``Date`` would be refused anyway.

    Bounded by ``capacity``: when full, the entry that expires first is dropped and nothing
    expiring before it is accepted again (``Unavailable``), so a forgotten signature can
    never be replayed. One event loop uses it; it takes no lock.
    """

    def __init__(self, capacity: int, grace: float) -> None:
        self.capacity = capacity
        self.grace = grace
        self._first_seen: dict[str, float] = {}
        self._expiries: list[tuple[float, str]] = []  # a heap, one entry per signature
        self._floor = float("-inf")  # dropped while still valid: refuse what expires by then

    def __len__(self) -> int:
        return len(self._first_seen)

    def admit(self, signature: str, expires: float, now: float) -> None:
        """Record ``signature``; ``Unauthorized`` if it is a replay, ``Unavailable`` if full."""
        self._expire(now)
        first = self._first_seen.get(signature)
        if first is not None:
            if now - first < self.grace:
                return
            raise Unauthorized(
                f"this EAS signature was already used {now - first:.1f} s ago: a signed request"
                " is accepted once (sign it again: a new Date gives a new signature)"
            )
        if expires <= self._floor:
            raise self._full()
        if len(self._first_seen) >= self.capacity:
            if expires <= self._expiries[0][0]:
                raise self._full()
            dropped, oldest = heapq.heappop(self._expiries)
            del self._first_seen[oldest]
            if self._floor == float("-inf"):  # once: from now on it stays full
                log.warning(
                    "EAS replay cache full (%d signatures, SERVEKIT_EAS_REPLAY_CACHE):"
                    " Dates older than the oldest it holds are refused",
                    self.capacity,
                )
            self._floor = max(self._floor, dropped)
        self._first_seen[signature] = now
        heapq.heappush(self._expiries, (expires, signature))

    def _expire(self, now: float) -> None:
        expiries = self._expiries
        while expiries and expiries[0][0] < now:
            _, signature = heapq.heappop(expiries)
            del self._first_seen[signature]

    def _full(self) -> Unavailable:
        return Unavailable(
            f"the EAS replay cache is full ({self.capacity} signatures,"
            " SERVEKIT_EAS_REPLAY_CACHE) and this request's Date is older than any it still"
            " holds: sign it again with the current time, or raise the setting"
        )


class TokenGuard:
    """The token rules of every door: plain token, ``Bearer <token>`` or an EAS signature.

    ``rules`` not given come from the ``SERVEKIT_EAS_*`` environment variables and their
    defaults; ``clock`` gives the wall time (Unix seconds) signed ``Date`` headers are held to.
    """

    def __init__(
        self,
        token: str | None,
        rules: EasRules | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.token = token or None
        self.rules = rules or EasRules.from_settings(with_overrides(ServerSettings, None, {}))
        self.clock = clock
        self.replays = ReplayCache(self.rules.replay_cache, self.rules.replay_grace)

    @classmethod
    def from_settings(cls, settings: ServerSettings) -> TokenGuard:
        """The guard ``settings`` ask for: its token and its EAS rules."""
        return cls(settings.token_value, EasRules.from_settings(settings))

    def check(self, scope: Scope) -> None:
        """From the headers alone, before any body is read; ``Unauthorized`` if wrong."""
        if self.token is None:
            return
        headers = _headers(scope)
        credential = verify(
            self.token, method=scope.get("method", "GET"), path=scope["path"], headers=headers
        )
        if credential is None:
            raise Unauthorized("missing or wrong token in the Authorization header")
        if credential == "eas":
            self._check_signed(scope, headers)

    def check_token(self, given: object) -> None:
        """A token carried in a message (the TCP door's ``token`` field); constant time."""
        if self.token is None:
            return
        if not isinstance(given, str) or not hmac.compare_digest(
            given.encode("utf-8"), self.token.encode("utf-8")
        ):
            raise Unauthorized("missing or wrong token: put it in the frame's 'token' field")

    def check_body(self, scope: Scope, body: bytes) -> None:
        """An EAS signature signs ``Content-MD5``: the body must be the one it describes."""
        if self.token is None:
            return
        headers = _headers(scope)
        if headers.get("authorization", "").lower().startswith("eas ") and not check_content_md5(
            body, headers.get("content-md5", "")
        ):
            raise Unauthorized("the body does not match the signed Content-MD5 header")

    def _check_signed(self, scope: Scope, headers: dict[str, str]) -> None:
        if scope.get("query_string"):
            raise Unauthorized(
                "an EAS signature does not cover the query string: send the token itself"
                " (Authorization: Bearer <token>, over TLS) for requests with a query"
            )
        rules = self.rules
        date = headers.get("date", "")
        signed_at = parse_date(date)
        if signed_at is None:
            raise Unauthorized(f"an EAS signature needs an HTTP Date header; got {date!r}")
        now = self.clock()
        earliest, latest = date_bounds(rules.date_skew, rules.date_any_zone)
        offset = signed_at - now
        if not earliest <= offset <= latest:
            raise Unauthorized(
                f"the signed Date {date!r} is {_span(offset)} from the server's clock; it must be"
                f" within {_span(earliest)} before and {_span(latest)} after"
                " (SERVEKIT_EAS_DATE_SKEW, SERVEKIT_EAS_DATE_ANY_ZONE)"
            )
        if rules.replay_cache > 0:
            signature = headers["authorization"].strip()[4:].strip()
            self.replays.admit(signature, expires=signed_at - earliest, now=now)


def _span(seconds: float) -> str:
    seconds = abs(seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
