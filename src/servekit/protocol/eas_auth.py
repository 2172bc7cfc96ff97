"""PAI-EAS request authorization: the plain service token or its ``EAS`` HMAC-SHA1 signature.

The published client (``eas-prediction`` 0.36, ``PredictClient.generate_singaure``) sends
either the token itself in ``Authorization`` (with a custom URL), or
``Authorization: EAS <signature>`` where the signature is::

    base64(HMAC-SHA1(token, "POST\\n<Content-MD5>\\n<Content-Type>\\n<Date>\\n<resource>"))

``Content-MD5`` is the hex MD5 of the body and ``resource`` the request path
(``/api/predict/<service>``, never a query string); all three headers travel with the request.
The verb is always ``POST`` there. Its ``QueueClient`` never signs: it sends the token itself.

What the signature does not cover: the query string, and every other header. ``Date`` has
one-second resolution and there is no nonce, so two identical requests signed in the same
second carry the same signature. The client writes its *local* time as ``Date`` while labelling
it GMT (``datetime.now().strftime('... GMT')``), so a Date can only be checked against the
server's clock within the whole span of UTC offsets (:func:`date_bounds`).
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
from collections.abc import Mapping
from typing import Literal

__all__ = [
    "EAST_OF_UTC",
    "WEST_OF_UTC",
    "Credential",
    "check_authorization",
    "check_content_md5",
    "date_bounds",
    "eas_signature",
    "parse_date",
    "verify",
]

#: The furthest UTC offsets in use, in seconds: UTC-12 (Baker Island) and UTC+14 (Kiribati).
WEST_OF_UTC = -12 * 3600.0
EAST_OF_UTC = 14 * 3600.0

#: How a request proved it holds the token: the token itself (plain or ``Bearer``) or a signature.
Credential = Literal["token", "eas"]


def eas_signature(
    token: str, *, method: str, path: str, content_md5: str, content_type: str, date: str
) -> str:
    """The ``EAS`` signature the published client computes (without the ``EAS`` prefix)."""
    text = f"{method.upper()}\n{content_md5}\n{content_type}\n{date}\n{path}".strip()
    digest = hmac.new(token.encode("utf-8"), text.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def verify(
    token: str,
    *,
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes | None = None,
) -> Credential | None:
    """Which credential the request carries for ``token``, or ``None`` if none holds.

    Header names are matched case-insensitively; comparisons take constant time. Give
    ``body`` to also check that a signature's ``Content-MD5`` is the body's digest. The
    signature alone says nothing of freshness: see :func:`date_bounds`.
    """
    lower = {k.lower(): v for k, v in headers.items()}
    given = lower.get("authorization", "").strip()
    if not given or not token:
        return None
    if _equal(given, token):
        return "token"
    scheme, _, rest = given.partition(" ")
    if scheme.lower() == "bearer" and rest:
        return "token" if _equal(rest.strip(), token) else None
    if scheme.lower() != "eas" or not rest:
        return None
    content_md5 = lower.get("content-md5", "")
    if body is not None and not check_content_md5(body, content_md5):
        return None
    expected = eas_signature(
        token,
        method=method,
        path=path,
        content_md5=content_md5,
        content_type=lower.get("content-type", ""),
        date=lower.get("date", ""),
    )
    return "eas" if _equal(rest.strip(), expected) else None


def check_authorization(
    token: str,
    *,
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes | None = None,
) -> bool:
    """Whether the request carries ``token``: plain, as ``Bearer``, or as an EAS signature.

    An empty ``token`` means the service is open, and every request passes.
    """
    if not token:
        return True
    return verify(token, method=method, path=path, headers=headers, body=body) is not None


def check_content_md5(body: bytes, content_md5: str) -> bool:
    """Whether ``Content-MD5`` (hex, as the EAS client sends it) is the digest of ``body``."""
    return _equal(content_md5.lower(), hashlib.md5(body, usedforsecurity=False).hexdigest())


def parse_date(value: str) -> float | None:
    """An HTTP ``Date`` (``Mon, 02 Jan 2026 15:04:05 GMT``) as a Unix time; ``None`` if invalid.

    The zone label is read as written: the published client labels its local time ``GMT``.
    """
    try:
        parsed = email.utils.parsedate_tz(value)
    except (TypeError, ValueError):
        return None
    if parsed is None:
        return None
    if parsed[9] is None:  # no zone at all: read it as GMT, like a labelled one
        parsed = (*parsed[:9], 0)
    try:
        return float(email.utils.mktime_tz(parsed))
    except (OverflowError, ValueError):
        return None


def date_bounds(skew: float, any_zone: bool) -> tuple[float, float]:
    """The accepted range of ``Date - now`` in seconds.

    ``any_zone``: the Date may be local time in any UTC offset labelled GMT, as the published
    client writes it, so the range spans every offset (-12 h to +14 h) plus ``skew`` each side.
    Otherwise the Date must be GMT within ``skew``.
    """
    if any_zone:
        return WEST_OF_UTC - skew, EAST_OF_UTC + skew
    return -skew, skew


def _equal(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))
