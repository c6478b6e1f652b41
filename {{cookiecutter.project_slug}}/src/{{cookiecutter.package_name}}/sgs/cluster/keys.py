"""The whole Redis key layout of the cluster, named in one place.

Every key and channel the cluster touches is built here, and every Lua
script receives the keys it reads or writes directly as ``KEYS`` built by
these methods (see :mod:`.scripts`). Scripts that walk keys only known inside
Redis (a dead node's groups, a group's members) also get the prefix, and
build those names with the same shapes as this module::

    P:run               hash id, born          the broker's run: a new one means its data was lost
    P:node:<id>         string, TTL = lease    the node's lease (refreshed ~1/s): its incarnation
    P:nodes             set                    every registered node (the reaper walks it)
    P:nodegroups:<id>   set                    groups where the node has members
    P:nodebinds:<id>    set                    keys the node holds
    P:bind:<key>        hash node, link, epoch who holds a login
    P:epoch:<key>       string                 the key's newest fencing epoch (expires once unbound)
    P:groups            set                    groups with members on any node
    P:gnodes:<group>    hash node -> count     which nodes need a group's messages
    P:gmembers:<group>  hash node/link -> label every member, cluster-wide
    P:lead:<name>       string, TTL = lease    which node leads ``name`` (RoomTick)
    P:seq:<name>        counter                the numbers the leaders hand out
    P:reaper            string, TTL = lease    the one node reaping dead nodes
    P:room:<id>         hash                   a listed room: type clients max metadata locked private owner
    P:rseats:<id>       hash seat -> expiry ms its reserved seats (the broker's clock)
    P:rooms:<type>      zset id -> order       the listing of a room type, oldest first
    P:noderooms:<id>    set                    rooms the node owns (the reaper drops them)
    P:rclaim:<type:filters> string, TTL        the one caller creating a room for those filters
    P:roomseq           counter                creation order of rooms

Channels: ``P:group:<group>`` (broadcasts), ``P:to:<node>`` (pushes, kicks,
hand-over answers), ``P:ctl`` (interest: a node's first member joined a
group or its last left).

A link is named ``<incarnation>.<link id>`` in bindings and members: a node
restarted with the same ``node_id`` within a lease never matches the links
of its previous incarnation.
"""

from __future__ import annotations


class Keys:
    """The key and channel names under one ``cluster_prefix``."""

    __slots__ = ("ctl", "groups", "nodes", "prefix", "reaper", "run")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.run = f"{prefix}:run"
        self.nodes = f"{prefix}:nodes"
        self.groups = f"{prefix}:groups"
        self.reaper = f"{prefix}:reaper"
        self.ctl = f"{prefix}:ctl"

    def lease(self, node: str) -> str:
        return f"{self.prefix}:node:{node}"

    def node_groups(self, node: str) -> str:
        return f"{self.prefix}:nodegroups:{node}"

    def node_binds(self, node: str) -> str:
        return f"{self.prefix}:nodebinds:{node}"

    def bind(self, key: str) -> str:
        return f"{self.prefix}:bind:{key}"

    def epoch(self, key: str) -> str:
        return f"{self.prefix}:epoch:{key}"

    def group_nodes(self, group: str) -> str:
        return f"{self.prefix}:gnodes:{group}"

    def group_members(self, group: str) -> str:
        return f"{self.prefix}:gmembers:{group}"

    def room(self, room_id: str) -> str:
        return f"{self.prefix}:room:{room_id}"

    def room_seats(self, room_id: str) -> str:
        return f"{self.prefix}:rseats:{room_id}"

    def rooms_of(self, room_type: str) -> str:
        return f"{self.prefix}:rooms:{room_type}"

    def node_rooms(self, node: str) -> str:
        return f"{self.prefix}:noderooms:{node}"

    def room_claim(self, claim: str) -> str:
        return f"{self.prefix}:rclaim:{claim}"

    @property
    def room_seq(self) -> str:
        return f"{self.prefix}:roomseq"

    def lead(self, name: str) -> str:
        return f"{self.prefix}:lead:{name}"

    def seq(self, name: str) -> str:
        return f"{self.prefix}:seq:{name}"

    # -- channels -----------------------------------------------------------

    def group_channel(self, group: str) -> str:
        return f"{self.prefix}:group:{group}"

    def to(self, node: str) -> str:
        return f"{self.prefix}:to:{node}"

    @property
    def group_channel_prefix(self) -> str:
        return f"{self.prefix}:group:"
