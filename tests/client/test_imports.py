"""``import servekit.client`` stays light: no server, batching or queue-backend module."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = (
    "servekit.server",
    "servekit.batching",
    "servekit.queue",
    "servekit.dynbatch",
    "uvicorn",
    "redis",
)


def _modules_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint('\\n'.join(sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return set(done.stdout.split())


def test_importing_the_clients_loads_no_server_batching_or_queue_module() -> None:
    loaded = _modules_after("import servekit.client")
    heavy = sorted(m for m in loaded if m.startswith(FORBIDDEN))
    assert heavy == []


def test_blocking_clients_load_neither_asyncio_nor_protobuf_nor_websockets() -> None:
    loaded = _modules_after("from servekit.client import Client, PredictClient, TcpClient")
    assert not {"asyncio", "google.protobuf", "websockets"} & loaded
