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

from . import broker, profile
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
    variant: str = ""  # a key of VARIANTS: what differs from the plain server

    @property
    def label(self) -> str:
        if self.server == "framework":
            extra = f",{VARIANTS[self.variant].tag}" if self.variant else ""
            return f"framework[{self.model},{self.protocol}{extra}]"
        return self.server


@dataclass(frozen=True)
class Variant:
    """How a framework server differs from the plain one (memory:// store, no cluster_url)."""

    tag: str  # in the case label
    nodes: int = 1  # server processes, each a cluster node when > 1 or ``cluster``
    cluster: bool = False  # cluster_url = a redis-server this case starts
    store: str = ""  # "" = memory://, "sqlite" = a fresh sqlite file in a temporary folder
    store_sync: str = "write_behind"
    limits: str = "off"  # serve.py --limits: "checked" = every limit on, never biting
    ws: bool = False  # the load connects to the server's WebSocket port instead of TCP
    metrics: bool = False  # metrics_port set: /metrics served, every message timed
    resume: str = ""  # "off": resume_window = 0; "on": each link arms resumption after its login


VARIANTS: dict[str, Variant] = {
    "": Variant(""),
    "cluster": Variant("cluster", cluster=True),
    "2nodes": Variant("2 nodes", nodes=2, cluster=True),
    "sqlite": Variant("sqlite", store="sqlite"),
    "sqlite_always": Variant("sqlite always", store="sqlite", store_sync="always"),
    "limits": Variant("limits checked", limits="checked"),
    "ws": Variant("WebSocket", ws=True),
    "metrics": Variant("metrics", metrics=True),
    "resume_off": Variant("resume off", resume="off"),
    "resume_on": Variant("resume on", resume="on"),
}


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


@dataclass
class ClusterPlacement:
    """Where the nodes, the broker and the load run for a multi-process case."""

    node_cpus: list[str | None]
    broker_cpus: str | None
    load_cpus: str | None
    note: str
    load_cores: int
    crowded: bool

    @staticmethod
    def plan(nodes: int, pin: bool) -> ClusterPlacement:
        """One CPU per node, one for Redis, the rest for the load; shared CPUs when too few.

        With too few CPUs (2 here, for 2 nodes) each node still gets a CPU of its
        own pinning, but Redis and the load run unpinned on the same CPUs: the
        report marks the placement crowded and the figure is a floor.
        """
        cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        if not pin or shutil.which("taskset") is None or not cpus:
            n = len(cpus) or os.cpu_count() or 1
            note = f"unpinned; {nodes} nodes, Redis and load sharing {n} CPUs"
            return ClusterPlacement([None] * nodes, None, None, note, max(1, n - nodes), True)
        if len(cpus) >= nodes + 2:
            rest = ",".join(str(c) for c in cpus[nodes + 1 :])
            nodes_at = ", ".join(f"node {i} on CPU {cpus[i]}" for i in range(nodes))
            note = f"{nodes_at}, Redis on CPU {cpus[nodes]}, load on CPU {rest}"
            return ClusterPlacement(
                [str(cpus[i]) for i in range(nodes)],
                str(cpus[nodes]),
                rest,
                note,
                len(cpus) - nodes - 1,
                False,
            )
        node_cpus = [str(cpus[i % len(cpus)]) for i in range(nodes)]
        nodes_at = ", ".join(f"node {i} on CPU {c}" for i, c in enumerate(node_cpus))
        note = (
            f"CROWDED: {nodes_at}; Redis and {len(cpus)} load processes unpinned on the same "
            f"{len(cpus)} CPUs (needs {nodes + 2} CPUs to separate them): the figure is a floor"
        )
        return ClusterPlacement(node_cpus, None, None, note, len(cpus), True)


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

    async def stats(self, timeout: float = 10.0) -> dict[str, Any]:
        """Ask ``benchmarks.serve`` for its counters (a ``STATS {json}`` line)."""
        self.say("stats")
        line = await self.line(timeout)
        if not line.startswith("STATS "):
            raise RuntimeError(f"{self.name} said {line!r} instead of STATS")
        return json.loads(line[6:])

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


