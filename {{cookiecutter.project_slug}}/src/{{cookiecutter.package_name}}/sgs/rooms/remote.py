"""Room operations between nodes: what a member's node and a room's owner tell each other.

Carried in the cluster's ROOM envelopes (``Cluster.room_send``), on the
sending node's ordered bus, so each node's operations arrive in the order it
sent them: a member's messages reach the owner in order, and the owner's
``Joined`` answer precedes the broadcasts it sends after it. The body is a
msgspec msgpack tagged union, decoded into these types only (never pickle):
anything else is junk, counted and dropped.

member's node -> owner: Join (a seat to use), Msg (a member's message frame), Leave.
owner -> member's node: Joined (RoomJoined or an Error code), Send (a frame for
one member), Closed (the member is out: RoomClosed with the reason).
"""

from __future__ import annotations

import msgspec


class Join(msgspec.Struct, tag="join", array_like=True):
    req: int
    room_id: str
    seat_id: str
    member_id: str
    name: str
    options: str


class Joined(msgspec.Struct, tag="joined", array_like=True):
    req: int
    code: str  # "" on success, else the Error code
    message: str
    frame: bytes  # the encoded RoomJoined on success
    room_type: str  # on success


class Msg(msgspec.Struct, tag="msg", array_like=True):
    room_id: str
    member_id: str
    frame: bytes


class Leave(msgspec.Struct, tag="leave", array_like=True):
    room_id: str
    member_id: str
    consented: bool


class Send(msgspec.Struct, tag="send", array_like=True):
    member_id: str
    frame: bytes


class Fail(msgspec.Struct, tag="fail", array_like=True):
    """An ``Error`` for a member on another node: answered (and counted) by its node's outcomes."""

    member_id: str
    code: str
    message: str
    msg_id: int


class Closed(msgspec.Struct, tag="closed", array_like=True):
    room_id: str
    member_id: str
    reason: str


Op = Join | Joined | Msg | Leave | Send | Fail | Closed
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Op).decode


def pack(op: Op) -> bytes:
    return _encode(op)


def unpack(body: bytes) -> Op:
    """Raises ``msgspec.DecodeError`` / ``ValidationError`` on anything else."""
    return _decode(body)


def link_id_of(member_id: str) -> int | None:
    """The link id on its own node of a member id ``<node>.<link id>``."""
    _, _, tail = member_id.rpartition(".")
    return int(tail) if tail.isdigit() else None
