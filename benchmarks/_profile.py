"""Summarise py-spy ``--gil -f raw`` output: where the GIL-holding time goes.

python benchmarks/_profile.py benchmarks/results/profiles/http-servekit.txt
"""

from __future__ import annotations

import re
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from _common import RESULTS_DIR

PROFILE_DIR = RESULTS_DIR / "profiles"
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]*)(?::(?P<line>\d+))?\)$")


def have_py_spy() -> bool:
    """Whether ``py-spy`` is on PATH (``pip install py-spy``)."""
    return shutil.which("py-spy") is not None


def record_command(out: Path | str, pid: int, seconds: float, rate: int = 500) -> list[str]:
    """``py-spy record``: GIL-holding samples of ``pid`` for ``seconds``, raw stacks to ``out``."""
    spy = shutil.which("py-spy")
    if spy is None:
        raise RuntimeError("py-spy is not installed: `pip install py-spy` (needed for --profile)")
    return [
        spy,
        "record",
        "--gil",
        "-f",
        "raw",
        "-r",
        str(rate),
        "-o",
        str(out),
        "-p",
        str(pid),
        "-d",
        str(max(1, round(seconds))),
    ]


def _short(frame: str, with_line: bool) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match["file"]
    for anchor in ("site-packages/", "src/"):
        if anchor in path:
            path = path.split(anchor, 1)[1]
    line = match["line"]
    if with_line and line:
        return f"{match['func']} ({path}:{line})"
    return f"{match['func']} ({path})"


def summarize(raw: Path, top: int = 15, focus: str = "servekit/") -> dict[str, Any]:
    """Self time per line, inclusive time per function (``focus`` files only), in % of samples."""
    self_lines: Counter[str] = Counter()
    self_funcs: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for row in raw.read_text().splitlines():
        stack, _, count_text = row.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        self_lines[_short(frames[-1], True)] += count
        self_funcs[_short(frames[-1], False)] += count
        seen = {_short(f, False) for f in frames if focus in f}
        for name in seen:
            inclusive[name] += count

    def pct(counter: Counter[str]) -> list[tuple[str, float]]:
        if not total:
            return []
        return [(k, round(100.0 * v / total, 1)) for k, v in counter.most_common(top)]

    return {
        "raw": str(raw),
        "samples": total,
        "self_by_function": pct(self_funcs),
        "self_by_line": pct(self_lines),
        f"inclusive_{focus.strip('/')}": pct(inclusive),
    }


def render(summary: dict[str, Any]) -> str:
    """Plain-text report of :func:`summarize`."""
    out = [f"{summary['raw']}: {summary['samples']} GIL-holding samples"]
    for key, rows in summary.items():
        if isinstance(rows, list):
            out.append(f"  {key}:")
            out.extend(f"    {share:5.1f}%  {name}" for name, share in rows)
    return "\n".join(out)


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(render(summarize(Path(arg))))
