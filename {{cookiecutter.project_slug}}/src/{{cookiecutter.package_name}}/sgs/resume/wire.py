"""Resume operations between nodes: a connection's node and the node holding its player.

Carried in the cluster's RESUME envelopes (``Cluster.resume_send``) on the
sending node's ordered bus, so what one node sends another arrives in the
order it was sent: a relayed connection's frames reach the holder in order,
and the holder's frames (``ResumeResp``, the replay, then what follows) reach
the connection in the order the holder numbered them. The body is a msgspec
msgpack tagged union, decoded into these types only (never pickle): anything
else is junk, counted and dropped.

connection's node -> holder: Resume (a token to resume on a relayed
connection), In (frames the connection received), Gone (the connection ended).
holder -> connection's node: Accepted, Refused (an Error code the connection's
node answers), Out (bytes to write, numbered per relay so a lost one is seen),
Kick (a newer resume took over: ``Error(replaced)``), Close (close the connection).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

MsgId = Annotated[int, msgspec.Meta(ge=0, lt=2**32)]


class Resume(msgspec.Struct, tag="resume", array_like=True):
    relay: str
    token: str
    last_seq: int


class Accepted(msgspec.Struct, tag="ok", array_like=True):
    relay: str


class Refused(msgspec.Struct, tag="no", array_like=True):
    relay: str
    code: str
    message: str


class In(msgspec.Struct, tag="in", array_like=True):
    relay: str
    frames: list[tuple[MsgId, bytes]]


class Out(msgspec.Struct, tag="out", array_like=True):
    relay: str
    n: int  # 1, 2, ... per relay: a gap means an Out was lost on the way
    data: bytes


class Kick(msgspec.Struct, tag="kick", array_like=True):
    relay: str
    message: str


class Close(msgspec.Struct, tag="close", array_like=True):
    relay: str
    reason: str


class Gone(msgspec.Struct, tag="gone", array_like=True):
    relay: str


Op = Resume | Accepted | Refused | In | Out | Kick | Close | Gone
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Op).decode


def pack(op: Op) -> bytes:
    return _encode(op)


def unpack(body: bytes) -> Op:
    """Raises ``msgspec.DecodeError`` / ``ValidationError`` on anything else."""
    return _decode(body)
