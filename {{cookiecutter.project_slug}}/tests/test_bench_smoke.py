"""The benchmark runs end to end at tiny scale and its report is sound.

Runs ``python -m benchmarks`` for about a second per case against the
baselines and the app (with the resource model and protocol this repo was
generated with), then reads the JSON report: every case ran, every reply was
verified with no error, and the targets section is there. Speed is never
asserted here; the benchmark's own report does that.

The cluster and store cases run the same way: the store cases need nothing,
the cluster cases start their own ``redis-server`` and are skipped (with the
reason) only where no such binary exists, never under CI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
TINY = [
    "--servers", "framework",
    "--models", "default",
    "--protocols", "default",
    "--duration", "0.3",
    "--warmup", "0.1",
    "--conns", "4",
    "--depth", "2",
    "--room-members", "6",
]  # fmt: skip


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO / "src"), str(REPO), env.get("PYTHONPATH")])
    )
    return env


def _bench(out: Path, *args: str) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks", *args, "--out", str(out)]
    proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((out / "latest.json").read_text(encoding="utf-8"))


def _require(binary: str) -> None:
    """Skip without ``binary`` on PATH (with the reason); under CI, fail instead."""
    if shutil.which(binary) is None:
        reason = f"no {binary} binary on PATH (Debian: apt-get install {binary})"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must install it")
        pytest.skip(reason)


def _targets(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in report["targets"]}


def test_benchmark_smoke(tmp_path: Path) -> None:
    out = tmp_path / "results"
    env = _env()
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
    assert len(rows) == 4 * 4 + 1  # idle also runs the framework with every limit on
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
    assert all(t["why"] for t in report["targets"]), "every target says why it exists"
    markdown = (out / "latest.md").read_text(encoding="utf-8")
    assert "## Performance targets" in markdown and "| framework[" in markdown


def test_benchmark_store_cases(tmp_path: Path) -> None:
    """sqlite write-behind and store_sync=always beside memory://, with the store's counters."""
    report = _bench(tmp_path / "results", "--scenarios", "store_business", *TINY)
    rows = {row["variant"]: row for row in report["rows"]}
    assert set(rows) == {"", "sqlite", "sqlite_always"}
    for row in rows.values():
        assert "failed" not in row and "skipped" not in row, row
        assert row["errors"] == 0 and row["completed"] > 0, row
        assert "store" in row["counters"], row
    # store_sync=always makes each acknowledged change durable: commits were waited for
    always = rows["sqlite_always"]["counters"]["store"]
    assert always["commits"] > 0 and always["commit_batches"] > 0, always
    assert always["max_batch"] >= 1, always
    targets = _targets(report)
    assert targets["login-then-business, sqlite store (write-behind) vs memory://"]["why"]
    always_target = targets["login-then-business, sqlite store_sync=always vs memory://"]
    assert always_target["met"] is None and "transactions" in always_target["notes"]
    markdown = (tmp_path / "results" / "latest.md").read_text(encoding="utf-8")
    assert "## Targets: cluster and store" in markdown


def test_benchmark_websocket_case(tmp_path: Path) -> None:
    """Echo over the WebSocket port beside TCP, every reply verified; the 0.7x target reported."""
    report = _bench(tmp_path / "results", "--scenarios", "ws_echo", *TINY)
    rows = {row["variant"]: row for row in report["rows"]}
    assert set(rows) == {"", "ws"}
    for row in rows.values():
        assert "failed" not in row and "skipped" not in row, row
        assert row["errors"] == 0 and row["completed"] > 0, row
    target = _targets(report)["echo throughput over WebSocket vs TCP (50 conns, depth 8)"]
    assert target["required"] == ">= 0.7x" and target["met"] is not None, target
    markdown = (tmp_path / "results" / "latest.md").read_text(encoding="utf-8")
    assert "## Targets: WebSocket" in markdown


def test_benchmark_resume_cases(tmp_path: Path) -> None:
    """Links armed for resumption beside resumption off, every reply verified; the 5 % target."""
    report = _bench(tmp_path / "results", "--scenarios", "resume_echo,resume_business", *TINY)
    rows = {(row["scenario"], row["variant"]): row for row in report["rows"]}
    assert set(rows) == {
        (s, v) for s in ("resume_echo", "resume_business") for v in ("resume_off", "resume_on")
    }
    for row in rows.values():
        assert "failed" not in row and "skipped" not in row, row
        assert row["errors"] == 0 and row["completed"] > 0, row
    targets = _targets(report)
    for name in (
        "echo throughput, links armed for resumption vs resumption off",
        "login-then-business, links armed for resumption vs resumption off",
    ):
        assert targets[name]["required"] == ">= 0.95x" and targets[name]["met"] is not None


