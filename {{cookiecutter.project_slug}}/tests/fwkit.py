"""Messages, handlers and raw-socket helpers shared by the framework tests.

They live in their own catalogue so the framework is tested apart from the
sample game's messages.
"""

from __future__ import annotations

import asyncio
import socket
import struct

from {{ cookiecutter.package_name }}.sgs import (
    Catalog,
    Context,
    HandlerError,
    Message,
    Router,
)
from {{ cookiecutter.package_name }}.sgs.builtins import (
    Error,
    PingReq,
    PongResp,
)

catalog = Catalog([PingReq, PongResp, Error])
MODELS = ["per_link", "shared_logic", "shared_logic_send", "shared_all"]
PROTOCOLS = ["json", "protobuf", "msgpack", "bson"]


class Item(Message):
    name: str
    qty: int


class EchoResp(Message, msg_id=1002, catalog=catalog):
    seq: int
    text: str


class EchoReq(Message, msg_id=1001, reply=EchoResp, catalog=catalog):
    seq: int
    text: str


class SlowReq(Message, msg_id=1003, reply=EchoResp, catalog=catalog):
    seq: int
    delay: float
    pad: str = ""


class BoomReq(Message, msg_id=1004, reply=EchoResp, catalog=catalog):
    pass


class DenyReq(Message, msg_id=1005, reply=EchoResp, catalog=catalog):
    pass


class Bag(Message, msg_id=1006, reply=None, catalog=catalog):
    owner: str
    items: list[Item]
    tags: list[str]
    note: str | None = None
    weight: float = 0.0
    sealed: bool = False
    blob: bytes = b""


class BagReq(Message, msg_id=1007, reply=Bag, catalog=catalog):
    bag: Bag


class KickReq(Message, msg_id=1008, reply=EchoResp, catalog=catalog):
    pass


router = Router()


@router.on(EchoReq)
async def echo(ctx: Context, msg: EchoReq) -> EchoResp:
    return EchoResp(seq=msg.seq, text=msg.text)


@router.on(SlowReq)
async def slow(ctx: Context, msg: SlowReq) -> EchoResp:
    await asyncio.sleep(msg.delay)
    return EchoResp(seq=msg.seq, text="slow")


@router.on(BoomReq)
async def boom(ctx: Context, msg: BoomReq) -> EchoResp:
    raise RuntimeError("a handler bug")


@router.on(DenyReq)
async def deny(ctx: Context, msg: DenyReq) -> EchoResp:
    raise HandlerError("denied", "you may not")


@router.on(BagReq)
async def bag(ctx: Context, msg: BagReq) -> Bag:
    return msg.bag


@router.on(KickReq)
async def kick(ctx: Context, msg: KickReq) -> EchoResp:
    ctx.close("kicked")
    return EchoResp(seq=0, text="bye")


HEADER = struct.Struct(">II")


def frame(msg_id: int, value: bytes) -> bytes:
    return HEADER.pack(msg_id, len(value)) + value


class RawConn:
    """A bare TCP peer speaking TLV bytes: what a client nobody here wrote sends."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int, rcvbuf: int | None = None) -> RawConn:
        sock = None
        if rcvbuf is not None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
            reader, writer = await asyncio.open_connection(sock=sock, limit=2**16)
        else:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def read_frame(self, timeout: float = 5.0) -> tuple[int, bytes]:
        header = await asyncio.wait_for(self.reader.readexactly(8), timeout)
        msg_id, length = HEADER.unpack(header)
        return msg_id, await asyncio.wait_for(self.reader.readexactly(length), timeout)

    async def read_eof(self, timeout: float = 5.0) -> bytes:
        """Everything until the server closes the connection."""
        return await asyncio.wait_for(self.reader.read(), timeout)

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass
