"""``python -m benchmarks``: measure the framework against three baselines, write a report.

With no arguments this is the full run (every scenario, every
resource model with JSON, every protocol on echo throughput), a few minutes
on a 2-core machine. ``--quick`` is a one-minute sanity run; ``--scenarios``,
``--servers``, ``--models``, ``--protocols`` select; ``--duration`` and
friends scale.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from .report import render, write_results
from .runner import Case, Options, Placement, run_case
from .scenarios import PROTOCOL_SCENARIOS, SCENARIOS, Scenario
from .serve import BASELINES

MODELS = ("per_link", "shared_logic", "shared_logic_send", "shared_all")
PROTOCOLS = ("json", "protobuf", "msgpack", "bson")
RESULTS = Path(__file__).resolve().parent / "results"


def _csv(choices: tuple[str, ...]) -> Any:
    def parse(text: str) -> list[str]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        bad = [t for t in items if t not in choices and t != "default"]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {bad}; choose from {', '.join(choices)}")
        return items

    return parse


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--quick", action="store_true", help="short windows, small idle/room scale, shared_all only"
    )
    p.add_argument(
        "--scenarios",
        type=_csv((*SCENARIOS, "arena")),
        default=[*SCENARIOS, "arena"],
        help="scenarios to run (default: all); arena: players per core at tick p99 < 5 ms",
    )
    p.add_argument(
        "--servers", type=_csv((*BASELINES, "framework")), default=[*BASELINES, "framework"]
    )
    p.add_argument(
        "--models",
        type=_csv(MODELS),
        help="framework resource models (default: all; 'default' = the app's configured one)",
    )
    p.add_argument(
        "--protocols",
        type=_csv(PROTOCOLS),
        help="framework protocols (default: all; 'default' = the app's configured one)",
    )
    p.add_argument(
        "--protocol-scenarios",
        type=_csv(tuple(SCENARIOS)),
        default=list(PROTOCOL_SCENARIOS),
        help="scenarios the non-JSON protocols run (default: echo_throughput)",
    )
    p.add_argument("--duration", type=float, help="measured seconds per case (default 2, quick 1)")
    p.add_argument(
        "--warmup", type=float, help="unmeasured seconds before each window (default 0.5)"
    )
    p.add_argument(
        "--conns", type=int, help="connections for the throughput scenarios (default 50)"
    )
    p.add_argument(
        "--depth", type=int, help="pipeline depth for the throughput scenarios (default 8)"
    )
    p.add_argument("--room-members", type=int, help="room size (default 200)")
    p.add_argument("--idle-conns", type=int, help="idle connections (default 10000)")
    p.add_argument("--processes", type=int, help="load processes (default: one per load CPU)")
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run each case N times and keep the best (noise only ever slows a case down)",
    )
    p.add_argument("--logic-workers", type=int, default=4)
    p.add_argument("--send-workers", type=int, default=2)
    p.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    p.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    p.add_argument(
        "--profile",
        action="store_true",
        help="sample the framework server with py-spy during each window; top functions in the report",
    )
    p.add_argument(
        "--instructions",
        action="store_true",
        help="count instructions per message under valgrind instead of timing load"
        " (benchmarks/instructions.py); only --protocols and --out apply",
    )
    p.add_argument(
        "--arena-counts",
        help="arena: comma-separated player counts to climb (default: 500 to 4000 by 500)",
    )
    p.add_argument("--list", action="store_true", help="print the cases and exit")
    return p.parse_args(argv)


def scale(args: argparse.Namespace, scenario: Scenario) -> Scenario:
    if scenario.kind == "idle":
        return replace(scenario, conns=args.idle_conns or (1000 if args.quick else scenario.conns))
    if scenario.kind == "room":
        return replace(scenario, conns=args.room_members or (50 if args.quick else scenario.conns))
    if scenario.conns > 1:
        return scenario.scaled(args.conns, args.depth)
    return scenario


def plan(args: argparse.Namespace, framework: bool) -> list[Case]:
    models = args.models or (["shared_all"] if args.quick else list(MODELS))
    protocols = args.protocols or (["json", "msgpack"] if args.quick else list(PROTOCOLS))
    cases: list[Case] = []
    for name in args.scenarios:
        if name == "arena":  # its own ladder of processes (benchmarks/arena.py), not a case
            continue
        scenario = scale(args, SCENARIOS[name])
        if scenario.variants:
            # Framework variants side by side (cluster, store), on one protocol and,
            # unless --models says otherwise, the shared_all model: a ratio, not a sweep.
            if framework:
                vmodels = args.models or ["shared_all"]
                protocol = (args.protocols or ["json"])[0]
                cases += [
                    Case("framework", scenario, protocol, m, v)
                    for m in vmodels
                    for v in scenario.variants
                ]
            continue
        cases += [Case(b, scenario) for b in args.servers if b in BASELINES]
        if not framework:
            continue
        for protocol in protocols:
            if protocol == "json" or name in args.protocol_scenarios:
                cases += [Case("framework", scenario, protocol, m) for m in models]
        # The extra variants run once: on json and shared_all when the sweep has
        # them, else on the first protocol and model asked for (the app's own).
        protocol = "json" if "json" in protocols else protocols[0]
        model = "shared_all" if "shared_all" in models else models[0]
        cases += [Case("framework", scenario, protocol, model, v) for v in scenario.also]
    return cases


def find_framework(args: argparse.Namespace) -> str | None:
    if "framework" not in args.servers:
        return None
    from .discover import ensure_importable, find_package

    ensure_importable()
    package = find_package()
    __import__(f"{package}.app")  # fail here, clearly, rather than in every case
    return package


def _profile_dir(args: argparse.Namespace) -> Path | None:
    if not args.profile:
        return None
    from . import profile

    if not profile.available():
        print(
            "--profile: py-spy not found (pip install py-spy); running without it", file=sys.stderr
        )
        return None
    return args.out / ("profile-" + time.strftime("%Y%m%d-%H%M%S"))


def resolve_defaults(args: argparse.Namespace, package: str) -> None:
    """Replace ``default`` in --models/--protocols with the app's own settings defaults."""
    if "default" not in (args.models or []) + (args.protocols or []):
        return
    settings = __import__(f"{package}.settings", fromlist=["Settings"]).Settings()
    model = getattr(settings.resource_model, "value", settings.resource_model)
    if args.models:
        args.models = list(dict.fromkeys(model if m == "default" else m for m in args.models))
    if args.protocols:
        args.protocols = list(
            dict.fromkeys(settings.protocol if p == "default" else p for p in args.protocols)
        )


