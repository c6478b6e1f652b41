"""TLV framing and the message ids the benchmark speaks, with no framework import.

The load generator and the baseline servers must not depend on the framework
under test: they frame bytes themselves, so a framework bug cannot hide in a
shared helper. Ids are the generated game's public catalogue (the table in README.md).
"""

from __future__ import annotations

import json
import struct
from typing import Any

HEADER = struct.Struct(">II")
HEADER_SIZE = HEADER.size

LOGIN_REQ, LOGIN_RESP = 1, 2
BUSINESS_REQ, BUSINESS_RESP = 3, 4
PING_REQ, PONG_RESP = 7, 8
ECHO_REQ, ECHO_RESP = 9, 10
JOIN_REQ, JOIN_RESP = 11, 12
SAY_REQ, ROOM_MESSAGE = 13, 14
ROOM_TICK = 17
ERROR = 99


def frame(msg_id: int, value: bytes) -> bytes:
    """One TLV frame: id and length as big-endian u32, then the value."""
    return HEADER.pack(msg_id, len(value)) + value


def json_value(obj: Any) -> bytes:
    """Compact JSON, the bytes a baseline sends (same shape the framework's codec emits)."""
    return json.dumps(obj, separators=(",", ":")).encode()


def split_frames(data: bytes) -> list[tuple[int, bytes]]:
    """Every complete frame in ``data`` (for tests and setup code, not hot loops)."""
    out: list[tuple[int, bytes]] = []
    pos = 0
    while len(data) - pos >= HEADER_SIZE:
        msg_id, length = HEADER.unpack_from(data, pos)
        end = pos + HEADER_SIZE + length
        if end > len(data):
            break
        out.append((msg_id, bytes(data[pos + HEADER_SIZE : end])))
        pos = end
    return out
