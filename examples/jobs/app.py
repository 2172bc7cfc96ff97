"""A dubhe-sdk-style pipeline on servekit.jobs: trains a real scikit-learn model on the
bundled digits dataset, one epoch of ``partial_fit`` at a time, and reports each epoch.

    servekit serve examples/jobs/app.py           # or: python examples/jobs/app.py
    curl -X POST localhost:8030/train/start -d '{"epochs": 5}'
    curl localhost:8030/jobs/<job_id>
    curl -X POST localhost:8030/predict/multiple -d '{"image_names": ["0", "1"]}'
"""

from __future__ import annotations

from typing import Any

import joblib
import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import train_test_split

import servekit.jobs as dubhe_sdk


@dubhe_sdk.pipeline()
class DigitsPipeline:
    def __init__(self, ctx: dubhe_sdk.Context) -> None:
        digits = load_digits()
        self.images = digits.data / 16.0
        self.labels = digits.target
        self.classes = np.unique(self.labels)
        self.model: SGDClassifier | None = None
        path = ctx.get(dubhe_sdk.ContextKey.ENV_MODEL_PATH, "")
        if path:
            self.model = joblib.load(path)

    @dubhe_sdk.train()
    def train(self, ctx: dubhe_sdk.Context) -> None:
        epochs = int(ctx.get("epochs", 5))
        split = float(ctx.get(dubhe_sdk.ContextKey.KEY_SPLIT_RATE, 0.2) or 0.2)
        x_train, x_val, y_train, y_val = train_test_split(
            self.images, self.labels, test_size=split, random_state=0
        )
        model = SGDClassifier(loss="log_loss", random_state=0)
        ctx.log("training on %d digits, validating on %d", len(x_train), len(x_val))
        for epoch in range(epochs):
            model.partial_fit(x_train, y_train, classes=self.classes)
            seen = model.predict_proba(x_train)[np.arange(len(y_train)), y_train]
            loss = float(np.mean(-np.log(seen + 1e-12)))
            metrics = {"loss": round(loss, 6), "accuracy": float(model.score(x_val, y_val))}
            ctx.logProgressByEpoch(epoch, (epoch + 1) / epochs, metrics)
            joblib.dump(model, ctx.model_file(epoch, loss, "joblib"))
        for index in range(5):  # a few validation predictions for the platform to show
            predicted = model.predict(x_val[index : index + 1])[0]
            conf = float(model.predict_proba(x_val[index : index + 1]).max())
            ctx.logResultDetails(f"val/{index}", str(y_val[index]), str(predicted), conf)
        self.model = model

    @dubhe_sdk.inference()
    def infer(self, ctx: dubhe_sdk.Context) -> list[Any]:
        if self.model is None:
            raise RuntimeError("no model yet: train one, or set model_path")
        indexes = [int(name) for name in ctx.get(dubhe_sdk.ContextKey.KEY_IMAGE_NAMES, [])]
        probabilities = self.model.predict_proba(self.images[indexes])
        answers = []
        for i, p in zip(indexes, probabilities, strict=True):
            truth, predicted = str(self.labels[i]), str(int(p.argmax()))
            answers += ctx.logResultDetails(str(i), truth, predicted, float(p.max()))
        return answers


if __name__ == "__main__":
    dubhe_sdk.run()
