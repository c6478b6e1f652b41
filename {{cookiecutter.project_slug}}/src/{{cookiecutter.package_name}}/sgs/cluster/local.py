"""The single-node cluster: no broker, nothing to mirror, everything answers at once."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import BindResult, Cluster, EpochClock

if TYPE_CHECKING:
    from ..framework import Server
    from ..group import Group
    from ..link import Link


class LocalCluster(Cluster):
    """What a server with no ``cluster_url`` runs: exactly the single-process behaviour."""

    def __init__(self, server: Server) -> None:
        super().__init__(server)
        self.clock = EpochClock()
        self._counters: dict[str, int] = {}

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    @property
    def is_local(self) -> bool:
        return True

    @property
    def connected(self) -> bool:
        return True

    @property
    def lease_held(self) -> bool:
        return True

    async def nodes(self) -> list[str]:
        return [self.node_id]

    def group_joined(self, group: Group, link: Link, label: str) -> None:
        return None

    def group_left(self, group: Group, link: Link) -> None:
        return None

    def group_publish(self, group: Group, frame: bytes) -> None:
        return None

    async def group_size(self, group: Group) -> int:
        return len(group)

    async def group_labels(self, group: Group) -> list[str]:
        return group.local_labels()

    async def bind(self, key: str, link: Link) -> BindResult:
        return BindResult(self.clock.next())

    def unbind(self, key: str, link: Link, epoch: int) -> None:
        return None

    async def kick(self, key: str, epoch: int, node: str, timeout: float) -> bool:
        return True

    async def locate(self, key: str) -> str | None:
        return None

    def send_to(self, node: str, key: str, frame: bytes) -> bool:
        return False

    async def lead(self, name: str) -> int | None:
        number = self._counters.get(name, 0) + 1
        self._counters[name] = number
        return number