def test_benchmark_cluster_cases(tmp_path: Path) -> None:
    """Cluster node vs plain, and a room split over 2 nodes: every say delivered exactly once."""
    _require("redis-server")
    scenarios = "cluster_echo,cluster_business,cluster_room_flood"
    report = _bench(tmp_path / "results", "--scenarios", scenarios, *TINY)
    rows = report["rows"]
    assert len(rows) == 6
    for row in rows:
        assert "failed" not in row and "skipped" not in row, row
        assert row["errors"] == 0 and row["completed"] > 0, row
    fanout = next(r for r in rows if r["variant"] == "2nodes")
    assert fanout["says"] > 0 and fanout["missing"] == 0 and fanout["duplicates"] == 0, fanout
    assert fanout["nodes"] == 2 and fanout["redis_cpu"] is not None, fanout
    # the members really were split: says crossed the broker both ways
    assert fanout["counters"]["cluster"]["published"] > 0, fanout["counters"]
    assert fanout["counters"]["cluster"]["received"] > 0, fanout["counters"]
    # all members local: nothing is published for echo
    echo = next(r for r in rows if r["scenario"] == "cluster_echo" and r["variant"] == "cluster")
    assert echo["counters"]["cluster"]["published"] == 0, echo["counters"]
    targets = _targets(report)
    fan = targets["cross-node fan-out: 200 members over 2 nodes (cluster_room_flood)"]
    assert "over 2 nodes" in fan["measured"] and "Redis CPU" in fan["measured"], fan


def test_benchmark_metrics_case_and_chart(tmp_path: Path) -> None:
    """Echo with metrics_port set beside metrics off; the report comes with its PNG chart."""
    out = tmp_path / "results"
    report = _bench(out, "--scenarios", "metrics_echo", *TINY)
    rows = {row["variant"]: row for row in report["rows"]}
    assert set(rows) == {"", "metrics"}
    for row in rows.values():
        assert "failed" not in row and "skipped" not in row, row
        assert row["errors"] == 0 and row["completed"] > 0, row
    target = _targets(report)["echo throughput (50 conns, depth 8), metrics on vs off"]
    assert target["why"] and target["required"] == ">= 0.95x"
    assert "metrics" in target["measured"], target
    chart = out / "latest.png"
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "](latest.png)" in (out / "latest.md").read_text(encoding="utf-8")


def test_instruction_count_harness_checks_every_reply() -> None:
    """Each in-process case of ``--instructions`` answers every request byte for byte."""
    for flow, server in [
        ("echo", "framework"),
        ("business", "framework"),
        ("echo", "json"),
        ("business", "json"),
        ("business", "messages"),
        ("business", "resume"),
    ]:
        cmd = [sys.executable, "-m", "benchmarks.instructions", "--child", flow, server]
        proc = subprocess.run(
            [*cmd, "json", "2"], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, (flow, server, proc.stdout[-2000:], proc.stderr[-2000:])
        assert "MESSAGES 800" in proc.stdout, (flow, server, proc.stdout)


def test_benchmark_instruction_count(tmp_path: Path) -> None:
    """``--instructions`` counts the framework's echo under valgrind and writes its table."""
    _require("valgrind")
    out = tmp_path / "results"
    cmd = [sys.executable, "-m", "benchmarks.instructions", "--flows", "echo"]
    cmd += ["--servers", "framework", "--protocols", "json", "--rounds", "5", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = json.loads((out / "instructions.json").read_text(encoding="utf-8"))
    assert [(r["flow"], r["server"], r["protocol"]) for r in rows] == [
        ("echo", "framework", "json")
    ]
    # Tens of thousands on CPython 3.11; a count near zero means the difference is broken.
    assert 2_000 < rows[0]["instructions_per_message"] < 1_000_000, rows
    assert "| echo | json |" in (out / "instructions.md").read_text(encoding="utf-8")


def test_arena_bench_smoke(tmp_path: Path) -> None:
    """The arena ladder end to end at a tiny scale: one node, then two on a redis-server."""
    _require("redis-server")
    out = tmp_path / "results"
    args = ["--scenarios", "arena", "--servers", "framework", "--quick", "--arena-counts", "40"]
    report = _bench(out, *args)
    arena = report["meta"]["arena"]
    assert [r["nodes"] for r in arena] == [1, 2]
    for result in arena:
        (step,) = result["steps"]
        assert "failed" not in step, step
        assert step["players"] == 40 and step["rooms"] == 5, step
        assert step["errors"] == 0 and step["delivered"] >= 0.9, step
        assert step["tick_p99_ms"] > 0 and step["floor_p99_ms"] > 0, step
    markdown = (out / "latest.md").read_text(encoding="utf-8")
    assert "## Arena: players per core" in markdown
