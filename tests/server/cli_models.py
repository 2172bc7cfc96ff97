"""Models that tests/server/test_cli.py serves with ``servekit serve`` in a subprocess.

``Echo`` answers each row unchanged. When ``SERVEKIT_TEST_GATE`` names a directory, each
batch first creates ``entered`` there and then waits for ``open`` to appear, so a test can
hold a request inside the model while it shuts the server down.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import servekit

GATE_TIMEOUT = 20.0


def _wait_for_gate() -> None:
    gate = os.environ.get("SERVEKIT_TEST_GATE")
    if not gate:
        return
    (Path(gate) / "entered").touch()
    deadline = time.monotonic() + GATE_TIMEOUT
    while not (Path(gate) / "open").exists():  # another process opens it: poll the file
        if time.monotonic() > deadline:
            raise TimeoutError("test gate was never opened")
        time.sleep(0.005)


class Echo(servekit.Model):
    name = "echo"

    def predict(self, batch: list[Any]) -> list[Any]:
        _wait_for_gate()
        return batch


class Negate(servekit.Model):
    name = "negate"

    def predict(self, batch: list[Any]) -> list[Any]:
        return [-row for row in batch]


VERSIONS = [Negate(name="negate:1"), Negate(name="negate:2")]
NOT_A_MODEL = 42


class SlowLoad(servekit.Model):
    """``load()`` touches ``loading`` in ``SERVEKIT_TEST_GATE`` and then takes 30 s."""

    name = "slowload"

    def load(self) -> None:
        gate = os.environ.get("SERVEKIT_TEST_GATE")
        if gate:
            (Path(gate) / "loading").touch()
        time.sleep(30)

    def predict(self, batch: list[Any]) -> list[Any]:
        return batch


class BrokenLoad(servekit.Model):
    """``load()`` fails the way missing weights do."""

    name = "brokenload"

    def load(self) -> None:
        _read_weights("/nonexistent/weights.bin")

    def predict(self, batch: list[Any]) -> list[Any]:
        return batch


def _read_weights(path: str) -> None:
    raise FileNotFoundError(f"weights not found at {path}")


class DiesInLoad(servekit.Model):
    """Its process dies while loading (as a crash in native code would), every time."""

    name = "diesinload"

    def load(self) -> None:
        os._exit(7)

    def predict(self, batch: list[Any]) -> list[Any]:
        return batch
