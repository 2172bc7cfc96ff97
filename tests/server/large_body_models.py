"""A model that tests/server/test_large_bodies_memory.py serves with ``servekit serve`` in a
subprocess, so the server's memory can be read from ``/proc`` alone."""

from __future__ import annotations

import numpy as np

import servekit


class Size(servekit.Model):
    """The whole request is one item; answers its element count."""

    name = "size"
    batch_rows = False

    def predict(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        return [np.int64(item.size) for item in batch]
