"""Models served by the async-inference tests (imported by `servekit serve` subprocesses too)."""

from __future__ import annotations

import os
import time

import servekit


class Shout(servekit.Model):
    """String protocol: upper-cases the body; 'boom' fails that record alone."""

    name = "shout"

    def predict(self, batch: list[bytes]) -> list[object]:
        delay = float(os.environ.get("SHOUT_DELAY_S", "0"))
        if delay:
            time.sleep(delay)
        return [ValueError("boom record") if item == b"boom" else item.upper() for item in batch]
