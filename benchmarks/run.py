"""Run every ``benchmarks/bench_*.py``, print a table per benchmark, write ``results/*.json``.

    python benchmarks/run.py [--quick] [--only dynbatch,http] [--profile]

A benchmark module exposes ``main(quick: bool) -> dict`` (optionally ``profile: bool`` too);
see ``_common.py`` for the result convention. One failing benchmark does not stop the others;
the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    BENCH_DIR,
    log,
    machine,
    render_table,
    source_fingerprint,
    source_hashes,
    write_json,
)


def discover() -> list[str]:
    """Names of the benchmarks present (``bench_<name>.py``), in a stable order."""
    return sorted(p.stem.removeprefix("bench_") for p in BENCH_DIR.glob("bench_*.py"))


def run_one(name: str, quick: bool, profile: bool) -> dict[str, Any]:
    """Import ``bench_<name>`` and call its ``main``."""
    module = importlib.import_module(f"bench_{name}")
    entry = getattr(module, "main", None)
    if entry is None:
        raise RuntimeError(f"bench_{name}.py has no main(quick: bool) -> dict")
    kwargs: dict[str, Any] = {"quick": quick}
    if profile and "profile" in inspect.signature(entry).parameters:
        kwargs["profile"] = True
    result = entry(**kwargs)
    if not isinstance(result, dict):
        raise RuntimeError(f"bench_{name}.main returned {type(result).__name__}, not a dict")
    return result


def show(name: str, result: dict[str, Any], seconds: float) -> None:
    """Print a benchmark's tables and notes (or its JSON if it has no tables)."""
    print(f"\n## {name} ({seconds:.0f} s)\n")
    tables = result.get("tables") or []
    for spec in tables:
        print(render_table(spec), end="\n\n")
    for note in result.get("notes") or []:
        print(f"- {note}")
    if not tables and not result.get("notes"):
        print(json.dumps(result, indent=2, default=str))
    if "profile" in result:
        from _profile import render

        print(render(result["profile"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs, one round")
    parser.add_argument("--only", help="comma-separated benchmark names (default: all)")
    parser.add_argument("--profile", action="store_true", help="py-spy the servekit sides too")
    args = parser.parse_args(argv)
    names = discover()
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            parser.error(f"unknown benchmark(s) {unknown}; present: {names}")
        names = [n for n in names if n in wanted]
    info = machine()
    load = os.getloadavg()[0]
    print(f"# servekit benchmarks{' (quick)' if args.quick else ''}")
    print(
        f"machine: {info['nproc']} cores, {info['cpu']}, Python {info['python']};"
        f" load average at start {load:.2f}; servekit source sha256 {source_fingerprint()}"
    )
    if load > 0.5:
        log(f"load average is {load:.2f}: other work on this machine will skew the figures")
    failed = []
    for name in names:
        log(f"running {name}")
        began = time.monotonic()
        source = source_hashes()
        try:
            result = run_one(name, args.quick, args.profile)
        except Exception:  # report this benchmark's failure, run the others
            failed.append(name)
            print(f"\n## {name}: FAILED\n\n{traceback.format_exc()}")
            continue
        elapsed = time.monotonic() - began
        result.setdefault("elapsed_s", round(elapsed, 1))
        result.setdefault("load_average_at_start", round(load, 2))
        result["servekit_source_sha256"] = source_fingerprint(source)
        after = source_hashes()
        changed = sorted(k for k in source.keys() | after.keys() if source.get(k) != after.get(k))
        if changed:
            result["source_changed_during_run"] = changed
            print(
                f"\nWARNING: servekit source files changed while {name} ran: {', '.join(changed)};"
                " if they are on this benchmark's path, run it again"
            )
        show(name, result, elapsed)
        print(f"\nwrote {write_json(name, result).relative_to(BENCH_DIR.parent)}")
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
