"""An iris classifier served with servekit.

    python examples/iris/train.py
    servekit serve examples/iris/model.py:IrisClassifier
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

import servekit

MODEL_PATH = Path(os.environ.get("IRIS_MODEL_PATH", Path(__file__).with_name("iris.joblib")))


class IrisClassifier(servekit.Model):
    """Takes rows of 4 measurements (FP32), returns class probabilities and labels."""

    name = "iris"
    version = "1"
    inputs = [{"name": "measurements", "datatype": "FP32", "shape": [-1, 4]}]
    outputs = [
        {"name": "probabilities", "datatype": "FP64", "shape": [-1, 3]},
        {"name": "label", "datatype": "BYTES", "shape": [-1]},
    ]

    def load(self) -> None:
        import joblib

        if not MODEL_PATH.exists():
            from train import train  # the example ships its training script beside it

            train(MODEL_PATH)
        saved = joblib.load(MODEL_PATH)
        self.classifier = saved["classifier"]
        self.classes = np.array([c.encode() for c in saved["classes"]], dtype=object)

    def validate(self, inputs: dict[str, np.ndarray]) -> None:
        rows = next(iter(inputs.values()))
        if rows.ndim != 2 or rows.shape[1] != 4:
            raise ValueError(f"expected rows of 4 measurements, got shape {list(rows.shape)}")

    def predict(self, batch: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        probabilities = self.classifier.predict_proba(np.stack(batch))
        labels = self.classes[probabilities.argmax(axis=1)]
        pairs = zip(probabilities, labels, strict=True)
        return [{"probabilities": p, "label": label} for p, label in pairs]
