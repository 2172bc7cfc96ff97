"""Fixtures shared by every test package."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EAS_SDK = "eas-prediction==0.36"


@pytest.fixture(scope="session")
def eas_sdk_python() -> str:
    """A Python interpreter with the published ``eas-prediction`` SDK installed.

    Its pins (``protobuf<=3.20.3``) clash with servekit's, so it lives in its own virtual
    environment: ``$SERVEKIT_EAS_PYTHON`` if set, else ``.venv-eas`` in the repository,
    created on first use (needs PyPI once).
    """
    given = os.environ.get("SERVEKIT_EAS_PYTHON")
    if given:
        return given
    venv = ROOT / ".venv-eas"
    python = venv / "bin" / "python"
    marker = venv / "installed.txt"
    if not (marker.exists() and marker.read_text() == EAS_SDK):
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", EAS_SDK],
            check=True,
            timeout=600,
        )
        marker.write_text(EAS_SDK)
    return str(python)
