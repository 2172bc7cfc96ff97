"""set_metric in a V2ModelServer reaches the request records of request logging."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from servekit.serving import V2ModelServer
from support.event_files import file_bus, read, served


class Metered(V2ModelServer):
    def load(self) -> None:
        self.set_metric("loaded", True)  # outside a batch: model-wide

    def predict(self, request: dict[str, Any]) -> list[Any]:
        self.set_metric("rows", len(request["inputs"]))  # this batch's requests
        return [sum(row) for row in request["inputs"]]


def test_metrics_set_in_load_and_predict_go_with_the_request_record(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with file_bus(path) as bus:
        server = Metered(name="metered:v1")
        with served([server.as_model()], request_log="all") as live:
            reply = httpx.post(
                f"{live.url}/v2/models/metered/infer", json={"id": "m1", "inputs": [[1, 2], [3]]}
            )
            assert reply.json()["outputs"] == [3, 3]
        lines = [line for line in read(bus, path) if line["stream"] == "servekit-requests"]
    assert server.metrics == {"loaded": True}
    (record,) = [line for line in lines if line["value"].get("outputs")]
    assert record["headers"]["ce_door"] == "mlrun"
    assert record["headers"]["ce_correlationid"] == "m1"
    assert record["value"]["metrics"] == {"loaded": True, "rows": 2}
