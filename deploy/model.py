"""The model the example image serves: replace it with yours (``servekit serve model:Echo``)."""

from __future__ import annotations

from typing import Any

import servekit


class Echo(servekit.Model):
    """Answers every row unchanged."""

    name = "echo"

    def predict(self, batch: list[Any]) -> list[Any]:
        return batch
