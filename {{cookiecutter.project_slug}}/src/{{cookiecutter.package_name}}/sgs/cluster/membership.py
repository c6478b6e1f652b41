"""Group membership across nodes: mirror local members, know who needs a broadcast.

Every join and leave goes through the ordered command bus, after the node's
subscription to the group's channel is confirmed (a node announces members
only once it can hear the group). :meth:`Membership.resync` replaces the
node's part of every group it has or had members in with its whole local
truth, removals and groups now empty included, through the same bus: after
an outage, a pause, a full queue or a reap, no ghost member stays behind.

Drivable alone: a :class:`~.bus.CommandBus`, the node's groups (a mapping
name -> Group) and a ``want(channel, wanted)`` callable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from . import envelope as env
from .bus import CommandBus, Item, text
from .keys import Keys

if TYPE_CHECKING:
    from ..group import Group
    from ..link import Link


class Membership:
    """This node's side of every group (see the module docstring)."""

    def __init__(
        self,
        *,
        keys: Keys,
        node_id: str,
        incarnation: str,
        bus: CommandBus,
        groups: Mapping[str, Group],
        want: Callable[[str, bool], None],
        node_epoch: Callable[[], int],
        timeout: float,
    ) -> None:
        self.keys = keys
        self.node_id = node_id
        self.incarnation = incarnation
        self.bus = bus
        self.groups = groups
        self.want = want
        self.node_epoch = node_epoch
        self.timeout = timeout
        self._origin = node_id.encode("ascii")
        # Other nodes with members, per group: a broadcast is published only
        # when this is non-empty.
        self.interest: dict[str, set[str]] = {}
        # A group channel whose SUBSCRIBE Redis has not confirmed yet, and the
        # membership changes held back until it has.
        self._subscribing: dict[str, asyncio.Future[None]] = {}
        self._held: dict[str, list[Item]] = {}
        self.stale = False  # a change could not be queued: resync soon

    def member(self, link: Link) -> str:
        return f"{self.node_id}/{self.incarnation}.{link.id}"

    def _member_id(self, link_id: int) -> str:
        return f"{self.node_id}/{self.incarnation}.{link_id}"

    def interest_envelope(self, joined: bool, group: str, node: str | None = None) -> bytes:
        body = env.pack_interest(joined, node or self.node_id, group)
        return env.pack(env.Kind.INTEREST, self._origin, 0, self.node_epoch(), body)

    def _keys(self, group: str) -> list[str]:
        k = self.keys
        return [k.group_members(group), k.group_nodes(group), k.groups, k.node_groups(self.node_id)]

    # -- local changes -------------------------------------------------------

    def joined(self, group: Group, link: Link, label: str) -> None:
        name = group.name
        channel = self.keys.group_channel(name)
        if len(group) == 1:
            if channel not in self._subscribing:
                self._subscribing[channel] = asyncio.get_running_loop().create_future()
            self.want(channel, True)
        keys = self._keys(name)
        args = [
            self.node_id,
            name,
            self.member(link),
            label,
            self.interest_envelope(True, name),
            self.keys.ctl,
        ]
        self._change(channel, lambda pipe: self.bus.eval(pipe, "JOIN", keys, args))

    def left(self, group: Group, link: Link) -> None:
        name = group.name
        channel = self.keys.group_channel(name)
        if len(group) == 0:
            self.want(channel, False)
        keys = self._keys(name)
        args = [
            self.node_id,
            name,
            self.member(link),
            self.interest_envelope(False, name),
            self.keys.ctl,
        ]
        self._change(channel, lambda pipe: self.bus.eval(pipe, "LEAVE", keys, args))

    def _change(self, channel: str, add: Callable[[Any], int]) -> None:
        if channel in self._subscribing:
            self._held.setdefault(channel, []).append((add, None, 0))
        elif not self.bus.enqueue(add):
            self.stale = True

    def subscribed_to(self, channel: str) -> None:
        """Redis confirmed a SUBSCRIBE: release the membership changes held for it."""
        fut = self._subscribing.pop(channel, None)
        if fut is not None and not fut.done():
            fut.set_result(None)
        for add, _, _ in self._held.pop(channel, ()):
            if not self.bus.enqueue(add):
                self.stale = True

    def unheld(self) -> None:
        """The subscriber lost its connection: held changes are covered by the next resync."""
        for fut in self._subscribing.values():
            if not fut.done():
                fut.set_result(None)
        self._subscribing.clear()
        if self._held:
            self._held.clear()
            self.stale = True

    async def joined_known(self, group: Group, listening: bool) -> None:
        """Wait (bounded) until this node's membership of ``group`` reached the bus."""
        fut = self._subscribing.get(self.keys.group_channel(group.name))
        if fut is not None and self.bus.up and listening:
            await asyncio.wait_for(asyncio.shield(fut), self.timeout)

    # -- the whole truth -----------------------------------------------------

    async def resync(self) -> int:
        """Replace this node's members of every group with its local truth; groups written."""
        self.stale = False
        remote = await self.bus.call(
            lambda pipe: (pipe.smembers(self.keys.node_groups(self.node_id)), 1)[1]
        )
        names = {text(g) for g in remote or ()}

        def add(pipe: Any) -> int:
            # Built when the pipeline is, so it is the truth at that point of
            # the ordered stream: earlier changes ran before, later ones after.
            todo = names | {name for name, g in self.groups.items() if len(g)}
            for name in sorted(todo):
                group = self.groups.get(name)
                args: list[Any] = [
                    self.node_id,
                    name,
                    self.interest_envelope(True, name),
                    self.interest_envelope(False, name),
                    self.keys.ctl,
                ]
                if group is not None:
                    for link_id, label in group.labelled():
                        args += [self._member_id(link_id), label]
                self.bus.eval(pipe, "RESYNC_GROUP", self._keys(name), args)
            return len(todo)

        await self.bus.call(add)
        return len(names)

    async def load_interest(self) -> None:
        """Read which other nodes have members in which groups (after a reconnect)."""
        k = self.keys
        names = [text(g) for g in await self.bus.call(lambda pipe: (pipe.smembers(k.groups), 1)[1])]
        interest: dict[str, set[str]] = {}
        if names:

            def add(pipe: Any) -> int:
                for name in names:
                    pipe.hkeys(k.group_nodes(name))
                return len(names)

            replies = await self.bus.call(add)
            if len(names) == 1:
                replies = [replies]
            for name, nodes in zip(names, replies, strict=True):
                others = {text(n) for n in nodes or ()} - {self.node_id}
                if others:
                    interest[name] = others
        self.interest = interest

    def on_interest(self, joined: bool, node: str, group: str) -> None:
        if node == self.node_id:
            return
        if joined:
            self.interest.setdefault(group, set()).add(node)
        else:
            self.forget(group, node)

    def forget(self, group: str, node: str) -> None:
        nodes = self.interest.get(group)
        if nodes is not None:
            nodes.discard(node)
            if not nodes:
                del self.interest[group]

    def forget_node(self, node: str) -> None:
        for group in list(self.interest):
            self.forget(group, node)

    # -- cluster-wide answers ------------------------------------------------

    def size_command(self, group: Group) -> Callable[[Any], int]:
        key = self.keys.group_members(group.name)
        return lambda pipe: (pipe.hlen(key), 1)[1]

    def labels_command(self, group: Group) -> Callable[[Any], int]:
        key = self.keys.group_members(group.name)
        return lambda pipe: (pipe.hvals(key), 1)[1]
