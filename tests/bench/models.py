"""Models the load-tester tests serve (in-process and by ``servekit serve`` subprocesses)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

import servekit


class Echo(servekit.Model):
    """Answers each row unchanged, at once."""

    name = "echo"
    max_batch_size = 64
    inputs = [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    outputs = [{"name": "y", "datatype": "FP32", "shape": [-1, 4]}]

    def predict(self, batch: list[Any]) -> list[Any]:
        return batch


class Slow(servekit.Model):
    """One item at a time, 20 ms each: saturates at 50 req/s."""

    name = "slow"
    max_batch_size = 1
    inputs = [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]

    def predict(self, batch: list[Any]) -> list[Any]:
        time.sleep(0.02)
        return batch


class Picky(servekit.Model):
    """Refuses (400) a row whose first value is negative."""

    name = "picky"
    inputs = [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]

    def validate(self, inputs: dict[str, Any]) -> None:
        if float(np.asarray(inputs["x"]).ravel()[0]) < 0:
            raise ValueError("negative rows are refused")

    def predict(self, batch: list[Any]) -> list[Any]:
        return batch