async def start_server(
    case: Case, opts: Options, cpus: str | None, extra: tuple[str, ...] = (), name: str = ""
) -> tuple[Child, int]:
    args = ["-m", "benchmarks.serve", case.server, "--nofile", str(case.scenario.conns + 1024)]
    args += extra
    if case.server == "framework":
        args += ["--protocol", case.protocol, "--model", case.model]
        args += [
            "--logic-workers",
            str(opts.logic_workers),
            "--send-workers",
            str(opts.send_workers),
        ]
        args += ["--max-connections", str(case.scenario.conns + 1024)]
    child = await Child.spawn(name or f"server {case.label}", cpus, *args)
    line = await child.line(START_TIMEOUT)
    if not line.startswith("READY "):
        raise RuntimeError(f"{child.name} said {line!r} instead of READY")
    return child, int(line.split()[1])


def _skip_reason(case: Case) -> str | None:
    variant = VARIANTS[case.variant]
    if variant.cluster and broker.binary() is None:
        return broker.MISSING
    return None


async def run_case(case: Case, opts: Options) -> dict[str, Any]:
    """Measure one case; the returned dict is one row of the JSON report."""
    scenario = case.scenario
    variant = VARIANTS[case.variant]
    multi = ClusterPlacement.plan(variant.nodes, opts.pin) if variant.nodes > 1 else None
    placement = Placement.plan(scenario.same_core, opts.pin)
    load_cpus = multi.load_cpus if multi else placement.load_cpus
    processes = opts.processes or (multi.load_cores if multi else placement.load_cores)
    enc = encoder_for(case.server, case.protocol, opts.package)
    row: dict[str, Any] = {
        "server": case.server,
        "label": case.label,
        "protocol": case.protocol if case.server != "raw" else "raw bytes",
        "model": case.model,
        "variant": case.variant,
        "scenario": scenario.name,
        "placement": multi.note if multi else placement.note,
        "load_processes": processes,
        "conns": scenario.conns,
        "depth": scenario.depth,
    }
    if multi is not None:
        row["nodes"] = variant.nodes
        row["crowded"] = multi.crowded
    skip = _skip_reason(case)
    if skip is not None:
        row.update(skipped=skip, errors=0)
        return row
    redis: broker.Broker | None = None
    store_dir: str | None = None
    servers: list[Child] = []
    loads: list[Child] = []
    files: list[str] = []
    try:
        extra: list[str] = []
        if variant.cluster:
            redis_cpus = multi.broker_cpus if multi else placement.load_cpus
            redis = await broker.Broker(redis_cpus).start()
            extra += ["--cluster-url", redis.url]
            if not multi:
                row["placement"] += f"; Redis on CPU {redis_cpus or 'any'}"
        if variant.store == "sqlite":
            store_dir = tempfile.mkdtemp(prefix="bench-store-")
            extra += ["--store-url", f"sqlite:///{store_dir}/bench.db"]
        if case.variant:
            extra += ["--store-sync", variant.store_sync, "--limits", variant.limits]
        if variant.ws:
            extra += ["--ws"]  # the server answers READY with its WebSocket port
        if variant.metrics:
            extra += ["--metrics"]
        if variant.resume == "off":
            extra += ["--resume-window", "0"]
        node_cpus = multi.node_cpus if multi else [placement.server_cpus]
        ports: list[int] = []
        for i, cpus in enumerate(node_cpus):
            name = f"server {case.label}" + (f" node {i}" if multi else "")
            child, port = await start_server(case, opts, cpus, tuple(extra), name)
            servers.append(child)
            ports.append(port)
        server = servers[0]
        jobs = build_jobs(
            scenario,
            enc,
            ports[0],
            processes,
            opts.warmup,
            opts.duration,
            tuple(ports) if multi else (),
            arm=variant.resume == "on",
        )
        for i, job in enumerate(jobs):
            job.extra["ws"] = variant.ws
            files.append(_write_job(job))
            loads.append(
                await Child.spawn(f"load {i}", load_cpus, "-m", "benchmarks.loadgen", files[-1])
            )
        setup_timeout = START_TIMEOUT + scenario.conns / 100
        await asyncio.gather(*(c.event("ready", setup_timeout) for c in loads))
        pid = server.proc.pid
        if scenario.kind == "idle":
            row.update(await _idle(server, loads, setup_timeout, scenario.conns))
        else:
            spy = None
            if opts.profile_dir is not None and case.server == "framework" and profile.available():
                name = f"{scenario.name}-{case.model}-{case.protocol}{case.variant}.txt"
                spy = opts.profile_dir / name
            stats = servers if case.server == "framework" else []
            row.update(await _timed(pid, loads, opts, spy, stats, servers[1:], redis))
            if spy is not None and spy.exists():
                row["profile"] = profile.summarize(spy)
        if scenario.kind == "room":
            row.update(_room_check(row, scenario.conns))
            row["errors"] += row["missing"] + row["duplicates"]
        row["server_rss_mib"] = (rss_bytes(pid) or 0) / 2**20
    except Exception as exc:  # a broken server must not stop the other cases
        row["failed"] = f"{type(exc).__name__}: {exc}"
        row.setdefault("errors", 1)
    finally:
        await asyncio.gather(*(c.stop() for c in loads), return_exceptions=True)
        await asyncio.gather(*(c.stop() for c in servers), return_exceptions=True)
        if row.get("errors") or "failed" in row:
            row["stderr"] = {c.name: c.log_tail() for c in (*servers, *loads)}
            if redis is not None:
                row["stderr"]["redis"] = [redis.log_tail()]
        for c in (*servers, *loads):
            c.close_log()
        for path in files:
            os.unlink(path)
        if redis is not None:
            await redis.stop()
        if store_dir is not None:
            shutil.rmtree(store_dir, ignore_errors=True)
    return row


