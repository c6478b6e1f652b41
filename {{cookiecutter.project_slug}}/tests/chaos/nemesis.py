"""The nemesis: faults from a seeded random schedule, each recorded as a ``fault`` op.

A fault op is invoked when the fault starts and completes when it is healed
(a node resumed or restarted, the broker answering again, a proxy forwarding
again); its ``value`` names the fault, the node it hit and its length, so the
checkers know which windows to excuse and which to examine. Durations are
chosen against the cluster's own clocks: shorter and longer than
``cluster_timeout`` and than ``cluster_lease``.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field

from .broker import Broker
from .history import OK, History
from .procs import Node, Supervised, process_gone
from .proxy import Proxy

#: Every fault the nemesis knows, in the order a short schedule tries them.
KINDS = (
    "lost_kick",  # CLIENT KILL TYPE pubsub
    "pause_node_long",  # SIGSTOP past the lease
    "broker_pause_long",  # CLIENT PAUSE past the lease
    "broker_restart",  # SHUTDOWN NOSAVE + restart on the same port
    "blackhole",  # proxy stops forwarding open connections
    "deaf_subscriber",  # proxy stops forwarding the pub/sub connection only
    "kill_node",  # SIGKILL + restart on the same port
    "pause_node_short",  # SIGSTOP within the lease
    "broker_pause_short",  # CLIENT PAUSE shorter than cluster_timeout
    "broker_pause_mid",  # CLIENT PAUSE between cluster_timeout and the lease
    "kill_normal",  # CLIENT KILL TYPE normal
    "blackhole_short",
    "hang_worker",  # SIGSTOP one worker of serve --workers 2
)

#: Times lost_kick cuts the subscribers, 0.1-0.4 s apart (about 4 s in all).
KICK_CUTS = 16
#: Seconds the nemesis watches a hung worker for its replacement.
HANG_WAIT = 15.0


@dataclass
class Fault:
    kind: str
    target: int  # index of the node it hits (where it hits one)
    gap: float  # seconds of undisturbed workload before it


@dataclass
class Schedule:
    seed: int
    faults: list[Fault] = field(default_factory=list)


def schedule(seed: int, count: int, kinds: Sequence[str] = KINDS, nodes: int = 2) -> Schedule:
    """``count`` faults drawn from ``kinds`` by ``seed``; every kind once before any repeats."""
    rng = random.Random(seed)
    pool: list[str] = []
    faults = []
    for _ in range(count):
        if not pool:
            pool = list(kinds)
            rng.shuffle(pool)
        faults.append(Fault(pool.pop(), rng.randrange(nodes), rng.uniform(0.5, 2.0)))
    return Schedule(seed, faults)


@dataclass
class Nemesis:
    """Injects one fault at a time into ``nodes``, the ``broker`` and the ``proxies``."""

    history: History
    broker: Broker
    nodes: Sequence[Node]
    proxies: Sequence[Proxy]
    lease: float
    timeout: float
    workers: Supervised | None = None
    rng: random.Random = field(default_factory=random.Random)

    async def inject(self, fault: Fault) -> None:
        node = self.nodes[fault.target]
        op = self.history.invoke("fault", node=node.name)
        value = await getattr(self, f"_{fault.kind}")(node, self.proxies[fault.target])
        self.history.complete(op, OK, {"kind": fault.kind, **value})

    async def _pause_node(self, node: Node, seconds: float) -> dict[str, object]:
        node.pause()
        await asyncio.sleep(seconds)
        node.resume()
        return {"seconds": seconds, "cuts": [node.name]}

    async def _pause_node_short(self, node: Node, proxy: Proxy) -> dict[str, object]:
        return await self._pause_node(node, self.lease * 0.5)

    async def _pause_node_long(self, node: Node, proxy: Proxy) -> dict[str, object]:
        return await self._pause_node(node, self.lease + 3.0)

    async def _broker_pause(self, seconds: float) -> dict[str, object]:
        await self.broker.pause(seconds)
        await asyncio.sleep(seconds)
        return {"seconds": seconds, "cuts": [n.name for n in self.nodes]}

    async def _broker_pause_short(self, node: Node, proxy: Proxy) -> dict[str, object]:
        return await self._broker_pause(self.timeout * 0.5)

    async def _broker_pause_mid(self, node: Node, proxy: Proxy) -> dict[str, object]:
        return await self._broker_pause((self.timeout + self.lease) / 2)

    async def _broker_pause_long(self, node: Node, proxy: Proxy) -> dict[str, object]:
        return await self._broker_pause(self.lease + 2.0)

    async def _lost_kick(self, node: Node, proxy: Proxy) -> dict[str, object]:
        """Cut every subscriber a few times in a row, as Redis does to a slow one.

        Each cut opens a window (until the node resubscribes) in which a KICK
        published for a login elsewhere reaches nobody; several cuts while the
        players keep logging in make such a login likely.
        """
        cut = 0
        for _ in range(KICK_CUTS):
            cut += await self.broker.kill_clients("pubsub")
            await asyncio.sleep(self.rng.uniform(0.1, 0.4))
        return {"connections": cut}

    async def _kill_normal(self, node: Node, proxy: Proxy) -> dict[str, object]:
        cut = await self.broker.kill_clients("normal")
        return {"connections": cut}

    async def _broker_restart(self, node: Node, proxy: Proxy) -> dict[str, object]:
        await self.broker.restart_empty()
        return {"restart": True}

    async def _blackhole_for(
        self, node: Node, proxy: Proxy, seconds: float, subscribers_only: bool = False
    ) -> dict[str, object]:
        proxy.blackhole(subscribers_only)
        await asyncio.sleep(seconds)
        proxy.heal()
        return {"seconds": seconds, "cuts": [node.name], "blackhole": True,
                "subscribers_only": subscribers_only}  # fmt: skip

    async def _deaf_subscriber(self, node: Node, proxy: Proxy) -> dict[str, object]:
        """Only the node's pub/sub connection goes silent (half-open); commands still flow."""
        return await self._blackhole_for(node, proxy, self.lease + 4.0, subscribers_only=True)

    async def _blackhole(self, node: Node, proxy: Proxy) -> dict[str, object]:
        return await self._blackhole_for(node, proxy, self.lease + 4.0)

    async def _blackhole_short(self, node: Node, proxy: Proxy) -> dict[str, object]:
        return await self._blackhole_for(node, proxy, self.timeout * 0.75)

    async def _kill_node(self, node: Node, proxy: Proxy) -> dict[str, object]:
        node.kill()
        await asyncio.sleep(1.0)
        await node.start()
        return {"killed": node.name}

    async def _hang_worker(self, node: Node, proxy: Proxy) -> dict[str, object]:
        """SIGSTOP one worker's pid: its loop stops, its socket and its process stay."""
        sup = self.workers
        if sup is None:
            return {"skipped": "no supervised node"}
        before = sup.workers()
        index = min(before)
        pid = before[index]
        os.kill(pid, signal.SIGSTOP)
        start = asyncio.get_running_loop().time()
        limit = start + HANG_WAIT
        replaced = None
        while asyncio.get_running_loop().time() < limit:
            now = sup.workers()
            if process_gone(pid) and now.get(index, pid) != pid:
                replaced = asyncio.get_running_loop().time() - start
                break
            await asyncio.sleep(0.2)
        if replaced is None and not process_gone(pid):
            os.kill(pid, signal.SIGCONT)  # undo the fault the supervisor missed
        return {"worker": index, "pid": pid, "replaced_after": replaced,
                "waited": HANG_WAIT}  # fmt: skip
