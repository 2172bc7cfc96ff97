"""The token rules every door shares: plain token, ``Bearer <token>`` or an EAS signature."""

from __future__ import annotations

import hmac

from servekit.errors import Unauthorized
from servekit.protocol.eas_auth import check_authorization, check_content_md5
from servekit.server.asgi import Scope

__all__ = ["TokenGuard"]


class TokenGuard:
    """The token rules of every door: plain token, ``Bearer <token>`` or an EAS signature."""

    def __init__(self, token: str | None) -> None:
        self.token = token or None

    def check(self, scope: Scope) -> None:
        """From the headers alone, before any body is read; ``Unauthorized`` if wrong."""
        if self.token is None:
            return
        headers = _headers(scope)
        if not check_authorization(
            self.token, method=scope.get("method", "GET"), path=scope["path"], headers=headers
        ):
            raise Unauthorized("missing or wrong token in the Authorization header")

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


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
