"""The command line and the server import no optional package: `pip install servekit` (or
`servekit[examples]`, the README's first command) must be enough to serve and to bench."""

from __future__ import annotations

import subprocess
import sys

OPTIONAL = (
    "matplotlib",  # servekit[bench]: --plot only
    "grpc",  # servekit[grpc]: --grpc-port only
    "confluent_kafka",  # servekit[kafka]: kafka:// event sinks only
    "azure",  # servekit[azure]: Event Hubs with a managed identity only
    "gunicorn",  # servekit.VirtexWorker only
    "pynvml",  # GPU metrics, when a GPU is there
    "redis",  # servekit[redis]: redis:// queues, sinks, discovery only
    "pandas",
    "PIL",
    "torch",
    "sklearn",
    "httpx",
    "yaml",
)


def test_the_cli_and_the_server_import_no_optional_package() -> None:
    code = (
        "import sys\n"
        "from servekit.cli import _parser\n"
        "_parser().parse_args(['serve', 'x.py:M'])\n"
        "_parser().parse_args(['bench', 'http://127.0.0.1:1', '--model', 'm'])\n"
        "import servekit, servekit.client, servekit.server.app, servekit.rlog, servekit.jobs\n"
        f"print(','.join(m for m in {OPTIONAL!r} if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"imported at start: {done.stdout.strip()}"
