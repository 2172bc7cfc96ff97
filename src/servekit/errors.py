"""One error hierarchy for servekit; every class carries the HTTP status it maps to.

ServekitError (500)
 ├── BadRequest (400)
 │    └── PickleNotAllowed (400)
 ├── Unauthorized (401)
 ├── NotFound (404)
 │    └── ModelNotFound (404)
 ├── PayloadTooLarge (413)
 ├── QueueFull (429, Retry-After)
 ├── ModelError (500)
 ├── OperationNotImplemented (501)
 ├── Unavailable (503)
 │    ├── ModelNotReady (503)
 │    └── Draining (503)
 ├── DeadlineExceeded (504)
 └── Cancelled (499)
"""

from __future__ import annotations


class ServekitError(Exception):
    """Base of all servekit errors: a message a user can act on plus an HTTP status."""

    status: int = 500

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status

    def headers(self) -> dict[str, str]:
        """Extra HTTP headers that go with this error."""
        return {}


class BadRequest(ServekitError):
    status = 400


class PickleNotAllowed(BadRequest):
    """Pickled data arrived but the caller did not pass ``allow_pickle=True``."""


class Unauthorized(ServekitError):
    status = 401


class NotFound(ServekitError):
    status = 404


class ModelNotFound(NotFound):
    pass


class PayloadTooLarge(ServekitError):
    status = 413


class QueueFull(ServekitError):
    """The bounded queue is full: retry later (HTTP 429 with ``Retry-After``)."""

    status = 429

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"retry-after": str(max(1, round(self.retry_after)))}


class ModelError(ServekitError):
    """The model raised, or returned something servekit cannot use."""

    status = 500


class OperationNotImplemented(ServekitError):
    """The model does not implement what was asked (e.g. ``POST …/explain`` without
    ``explain``): HTTP 501."""

    status = 501


class Unavailable(ServekitError):
    status = 503


class ModelNotReady(Unavailable):
    pass


class Draining(Unavailable):
    pass


class DeadlineExceeded(ServekitError):
    status = 504


class Cancelled(ServekitError):
    """The caller cancelled or went away; 499 is the de-facto 'client closed request'."""

    status = 499
