"""The published ``eas-prediction`` QueueClient (nobody here wrote it) against the door.

The client pins ``protobuf<=3.20.3``, which clashes with this environment, so it lives in its
own virtualenv (built once, cached under ``~/.cache/servekit-tests``) and runs
``eas_driver.py`` in a subprocess against a door served by uvicorn in this process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

EAS_VERSION = "0.36"
DRIVER = Path(__file__).with_name("eas_driver.py")


def _works(python: Path) -> bool:
    if not python.exists():
        return False
    probe = subprocess.run(
        [str(python), "-c", "import eas_prediction.queue_client"],
        capture_output=True,
        timeout=60,
    )
    return probe.returncode == 0


@pytest.fixture(scope="session")
def eas_python() -> Path:
    """A Python with ``eas-prediction`` installed, in a cached virtualenv of its own."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "servekit-tests"
    home = cache / f"eas-prediction-{EAS_VERSION}"
    python = home / "bin" / "python"
    if _works(python):
        return python
    building = cache / f"eas-prediction-{EAS_VERSION}.{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(building)], check=True, timeout=120)
    install = subprocess.run(
        [str(building / "bin" / "pip"), "install", "-q", f"eas-prediction=={EAS_VERSION}"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, f"pip install eas-prediction failed:\n{install.stderr}"
    shutil.rmtree(home, ignore_errors=True)
    building.rename(home)  # the venv's scripts use sys.prefix-relative imports; rename is safe
    assert _works(python), "eas-prediction does not import in its virtualenv"
    return python


def test_published_eas_queue_client_works_against_the_door_unchanged(
    serve_door: Callable[..., Any], eas_python: Path
) -> None:
    names = ("svc", "groups", "shared")
    server = serve_door(names=names, token="eas-token")
    run = subprocess.run(
        [str(eas_python), str(DRIVER), server.endpoint, "eas-token", *names],
        capture_output=True,
        text=True,
        timeout=180,
    )
    lines = run.stdout.strip().splitlines()
    assert run.returncode == 0 and lines and lines[-1].startswith("OK "), (
        f"driver failed ({run.returncode}):\n{run.stdout}\n{run.stderr}"
    )