async def run_all(cases: list[Case], opts: Options, repeat: int) -> list[dict[str, Any]]:
    """Run every case ``repeat`` times, round-robin, so a burst of noise hits each case once."""
    tries: list[list[dict[str, Any]]] = [[] for _ in cases]
    for r in range(repeat):
        for i, case in enumerate(cases):
            t0 = time.perf_counter()
            tag = f"[{i + 1}/{len(cases)}]" + (f" #{r + 1}" if repeat > 1 else "")
            print(
                f"{tag} {case.scenario.name:22} {case.label:38}",
                end=" ",
                file=sys.stderr,
                flush=True,
            )
            tries[i].append(await run_case(case, opts))
            print(
                _summary(tries[i][-1]),
                f"({time.perf_counter() - t0:.1f}s)",
                file=sys.stderr,
                flush=True,
            )
    return [best_of(t) for t in tries]


def best_of(tries: list[dict[str, Any]]) -> dict[str, Any]:
    """The best try (highest msgs/s, lowest p50 for latency, lowest KiB/conn for idle).

    A try with errors or a failure is never "best" over a clean one: a
    wrong answer must show in the report, so any error is carried over.
    """
    bad = [t for t in tries if t.get("errors") or "failed" in t or "skipped" in t]
    if bad:
        return bad[0]
    scenario = tries[0]["scenario"]
    if scenario == "idle":
        best = min(tries, key=lambda t: t["kib_per_conn"] or 0.0)
    elif scenario.startswith("echo_latency"):
        best = min(tries, key=lambda t: t["latency_us"]["p50"] or float("inf"))
    else:
        best = max(tries, key=lambda t: t["msgs_per_s"])
    if len(tries) > 1:
        key = "kib_per_conn" if scenario == "idle" else "msgs_per_s"
        best = {**best, "repeats": [t.get(key) for t in tries]}
    return best


def _summary(row: dict[str, Any]) -> str:
    if "skipped" in row:
        return f"skipped: {row['skipped']}"
    if "failed" in row:
        return f"FAILED {row['failed']}"
    if "kib_per_conn" in row:
        return f"{row['answered']}/{row['connected']} answered, {row['kib_per_conn']:.2f} KiB/conn"
    flag = " LOAD SATURATED" if row["load_saturated"] else ""
    if row.get("redis_cpu") is not None:
        flag += f" redis {row['redis_cpu']:.0%}"
    return f"{row['msgs_per_s']:>12,.0f}/s p50 {row['latency_us']['p50'] or 0:8.1f}us errors {row['errors']}{flag}"


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.instructions:
        from . import instructions

        protocols = ",".join(args.protocols or ("json", "protobuf", "msgpack"))
        return instructions.main(["--protocols", protocols, "--out", str(args.out)])
    package = find_framework(args)
    if package is not None:
        resolve_defaults(args, package)
    cases = plan(args, package is not None)
    if args.list:
        for case in cases:
            print(f"{case.scenario.name:24} {case.label}")
        return 0
    opts = Options(
        warmup=args.warmup if args.warmup is not None else (0.3 if args.quick else 0.5),
        duration=args.duration or (1.0 if args.quick else 2.0),
        processes=args.processes,
        pin=not args.no_pin,
        logic_workers=args.logic_workers,
        send_workers=args.send_workers,
        package=package,
        profile_dir=_profile_dir(args),
    )
    started = time.time()
    rows = asyncio.run(run_all(cases, opts, max(1, args.repeat)))
    arena_results = None
    if "arena" in args.scenarios and package is not None:
        from . import arena

        counts = tuple(int(c) for c in args.arena_counts.split(",")) if args.arena_counts else None
        arena_results = asyncio.run(arena.run(quick=args.quick, pin=not args.no_pin, counts=counts))
    meta = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "elapsed_s": time.time() - started,
        "package": package,
        "warmup_s": opts.warmup,
        "duration_s": opts.duration,
        "placement": Placement.plan(False, opts.pin).note,
        "placement_same_core": Placement.plan(True, opts.pin).note,
        "logic_workers": opts.logic_workers,
        "send_workers": opts.send_workers,
        "repeat": max(1, args.repeat),
    }
    if arena_results is not None:
        meta["arena"] = arena_results
    try:
        report = render(rows, meta)
        if arena_results is not None:
            from .arena import markdown as arena_markdown

            report["markdown"] += "\n" + arena_markdown(arena_results)
    except Exception as exc:  # keep the measurements even if the report has a bug
        report = {"markdown": f"report failed: {exc!r}\n", "targets": [], "machine": {}}
        raise
    finally:
        paths = write_results(args.out, rows, meta, report)
    print(report["markdown"])
    print(f"\nwritten: {', '.join(str(p) for p in paths)}")
    return 1 if any(r.get("errors") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
