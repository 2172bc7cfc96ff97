"""``servekit bench URL --model NAME [--concurrency N | --rate R] --duration S [...]``.

Exit codes: 0 when at least one request succeeded, 1 when every request failed, 2 when the
run could not start (bad arguments or input, server unreachable).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from typing import IO

DESCRIPTION = (
    "Load-test an inference server over HTTP from one process: closed loop (--concurrency N"
    " requests always in flight) or open loop (--rate R requests per second, Poisson"
    " arrivals, latency counted from each request's due time). Prints throughput, errors by"
    " status and HDR-histogram latency percentiles."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``bench`` subcommand's options."""
    parser.add_argument(
        "url", metavar="URL", help="the server's base URL, e.g. http://127.0.0.1:8000"
    )
    parser.add_argument("--model", metavar="NAME", help="model name (not needed for virtex)")
    load = parser.add_mutually_exclusive_group()
    load.add_argument(
        "--concurrency", "-c", type=int, metavar="N", help="closed loop: N in flight (default 8)"
    )
    load.add_argument(
        "--rate", "-r", type=float, metavar="R", help="open loop: R req/s, Poisson arrivals"
    )
    parser.add_argument(
        "--duration",
        "-d",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds of load (default 10)",
    )
    parser.add_argument("--requests", "-n", type=int, metavar="N", help="stop after N requests")
    parser.add_argument(
        "--input",
        metavar="FILE",
        help="request body (v2 / EAS / virtex JSON); default: generated from the model's metadata",
    )
    parser.add_argument(
        "--protocol",
        choices=("v2", "v2-binary", "eas", "virtex"),
        default="v2",
        help="route and body format (default v2)",
    )
    parser.add_argument(
        "--timeout", type=float, default=10.0, metavar="S", help="per request (default 10)"
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=1000,
        metavar="N",
        help="open loop: most connections opened (default 1000)",
    )
    parser.add_argument("--token", default="", help="sent as Authorization: Bearer TOKEN")
    parser.add_argument("--seed", type=int, help="seed of the open loop's arrival times")
    parser.add_argument("--json", metavar="FILE", help="write the numbers as JSON")
    parser.add_argument(
        "--plot",
        metavar="FILE",
        help="write a PNG: latency percentiles per second and the distribution",
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar and no table")


def main(args: argparse.Namespace, stdout: IO[str] | None = None) -> int:
    """Run the load test the arguments describe; print the table; write JSON and plot."""
    from servekit.bench._errors import BenchError
    from servekit.bench.bodies import read_input
    from servekit.bench.loop import Plan
    from servekit.bench.report import LiveProgress, print_table, write_json
    from servekit.bench.runner import run

    out = stdout or sys.stdout
    plan = Plan(
        concurrency=None
        if args.rate is not None
        else (8 if args.concurrency is None else args.concurrency),
        rate=args.rate,
        duration=args.duration,
        max_requests=args.requests,
        timeout=args.timeout,
        max_connections=args.max_connections,
        seed=args.seed,
    )
    show = not args.quiet and sys.stderr.isatty()
    if args.plot and importlib.util.find_spec("matplotlib") is None:  # say so before the run
        print("servekit bench: error: --plot needs matplotlib: pip install 'servekit[bench]'",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        body = read_input(args.input) if args.input else None
        with LiveProgress(plan.duration, enabled=show) as progress:
            result = run(
                args.url,
                args.model,
                protocol=args.protocol,
                body=body,
                plan=plan,
                token=args.token,
                on_tick=progress.tick,
            )
    except BenchError as exc:
        print(f"servekit bench: error: {exc.message}", file=sys.stderr)
        return 2
    if not args.quiet:
        print_table(result, out)
    if args.json:
        write_json(result, args.json)
    if args.plot:
        from servekit.bench.plot import write_plot

        write_plot(result, args.plot)
    if result.ok == 0:
        causes = ", ".join(f"{k}: {v}" for k, v in result.errors.items()) or "nothing answered"
        print(f"servekit bench: error: every request failed ({causes})", file=sys.stderr)
        return 1
    return 0
