"""Fixtures shared by every test package: the published EAS SDK's interpreter, redis-server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.queues import arun, door_on_port, make_queue, serve_door, spawn
from support.redis_server import RedisServer

__all__ = ["arun", "door_on_port", "make_queue", "serve_door", "spawn"]  # shared fixtures

EAS_VERSION = "0.36"


def _imports_sdk(python: Path) -> bool:
    if not python.exists():
        return False
    probe = subprocess.run(
        [str(python), "-c", "import eas_prediction, eas_prediction.queue_client"],
        capture_output=True,
        timeout=60,
    )
    return probe.returncode == 0


@pytest.fixture(scope="session")
def eas_sdk_python() -> str:
    """A Python with the published ``eas-prediction`` SDK, in a virtualenv of its own.

    Its pin (``protobuf<=3.20.3``) clashes with servekit's. ``$SERVEKIT_EAS_PYTHON`` names
    one; otherwise it is built once (PyPI needed that time) and cached under
    ``~/.cache/servekit-tests``.
    """
    given = os.environ.get("SERVEKIT_EAS_PYTHON")
    if given:
        return given
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "servekit-tests"
    home = cache / f"eas-prediction-{EAS_VERSION}"
    python = home / "bin" / "python"
    if _imports_sdk(python):
        return str(python)
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
    building.rename(home)  # venv scripts locate their prefix at run time, so a rename is safe
    assert _imports_sdk(python), "eas-prediction does not import in its virtualenv"
    return str(python)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server (AOF on) shared by the session; fails if redis-server is missing."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test alone (for tests that kill or restart it)."""
    server = RedisServer(tmp_path / "redis")
    server.directory.mkdir()
    server.start()
    yield server
    server.stop()


from support.kafka import KafkaMock  # noqa: E402 - the Kafka fixtures below


@pytest.fixture(scope="session")
def kafka_mock() -> Iterator[KafkaMock]:
    """One mock Kafka cluster (librdkafka's, in a child process) shared by the session."""
    with KafkaMock() as cluster:
        yield cluster


@pytest.fixture
def own_kafka_mock() -> Iterator[KafkaMock]:
    """A mock Kafka cluster of this test alone (for tests that take it down with ``stop()``)."""
    with KafkaMock() as cluster:
        yield cluster


# Engine events are on by default and go to stdout: off for the suite (subprocesses inherit
# it); tests of engine events turn them on explicitly (tests/events/test_engine_events*.py).
os.environ.setdefault("SERVEKIT_EVENTS_ENGINE", "false")
