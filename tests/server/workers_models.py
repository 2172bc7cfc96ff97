"""Models for the ``--workers`` tests (served by ``servekit serve`` subprocesses)."""

from __future__ import annotations

import time
from typing import Any

import servekit


class Echo(servekit.Model):
    name = "echo"

    def predict(self, batch: list[Any]) -> list[Any]:
        return batch


class Slow(servekit.Model):
    """20 ms per batch: under load, requests are always in flight and queued."""

    name = "slow"

    def predict(self, batch: list[Any]) -> list[Any]:
        time.sleep(0.02)
        return batch
