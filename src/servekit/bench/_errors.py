"""The load tester's one error: the run cannot start or got no answer at all."""

from __future__ import annotations


class BenchError(Exception):
    """A load test that cannot run (bad input, server unreachable) or where nothing succeeded.

    ``message`` says what was wrong in words a user can act on.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
