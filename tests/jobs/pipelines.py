"""Pipelines the jobs tests serve: one training/evaluation/inference class driven by the
request's ``mode`` (ok, raise, wait for cancellation)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import servekit.jobs as dubhe_sdk

EPOCHS = 3
# tests open this to let a "hold" job finish; "entered" tells a job is running
RELEASE = threading.Event()


@dubhe_sdk.pipeline()
class Trainer:
    def __init__(self, ctx: dubhe_sdk.Context) -> None:
        self.loaded_tmp = ctx.get(dubhe_sdk.ContextKey.KEY_TMP_DIR)
        self.contexts: dict[str, dubhe_sdk.Context] = {}
        self.entered: dict[str, threading.Event] = {}

    @dubhe_sdk.train()
    def train(self, ctx: dubhe_sdk.Context) -> None:
        name = str(ctx.get("name", "job"))
        self.contexts[name] = ctx
        self.entered.setdefault(name, threading.Event()).set()
        mode = ctx.get("mode", "ok")
        Path(ctx.get(dubhe_sdk.ContextKey.KEY_TMP_DIR), "mine.txt").write_text(name)
        ctx.log("training %s", name)
        if mode == "hold":
            assert RELEASE.wait(20)
        for epoch in range(EPOCHS):
            if mode == "wait":  # a long epoch that looks at ctx.cancelled now and then
                ctx.logProgress(0.5)
                while not ctx.cancelled:
                    threading.Event().wait(0.01)
                ctx.logProgress(0.6)  # raises JobCancelled
            metrics = {"loss": 1.0 / (epoch + 1), "accuracy": 0.5 + epoch / 10}
            ctx.logProgressByEpoch(epoch, (epoch + 1) / EPOCHS, metrics)
            Path(ctx.model_file(epoch, metrics["loss"])).write_bytes(b"model")
            if mode == "raise" and epoch == 1:
                raise RuntimeError("loss is nan at epoch 1")
        ctx.logResult({"img_path": "a.png", "info": [{"predict_code": "cat"}]})
        ctx.logResultDetails("b.png", "dog", "dog", 0.9)

    @dubhe_sdk.predict()
    def evaluate(self, ctx: dubhe_sdk.Context) -> None:
        for index, path in enumerate(ctx.get(dubhe_sdk.ContextKey.KEY_DATA_PATHS, [])):
            ctx.logResultDetails(path, "cat", "cat", 0.8)
            ctx.logProgress((index + 1) / len(ctx.get(dubhe_sdk.ContextKey.KEY_DATA_PATHS)))

    @dubhe_sdk.inference()
    def infer(self, ctx: dubhe_sdk.Context) -> Any:
        names = ctx.get(dubhe_sdk.ContextKey.KEY_IMAGE_NAMES, [])
        if "bad.png" in names:
            raise ValueError("cannot read bad.png")
        return [ctx.logResultDetails(name, "", "cat", 0.7)[0] for name in names]
