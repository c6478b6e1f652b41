"""The lease keeper and reaper: this node's liveness, the broker's run, dead nodes.

About once a ``heartbeat`` the keeper refreshes the node's lease (``SET XX``,
so an expired lease is noticed, never silently re-created) and reads the
broker's run id. A lease found gone means this node was paused or cut off
past ``cluster_lease`` and may have been reaped; a run id that changed means
the broker lost its data. Either way the node re-registers everything it
holds (see ``RedisCluster._register``). One node at a time, under a lock
with a TTL, removes the bindings and memberships of nodes whose lease
expired.

Drivable alone: a :class:`~.bus.CommandBus` on a real Redis.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

from .bus import CommandBus, text
from .keys import Keys

log = logging.getLogger("sgs.cluster")


class LeaseKeeper:
    """One node's lease, the broker's run id, and the reaper (see the module docstring)."""

    def __init__(
        self,
        *,
        keys: Keys,
        node_id: str,
        incarnation: str,
        bus: CommandBus,
        lease_ms: int,
        epoch_ttl_ms: int,
        on_reaped: Callable[[str, list[str]], None],
    ) -> None:
        self.keys = keys
        self.node_id = node_id
        self.incarnation = incarnation
        self.bus = bus
        self.lease_ms = lease_ms
        self.epoch_ttl_ms = epoch_ttl_ms
        self.on_reaped = on_reaped

    def _info(self, epoch: int) -> str:
        return json.dumps({"epoch": epoch, "incarnation": self.incarnation, "at": time.time()})

    async def take(self, epoch: int, run_id: str) -> str:
        """Take the lease (register) and read the broker's run id (started as ``run_id`` if none)."""
        pipe = self.bus.client.pipeline(transaction=False)
        pipe.set(self.keys.lease(self.node_id), self._info(epoch), px=self.lease_ms)
        pipe.sadd(self.keys.nodes, self.node_id)
        self.bus.eval(pipe, "RUN", [self.keys.run], [run_id])
        _, _, run = await pipe.execute()
        return text(run)

    async def refresh(self, epoch: int) -> tuple[bool, str | None]:
        """Refresh the lease: (still held, the broker's run id or None when it has none)."""
        pipe = self.bus.client.pipeline(transaction=False)
        pipe.set(self.keys.lease(self.node_id), self._info(epoch), px=self.lease_ms, xx=True)
        pipe.hget(self.keys.run, "id")
        held, run = await pipe.execute()
        return bool(held), text(run) if run else None

    async def reap_if_leader(self) -> None:
        """Reap dead nodes if this node holds (or takes) the reaper lock."""
        if await self.bus.run(
            "REAPER_LOCK", [self.keys.reaper], [self.node_id, str(self.lease_ms)]
        ):
            await self.reap_dead()

    async def reap_dead(self) -> None:
        client = self.bus.client
        nodes = [text(n) for n in await client.smembers(self.keys.nodes)]
        others = [n for n in nodes if n != self.node_id]
        if not others:
            return
        pipe = client.pipeline(transaction=False)
        for node in others:
            pipe.exists(self.keys.lease(node))
        for node, alive in zip(others, await pipe.execute(), strict=True):
            if not alive:
                await self.reap(node, force=False)

    async def reap(self, node: str, force: bool) -> None:
        """Remove ``node``'s bindings and memberships (``force``: even with a live lease)."""
        k = self.keys
        keys = [k.lease(node), k.nodes, k.node_groups(node), k.node_binds(node), k.groups]
        args = [k.prefix, node, "1" if force else "0", str(self.epoch_ttl_ms)]
        result = await self.bus.run("REAP", keys, args)
        if not result:
            return
        removed, groups = int(result[0]), [text(g) for g in result[1]]
        if node != self.node_id:
            log.warning(
                "reaped node %s: its lease expired (%d bindings, %d groups)",
                node,
                removed,
                len(groups),
            )
        self.on_reaped(node, groups)
