"""The published ``eas-prediction`` QueueClient (nobody here wrote it) against the door.

The client pins ``protobuf<=3.20.3``, which clashes with this environment, so it lives in its
own virtualenv (the ``eas_sdk_python`` fixture in tests/conftest.py) and runs
``eas_driver.py`` in a subprocess against a door served by uvicorn in this process.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

DRIVER = Path(__file__).with_name("eas_driver.py")


def test_published_eas_queue_client_works_against_the_door_unchanged(
    serve_door: Callable[..., Any], eas_sdk_python: str
) -> None:
    names = ("svc", "groups", "shared")
    server = serve_door(names=names, token="eas-token")
    run = subprocess.run(
        [eas_sdk_python, str(DRIVER), server.endpoint, "eas-token", *names],
        capture_output=True,
        text=True,
        timeout=180,
    )
    lines = run.stdout.strip().splitlines()
    assert run.returncode == 0 and lines and lines[-1].startswith("OK "), (
        f"driver failed ({run.returncode}):\n{run.stdout}\n{run.stderr}"
    )
