"""A TCP proxy between one node and Redis that can black-hole its open connections.

``blackhole()`` stops forwarding in both directions without closing anything:
the node's sockets stay established, its writes sit in kernel buffers, and
no reply, FIN or RST ever comes, exactly what a network partition or a dead
NAT entry looks like from the node. ``blackhole(subscribers_only=True)`` does
that to the node's pub/sub connections alone (a connection becomes one when
it sends SUBSCRIBE), while its commands still flow: the half-open subscriber
that leaves a node deaf with everything else looking healthy. ``heal()``
forwards again, in order, everything that waited (TCP would have
retransmitted it). Connections opened during a full black hole are accepted
and held the same way.
"""

from __future__ import annotations

import asyncio
import contextlib


class _Conn:
    """One proxied connection: has it subscribed to anything?"""

    __slots__ = ("subscriber",)

    def __init__(self) -> None:
        self.subscriber = False


class Proxy:
    """Listens on 127.0.0.1:<port 0>; every connection is piped to 127.0.0.1:``upstream``."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.port = 0
        self._all = False
        self._subscribers = False
        self._changed = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def blackholed(self) -> bool:
        return self._all or self._subscribers

    async def start(self) -> Proxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def blackhole(self, subscribers_only: bool = False) -> None:
        if subscribers_only:
            self._subscribers = True
        else:
            self._all = True
        self._notify()

    def heal(self) -> None:
        self._all = self._subscribers = False
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _held(self, conn: _Conn | None) -> bool:
        return self._all or (conn is not None and conn.subscriber and self._subscribers)

    async def _gate(self, conn: _Conn | None) -> None:
        while self._held(conn):
            await self._changed.wait()

    async def stop(self) -> None:
        self.heal()
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        conn = _Conn()
        try:
            await self._gate(None)
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
            except OSError:
                return  # the broker is down: the node sees its connection close
            self._writers.add(up_writer)
            pumps = [
                asyncio.ensure_future(self._pump(conn, reader, up_writer, watch=True)),
                asyncio.ensure_future(self._pump(conn, up_reader, writer)),
            ]
            self._tasks.update(pumps)
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            for pump in pumps:
                pump.cancel()
            self._tasks.difference_update(pumps)
            up_writer.close()
            self._writers.discard(up_writer)
        finally:
            writer.close()
            self._writers.discard(writer)

    async def _pump(
        self,
        conn: _Conn,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        watch: bool = False,
    ) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while True:
                await self._gate(conn)
                data = await reader.read(65536)
                if watch and b"SUBSCRIBE" in data:
                    conn.subscriber = True
                await self._gate(conn)  # read just before a black hole: held until healed
                if not data:
                    return
                writer.write(data)
                await writer.drain()
