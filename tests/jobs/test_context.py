"""Context: parameters, validation, dubhe's message shapes, model names (no server)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import servekit.jobs as dubhe_sdk
from servekit.jobs.messages import Emitter


def _context(tmp_path: Path, **params: Any) -> tuple[dubhe_sdk.Context, list[Any]]:
    sent: list[Any] = []
    emitter = Emitter(
        lambda topic, value: sent.append((topic, value)),
        instance_id="i",
        status_topic="s",
        result_topic="r",
    )
    folders = {"output_dir": str(tmp_path / "out"), "tmp_dir": str(tmp_path / "tmp")}
    return dubhe_sdk.Context(params, folders=folders, emitter=emitter), sent


def test_context_keys_have_dubhes_values() -> None:
    key = dubhe_sdk.ContextKey
    assert key.KEY_DATA_PATHS == "data_paths" and key.KEY_OUTPUT_DIR == "output_dir"
    assert key.ENV_MODEL_PATH == "model_path" and key.ENV_INSTANCE_ID == "INSTANCE_ID"
    assert key.KEY_RESOURCE_ALLOCATION == "resource_allocation"


def test_get_reads_folders_then_request_then_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("special_params", '{"section_id": "1E953"}')
    monkeypatch.setenv("model_path", "/env/model.pth")
    ctx, _ = _context(tmp_path, model_path="/request/model.pth", output_dir="/not/mine")
    assert ctx.get(dubhe_sdk.ContextKey.ENV_MODEL_PATH) == "/request/model.pth"
    assert ctx.get(dubhe_sdk.ContextKey.ENV_SPECIAL_PARAMS) == {"section_id": "1E953"}
    assert ctx.get(dubhe_sdk.ContextKey.KEY_OUTPUT_DIR) == str(tmp_path / "out")
    assert ctx.get(dubhe_sdk.ContextKey.KEY_CODE_LIST) == ""
    assert ctx.get("missing", default=[]) == []


def test_progress_is_flat_and_the_callers_metrics_stay_unchanged(tmp_path: Path) -> None:
    ctx, sent = _context(tmp_path)
    metrics = {"loss": 0.25, "accuracy": 1}
    ctx.logProgressByEpoch(3, 0.5, metrics)
    ctx.logProgressByBatch(3, 7, 10, 0.55, metrics)
    assert metrics == {"loss": 0.25, "accuracy": 1}
    (_, epoch), (_, batch) = sent
    assert epoch["mes_type"] == 2 and epoch["instance_id"] == "i"
    assert epoch["data"] == {"loss": 0.25, "accuracy": 1, "progress": 0.5, "epoch": 3}
    assert batch["data"] == {
        "loss": 0.25,
        "accuracy": 1,
        "progress": 0.55,
        "epoch": 3,
        "batch_idx": 7,
        "batch_count": 10,
    }


@pytest.mark.parametrize("progress", [1.5, -0.1, float("nan")])
def test_progress_outside_0_1_is_a_clear_error(tmp_path: Path, progress: float) -> None:
    ctx, sent = _context(tmp_path)
    with pytest.raises(ValueError, match=r"logProgress: progress must be in \[0, 1\]"):
        ctx.logProgress(progress)
    assert sent == []


def test_non_numeric_metric_is_a_clear_error(tmp_path: Path) -> None:
    ctx, sent = _context(tmp_path)
    with pytest.raises(TypeError, match=re.escape("metric 'loss' must be a number, got str '0.3'")):
        ctx.logProgressByEpoch(1, 0.5, {"loss": "0.3"})
    with pytest.raises(TypeError, match="progress must be a number"):
        ctx.logProgress("half")  # type: ignore[arg-type]
    assert sent == []


def test_result_details_with_boxes(tmp_path: Path) -> None:
    ctx, sent = _context(tmp_path)
    boxes = [(1, 2, 3, 4, 0.6), (5, 6, 7, 8, 0.7)]
    details = ctx.logResultDetails("a.png", "cat", "cat", -1, "rect", boxes, {"k": 1})
    info = details[0]["info"]
    assert [i["position"] for i in info] == [[[1, 2], [3, 4]], [[5, 6], [7, 8]]]
    assert [i["conf"] for i in info] == [0.6, 0.7]  # a negative conf takes the box's own
    assert info[0]["shape_type"] == "rect" and info[0]["special"] == {"k": 1}
    assert sent == [("r", sent[0][1])] and sent[0][1]["data"] == details
    assert sent[0][1]["mes_type"] == 3


def test_model_file_is_named_as_the_platform_expects(tmp_path: Path) -> None:
    ctx, _ = _context(tmp_path)
    path = Path(ctx.model_file(4, 0.123456))
    assert path.parent == tmp_path / "out" and path.parent.is_dir()
    assert re.fullmatch(r"model_\d{17}_4_0\.12\.pth", path.name)
    assert dubhe_sdk.model_file_name(1, 2, "pt", now=0.0).endswith("_1_2.00.pt")
