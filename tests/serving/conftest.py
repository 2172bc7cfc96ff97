"""The real-server fixtures of tests/server (``serve``, gates, ``wait_until``) for these tests."""

from server.conftest import gate, gates, make_gate, serve, wait_until_fixture

__all__ = ["gate", "gates", "make_gate", "serve", "wait_until_fixture"]
