"""How a load test shows itself: the live progress bar, the final table and the JSON file."""

from __future__ import annotations

import json
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from servekit.bench.record import Recorder, Result

_LATENCY_KEYS = ("p50", "p90", "p99", "p99.9", "max")


class LiveProgress:
    """A ``rich`` progress bar on stderr over the run's duration (nothing when off)."""

    def __init__(self, duration: float, *, enabled: bool, stream: IO[str] | None = None) -> None:
        self.duration = duration
        self._progress: Progress | None = None
        if enabled:
            console = Console(file=stream, stderr=stream is None)
            self._progress = Progress(
                TextColumn("[bold]bench"),
                BarColumn(),
                TextColumn("{task.description}"),
                TimeRemainingColumn(),
                console=console,
                transient=True,
                refresh_per_second=4,
            )
            self._task = self._progress.add_task("starting", total=duration)

    def __enter__(self) -> LiveProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def tick(self, recorder: Recorder, now: float) -> None:
        """Show the time elapsed, requests so far, their rate and the errors."""
        if self._progress is None:
            return
        elapsed = max(now - recorder.start, 1e-9)
        text = (
            f"{recorder.ok:,} ok  {recorder.ok / elapsed:,.0f} req/s  {recorder.failures:,} errors"
        )
        self._progress.update(self._task, completed=min(elapsed, self.duration), description=text)


def table(result: Result) -> Table:
    """The final table: load, throughput, errors by status and the latency percentiles."""
    out = Table(title="servekit bench", show_header=False)
    out.add_column("what", style="bold")
    out.add_column("value", justify="right")
    load = (
        f"open loop, {result.rate:g} req/s (Poisson)"
        if result.mode == "open"
        else f"closed loop, {result.concurrency} in flight"
    )
    out.add_row("url", f"{result.url} ({result.protocol})")
    out.add_row("load", load)
    out.add_row("duration", f"{result.duration_s:.2f} s")
    out.add_row("requests sent", f"{result.sent:,}")
    out.add_row("answered 2xx", f"{result.ok:,}")
    out.add_row("throughput", f"{result.throughput:,.1f} req/s")
    if result.errors:
        for key, count in result.errors.items():
            label = f"status {key}" if key.isdigit() else key
            out.add_row(f"errors: {label}", f"{count:,}")
    else:
        out.add_row("errors", "0")
    title = "latency from due time" if result.mode == "open" else "latency"
    for key in _LATENCY_KEYS:
        out.add_row(f"{title} {key}", f"{result.latency_ms[key]:.3f} ms")
    if result.mode == "open":
        for key in ("p50", "p99", "max"):
            out.add_row(f"service time {key}", f"{result.service_latency_ms[key]:.3f} ms")
        out.add_row("sends behind schedule (> 2 ms)", f"{result.late_sends:,}")
        out.add_row("worst send lag", f"{result.max_send_lag_ms:.1f} ms")
    return out


def print_table(result: Result, stream: IO[str] | None = None) -> None:
    Console(file=stream, width=100).print(table(result))


def write_json(result: Result, path: str | Path) -> None:
    """``--json FILE``: every number of the table, the windows and the distribution."""
    doc: dict[str, Any] = {"servekit_bench": 1, **result.to_json()}
    Path(path).write_text(json.dumps(doc, indent=2) + "\n")
