"""pyraisdk's documented dynbatch examples, verbatim but for the import path."""

from __future__ import annotations

from threading import Thread
from typing import List  # noqa: UP035 - the example's own spelling

from servekit.dynbatch import BaseModel, DynamicBatchModel


class SimpleModel(BaseModel):
    def predict(self, items: List[str]) -> List[int]:  # noqa: UP006
        rs = []
        for item in items:
            rs.append(len(item))
        return rs

    def preprocess(self, items: List[str]) -> List[str]:  # noqa: UP006
        rs = []
        for item in items:
            rs.append(f"[{item}]")
        return rs


def test_predict_and_predict_one_as_the_pyraisdk_readme_shows() -> None:
    simple_model = SimpleModel()
    batch_model = DynamicBatchModel(simple_model)
    items = ["abc", "123456", "xyzcccffaffaaa"]
    predictions = batch_model.predict(items)
    assert predictions == [5, 8, 16]
    item = "abc"
    prediction = batch_model.predict_one(item)
    assert prediction == 5
    batch_model.close()


def test_concurrent_threads_as_the_pyraisdk_readme_shows() -> None:
    simple_model = SimpleModel()
    batch_model = DynamicBatchModel(simple_model)
    failures: list[BaseException] = []

    def run(name: str, num: int) -> None:
        try:
            for step in range(num):
                item = f"{name}-{step}"
                prediction = batch_model.predict_one(item)
                assert prediction == len(item) + 2
        except BaseException as exc:  # collected: an assert in a thread would be lost
            failures.append(exc)

    threads = [Thread(target=run, args=(f"{tid}", 100)) for tid in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    batch_model.close()
    assert failures == []
    assert batch_model.stats["completed"] == 2000
