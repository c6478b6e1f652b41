"""The cluster's envelope: a small binary header in front of an unchanged TLV frame.

```
+---------+------+-----------+--------+-------------+-------------+------+
| version | kind | origin_len| origin | seq u64 BE  | epoch u64 BE| body |
| u8 = 1  | u8   | u8        | bytes  |             |             |      |
+---------+------+-----------+--------+-------------+-------------+------+
```

``origin`` is the publishing node's id, ``seq`` its per-channel sequence
number (0: not sequenced), ``epoch`` its incarnation (a new one after every
re-registration, so a receiver knows history was lost). The body of a group
broadcast is the TLV frame exactly as links send it: a receiving node writes
those bytes to its members without decoding or re-encoding them. No pickle:
anything that does not parse is junk, counted and dropped by the receiver.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

VERSION = 1
_HEAD = struct.Struct(">BBB")
_SEQ_EPOCH = struct.Struct(">QQ")
_U16 = struct.Struct(">H")
_U64 = struct.Struct(">Q")


class Kind(enum.IntEnum):
    GROUP = 1  # body: TLV frame for every member of the channel's group
    PUSH = 2  # body: key, TLV frame for the link bound to key
    KICK = 3  # body: key, new epoch, reply node: release key (a newer login won)
    RELEASED = 4  # body: key, epoch: the old owner flushed and let go
    INTEREST = 5  # body: op, node, group: a node's first member joined / last left
    ROOM = 6  # body: a room operation for the rooms of the receiving node (sgs/rooms/remote.py)
    RESUME = 7  # body: a relayed resume's operation (sgs/resume/wire.py)


class EnvelopeError(ValueError):
    """Bytes on a cluster channel that are not an envelope this node can read."""


@dataclass(frozen=True, slots=True)
class Envelope:
    kind: Kind
    origin: str
    seq: int
    epoch: int
    body: bytes


def pack(kind: Kind, origin: bytes, seq: int, epoch: int, body: bytes) -> bytes:
    """``origin`` is the node id already encoded (nodes pack many envelopes)."""
    return b"".join(
        (_HEAD.pack(VERSION, kind, len(origin)), origin, _SEQ_EPOCH.pack(seq, epoch), body)
    )


def unpack(data: bytes) -> Envelope:
    """Parse one envelope; anything malformed or of a newer version raises EnvelopeError."""
    if len(data) < _HEAD.size:
        raise EnvelopeError(f"{len(data)} bytes: shorter than an envelope header")
    version, kind, origin_len = _HEAD.unpack_from(data)
    if version != VERSION:
        raise EnvelopeError(f"envelope version {version} (this node reads {VERSION})")
    try:
        kind = Kind(kind)
    except ValueError:
        raise EnvelopeError(f"unknown envelope kind {kind}") from None
    start = _HEAD.size + origin_len
    if len(data) < start + _SEQ_EPOCH.size or origin_len == 0:
        raise EnvelopeError("truncated envelope header")
    try:
        origin = data[_HEAD.size : start].decode("ascii")
    except UnicodeDecodeError:
        raise EnvelopeError("origin is not ASCII") from None
    seq, epoch = _SEQ_EPOCH.unpack_from(data, start)
    return Envelope(kind, origin, seq, epoch, data[start + _SEQ_EPOCH.size :])


# -- bodies ------------------------------------------------------------------


def pack_key(key: str, rest: bytes = b"") -> bytes:
    raw = key.encode("utf-8")
    return _U16.pack(len(raw)) + raw + rest


def unpack_key(body: bytes) -> tuple[str, bytes]:
    if len(body) < _U16.size:
        raise EnvelopeError("body too short for a key")
    (n,) = _U16.unpack_from(body)
    end = _U16.size + n
    if len(body) < end:
        raise EnvelopeError("truncated key")
    try:
        return body[_U16.size : end].decode("utf-8"), body[end:]
    except UnicodeDecodeError:
        raise EnvelopeError("key is not UTF-8") from None


def pack_kick(key: str, epoch: int, reply_to: str) -> bytes:
    return pack_key(key, _U64.pack(epoch) + reply_to.encode("ascii"))


def unpack_kick(body: bytes) -> tuple[str, int, str]:
    key, rest = unpack_key(body)
    if len(rest) <= _U64.size:
        raise EnvelopeError("truncated kick")
    try:
        return key, _U64.unpack_from(rest)[0], rest[_U64.size :].decode("ascii")
    except UnicodeDecodeError:
        raise EnvelopeError("reply node is not ASCII") from None


def pack_released(key: str, epoch: int) -> bytes:
    return pack_key(key, _U64.pack(epoch))


def unpack_released(body: bytes) -> tuple[str, int]:
    key, rest = unpack_key(body)
    if len(rest) != _U64.size:
        raise EnvelopeError("bad released body")
    return key, _U64.unpack(rest)[0]


def pack_interest(joined: bool, node: str, group: str) -> bytes:
    return bytes((1 if joined else 0,)) + pack_key(node, group.encode("utf-8"))


def unpack_interest(body: bytes) -> tuple[bool, str, str]:
    if not body or body[0] not in (0, 1):
        raise EnvelopeError("bad interest op")
    node, rest = unpack_key(body[1:])
    try:
        return body[0] == 1, node, rest.decode("utf-8")
    except UnicodeDecodeError:
        raise EnvelopeError("group name is not UTF-8") from None
