"""Groups (rooms): a set of links that receive the same pushes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from .message import Message

if TYPE_CHECKING:
    from .framework import Server
    from .link import Link


class Group:
    """Broadcast encodes the message once and queues the same bytes on each link.

    A link leaves all its groups when it closes, so a group never holds a dead
    link for longer than the close takes.
    """

    __slots__ = ("name", "server", "_members")

    def __init__(self, name: str, server: Server) -> None:
        self.name = name
        self.server = server
        self._members: dict[int, Link] = {}  # insertion ordered: join order

    def add(self, link: Link) -> None:
        if link.is_closed:
            return
        if not self._members:
            self.server._adopt_group(self)
        self._members[link.id] = link
        link.groups.add(self.name)

    def remove(self, link: Link) -> None:
        if link.id not in self._members:
            raise KeyError(f"link {link.id} is not in group {self.name!r}")
        self.discard(link)

    def discard(self, link: Link) -> None:
        self._members.pop(link.id, None)
        link.groups.discard(self.name)
        if not self._members:
            self.server._drop_group(self)

    @property
    def members(self) -> list[Link]:
        return list(self._members.values())

    def __contains__(self, link: object) -> bool:
        return getattr(link, "id", None) in self._members

    def __iter__(self) -> Iterator[Link]:
        return iter(list(self._members.values()))

    def __len__(self) -> int:
        return len(self._members)

    def broadcast(self, msg: Message, exclude: Link | None = None) -> int:
        """Queue ``msg`` on every member but ``exclude``; returns how many got it."""
        frame = self.server.codec.encode_frame(msg)
        sent = 0
        for link in list(self._members.values()):
            if link is not exclude and link.write_frame(frame):
                sent += 1
        return sent
