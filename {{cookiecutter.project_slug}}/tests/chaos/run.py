"""One schedule, start to finish: start the cluster, play, inject faults, check.

The run is bounded: a fixed number of faults, each followed by a settle
time and a look at the rooms, then a final login of every account. Every
process it starts (redis-server, the nodes, a supervisor) is killed in a
``finally``, whatever happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from redis_server import RedisServer

from .broker import Broker
from .checkers import INVARIANTS, Bounds, Violation, check, counts
from .history import OK, History
from .nemesis import KINDS, Nemesis, schedule
from .procs import Node, Supervised
from .proxy import Proxy
from .workload import (
    Player,
    Session,
    open_session,
    probe_rooms,
    quiesce,
    readyz,
    watch_readiness,
)

ROOMS = ("x", "y")


@dataclass
class Config:
    """One schedule's parameters; ``lease`` 3 s and default ``cluster_timeout`` as in the regressions."""

    seed: int
    workdir: Path
    faults: int = 4
    kinds: tuple[str, ...] = KINDS
    nodes: int = 2
    accounts: int = 4
    lease: float = 3.0
    timeout: float = 2.0
    store_sync: str = "always"  # or "write_behind": then a crash may take its last flush_interval
    flush: float = 1.0  # store_flush_interval (the default)
    request_timeout: float = 8.0

    @property
    def bounds(self) -> Bounds:
        return Bounds(self.lease, self.timeout,
                      flush=None if self.store_sync == "always" else self.flush)  # fmt: skip


@dataclass
class Result:
    seed: int
    history: History
    violations: dict[str, list[Violation]]
    counts: dict[str, int]
    elapsed: float
    faults: list[str] = field(default_factory=list)
    store_sync: str = "always"

    @property
    def ok(self) -> bool:
        return not any(self.violations.values())


async def wait_ready(nodes: list[Node], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    for node in nodes:
        while await readyz(node) is not True:
            if time.monotonic() > deadline:
                raise RuntimeError(f"node {node.name} never ready:\n{node.text()[-3000:]}")
            await asyncio.sleep(0.1)


async def run(config: Config) -> Result:
    """Run one seeded schedule and check its history."""
    started = time.monotonic()
    config.workdir.mkdir(parents=True, exist_ok=True)
    plan = schedule(config.seed, config.faults, config.kinds, config.nodes)
    history = History()
    rng = random.Random(config.seed)
    redis = RedisServer(config.workdir / "redis").start()
    proxies: list[Proxy] = []
    nodes: list[Node] = []
    supervised: Supervised | None = None
    stop = asyncio.Event()
    go = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    players: list[Player] = []
    try:
        for i in range(config.nodes):
            proxy = await Proxy(redis.port).start()
            proxies.append(proxy)
            nodes.append(
                Node(
                    chr(ord("a") + i),
                    config.workdir,
                    cluster_url=proxy.url,
                    cluster_lease=str(config.lease),
                    cluster_timeout=str(config.timeout),
                    store_sync=config.store_sync,
                    store_flush_interval=str(config.flush),
                )
            )
        await asyncio.gather(*(node.start() for node in nodes))
        if any(f.kind == "hang_worker" for f in plan.faults):
            supervised = Supervised(
                "w", config.workdir, cluster_url=redis.url, cluster_lease=str(config.lease)
            )
            await supervised.wait_serving()
        await wait_ready(nodes)
        tasks.append(asyncio.ensure_future(watch_readiness(nodes, history, stop)))
        accounts = [f"acct{config.seed}-{i}" for i in range(config.accounts)]
        for n, account in enumerate(accounts * 2):
            players.append(
                Player(
                    f"p{n}",
                    account,
                    nodes,
                    ROOMS,
                    history,
                    random.Random(rng.random()),
                    config.request_timeout,
                    sticky=n >= len(accounts),
                )  # fmt: skip
            )
        go.set()
        tasks += [asyncio.ensure_future(p.run(go, stop)) for p in players]
        nemesis = Nemesis(history, Broker(redis), nodes, proxies, config.lease, config.timeout,
                          supervised, random.Random(rng.random()))  # fmt: skip
        for fault in plan.faults:
            await asyncio.sleep(fault.gap)
            await nemesis.inject(fault)
            # Players go on while the cluster recovers; then everyone stops and we look.
            await asyncio.sleep(config.lease + config.timeout)
            await look(config, nodes, players, history, go)
            go.set()
        await asyncio.sleep(1.0)
        await quiesce(players, go, config.request_timeout + 1.0)
        for player in players:
            await player.close()
        await final_logins(config, nodes, accounts, history, rng)
        await look(config, nodes, [], history, go)
    finally:
        stop.set()
        go.set()
        if tasks:
            await asyncio.wait(tasks, timeout=config.request_timeout + 5.0)
        for task in tasks:
            task.cancel()
        for player in players:
            await player.close()
        for node in nodes:
            node.terminate()
        if supervised is not None:
            supervised.terminate()
        for proxy in proxies:
            await proxy.stop()
        redis.stop()
    history.dump(config.workdir / "history.json")
    violations = check(history, config.bounds)
    return Result(config.seed, history, violations, counts(history), time.monotonic() - started,
                  [f.kind for f in plan.faults], config.store_sync)  # fmt: skip


async def look(
    config: Config, nodes: list[Node], players: list[Player], history: History, go: asyncio.Event
) -> None:
    """Stop the players, let closes reach the servers, then probe every room on every node."""
    await quiesce(players, go, config.request_timeout + 1.0)
    await asyncio.sleep(0.5)

    def expected(room: str) -> list[str]:
        return [a for p in players if (a := p.in_room(room)) is not None]

    # Within one lease plus one reaper cycle (about a second), plus slack.
    deadline = history.now() + config.lease + 1.0 + 2.0
    await probe_rooms(nodes, ROOMS, expected, history, deadline, config.request_timeout)


async def final_logins(
    config: Config, nodes: list[Node], accounts: list[str], history: History, rng: random.Random
) -> None:
    """Log every account in once more, on a random node: the counter it sees is what survived."""
    await asyncio.sleep(1.0)  # the players' links were just closed: their states are handed off
    for account in accounts:
        node = rng.choice([n for n in nodes if n.alive])
        s: Session | None = await open_session(node, history, "final", config.request_timeout)
        if s is None:
            history.event("final_login", None, node=node.name, account=account)
            continue
        s.account = account
        op = await s.request("final_login", lambda s=s: s.client.login(s.account))
        if op.outcome == OK:
            op.value = op.value.counter
        with contextlib.suppress(Exception):
            await s.close()


def summary(results: list[Result]) -> str:
    """What ``make chaos`` prints."""
    total = {"faults": 0, "requests": 0, "acked_writes": 0}
    per: dict[str, int] = dict.fromkeys(INVARIANTS, 0)
    for r in results:
        for k in total:
            total[k] += r.counts[k]
        for k, found in r.violations.items():
            per[k] += len(found)
    lines = [
        f"schedules run      {len(results)}",
        f"faults injected    {total['faults']}",
        f"requests           {total['requests']}",
        f"acknowledged writes {total['acked_writes']}",
        "violations per invariant:",
        *(f"  {k:<18} {v}" for k, v in per.items()),
    ]
    for r in results:
        for found in r.violations.values():
            lines += [f"  seed {r.seed} ({r.store_sync}): {v.invariant}: {v.detail}"
                      for v in found[:5]]  # fmt: skip
    return "\n".join(lines)
