"""The ``streams`` baseline: the server a Python developer writes by hand.

``asyncio.start_server``, ``readexactly`` for header and value, ``json``,
and ``write`` + ``drain`` after every reply; run on the default event loop
(the caller decides the loop; the benchmark runs this one without uvloop).
"""

from __future__ import annotations

import asyncio
import json
import struct

from .game import Game

_HEADER = struct.Struct(">II")


class StreamConn:
    """The per-connection state the game logic reads and writes."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.account: str | None = None
        self.room: str | None = None

    def push(self, frame: bytes) -> None:
        self.writer.write(frame)


async def start(host: str, port: int) -> asyncio.Server:
    """Listen on ``host:port``; one coroutine per connection."""
    game = Game()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = StreamConn(writer)
        try:
            while True:
                header = await reader.readexactly(8)
                msg_id, length = _HEADER.unpack(header)
                value = await reader.readexactly(length)
                reply = game.handle(conn, msg_id, json.loads(value))
                if reply is not None:
                    writer.write(reply)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            game.leave(conn)
            writer.close()

    return await asyncio.start_server(serve, host, port, backlog=4096)
