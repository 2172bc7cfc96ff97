"""Fixtures for the Virtex seed examples: the seed folder on sys.path, a real Pushgateway."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.virtex_seed import SEED, SEED_PUSH_PORT, free_port, port_is_free, ready, wait_until


@pytest.fixture
def seed_path(monkeypatch: pytest.MonkeyPatch) -> Path:
    """The seed folder, importable (``handlers``, ``pil_shim``)."""
    monkeypatch.syspath_prepend(str(SEED))
    return SEED


@pytest.fixture
def pushgateway(tmp_path: Path) -> Iterator[int]:
    """A real ``prometheus-pushgateway`` (Debian package) on loopback, no persistence.

    Takes the README's port 9091 when it is free, else any free port; yields the port.
    """
    binary = shutil.which("prometheus-pushgateway")
    assert binary, "prometheus-pushgateway is not installed: apt-get install prometheus-pushgateway"
    port = SEED_PUSH_PORT if port_is_free(SEED_PUSH_PORT) else free_port()
    process = subprocess.Popen(
        [
            binary,
            f"--web.listen-address=127.0.0.1:{port}",
            "--persistence.file=",
            "--log.level=error",
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until(
            lambda: process.poll() is not None or ready(f"http://127.0.0.1:{port}/-/ready"),
            what="the Pushgateway",
        )
        assert process.poll() is None, f"pushgateway exited: {process.communicate()[1].decode()}"
        yield port
    finally:
        process.terminate()
        process.communicate(timeout=10)
