"""Key bindings in Redis: who holds a login, checked against the broker, not trusted.

A KICK on pub/sub is at most once, so it only makes a hand-over fast; the
truth is the binding hash and the key's epoch in Redis. :meth:`Ownership.validate`
asks Redis about every binding this node holds (one script call per batch),
periodically and whenever the node could have missed something (a
reconnect, a lost lease, a pause): a binding a newer login took is lost
(the bindings layer answers its link ``Error(replaced)`` and evicts its
state), a binding only the reaper or a broker restart removed is taken back.

A bind whose answer does not come in time may still run later. It is not
a clean local bind: the login is refused (``cluster_unavailable``) and a
withdrawal of that link's bind is queued behind it on the ordered bus, so
the binding never outlives the refused login, and the account goes back to
the holder on another node the late bind displaced (that node may hold
changes it has not flushed: a later login must kick it, not find the key
free and load an older stored state).

Drivable alone: a :class:`~.bus.CommandBus`, the node's :class:`~..bindings.Bindings`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .base import BindRefused, BindResult, EpochClock
from .bus import ClusterDown, CommandBus, text
from .keys import Keys

if TYPE_CHECKING:
    from ..bindings import Bindings
    from ..link import Link

log = logging.getLogger("sgs.cluster")

#: Bindings checked per script call: one call stays short even with many players.
VALIDATE_BATCH = 500


class Ownership:
    """This node's bindings as Redis knows them (see the module docstring)."""

    def __init__(
        self,
        *,
        keys: Keys,
        node_id: str,
        incarnation: str,
        bus: CommandBus,
        clock: EpochClock,
        bindings: Callable[[], Bindings],
        lease_ms: int,
        epoch_ttl_ms: int,
        run_id: Callable[[], str | None],
        run_seen: Callable[[str], bool],
    ) -> None:
        self.keys = keys
        self.node_id = node_id
        self.incarnation = incarnation
        self.bus = bus
        self.clock = clock
        self.bindings = bindings
        self.lease_ms = lease_ms
        self.epoch_ttl_ms = epoch_ttl_ms
        self.run_id = run_id  # the broker run this node knows
        # Called with the run id BIND saw; True when it shows the broker lost
        # its data since this node last looked (the node then recovers).
        self.run_seen = run_seen
        self.recovering = False  # bindings gone with the broker's data may be taken back
        # (key, link name) of binds refused after an unknown outcome: their
        # unbind is sent again at the next validation (it may have been lost too).
        self._orphans: set[tuple[str, str]] = set()
        self.validations = 0
        self.lost = 0
        self.refused = 0

    def link_name(self, link: Link) -> str:
        return f"{self.incarnation}.{link.id}"

    def _bind_keys(self, key: str) -> list[str]:
        k = self.keys
        return [k.bind(key), k.epoch(key), k.node_binds(self.node_id)]

    # -- binding ---------------------------------------------------------------

    async def bind(self, key: str, link: Link) -> BindResult:
        """BIND through the ordered bus; :class:`BindRefused` when it is not confirmed."""
        epoch, prev, alive, age_ms, run, was_link, was_epoch = await self._bind_once(key, link)
        # A holder on this node proves nothing here: another login of the key
        # on this node, made in this window and waiting too, never held the
        # state. A holder on another node is asked by KICK, which flushes it.
        unheld = prev is None or prev == self.node_id
        if self.run_seen(run) or (unheld and self.recovering):
            # The broker lost its data: the account's owner from before may not
            # have re-registered yet. Wait for the rest of one lease after the
            # broker's run began (every live node re-registers within it, and
            # writes back what it holds), then bind again to find that owner.
            wait = max(0.0, (self.lease_ms - age_ms) / 1000)
            if unheld and wait > 0:
                log.info("binding %r waits %.1fs: the broker lost its data", key, wait)
                await asyncio.sleep(wait)
                bound = await self._bind_once(key, link)
                epoch, prev, alive, age_ms, run, was_link, was_epoch = bound
        return BindResult(epoch, prev, alive, was_link, was_epoch)

    async def _bind_once(
        self, key: str, link: Link
    ) -> tuple[int, str | None, bool, int, str, str | None, int | None]:
        keys = [*self._bind_keys(key), self.keys.run]
        args = [self.keys.prefix, self.node_id, self.link_name(link), key, _new_id()]
        try:
            reply = await self.bus.call(lambda pipe: self.bus.eval(pipe, "BIND", keys, args))
        except ClusterDown as exc:
            # Unknown is not no: the BIND may still run. Queue a withdrawal of
            # this link's bind behind it: a late BIND never leaves a binding
            # behind, and never leaves the key free while the holder it
            # displaced (alive, perhaps with unflushed changes) still has it.
            self.refused += 1
            name = self.link_name(link)
            self._orphans.add((key, name))
            self._withdraw(key, name)
            raise BindRefused(str(exc)) from exc
        epoch, prev, alive, age_ms, run, was_link, was_epoch = reply
        self.clock.last = max(self.clock.last, int(epoch))
        return (
            int(epoch),
            text(prev) if prev else None,
            bool(alive),
            int(age_ms),
            text(run),
            text(was_link) if was_link else None,
            int(was_epoch) if was_epoch else None,
        )

    def give_back(self, key: str, link: Link, result: BindResult) -> None:
        """Return ``key`` to the holder this bind replaced, while the binding is still ours."""
        if result.previous_node is None or result.previous_link is None:
            self.unbind(key, link, result.epoch)
            return
        k = self.keys
        keys = [k.bind(key), k.node_binds(self.node_id), k.node_binds(result.previous_node)]
        args = [
            self.node_id,
            self.link_name(link),
            str(result.epoch),
            result.previous_node,
            result.previous_link,
            str(result.previous_epoch),
            key,
        ]
        self.bus.enqueue(lambda pipe: self.bus.eval(pipe, "RESTORE", keys, args))

    def unbind(self, key: str, link: Link, epoch: int) -> None:
        """Drop the binding if it is still this link's at ``epoch``."""
        keys = self._bind_keys(key)
        args = [self.node_id, self.link_name(link), str(epoch), key, str(self.epoch_ttl_ms)]
        self.bus.enqueue(lambda pipe: self.bus.eval(pipe, "UNBIND", keys, args))

    def _withdraw(self, key: str, link_name: str) -> bool:
        """Take back a refused login's bind, if it ran: the key returns to whom it displaced."""
        keys = self._bind_keys(key)
        args = [self.keys.prefix, self.node_id, link_name, key, str(self.epoch_ttl_ms)]
        return self.bus.enqueue(lambda pipe: self.bus.eval(pipe, "WITHDRAW", keys, args))

    def _clear_orphans(self, held: dict[str, str]) -> None:
        """Withdraw again what refused binds may have left (not what a later login holds)."""
        for key, link_name in list(self._orphans):
            if held.get(key) == link_name or self._withdraw(key, link_name):
                self._orphans.discard((key, link_name))

    async def locate(self, key: str) -> str | None:
        bk = self.keys.bind(key)
        try:
            node = await self.bus.call(lambda pipe: (pipe.hget(bk, "node"), 1)[1])
        except ClusterDown:
            return None
        return text(node) if node else None

    # -- checking what this node holds ----------------------------------------

    async def validate(self) -> int:
        """Ask Redis about every binding held here; the links of lost ones are told. Lost count."""
        bindings = self.bindings()
        held = [(p.key, p.link, p.epoch) for p in bindings.players.values()]
        if self._orphans:
            self._clear_orphans({key: self.link_name(link) for key, link, _ in held})
        lost = 0
        start = 0
        retried = False
        while True:
            chunk = held[start : start + VALIDATE_BATCH]
            keys = [self.keys.run, self.keys.node_binds(self.node_id)]
            args: list[Any] = [
                self.node_id,
                "1" if self.recovering else "0",
                self.run_id() or "",
                _new_id(),
            ]
            for key, link, epoch in chunk:
                keys += [self.keys.bind(key), self.keys.epoch(key)]
                args += [key, self.link_name(link), str(epoch)]
            reply = await self.bus.call(
                lambda pipe, k=keys, a=args: self.bus.eval(pipe, "VALIDATE", k, a)
            )
            if reply and int(reply[0]) == -1:
                # The broker's run changed under us: it lost its data. Recover
                # (write back, allow re-taking bindings), then check again.
                self.run_seen(text(reply[1]))
                if retried:
                    raise ClusterDown("the broker's run keeps changing")
                retried = True
                continue
            for (key, _link, epoch), kept in zip(chunk, reply, strict=True):
                if not int(kept):
                    lost += 1
                    log.warning(
                        "%s: %r is bound elsewhere now (missed while cut off): replacing its link",
                        self.node_id,
                        key,
                    )
                    bindings.lost(key, epoch)
            start += VALIDATE_BATCH
            if start >= len(held):
                break
        self.validations += 1
        self.lost += lost
        self.recovering = False
        return lost


def _new_id() -> str:
    return os.urandom(8).hex()
