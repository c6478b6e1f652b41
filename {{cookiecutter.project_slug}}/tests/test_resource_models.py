"""Every resource model end to end: order per link, priorities, no leaked tasks."""

from __future__ import annotations

import asyncio
import random

import pytest

import fwkit
from fwkit import EchoReq, EchoResp, SlowReq

from {{ cookiecutter.package_name }}.sgs import (
    Client,
    Context,
    Link,
    Message,
    Router,
    Server,
)
from {{ cookiecutter.package_name }}.sgs.testing import running_server

CLIENTS = 24
PER_CLIENT = 150


def client(server: Server, protocol: str) -> Client:
    return Client("127.0.0.1", server.port or 0, protocol=protocol, catalog=fwkit.catalog)


@pytest.mark.parametrize("model", fwkit.MODELS)
@pytest.mark.parametrize("protocol", ["json", "protobuf"])
async def test_pipelined_clients_keep_per_link_order_and_leak_nothing(
    model: str, protocol: str
) -> None:
    baseline = len(asyncio.all_tasks())
    async with running_server(
        fwkit.router, fwkit.catalog, protocol=protocol, resource_model=model, logic_workers=3
    ) as server:
        shared_tasks = len(asyncio.all_tasks()) - baseline
        clients = [await client(server, protocol).connect() for _ in range(CLIENTS)]

        async def one(i: int, c: Client) -> None:
            texts = [f"{i}:{k}:" + "x" * random.randint(0, 300) for k in range(PER_CLIENT)]
            # All requests written before the first reply is read: real pipelining.
            replies = await asyncio.gather(
                *(c.request(EchoReq(seq=k, text=t)) for k, t in enumerate(texts))
            )
            assert [r.seq for r in replies] == list(range(PER_CLIENT))
            assert [r.text for r in replies] == texts

        await asyncio.gather(*(one(i, c) for i, c in enumerate(clients)))
        assert len(server.links) == CLIENTS
        for c in clients:
            await c.close()
        for _ in range(200):
            if not server.links:
                break
            await asyncio.sleep(0.01)
        assert server.links == {}
        await asyncio.sleep(0.05)
        # Only the shared workers remain: every per-link task ended with its link.
        assert len(asyncio.all_tasks()) - baseline == shared_tasks
        assert server.stats.accepted == CLIENTS and server.stats.closed == CLIENTS
    await asyncio.sleep(0)
    assert len(asyncio.all_tasks()) == baseline


@pytest.mark.parametrize("model", fwkit.MODELS)
async def test_slow_handler_keeps_order_within_a_link(model: str) -> None:
    async with running_server(fwkit.router, fwkit.catalog, resource_model=model) as server:
        async with client(server, "json") as c:
            tasks = [
                c.request(SlowReq(seq=0, delay=0.05)),
                c.request(EchoReq(seq=1, text="fast")),
                c.request(SlowReq(seq=2, delay=0.01)),
            ]
            replies = await asyncio.gather(*tasks)
            assert [r.seq for r in replies] == [0, 1, 2]


@pytest.mark.parametrize("model", fwkit.MODELS)
async def test_priority_received_then_interrupts_then_active(model: str) -> None:
    """Inside a worker: received messages > receive-interrupt > active pushes."""
    order: list[str] = []
    router = Router()

    @router.on(EchoReq)
    async def record(ctx: Context, msg: EchoReq) -> EchoResp:
        order.append(f"msg{msg.seq}")
        if msg.seq == 0:
            ctx.server.post(lambda: order.append("active"), ctx.link)
            # Hold the worker while the EOF arrives, so all kinds of work are queued.
            await asyncio.sleep(0.1)
        return EchoResp(seq=msg.seq, text="")

    done = asyncio.Event()

    def setup(server: Server) -> None:
        @server.on_disconnect
        async def gone(link: Link) -> None:
            order.append("disconnect")
            server.post(done.set, link)

    async with running_server(router, fwkit.catalog, setup=setup, resource_model=model) as server:
        codec = server.codec
        data = b"".join(codec.encode_frame(EchoReq(seq=i, text="")) for i in range(3))
        raw = await fwkit.RawConn.open(server.port or 0)
        raw.send(data)
        raw.writer.write_eof()  # the read side ends right after the three messages
        await asyncio.wait_for(done.wait(), 5)
        await raw.close()
    assert order == ["msg0", "msg1", "msg2", "disconnect", "active"]


async def test_one_logic_worker_is_a_global_game_loop() -> None:
    """Model 2 with n = 1: read-modify-write across an await needs no lock."""
    state = {"count": 0}
    router = Router()

    @router.on(EchoReq)
    async def bump(ctx: Context, msg: EchoReq) -> EchoResp:
        value = state["count"]
        await asyncio.sleep(0)  # another handler would interleave here with n > 1
        state["count"] = value + 1
        return EchoResp(seq=msg.seq, text="")

    async with running_server(
        router, fwkit.catalog, resource_model="shared_logic", logic_workers=1
    ) as server:
        clients = [await client(server, "json").connect() for _ in range(8)]
        await asyncio.gather(
            *(c.request(EchoReq(seq=k, text="")) for c in clients for k in range(50))
        )
        for c in clients:
            await c.close()
    assert state["count"] == 8 * 50


