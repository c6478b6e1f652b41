"""Groups (rooms): a set of links that receive the same pushes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from .message import Message

if TYPE_CHECKING:
    from .cluster import Cluster
    from .framework import Server
    from .link import Link


class GroupTable:
    """One node's groups by name: a group enters at its first member, leaves at its last.

    ``remote`` is the cluster while it has other nodes to tell (None on one
    node): groups mirror joins, leaves and broadcasts to it.
    """

    __slots__ = ("by_name", "remote")

    def __init__(self) -> None:
        self.by_name: dict[str, Group] = {}
        self.remote: Cluster | None = None

    def get(self, name: str) -> Group | None:
        return self.by_name.get(name)

    def adopt(self, group: Group) -> None:
        self.by_name.setdefault(group.name, group)

    def drop(self, group: Group) -> None:
        if self.by_name.get(group.name) is group:
            del self.by_name[group.name]


class Group:
    """Broadcast encodes the message once and queues the same bytes on each link.

    A link leaves all its groups when it closes, so a group never holds a dead
    link for longer than the close takes.

    In a cluster the group spans nodes: ``add``/``discard`` are mirrored to the
    broker in the background, ``broadcast`` writes to the local members first
    (never waiting for the broker) and then hands the same frame to the
    cluster, which publishes it only when another node has members. Iteration,
    ``len`` and ``members`` are this node's members; ``await size()`` and
    ``await labels()`` count and list every node's.
    """

    __slots__ = ("name", "server", "table", "_members", "_labels")

    def __init__(self, name: str, server: Server) -> None:
        self.name = name
        self.server = server
        self.table = server.group_table
        self._members: dict[int, Link] = {}  # insertion ordered: join order
        self._labels: dict[int, str] = {}

    def add(self, link: Link, label: str | None = None) -> None:
        """Add ``link``; ``label`` (an account id, say) is what ``labels()`` lists for it."""
        if link.is_closed:
            return
        if not self._members:
            self.table.adopt(self)
        new = link.id not in self._members
        self._members[link.id] = link
        text = label if label is not None else str(link.id)
        self._labels[link.id] = text
        link.groups.add(self.name)
        remote = self.table.remote
        if new and remote is not None:
            remote.group_joined(self, link, text)

    def remove(self, link: Link) -> None:
        if link.id not in self._members:
            raise KeyError(f"link {link.id} is not in group {self.name!r}")
        self.discard(link)

    def discard(self, link: Link) -> None:
        was = self._members.pop(link.id, None)
        self._labels.pop(link.id, None)
        link.groups.discard(self.name)
        if was is not None:
            remote = self.table.remote
            if remote is not None:
                remote.group_left(self, link)
        if not self._members:
            self.table.drop(self)

    @property
    def members(self) -> list[Link]:
        return list(self._members.values())

    def __contains__(self, link: object) -> bool:
        return getattr(link, "id", None) in self._members

    def __iter__(self) -> Iterator[Link]:
        return iter(list(self._members.values()))

    def __len__(self) -> int:
        return len(self._members)

    def local_labels(self) -> list[str]:
        """Labels of this node's members, in join order."""
        return list(self._labels.values())

    def labelled(self) -> list[tuple[int, str]]:
        """(link id, label) of this node's members, in join order (a cluster resync)."""
        return list(self._labels.items())

    async def size(self) -> int:
        """Members on every node of the cluster (this node's alone without one)."""
        return await self.server.cluster.group_size(self)

    async def labels(self) -> list[str]:
        """Labels of the members on every node (unordered; sort them to show them)."""
        return await self.server.cluster.group_labels(self)

    def broadcast(self, msg: Message, exclude: Link | None = None) -> int:
        """Queue ``msg`` on every member but ``exclude``; returns how many local links got it.

        Members on other nodes get the same frame through the cluster, at most
        once and in this node's order; that delivery is not counted here.
        """
        frame = self.server.codec.encode_frame(msg)
        sent = self.deliver(frame, exclude)
        remote = self.table.remote
        if remote is not None:
            remote.group_publish(self, frame)
        return sent

    def deliver(self, frame: bytes, exclude: Link | None = None) -> int:
        """Write an encoded frame to every local member but ``exclude``.

        What ``broadcast`` does locally, and what the cluster calls with a
        frame that arrived from another node.
        """
        sent = 0
        for link in list(self._members.values()):
            if link is not exclude and link.write_frame(frame):
                sent += 1
        return sent
