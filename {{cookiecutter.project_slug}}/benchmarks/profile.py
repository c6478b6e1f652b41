"""Sample the server under test with py-spy during the measured window (``--profile``).

A ratio that misses its target is only actionable with a profile of the
same load. py-spy attaches to the running server process from outside (no
code change, ``--nonblocking`` so it does not pause it), writes collapsed
stacks, and this module folds them into the top functions by own time and by
inclusive time for the report. py-spy is optional: ``pip install py-spy``.
"""

from __future__ import annotations

import asyncio
import math
import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def available() -> bool:
    return shutil.which("py-spy") is not None


async def record(
    pid: int, seconds: float, out: Path, rate: int = 250
) -> asyncio.subprocess.Process:
    """Start py-spy on ``pid`` for about ``seconds``; collapsed stacks go to ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    return await asyncio.create_subprocess_exec(
        "py-spy",
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(max(1, math.ceil(seconds))),
        "--rate",
        str(rate),
        "--nonblocking",
        "--format",
        "raw",
        "--output",
        str(out),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


def _label(frame: str) -> str:
    """``flush (src/pkg/sgs/link.py:212)`` -> ``flush (sgs/link.py)``: one row per function."""
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    parts = Path(m["file"]).parts
    short = "/".join(parts[-2:]) if len(parts) >= 2 else m["file"]
    return f"{m['func']} ({short})"


def summarize(path: Path, top: int = 12) -> dict[str, Any]:
    """Top functions by own (leaf) samples and by inclusive samples, as % of all samples."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_label(f) for f in stack.split(";") if f]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for label in set(frames):
            inclusive[label] += count

    def pct(counter: Counter[str]) -> list[list[Any]]:
        return [[name, 100.0 * n / total] for name, n in counter.most_common(top)] if total else []

    return {"samples": total, "own": pct(own), "inclusive": pct(inclusive), "file": str(path)}


def markdown(label: str, scenario: str, summary: dict[str, Any]) -> list[str]:
    lines = [
        f"### {label} on {scenario} ({summary['samples']} samples, `{summary['file']}`)",
        "",
        "| own % | function | | inclusive % | function |",
        "|---|---|---|---|---|",
    ]
    own, inc = summary["own"], summary["inclusive"]
    for i in range(max(len(own), len(inc))):
        a = own[i] if i < len(own) else ["", None]
        b = inc[i] if i < len(inc) else ["", None]
        fa = f"{a[1]:.1f}" if a[1] is not None else ""
        fb = f"{b[1]:.1f}" if b[1] is not None else ""
        lines.append(f"| {fa} | {a[0]} | | {fb} | {b[0]} |")
    return lines
