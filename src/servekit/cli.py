"""``servekit`` command line: ``servekit serve module:Attr [...]``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="servekit", description="Serve Python models fast.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="serve models over HTTP (Open Inference Protocol v2)",
        description="Serve one or more servekit.Model classes or instances.",
    )
    serve.add_argument(
        "targets", nargs="+", metavar="MODULE:ATTR", help="e.g. app:MyModel or app.py:model"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--workers", type=int, default=1, help="server processes (default 1)")
    serve.add_argument("--max-batch-size", type=int, help="most items per predict call")
    serve.add_argument(
        "--max-latency-ms", type=float, help="longest wait for a batch to fill, in ms"
    )
    serve.add_argument("--idle-batch-size", type=int, help="dispatch at once from this many items")
    serve.add_argument("--max-queue-size", type=int, help="most queued items before 429")
    serve.add_argument("--instances", type=int, help="batches run at once per model")
    serve.add_argument(
        "--token",
        default=os.environ.get("SERVEKIT_TOKEN"),
        help="require this token (Authorization header); default $SERVEKIT_TOKEN",
    )
    serve.add_argument(
        "--max-body-size", type=int, default=64 * 1024 * 1024, help="bytes (default 64 MiB)"
    )
    serve.add_argument(
        "--drain-timeout", type=float, default=30.0, help="seconds to finish work on shutdown"
    )
    serve.add_argument("--tcp-port", type=int, help="also serve length-prefixed JSON over TCP")
    serve.add_argument(
        "--queue",
        action="store_true",
        help="asynchronous inference: input queue <model> and sink <model>/sink",
    )
    serve.add_argument(
        "--queue-url",
        help="queue storage: sqlite://DIR (default ./servekit-queues) or redis://HOST:PORT/DB;"
        " default $SERVEKIT_QUEUE_URL",
    )
    serve.add_argument("--log-level", default="info", help="uvicorn log level (default info)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        from servekit.server.runner import serve

        settings = {
            "token": args.token,
            "max_body_size": args.max_body_size,
            "drain_timeout": args.drain_timeout,
            "tcp_port": args.tcp_port,
            "tcp_host": args.host,
            "queue": args.queue,
            "queue_url": args.queue_url,
        }
        for key in ("max_batch_size", "max_latency_ms", "idle_batch_size", "max_queue_size"):
            value = getattr(args, key)
            if value is not None:
                settings[key] = value
        if args.instances is not None:
            settings["instances"] = args.instances
        try:
            serve(
                args.targets,
                host=args.host,
                port=args.port,
                workers=args.workers,
                log_level=args.log_level,
                **settings,
            )
        except (ValueError, TypeError, ImportError) as exc:
            print(f"servekit: error: {exc}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