def _room_check(row: dict[str, Any], room_size: int) -> dict[str, Any]:
    """Every member must get each SayReq exactly once (the sender included).

    Uses the per-member, per-sender counts when the load reported them:
    ``missing`` counts copies never received, ``duplicates`` copies received
    more than once, so one cannot hide the other in a total.
    """
    said: dict[str, int] = row.pop("said", None) or {}
    heard: dict[str, list[int]] = row.pop("heard", None) or {}
    if not said or not heard:
        missing = row["says"] * room_size - row["delivered_total"]
        return {"missing": max(missing, 0), "duplicates": max(-missing, 0)}
    says = [said.get(str(i), 0) for i in range(room_size)]
    missing = duplicates = 0
    for counts in heard.values():
        for want, got in zip(says, counts, strict=True):
            if got < want:
                missing += want - got
            elif got > want:
                duplicates += got - want
    missing += sum(says) * (room_size - len(heard))  # members that never reported
    return {"missing": missing, "duplicates": duplicates}


def _write_job(job: LoadJob) -> str:
    fd, path = tempfile.mkstemp(prefix="bench-job-", suffix=".pickle")
    with os.fdopen(fd, "wb") as f:
        pickle.dump(job, f, protocol=pickle.HIGHEST_PROTOCOL)
    return path


