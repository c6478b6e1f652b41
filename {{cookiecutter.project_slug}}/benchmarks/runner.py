"""Run one case (a server x a scenario): processes, placement, clocks, aggregation.

Each case gets a fresh server process, so no state (rooms, counters, heap
growth) leaks from one measurement into the next, and load processes that
start their clocks together on a ``go`` line.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import pickle
import shutil
import sys
import tempfile
from array import array
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import profile
from .discover import REPO_ROOT, import_path_env
from .jobs import LoadJob
from .limits import cpu_seconds, machine_cpu_seconds, rss_bytes
from .scenarios import Scenario
from .workloads import build_jobs, encoder_for

START_TIMEOUT = 60.0


@dataclass(frozen=True)
class Case:
    """What to measure: a server (with protocol and model for the framework) under a scenario."""

    server: str
    scenario: Scenario
    protocol: str = "json"
    model: str = "-"

    @property
    def label(self) -> str:
        if self.server == "framework":
            return f"framework[{self.model},{self.protocol}]"
        return self.server


@dataclass
class Placement:
    """Which CPUs the server and the load run on (``taskset`` lists), and why."""

    server_cpus: str | None
    load_cpus: str | None
    note: str
    load_cores: int

    @staticmethod
    def plan(same_core: bool, pin: bool) -> Placement:
        cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        have_taskset = shutil.which("taskset") is not None
        if not pin or not have_taskset or not cpus:
            why = "pinning disabled" if not pin else "taskset not found"
            return Placement(None, None, f"unpinned ({why}); {len(cpus) or os.cpu_count()} CPUs", 1)
        if same_core or len(cpus) < 2:
            return Placement(
                str(cpus[0]), str(cpus[0]), f"server and load both on CPU {cpus[0]}", 1
            )
        rest = ",".join(str(c) for c in cpus[1:])
        return Placement(
            str(cpus[0]), rest, f"server on CPU {cpus[0]}, load on CPU {rest}", len(cpus) - 1
        )


def _prefix(cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus] if cpus else []


class Child:
    """A child process we talk to over stdio lines."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str, log: Any) -> None:
        self.proc = proc
        self.name = name
        self.log = log

    @classmethod
    async def spawn(cls, name: str, cpus: str | None, *args: str) -> Child:
        """Start ``python *args``; its stderr goes to a file, kept for the report on errors."""
        log = tempfile.TemporaryFile()
        proc = await asyncio.create_subprocess_exec(
            *_prefix(cpus),
            sys.executable,
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=str(REPO_ROOT),
            env=import_path_env(),
            stderr=log,
            limit=64 * 1024 * 1024,
        )
        return cls(proc, name, log)

    def log_tail(self, lines: int = 8) -> list[str]:
        self.log.seek(0)
        text = self.log.read().decode(errors="replace")
        return text.splitlines()[-lines:]

    async def line(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not raw:
            code = await asyncio.wait_for(self.proc.wait(), 5)
            raise RuntimeError(f"{self.name} exited (code {code}) before answering")
        return raw.decode().strip()

    async def event(self, name: str, timeout: float) -> dict[str, Any]:
        msg = json.loads(await self.line(timeout))
        if msg.get("event") != name:
            raise RuntimeError(f"{self.name}: expected {name!r}, got {msg}")
        return msg

    def say(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode() + b"\n")

    async def stop(self) -> None:
        if self.proc.returncode is None:
            try:
                self.proc.terminate()
                await asyncio.wait_for(self.proc.wait(), 10)
            except (TimeoutError, ProcessLookupError):
                if self.proc.returncode is None:
                    self.proc.kill()
                    await self.proc.wait()

    def close_log(self) -> None:
        self.log.close()


@dataclass
class Options:
    """The knobs of a whole run."""

    warmup: float = 0.5
    duration: float = 2.0
    processes: int | None = None
    pin: bool = True
    logic_workers: int = 4
    send_workers: int = 2
    package: str | None = None
    profile_dir: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


async def start_server(case: Case, opts: Options, cpus: str | None) -> tuple[Child, int]:
    args = ["-m", "benchmarks.serve", case.server, "--nofile", str(case.scenario.conns + 1024)]
    if case.server == "framework":
        args += ["--protocol", case.protocol, "--model", case.model]
        args += [
            "--logic-workers",
            str(opts.logic_workers),
            "--send-workers",
            str(opts.send_workers),
        ]
        args += ["--max-connections", str(case.scenario.conns + 1024)]
    child = await Child.spawn(f"server {case.label}", cpus, *args)
    line = await child.line(START_TIMEOUT)
    if not line.startswith("READY "):
        raise RuntimeError(f"{child.name} said {line!r} instead of READY")
    return child, int(line.split()[1])


async def run_case(case: Case, opts: Options) -> dict[str, Any]:
    """Measure one case; the returned dict is one row of the JSON report."""
    scenario = case.scenario
    placement = Placement.plan(scenario.same_core, opts.pin)
    processes = opts.processes or placement.load_cores
    enc = encoder_for(case.server, case.protocol, opts.package)
    row: dict[str, Any] = {
        "server": case.server,
        "label": case.label,
        "protocol": case.protocol if case.server != "raw" else "raw bytes",
        "model": case.model,
        "scenario": scenario.name,
        "placement": placement.note,
        "load_processes": processes,
        "conns": scenario.conns,
        "depth": scenario.depth,
    }
    server, port = await start_server(case, opts, placement.server_cpus)
    loads: list[Child] = []
    files: list[str] = []
    try:
        jobs = build_jobs(scenario, enc, port, processes, opts.warmup, opts.duration)
        for i, job in enumerate(jobs):
            files.append(_write_job(job))
            loads.append(
                await Child.spawn(
                    f"load {i}", placement.load_cpus, "-m", "benchmarks.loadgen", files[-1]
                )
            )
        setup_timeout = START_TIMEOUT + scenario.conns / 100
        await asyncio.gather(*(c.event("ready", setup_timeout) for c in loads))
        pid = server.proc.pid
        if scenario.kind == "idle":
            row.update(await _idle(server, loads, setup_timeout, scenario.conns))
        else:
            spy = None
            if opts.profile_dir is not None and case.server == "framework" and profile.available():
                name = f"{scenario.name}-{case.model}-{case.protocol}.txt"
                spy = opts.profile_dir / name
            row.update(await _timed(pid, loads, opts, spy))
            if spy is not None and spy.exists():
                row["profile"] = profile.summarize(spy)
        if scenario.kind == "room":
            # every SayReq reaches every member, the sender included
            row["missing"] = row["says"] * scenario.conns - row["delivered_total"]
            row["errors"] += max(row["missing"], 0)
        row["server_rss_mib"] = (rss_bytes(pid) or 0) / 2**20
    except Exception as exc:  # a broken server must not stop the other cases
        row["failed"] = f"{type(exc).__name__}: {exc}"
        row.setdefault("errors", 1)
    finally:
        await asyncio.gather(*(c.stop() for c in loads), return_exceptions=True)
        await server.stop()
        if row.get("errors") or "failed" in row:
            row["stderr"] = {c.name: c.log_tail() for c in (server, *loads)}
        for c in (server, *loads):
            c.close_log()
        for path in files:
            os.unlink(path)
    return row


def _write_job(job: LoadJob) -> str:
    fd, path = tempfile.mkstemp(prefix="bench-job-", suffix=".pickle")
    with os.fdopen(fd, "wb") as f:
        pickle.dump(job, f, protocol=pickle.HIGHEST_PROTOCOL)
    return path


async def _timed(pid: int, loads: list[Child], opts: Options, spy: Path | None) -> dict[str, Any]:
    """Go, sample the server's CPU over the window, collect and merge the results.

    With ``spy`` set, py-spy samples the server over the window (it perturbs
    the figures a little; profile in a separate run from the one you quote).
    """
    for c in loads:
        c.say("go")
    await asyncio.sleep(opts.warmup)
    spy_proc = await profile.record(pid, opts.duration, spy) if spy is not None else None
    cpu0, machine0 = cpu_seconds(pid), machine_cpu_seconds()
    await asyncio.sleep(opts.duration)
    cpu1, machine1 = cpu_seconds(pid), machine_cpu_seconds()
    limit = opts.warmup + opts.duration + 60
    results = await asyncio.gather(*(c.event("result", limit) for c in loads))
    if spy_proc is not None:
        await asyncio.wait_for(spy_proc.wait(), opts.duration + 30)
    samples = array("d")
    worst = 0.0
    for r in results:
        samples.frombytes(base64.b64decode(r["latency"]["samples"]))
        worst = max(worst, r["latency"]["max"])
    window = sum(r["window_s"] for r in results) / len(results)
    completed = sum(r["completed"] for r in results)
    load_cpu = [r["cpu_s"] / r["window_s"] for r in results]
    server_cpu = None if cpu0 is None or cpu1 is None else (cpu1 - cpu0) / opts.duration
    others = steal = None
    if machine0 is not None and machine1 is not None and server_cpu is not None:
        busy = (machine1[0] - machine0[0]) / opts.duration
        others = max(0.0, busy - server_cpu - sum(r["cpu_s"] for r in results) / window)
        steal = (machine1[1] - machine0[1]) / opts.duration
    out: dict[str, Any] = {
        "completed": completed,
        "window_s": window,
        "msgs_per_s": completed / window,
        "latency_us": _percentiles(samples, worst),
        "errors": sum(r["errors"] for r in results),
        "error_samples": [e for r in results for e in r["error_samples"]][:5],
        "server_cpu": server_cpu,
        "msgs_per_server_cpu_s": completed / window / server_cpu if server_cpu else None,
        "other_cpu": others,
        "steal_cpu": steal,
        "machine_busy": (others or 0.0) > 0.15 or (steal or 0.0) > 0.1,
        "load_cpu": load_cpu,
        "load_saturated": any(c >= 0.9 for c in load_cpu),
    }
    if "says" in results[0]:
        out["says"] = sum(r["says"] for r in results)
        out["delivered_total"] = sum(r["delivered_total"] for r in results)
        out["ticks_ignored"] = sum(r["ignored"] for r in results)
    return out


async def _idle(server: Child, loads: list[Child], timeout: float, conns: int) -> dict[str, Any]:
    """RSS before connecting and after every connection pinged once, then ping all again."""
    pid = server.proc.pid
    settle = 0.5 if conns >= 1000 else 0.05  # let a big run's heap and kernel buffers settle
    await asyncio.sleep(settle)
    before = rss_bytes(pid) or 0
    for c in loads:
        c.say("go")
    pinged = await asyncio.gather(*(c.event("pinged", timeout) for c in loads))
    await asyncio.sleep(settle)
    after = rss_bytes(pid) or 0
    for c in loads:
        c.say("go")
    results = await asyncio.gather(*(c.event("result", timeout) for c in loads))
    connected = sum(p["connected"] for p in pinged)
    return {
        "connected": connected,
        "answered_first": sum(r["answered_first"] for r in results),
        "answered": sum(r["answered"] for r in results),
        "connect_s": max(p["connect_s"] for p in pinged),
        "ping_all_s": max(r["ping_all_s"] for r in results),
        "rss_before_mib": before / 2**20,
        "rss_after_mib": after / 2**20,
        "kib_per_conn": (after - before) / 1024 / connected if connected else None,
        "errors": sum(r["errors"] for r in results),
        "error_samples": [e for r in results for e in r["error_samples"]][:5],
    }


def _percentiles(samples: array, worst: float) -> dict[str, float | None]:
    if not samples:
        return {"p50": None, "p90": None, "p99": None, "max": None}
    ordered = sorted(samples)
    n = len(ordered)

    def at(q: float) -> float:
        return ordered[min(n - 1, int(q * n))] * 1e6

    return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "max": worst * 1e6}


def describe_case(case: Case) -> dict[str, Any]:
    return {"label": case.label, **asdict(case.scenario)}
