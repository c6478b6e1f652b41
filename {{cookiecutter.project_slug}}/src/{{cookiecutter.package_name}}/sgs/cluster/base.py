"""The cluster contract: what a server needs from its peers, whoever carries it.

A :class:`Cluster` mirrors this node's local facts (group members, key
bindings) where other nodes can see them, carries frames to members and
bound keys on other nodes, and hands out fencing epochs and leadership. The
local implementation (:class:`~.local.LocalCluster`) needs nothing and is the
default; :class:`~.redis.RedisCluster` is the real one. Handlers never talk to
either directly: groups, :class:`~..bindings.Bindings` and ``server.cluster``
are the API, and they behave the same on one node or many.

Every method that a handler may await answers within ``cluster_timeout`` and
degrades to this node's own view when the broker cannot answer in time.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..framework import Server
    from ..group import Group
    from ..link import Link
    from .stall import StallGuard


@dataclass
class ClusterStats:
    """Counters of the cross-node traffic (all zero on a single node)."""

    published: int = 0  # envelopes handed to the broker
    received: int = 0  # envelopes read from the broker
    dropped: int = 0  # envelopes not delivered: queue full, broker down, publish failed
    gaps: int = 0  # sequence jumps and origin epoch changes seen by this node
    junk: int = 0  # unreadable bytes on a cluster channel
    reconnects: int = 0  # broker connections re-established
    reaped: int = 0  # dead nodes whose bindings and memberships this node removed
    fenced: int = 0  # times this node found its own lease gone and re-registered
    kicks: int = 0  # logins on this node that replaced a link on another node
    broker_resets: int = 0  # times this node found the broker's data lost (a new run id)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class BindRefused(Exception):
    """The broker did not confirm a bind in time: the login is refused, never served locally.

    The bind may still run later; the cluster queues an unbind behind it, so
    the refused login leaves no binding behind.
    """


@dataclass(frozen=True, slots=True)
class BindResult:
    """What a cluster-wide binding returned.

    ``previous_node`` is the node that held the key before (None when nobody
    did, or when the broker could not be asked); ``previous_alive`` says
    whether that node still holds its lease, so it can hand the key over.
    """

    epoch: int
    previous_node: str | None = None
    previous_alive: bool = False
    previous_link: str | None = None  # how the previous holder named its link
    previous_epoch: int | None = None


class EpochClock:
    """Fencing epochs: strictly increasing, and larger than any from an earlier run.

    Microseconds since the epoch, bumped by one when two are asked for in the
    same microsecond. A restarted process (or a restarted broker) therefore
    never hands out an epoch older than the ones already stored.
    """

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last = 0

    def next(self) -> int:
        now = time.time_ns() // 1000
        self.last = now if now > self.last else self.last + 1
        return self.last


class Cluster(ABC):
    """One node's view of the cluster. See the module docstring for the contract."""

    node_id: str
    stats: ClusterStats
    #: The "ownership verified until" deadline the request path checks (None: one node).
    stall: StallGuard | None = None

    def __init__(self, server: Server) -> None:
        self.server = server
        self.node_id = server.settings.node_id
        self.stats = ClusterStats()

    # -- lifecycle ----------------------------------------------------------

    @abstractmethod
    async def start(self) -> None:
        """Register this node; never fails the start because a broker is down."""

    @abstractmethod
    async def stop(self) -> None:
        """Deregister: drop this node's bindings, memberships and lease."""

    # -- health -------------------------------------------------------------

    @property
    def is_local(self) -> bool:
        """True for the single-node implementation."""
        return False

    @property
    @abstractmethod
    def connected(self) -> bool:
        """The broker answers (always True on a single node)."""

    @property
    @abstractmethod
    def lease_held(self) -> bool:
        """This node's lease is current (always True on a single node)."""

    @property
    def ready(self) -> tuple[bool, str]:
        """(ready for new players, why): the lease is held and nothing is missed."""
        if self.lease_held:
            return True, "ready"
        return False, "the node's cluster lease is lost"

    @abstractmethod
    async def nodes(self) -> list[str]:
        """Ids of the nodes holding a lease now (this one alone on a single node)."""

    def health(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "connected": self.connected,
            "lease_held": self.lease_held,
            **self.stats.as_dict(),
        }

    # -- groups -------------------------------------------------------------

    @abstractmethod
    def group_joined(self, group: Group, link: Link, label: str) -> None:
        """``link`` joined ``group`` on this node; mirror it (never waits)."""

    @abstractmethod
    def group_left(self, group: Group, link: Link) -> None:
        """``link`` left ``group`` on this node; mirror it (never waits)."""

    @abstractmethod
    def group_publish(self, group: Group, frame: bytes) -> None:
        """Carry ``frame`` to the group's members on other nodes (if any)."""

    @abstractmethod
    async def group_size(self, group: Group) -> int:
        """Members on every node."""

    @abstractmethod
    async def group_labels(self, group: Group) -> list[str]:
        """The labels members joined with, on every node (unordered)."""

    # -- key bindings (logins) ---------------------------------------------

    @abstractmethod
    async def bind(self, key: str, link: Link) -> BindResult:
        """Make this node's ``link`` the one holder of ``key``; a fresh fencing epoch."""

    @abstractmethod
    def unbind(self, key: str, link: Link, epoch: int) -> None:
        """Drop the binding if it is still ``link``'s (never waits)."""

    def give_back(self, key: str, link: Link, result: BindResult) -> None:
        """A refused login returns ``key`` to the holder its bind replaced (if still its)."""
        self.unbind(key, link, result.epoch)

    @abstractmethod
    async def kick(self, key: str, epoch: int, node: str, timeout: float) -> bool:
        """Ask ``node`` to release ``key`` (a newer login won); True once it did."""

    @abstractmethod
    async def locate(self, key: str) -> str | None:
        """The node holding ``key``, or None."""

    @abstractmethod
    def send_to(self, node: str, key: str, frame: bytes) -> bool:
        """Carry ``frame`` to the link bound to ``key`` on ``node``."""

    # -- rooms (sgs/rooms) ----------------------------------------------------

    #: Called with (origin node, body) for each room operation another node sent here.
    on_room: Any = None

    def room_send(self, node: str, body: bytes) -> bool:
        """Carry a room operation to ``node``'s rooms, in this node's order (no broker: False)."""
        return False

    # -- relayed resumes (sgs/resume/relay.py) ---------------------------------

    #: Called with (origin node, body) for each resume operation another node sent here.
    on_resume: Any = None

    def resume_send(self, node: str, body: bytes) -> bool:
        """Carry a resume operation to ``node``, in this node's order (no broker: False)."""
        return False

    # -- once per cluster --------------------------------------------------

    @abstractmethod
    async def lead(self, name: str) -> int | None:
        """Hold (or take) the lead for ``name`` and return its next number.

        None when another live node leads. The numbers are shared: when the
        leader dies and another node takes over, they continue, never diverge.
        """