async def _timed(
    pid: int,
    loads: list[Child],
    opts: Options,
    spy: Path | None,
    counted: list[Child] | None = None,
    others: list[Child] | None = None,
    redis: broker.Broker | None = None,
) -> dict[str, Any]:
    """Go, sample the server's CPU over the window, collect and merge the results.

    With ``spy`` set, py-spy samples the server over the window (it perturbs
    the figures a little; profile in a separate run from the one you quote).
    ``counted`` servers are asked for their counters (store, cluster) at both
    ends of the window; ``others`` are further nodes and ``redis`` the broker,
    whose CPU over the window is reported (and not counted as other work).
    """
    counted, others = counted or [], others or []
    for c in loads:
        c.say("go")
    await asyncio.sleep(opts.warmup)
    spy_proc = await profile.record(pid, opts.duration, spy) if spy is not None else None
    stats0 = await asyncio.gather(*(c.stats() for c in counted))
    cpu0, machine0 = cpu_seconds(pid), machine_cpu_seconds()
    node0 = [cpu_seconds(c.proc.pid) for c in others]
    redis0 = redis.cpu_seconds() if redis is not None else None
    await asyncio.sleep(opts.duration)
    cpu1, machine1 = cpu_seconds(pid), machine_cpu_seconds()
    node1 = [cpu_seconds(c.proc.pid) for c in others]
    redis1 = redis.cpu_seconds() if redis is not None else None
    stats1 = await asyncio.gather(*(c.stats() for c in counted))
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
    node_cpu = [
        None if a is None or b is None else (b - a) / opts.duration
        for a, b in zip(node0, node1, strict=True)
    ]
    redis_cpu = None if redis0 is None or redis1 is None else (redis1 - redis0) / opts.duration
    known = sum(c or 0.0 for c in node_cpu) + (redis_cpu or 0.0)
    other_cpu = steal = None
    if machine0 is not None and machine1 is not None and server_cpu is not None:
        busy = (machine1[0] - machine0[0]) / opts.duration
        load_s = sum(r["cpu_s"] for r in results) / window
        other_cpu = max(0.0, busy - server_cpu - known - load_s)
        steal = (machine1[1] - machine0[1]) / opts.duration
    if others and server_cpu is not None:
        node_cpu = [server_cpu, *node_cpu]
        server_cpu += sum(c or 0.0 for c in node_cpu[1:])  # every node: the cost of the service
    out: dict[str, Any] = {
        "completed": completed,
        "window_s": window,
        "msgs_per_s": completed / window,
        "latency_us": _percentiles(samples, worst),
        "errors": sum(r["errors"] for r in results),
        "error_samples": [e for r in results for e in r["error_samples"]][:5],
        "server_cpu": server_cpu,
        "msgs_per_server_cpu_s": completed / window / server_cpu if server_cpu else None,
        "other_cpu": other_cpu,
        "steal_cpu": steal,
        "machine_busy": (other_cpu or 0.0) > 0.15 or (steal or 0.0) > 0.1,
        "load_cpu": load_cpu,
        "load_saturated": any(c >= 0.9 for c in load_cpu),
    }
    if others:
        out["node_cpu"] = node_cpu
    if redis is not None:
        out["redis_cpu"] = redis_cpu
    if counted:
        out["counters"] = _counter_deltas(stats0, stats1)
    if "says" in results[0]:
        out["says"] = sum(r["says"] for r in results)
        out["delivered_total"] = sum(r["delivered_total"] for r in results)
        out["ticks_ignored"] = sum(r["ignored"] for r in results)
        if all("heard" in r for r in results):
            out["said"] = {k: v for r in results for k, v in r["said"].items()}
            out["heard"] = {k: v for r in results for k, v in r["heard"].items()}
    return out


#: Counters that are levels or maxima, not running totals: reported as read at the end.
GAUGES = frozenset({"last_batch", "max_batch", "dirty", "cached"})


def _counter_deltas(
    before: list[dict[str, Any]], after: list[dict[str, Any]]
) -> dict[str, dict[str, int]]:
    """The servers' counters over the window, summed over nodes (gauges: the largest)."""
    out: dict[str, dict[str, int]] = {}
    for b, a in zip(before, after, strict=True):
        for group, values in a.items():
            dest = out.setdefault(group, {})
            for key, value in values.items():
                if not isinstance(value, int):
                    continue
                if key in GAUGES:
                    dest[key] = max(dest.get(key, 0), value)
                else:
                    dest[key] = dest.get(key, 0) + value - b.get(group, {}).get(key, 0)
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
