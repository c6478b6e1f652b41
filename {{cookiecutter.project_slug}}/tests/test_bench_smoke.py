"""The benchmark runs end to end at tiny scale and its report is sound.

Runs ``python -m benchmarks`` for about a second per case against the
baselines and the app (with the resource model and protocol this repo was
generated with), then reads the JSON report: every case ran, every reply was
verified with no error, and the targets section is there. Speed is never
asserted here; the benchmark's own report does that.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_benchmark_smoke(tmp_path: Path) -> None:
    out = tmp_path / "results"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO / "src"), str(REPO), env.get("PYTHONPATH")])
    )
    cmd = [
        sys.executable,
        "-m",
        "benchmarks",
        "--scenarios",
        "echo_throughput,login_business,room_flood,idle",
        "--servers",
        "raw,json,streams,framework",
        "--models",
        "default",
        "--protocols",
        "default",
        "--protocol-scenarios",
        "echo_throughput,login_business,room_flood,idle",
        "--duration",
        "0.3",
        "--warmup",
        "0.1",
        "--conns",
        "4",
        "--depth",
        "2",
        "--room-members",
        "5",
        "--idle-conns",
        "50",
        "--out",
        str(out),
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    report = json.loads((out / "latest.json").read_text(encoding="utf-8"))
    rows = report["rows"]
    servers = {row["server"] for row in rows}
    assert servers == {"raw", "json", "streams", "framework"}
    assert len(rows) == 4 * 4
    for row in rows:
        assert "failed" not in row, row
        assert row["errors"] == 0, row
        if row["scenario"] == "idle":
            assert row["answered"] == row["connected"] == 50, row
        else:
            assert row["completed"] > 0, row
            assert row["latency_us"]["p50"] is not None, row
        if row["scenario"] == "room_flood":
            assert row["missing"] == 0 and row["says"] > 0, row
    assert {t["name"] for t in report["targets"]} >= {"login-then-business throughput vs json"}
    markdown = (out / "latest.md").read_text(encoding="utf-8")
    assert "## Targets (issue 6)" in markdown and "| framework[" in markdown
