"""The ``json`` baseline: the raw protocol server plus ``json.loads``/``json.dumps``.

This is the yardstick: the least a server that actually reads its messages
can cost. Same framing and write batching as ``raw``; every request is
decoded and every reply encoded, with the sample game's logic in between.
"""

from __future__ import annotations

import asyncio
import json
import struct

from .game import Game

_unpack = struct.Struct(">II").unpack_from
_loads = json.loads


class JsonProtocol(asyncio.Protocol):
    """One connection: a read buffer, the account it logged in as, its room."""

    game: Game

    def __init__(self) -> None:
        self.buf = bytearray()
        self.account: str | None = None
        self.room: str | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.game.leave(self)

    def push(self, frame: bytes) -> None:
        self.transport.write(frame)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        size = len(buf)
        pos = 0
        out: list[bytes] = []
        handle = self.game.handle
        while size - pos >= 8:
            msg_id, length = _unpack(buf, pos)
            end = pos + 8 + length
            if end > size:
                break
            reply = handle(self, msg_id, _loads(buf[pos + 8 : end]))
            if reply is not None:
                out.append(reply)
            pos = end
        del buf[:pos]
        if out:
            self.transport.write(b"".join(out))  # type: ignore[union-attr]


async def start(host: str, port: int) -> asyncio.Server:
    """Listen on ``host:port``; all connections share one game state."""
    game = Game()

    def factory() -> JsonProtocol:
        proto = JsonProtocol()
        proto.game = game
        return proto

    loop = asyncio.get_running_loop()
    return await loop.create_server(factory, host, port, backlog=4096)
