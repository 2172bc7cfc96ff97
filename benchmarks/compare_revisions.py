"""servekit at an older git revision vs the working tree, side by side, over HTTP and threads.

    python benchmarks/compare_revisions.py --rev 9445f3b [--rounds 5] [--seconds 6]

The old revision is installed (not editable) into its own virtualenv under
``benchmarks/.venv-rev-<rev>`` (created on the first run, from ``git archive``; needs PyPI
for its dependencies); the working tree runs from the current interpreter. The sides
alternate for ``--rounds`` rounds; medians are reported:

* **http**: ``servekit serve bench_http.py:SleepModel`` (the model of ``bench_http.py``)
  driven by ``wrk -t1`` at 1, 16 and 64 connections: req/s and server CPU per request
  (``/proc/<pid>/stat`` of the server over the measured window).
* **dynbatch**: ``bench_dynbatch.py``'s worker (20 threads x ``predict_one``, idle batch 1):
  items/s and CPU per item.

Writes ``benchmarks/results/compare_revisions.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

import bench_http  # noqa: E402
from _common import RESULTS_DIR, free_port, render_table, table  # noqa: E402


def old_python(rev: str) -> Path:
    """An interpreter with servekit at ``rev`` installed from a ``git archive``."""
    venv = BENCH_DIR / f".venv-rev-{rev}"
    python = venv / "bin" / "python"
    if python.exists():
        return python
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "src.tar"
        subprocess.run(["git", "archive", "-o", str(archive), rev], cwd=ROOT, check=True)
        with tarfile.open(archive) as tar:
            tar.extractall(Path(tmp) / "src", filter="data")
        source = str(Path(tmp) / "src")
        subprocess.run([str(python), "-m", "pip", "install", "-q", source], check=True)
    return python


def http_round(python: Path, connections: int, seconds: float) -> dict[str, float]:
    port = free_port()
    command = bench_http._server_commands(port)["servekit"]
    command[0] = str(python)
    return bench_http.drive_server(command, port, connections, seconds)


def dynbatch_round(python: Path, seconds: float) -> dict[str, float]:
    command = [
        str(python), str(BENCH_DIR / "bench_dynbatch.py"), "--worker", "servekit",
        "--threads", "20", "--warmup", "0.5", "--duration", str(seconds),
        "--max-batch", "32", "--idle", "1", "--interval", "0.002",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    line = next(x for x in done.stdout.splitlines() if x.startswith("DYNBATCH_RESULT "))
    result = json.loads(line.split(" ", 1)[1])
    return {"items_per_s": result["items_per_s"], "cpu_us_per_item": result["cpu_us_per_item"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", required=True, help="the older git revision")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args()
    sides = {args.rev: old_python(args.rev), "working tree": Path(sys.executable)}
    runs: dict[str, dict[str, list[dict[str, float]]]] = {}
    for round_no in range(args.rounds):
        for name, python in sides.items():
            for conns in (1, 16, 64):
                key = f"http c={conns}"
                result = http_round(python, conns, args.seconds)
                runs.setdefault(key, {}).setdefault(name, []).append(result)
                print(f"[compare] round {round_no + 1} {name} {key}: {result}", flush=True)
            result = dynbatch_round(python, min(args.seconds, 3.0))
            runs.setdefault("dynbatch", {}).setdefault(name, []).append(result)
            print(f"[compare] round {round_no + 1} {name} dynbatch: {result}", flush=True)
    rows: list[list[Any]] = []
    old, new = sides
    for bench, by_side in runs.items():
        metrics = list(by_side[old][0])
        for metric in metrics:
            if metric == "errors":
                continue
            a = statistics.median(r[metric] for r in by_side[old])
            b = statistics.median(r[metric] for r in by_side[new])
            rows.append([bench, metric, round(a, 1), round(b, 1), round(b / a, 3) if a else None])
    title = f"servekit {old} vs the working tree (medians of {args.rounds} alternating rounds)"
    print(render_table(table(title, ["benchmark", "measure", old, new, "new/old"], rows)))
    errors = sum(r.get("errors", 0) for by in runs.values() for rs in by.values() for r in rs)
    print(f"non-200 answers and socket errors over every HTTP run: {errors}")
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / "compare_revisions.json"
    document = {"rev": args.rev, "rounds": args.rounds, "runs": runs, "rows": rows}
    out.write_text(json.dumps(document, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
