"""Helpers shared by the benchmarks: percentiles, tables, machine facts, ports, JSON.

Standard library only: the pyraisdk worker imports nothing else.

Convention for ``bench_*.py`` modules: ``main(quick: bool) -> dict``. If the dict has
``"tables"`` (a list of ``{"title", "columns", "rows"}``) and ``"notes"`` (a list of lines),
``run.py`` prints them; the whole dict goes to ``results/<name>.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of already sorted values (0.0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, round(pct / 100.0 * len(sorted_values) + 0.5 - 1e-9))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


def median(values: Sequence[float]) -> float:
    """Median of a non-empty sequence."""
    ordered = sorted(values)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return float(ordered[mid])
    return (ordered[mid - 1] + ordered[mid]) / 2.0


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> dict[str, Any]:
    """A table in the form ``run.py`` prints."""
    return {"title": title, "columns": list(columns), "rows": [list(r) for r in rows]}


def render_table(spec: dict[str, Any]) -> str:
    """Plain-text (and Markdown-compatible) rendering of a :func:`table`."""
    columns = [str(c) for c in spec["columns"]]
    rows = [[_cell(v) for v in row] for row in spec["rows"]]
    widths = [
        max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(columns)
    ]

    def line(cells: Sequence[str]) -> str:
        padded = (
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
        )
        return "| " + " | ".join(padded) + " |"

    rule = (
        "|"
        + "|".join("-" * (w + 1) + ":" if i else "-" * (w + 2) for i, w in enumerate(widths))
        + "|"
    )
    out = [f"### {spec['title']}", "", line(columns), rule]
    out.extend(line(r) for r in rows)
    return "\n".join(out)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "n/a"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def verdict(ok: bool) -> str:
    """How a target check reads in a note."""
    return "met" if ok else "MISSED"


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = ""
    if shutil.which("lscpu"):
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for row in out.splitlines():
            if row.startswith("Model name"):
                model = row.split(":", 1)[1].strip()
    return {
        "nproc": os.cpu_count(),
        "cpu": model or platform.processor(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def source_hashes() -> dict[str, str]:
    """sha256 of each servekit source file, by path under ``src/servekit``."""
    src = BENCH_DIR.parent / "src" / "servekit"
    return {
        str(path.relative_to(src)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(src.rglob("*.py"))
    }


def source_fingerprint(hashes: dict[str, str] | None = None) -> str:
    """Short sha256 over servekit's source, to tie figures to the code that made them."""
    digest = hashlib.sha256()
    for name, file_hash in sorted((hashes or source_hashes()).items()):
        digest.update(f"{name}:{file_hash}\n".encode())
    return digest.hexdigest()[:12]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http_ok(url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll ``url`` until it answers 200; fail early if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before {url} was up")
        try:
            with urllib.request.urlopen(url, timeout=1.0) as resp:
                if resp.status == 200:
                    return
                last = f"status {resp.status}"
        except urllib.error.HTTPError as exc:
            last = f"status {exc.code}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.05)
    raise RuntimeError(f"{url} not ready after {timeout} s ({last})")


def write_json(name: str, result: dict[str, Any]) -> Path:
    """Write ``results/<name>.json`` atomically; return its path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    return path


def log(message: str) -> None:
    """Progress on stderr, so tables on stdout stay clean."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def print_and_save(name: str, result: dict[str, Any]) -> None:
    """A benchmark run from the command line: its tables and notes, then ``results/<name>.json``."""
    for spec in result.get("tables") or []:
        print(render_table(spec))
    for note in result.get("notes") or []:
        print("-", note)
    print(write_json(name, result))
