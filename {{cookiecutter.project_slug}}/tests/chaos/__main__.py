"""``python -m chaos --seeds N`` (``make chaos SEEDS=N``): run N schedules, print the summary.

Each seed runs twice by default: with ``store_sync = "always"`` and with
write-behind (``--store-sync`` picks one).

Exit code 0 when no checker found a violation, 1 otherwise. Each schedule's
history (JSON) and node logs are kept under ``--dir`` for a post-mortem.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

import uvloop

from .nemesis import KINDS
from .run import Config, Result, run, summary

#: The store_sync modes a seed runs under: durable before the reply, and write-behind.
SYNCS = ("always", "write_behind")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chaos", description=__doc__)
    parser.add_argument("--seeds", type=int, default=5, help="schedules to run (default 5)")
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--faults", type=int, default=6, help="faults per schedule (default 6)")
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated fault kinds")
    parser.add_argument("--dir", type=Path, default=None, help="where histories and logs go")
    parser.add_argument("--store-sync", choices=("both", *SYNCS), default="both",
                        help="store_sync of the nodes; both (default) runs each seed twice")  # fmt: skip
    args = parser.parse_args(argv)
    kinds = tuple(k for k in args.kinds.split(",") if k)
    unknown = set(kinds) - set(KINDS)
    if unknown or not 1 <= args.seeds <= 1000 or not 1 <= args.faults <= 100:
        parser.error(f"bad arguments (unknown kinds: {sorted(unknown)}; kinds are {KINDS})")
    base = args.dir or Path(tempfile.mkdtemp(prefix="chaos-"))
    results: list[Result] = []
    syncs = SYNCS if args.store_sync == "both" else (args.store_sync,)
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for sync in syncs:
            config = Config(seed=seed, workdir=base / f"seed-{seed}-{sync}", faults=args.faults,
                            kinds=kinds, store_sync=sync)  # fmt: skip
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                result = runner.run(run(config))
            results.append(result)
            bad = sum(len(v) for v in result.violations.values())
            print(f"seed {seed} ({sync}): {', '.join(result.faults)}: "
                  f"{result.counts['requests']} requests, {bad} violations, "
                  f"{result.elapsed:.0f}s", flush=True)  # fmt: skip
    print(summary(results))
    print(f"histories and node logs: {base}")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
