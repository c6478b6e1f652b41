"""A WebSocket peer for tests (picows client), and a free-port helper.

The peer records everything the server sends: binary messages split into TLV
frames, the close code, the disconnect. It can send anything, including what
a well-behaved client never would (text, partial frames, huge messages).
"""

from __future__ import annotations

import asyncio
from typing import Any

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from {{ cookiecutter.package_name }}.sgs.connector import (
    FrameDecoder,
)


class WsPeer(WSListener):
    def __init__(self) -> None:
        self.transport: WSTransport | None = None
        self.messages: asyncio.Queue[list[tuple[int, bytes]]] = asyncio.Queue()
        self.close_code: WSCloseCode | None = None
        self.disconnected = asyncio.Event()
        self.binary_messages = 0

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is WSMsgType.BINARY:
            self.binary_messages += 1
            decoder = FrameDecoder(16 * 1024 * 1024)
            frames = decoder.feed(frame.get_payload_as_bytes())
            assert decoder.pending == 0, "the server sent a message with a partial frame"
            self.messages.put_nowait(frames)
        elif frame.msg_type is WSMsgType.CLOSE:
            self.close_code = frame.get_close_code()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.disconnected.set()

    def send(self, data: bytes, kind: WSMsgType = WSMsgType.BINARY) -> None:
        assert self.transport is not None
        self.transport.send(kind, data)

    async def frames(self, count: int, timeout: float = 5.0) -> list[tuple[int, bytes]]:
        """The next ``count`` frames, however the server grouped them into messages."""
        out: list[tuple[int, bytes]] = []
        while len(out) < count:
            out += await asyncio.wait_for(self.messages.get(), timeout)
        return out

    async def closed(self, timeout: float = 5.0) -> WSCloseCode | None:
        await asyncio.wait_for(self.disconnected.wait(), timeout)
        return self.close_code


async def ws_peer(port: int, path: str = "/", **kwargs: Any) -> WsPeer:
    _, peer = await ws_connect(WsPeer, f"ws://127.0.0.1:{port}{path}", **kwargs)
    return peer
