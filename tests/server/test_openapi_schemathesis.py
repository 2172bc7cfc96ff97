"""schemathesis against a live server's own /openapi.json: no 5xx, no answer outside the
document (status, body schema)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import servekit

CHECKS = "not_a_server_error,response_schema_conformance"


class Echo(servekit.Model):
    """Answers every row unchanged, explains each row by its shape, has one operation."""

    name = "echo"

    def predict(self, batch: list[Any]) -> list[Any]:
        return batch

    def explain(self, batch: list[Any]) -> list[Any]:
        return [list(getattr(item, "shape", ())) for item in batch]

    def op_describe(self, payload: Any) -> dict[str, Any]:
        return {"got": type(payload).__name__}


def _schemathesis(url: str, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("schemathesis", path=os.path.dirname(sys.executable)) or "schemathesis"
    command = [
        exe, "run", f"{url}/openapi.json",
        "--checks", CHECKS,
        "--max-examples", "20",
        "--workers", "1",
        "--request-timeout", "10",
        "--seed", "1",
        "--phases", "examples,coverage,fuzzing",
        "--suppress-health-check", "all",
        *extra,
    ]  # fmt: skip
    env = {**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_HOOKS": ""}
    return subprocess.run(
        command, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env
    )


def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    serve: Callable[..., Any], tmp_path: Path
) -> None:
    live = serve([Echo(), Echo(name="echo:2")])
    run = _schemathesis(live.url, tmp_path)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "Tested: " in run.stdout


def test_schemathesis_with_a_token(serve: Callable[..., Any], tmp_path: Path) -> None:
    live = serve([Echo()], token="s3cret")
    run = _schemathesis(live.url, tmp_path, "--header", "Authorization: Bearer s3cret")
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