@pytest.mark.parametrize("model", fwkit.MODELS)
async def test_timers_run_on_a_logic_worker_between_handlers(model: str) -> None:
    ticks: list[int] = []
    in_handler = {"now": False}
    overlaps: list[int] = []

    router = Router()

    @router.on(SlowReq)
    async def slow(ctx: Context, msg: SlowReq) -> EchoResp:
        in_handler["now"] = True
        await asyncio.sleep(msg.delay)
        in_handler["now"] = False
        return EchoResp(seq=msg.seq, text="")

    def setup(server: Server) -> None:
        async def tick() -> None:
            if in_handler["now"]:
                overlaps.append(len(ticks))
            ticks.append(len(ticks))

        server.every(0.02, tick)

    async with running_server(
        router, fwkit.catalog, setup=setup, resource_model=model, logic_workers=1
    ) as server:
        async with client(server, "json") as c:
            for k in range(5):
                await c.request(SlowReq(seq=k, delay=0.03))
            await asyncio.sleep(0.1)
    assert len(ticks) >= 5
    if model != "per_link":  # model 1: timers have their own server worker
        assert overlaps == []


@pytest.mark.parametrize("model", fwkit.MODELS)
async def test_group_broadcast_and_hooks(model: str) -> None:
    events: list[str] = []
    router = Router()

    class Shout(Message, msg_id=1100, catalog=fwkit.catalog):
        text: str

    @router.on(EchoReq)
    async def join_and_shout(ctx: Context, msg: EchoReq) -> None:
        room = ctx.server.group("room")
        room.add(ctx.link)
        if msg.text:
            ctx.push(Shout(text=msg.text), room)

    def setup(server: Server) -> None:
        server.on_connect(lambda link: events.append("connect"))
        server.on_disconnect(lambda link: events.append("disconnect"))
        server.on_start(lambda s: events.append("start"))
        server.on_stop(lambda s: events.append("stop"))

    async with running_server(router, fwkit.catalog, setup=setup, resource_model=model) as server:
        got: dict[int, list[str]] = {0: [], 1: [], 2: []}
        clients = []
        for i in range(3):
            c = client(server, "json")
            c.on(Shout, lambda m, i=i: got[i].append(m.text))
            await c.connect()
            clients.append(c)
        for c in clients:
            await c.send(EchoReq(seq=0, text=""))
        await asyncio.sleep(0.1)
        assert len(server.group("room")) == 3
        for k in range(10):
            await clients[k % 3].send(EchoReq(seq=k, text=f"m{k}"))
        await asyncio.sleep(0.2)
        # Every member got every message once, all in the same order, and each
        # sender's messages in the order it sent them.
        assert got[0] == got[1] == got[2]
        assert sorted(got[0]) == sorted(f"m{k}" for k in range(10))
        for sender in range(3):
            mine = [m for m in got[0] if int(m[1:]) % 3 == sender]
            assert mine == sorted(mine, key=lambda m: int(m[1:]))
        await clients[0].close()
        await asyncio.sleep(0.1)
        assert len(server.group("room")) == 2  # a closed link leaves its groups
        for c in clients[1:]:
            await c.close()
        await asyncio.sleep(0.1)
        assert "room" not in server.groups
    assert events == ["start"] + ["connect"] * 3 + ["disconnect"] * 3 + ["stop"]


@pytest.mark.parametrize("model", fwkit.MODELS)
async def test_fast_sender_is_paused_not_buffered(model: str) -> None:
    """Inbound flow control: past ``inbound_limit`` queued messages, reading pauses."""
    async with running_server(
        fwkit.router, fwkit.catalog, resource_model=model, inbound_limit=8
    ) as server:
        async with client(server, "json") as c:
            # 300 requests of 8 KiB: one read of the server carries a few dozen at most.
            pad = "p" * 8192
            pending = [
                asyncio.ensure_future(c.request(SlowReq(seq=k, delay=0.001, pad=pad)))
                for k in range(300)
            ]
            peak = 0
            paused = False
            while not all(p.done() for p in pending):
                for link in server.links.values():
                    peak = max(peak, link.inbound)
                    paused = paused or link.read_paused
                await asyncio.sleep(0.001)
            replies = [p.result() for p in pending]
            assert [r.seq for r in replies] == list(range(300))
            assert paused
            # The bound plus what one read carried, never the whole backlog.
            assert peak <= 8 + 64
            link = next(iter(server.links.values()))
            assert not link.read_paused and link.inbound == 0
