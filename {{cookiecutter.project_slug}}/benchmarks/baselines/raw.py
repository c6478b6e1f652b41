"""The ``raw`` baseline: parse TLV, echo the value under id+1, never decode.

Rooms are the one exception to "echo": a JoinRoomReq's value bytes name the
room, and a SayReq's value is forwarded as a RoomMessage (id 14) to every
member, still without decoding, so the fan-out scenario has a ceiling too.
Replies produced by one read are written with one ``transport.write``.
"""

from __future__ import annotations

import asyncio
import struct

_HEADER = struct.Struct(">II")
_unpack = _HEADER.unpack_from
_pack = _HEADER.pack
_JOIN, _SAY, _ROOM_MESSAGE = 11, 13, 14

_rooms: dict[bytes, set[RawProtocol]] = {}


class RawProtocol(asyncio.Protocol):
    """One connection; state is a read buffer and the room it joined."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.room: set[RawProtocol] | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.room is not None:
            self.room.discard(self)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        size = len(buf)
        pos = 0
        out: list[bytes] = []
        while size - pos >= 8:
            msg_id, length = _unpack(buf, pos)
            end = pos + 8 + length
            if end > size:
                break
            if msg_id == _SAY:
                self._say(bytes(buf[pos + 8 : end]), out)
            else:
                if msg_id == _JOIN:
                    self._join(bytes(buf[pos + 8 : end]))
                out.append(_pack(msg_id + 1, length))
                out.append(buf[pos + 8 : end])
            pos = end
        del buf[:pos]
        if out:
            self.transport.write(b"".join(out))  # type: ignore[union-attr]

    def _join(self, name: bytes) -> None:
        if self.room is not None:
            self.room.discard(self)
        self.room = _rooms.setdefault(name, set())
        self.room.add(self)

    def _say(self, value: bytes, out: list[bytes]) -> None:
        if self.room is None:
            return
        msg = _pack(_ROOM_MESSAGE, len(value)) + value
        for member in self.room:
            if member is self:
                out.append(msg)  # keeps our own copy in order with our other replies
            else:
                member.transport.write(msg)  # type: ignore[union-attr]


async def start(host: str, port: int) -> asyncio.Server:
    """Listen on ``host:port`` with the raw protocol."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(RawProtocol, host, port, backlog=4096)
