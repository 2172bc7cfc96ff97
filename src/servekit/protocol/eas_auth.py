"""PAI-EAS request authorization: the plain service token or its ``EAS`` HMAC-SHA1 signature.

The published client sends either the token itself in ``Authorization`` (with a custom URL),
or ``Authorization: EAS <signature>`` where the signature is::

    base64(HMAC-SHA1(token, "POST\\n<Content-MD5>\\n<Content-Type>\\n<Date>\\n<resource>"))

``Content-MD5`` is the hex MD5 of the body and ``resource`` the request path
(``/api/predict/<service>``); all three headers travel with the request. The client writes its
local time as ``Date`` while calling it GMT, so the date is signed but not checked for skew.
Give ``body`` to also check that ``Content-MD5`` matches it, so that a captured signature
cannot carry another body.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping

__all__ = ["check_authorization", "check_content_md5", "eas_signature"]


def eas_signature(
    token: str, *, method: str, path: str, content_md5: str, content_type: str, date: str
) -> str:
    """The ``EAS`` signature the published client computes (without the ``EAS`` prefix)."""
    text = f"{method.upper()}\n{content_md5}\n{content_type}\n{date}\n{path}".strip()
    digest = hmac.new(token.encode("utf-8"), text.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def check_authorization(
    token: str,
    *,
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes | None = None,
) -> bool:
    """Whether the request carries ``token``: plain, as ``Bearer``, or as an EAS signature.

    An empty ``token`` means the service is open, and every request passes. Header names
    are matched case-insensitively; comparisons take constant time.
    """
    if not token:
        return True
    lower = {k.lower(): v for k, v in headers.items()}
    given = lower.get("authorization", "").strip()
    if not given:
        return False
    if _equal(given, token):
        return True
    scheme, _, rest = given.partition(" ")
    if scheme.lower() == "eas" and rest:
        content_md5 = lower.get("content-md5", "")
        if body is not None and not check_content_md5(body, content_md5):
            return False
        expected = eas_signature(
            token,
            method=method,
            path=path,
            content_md5=content_md5,
            content_type=lower.get("content-type", ""),
            date=lower.get("date", ""),
        )
        return _equal(rest.strip(), expected)
    if scheme.lower() == "bearer" and rest:
        return _equal(rest.strip(), token)
    return False


def check_content_md5(body: bytes, content_md5: str) -> bool:
    """Whether ``Content-MD5`` (hex, as the EAS client sends it) is the digest of ``body``."""
    return _equal(content_md5.lower(), hashlib.md5(body, usedforsecurity=False).hexdigest())


def _equal(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))
