"""Cluster mode over a real redis-server: nodes in one process, each with its own connections.

Every node here is a full Server with its own RedisCluster (its own node id,
publisher, subscriber and lease), so everything that crosses nodes crosses
Redis. The tests that kill a node run nodes as OS processes
(tests/test_cluster_processes.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import random
import time
from collections.abc import AsyncIterator

import pytest
import redis as redis_sync

from redis_server import RedisServer
from testkit import until

from {{ cookiecutter.package_name }}.client import (
    GameClient,
    run_robots,
)
from {{ cookiecutter.package_name }}.handlers import (
    router,
    setup,
)
from {{ cookiecutter.package_name }}.messages import (
    Error,
    RoomMessage,
    RoomTick,
)
from {{ cookiecutter.package_name }}.sgs import (
    Catalog,
    Context,
    Message,
    RemoteError,
    Router,
    Server,
)
from {{ cookiecutter.package_name }}.sgs.builtins import (
    Error as FwError,
)
from {{ cookiecutter.package_name }}.sgs.builtins import (
    PingReq,
    PongResp,
)
from {{ cookiecutter.package_name }}.sgs.client import Client
from {{ cookiecutter.package_name }}.sgs.cluster.envelope import (
    VERSION,
    Kind,
    pack,
)
from {{ cookiecutter.package_name }}.sgs.protocol import PROTOCOLS
from {{ cookiecutter.package_name }}.sgs.testing import running_server

TIMEOUT = 10.0
PREFIX = "sgs"


@contextlib.asynccontextmanager
async def node(
    url: str,
    name: str,
    *,
    protocol: str = "json",
    tick_interval: float = 60.0,
    app_router: Router | None = None,
    catalog: Catalog | None = None,
    **settings: object,
) -> AsyncIterator[Server]:
    """One cluster node serving the sample game (or ``app_router``) on 127.0.0.1."""
    game = app_router is None
    async with running_server(
        router if game else app_router,
        catalog=catalog,
        setup=functools.partial(setup, tick_interval=tick_interval) if game else None,
        protocol=protocol,
        cluster_url=url,
        node_id=f"{name}-{os.getpid()}",
        cluster_lease=settings.pop("cluster_lease", 2.0),
        cluster_timeout=settings.pop("cluster_timeout", 1.0),
        logic_workers=2,
        **settings,
    ) as server:
        yield server


@contextlib.asynccontextmanager
async def nodes(url: str, count: int, **kw: object) -> AsyncIterator[list[Server]]:
    async with contextlib.AsyncExitStack() as stack:
        servers = [await stack.enter_async_context(node(url, f"n{i}", **kw)) for i in range(count)]
        yield servers


def client(server: Server, protocol: str = "json") -> GameClient:
    return GameClient("127.0.0.1", server.port, protocol=protocol, timeout=TIMEOUT)


async def interest_known(servers: list[Server], group: str, members_on: list[Server]) -> None:
    """Wait until every node knows which other nodes have members in ``group``."""
    for server in servers:
        others = {s.cluster.node_id for s in members_on if s is not server}
        await until(
            lambda s=server, o=others: s.cluster.interest.get(group, set()) >= o,
            what=f"{server.cluster.node_id} to learn who is in {group}",
        )


async def seat_ann_and_bob(a: Server, ca: GameClient, b: Server, cb: GameClient, room: str) -> None:
    """ann on node a and bob on node b log in and join ``room``; both nodes know it."""
    await ca.login("ann")
    await cb.login("bob")
    await ca.join(room)
    await cb.join(room)
    await interest_known([a, b], f"room:{room}", [a, b])


def numsub(redis: RedisServer, channel: str) -> int:
    with redis_sync.Redis(port=redis.port) as r:
        return int(dict(r.pubsub_numsub(channel))[channel.encode()])


# -- 1. every member on every node gets every broadcast once, in each sender's order --


async def test_three_nodes_every_member_gets_every_broadcast_once_in_order(
    redis_server: RedisServer,
) -> None:
    per_sender = 400
    async with nodes(redis_server.url, 3) as servers:
        clients = [client(s) for s in servers for _ in range(2)]
        heard: dict[int, list[RoomMessage]] = {i: [] for i in range(len(clients))}
        for i, c in enumerate(clients):
            await c.connect()
            c.on_room_message(heard[i].append)
            await c.login(f"player{i}")
            await c.join("arena")
        await interest_known(servers, "room:arena", servers)
        senders = clients[::2]  # one per node
        await asyncio.gather(*(_say_many(c, f"s{n}", per_sender) for n, c in enumerate(senders)))
        total = per_sender * len(senders)
        await until(lambda: all(len(h) == total for h in heard.values()), what="deliveries")
        await asyncio.sleep(0.2)  # nothing more may arrive
        for messages in heard.values():
            assert len(messages) == total
            for n in range(len(senders)):
                texts = [m.text for m in messages if m.text.startswith(f"s{n}:")]
                assert texts == [f"s{n}:{k}" for k in range(per_sender)], "per-origin order"
        for server in servers:
            assert server.cluster.stats.gaps == 0
            assert server.cluster.stats.dropped == 0
            assert server.cluster.stats.junk == 0
        for c in clients:
            await c.close()


async def _say_many(c: GameClient, tag: str, n: int) -> None:
    for k in range(n):
        await c.say(f"{tag}:{k}")
        if k % 50 == 49:
            await c.echo("sync")  # keep the sender from running ahead unboundedly


# -- 2. subscriptions follow membership ---------------------------------------------


async def test_a_node_subscribes_to_a_room_only_while_it_has_members(
    redis_server: RedisServer,
) -> None:
    channel = f"{PREFIX}:group:room:lobby"
    async with nodes(redis_server.url, 2) as (a, b):
        assert numsub(redis_server, channel) == 0
        async with client(a) as ca, client(b) as cb:
            await ca.login("ann")
            await cb.login("bob")
            joined = await ca.join("lobby")
            assert joined.members == ["ann"]
            await until(lambda: numsub(redis_server, channel) == 1, what="A subscribed")
            joined = await cb.join("lobby")
            assert joined.members == ["ann", "bob"], "members on every node"
            await until(lambda: numsub(redis_server, channel) == 2, what="B subscribed")
            await ca.leave()
            await until(lambda: numsub(redis_server, channel) == 1, what="A unsubscribed")
            await interest_known([a], "room:lobby", [b])
            await until(lambda: "room:lobby" not in b.cluster.interest, what="B to forget A")
        await until(lambda: numsub(redis_server, channel) == 0, what="nobody subscribed")
        with redis_sync.Redis(port=redis_server.port) as r:
            await until(lambda: r.hlen(f"{PREFIX}:gmembers:room:lobby") == 0)


# -- 3. Redis killed and restarted mid-stream ----------------------------------------


async def test_redis_restart_mid_stream_every_node_comes_back_and_counts_the_gap(
    redis_server: RedisServer,
) -> None:
    # ann chats as fast as the loop goes: the chat and per-link limits are off here.
    async with nodes(redis_server.url, 2, rate_limit_messages=0, chat_rate_limit=0) as (a, b):
        async with client(a) as ca, client(b) as cb:
            got: list[RoomMessage] = []
            cb.on_room_message(got.append)
            await seat_ann_and_bob(a, ca, b, cb, "r")
            stop = asyncio.Event()

            async def stream() -> int:
                k = 0
                while not stop.is_set():
                    await ca.say(f"m{k}")
                    await ca.echo("sync")  # local play goes on throughout
                    k += 1
                return k

            sender = asyncio.create_task(stream())
            await until(lambda: len(got) >= 20, what="traffic before the restart")
            redis_server.kill()
            await asyncio.sleep(0.5)
            redis_server.start()
            started = time.monotonic()
            await until(lambda: a.cluster.connected and b.cluster.connected, what="both nodes back")
            assert time.monotonic() - started < 8.0
            await interest_known([a, b], "room:r", [a, b])
            before = len(got)
            await until(lambda: len(got) >= before + 20, what="rooms work again")
            stop.set()
            sent = await sender
            assert len(got) < sent, "messages in the outage are lost, not replayed"
            assert b.cluster.stats.gaps >= 1, "the receiver counted the gap"
            assert a.cluster.stats.dropped + b.cluster.stats.gaps >= 1
            # members and bindings were re-registered into the empty Redis
            with redis_sync.Redis(port=redis_server.port) as r:
                assert r.hlen(f"{PREFIX}:gmembers:room:r") == 2
                assert r.hget(f"{PREFIX}:bind:ann", "node") == a.cluster.node_id.encode()
                assert r.hget(f"{PREFIX}:bind:bob", "node") == b.cluster.node_id.encode()
            assert (await cb.join("r")).members == ["ann", "bob"]


# -- 5. simultaneous logins of one account on two nodes: exactly one survivor --------


async def test_hundred_simultaneous_logins_over_two_nodes_leave_one_survivor(
    redis_server: RedisServer,
) -> None:
    async with nodes(redis_server.url, 2) as (a, b):
        clients = [client(a if i % 2 else b) for i in range(100)]
        errors: list[list[Error]] = [[] for _ in clients]
        for c, errs in zip(clients, errors, strict=True):
            await c.connect()
            c.on_error(errs.append)

        async def login(c: GameClient) -> str:
            try:
                await c.login("highlander")
                return "ok"
            except RemoteError as exc:
                return exc.error.code

        results = await asyncio.gather(*(login(c) for c in clients))
        try:
            await until(lambda: sum(not c.closed for c in clients) == 1)
        except AssertionError as exc:
            alive = [(i, results[i], errors[i]) for i, c in enumerate(clients) if not c.closed]
            raise AssertionError(
                f"survivors: {alive}; {a.bindings.players} {b.bindings.players}"
            ) from exc
        await asyncio.sleep(0.3)
        alive = [c for c in clients if not c.closed]
        assert len(alive) == 1
        for c, result, errs in zip(clients, results, errors, strict=True):
            if c is alive[0]:
                continue
            codes = {e.code for e in errs} | ({result} if result != "ok" else set())
            assert codes == {"replaced"}, (result, errs)
        resp = await alive[0].business(1, 2, 3)
        assert resp.result == 5
        with redis_sync.Redis(port=redis_server.port) as r:
            owner = r.hget(f"{PREFIX}:bind:highlander", "node").decode()
        survivor_node = a if alive[0].port == a.port else b
        assert owner == survivor_node.cluster.node_id
        for c in clients:
            await c.close()


async def test_login_on_another_node_replaces_and_carries_the_counter(
    redis_server: RedisServer,
) -> None:
    async with nodes(redis_server.url, 2) as (a, b):
        async with client(a) as first:
            errors: list[Error] = []
            first.on_error(errors.append)
            assert (await first.login("mover")).counter == 0
            for k in range(7):
                await first.business(k, k, k)
            async with client(b) as second:
                user = await second.login("mover")
                assert user.counter == 7, "A flushed on replacement, B loaded after"
                await first.wait_closed(TIMEOUT)
                assert [e.code for e in errors] == ["replaced"]
                await second.business(0, 1, 1)
            async with client(a) as third:
                assert (await third.login("mover")).counter == 8


async def test_quick_relogin_on_the_same_node_keeps_every_update(
    redis_server: RedisServer,
) -> None:
    """A disconnect hands the state off in the background; a login racing it keeps it."""
    async with nodes(redis_server.url, 2) as (a, b):
        for _ in range(5):
            async with client(a) as c:
                await c.login("quick")
                for k in range(3):
                    await c.business(k, 0, 0)
            # no pause: the next login races the previous link's hand-off
        async with client(b) as elsewhere:
            assert (await elsewhere.login("quick")).counter == 15


# -- 6. a handler that broadcasts and then replies ------------------------------------

test_catalog = Catalog([PingReq, PongResp, FwError])


class ShoutResp(Message, msg_id=1102, catalog=test_catalog):
    n: int


class Shout(Message, msg_id=1103, catalog=test_catalog):
    n: int


class ShoutReq(Message, msg_id=1101, reply=ShoutResp, catalog=test_catalog):
    n: int


class JoinReq(Message, msg_id=1104, reply=ShoutResp, catalog=test_catalog):
    pass


shout_router = Router()


@shout_router.on(JoinReq)
async def join_hall(ctx: Context, msg: JoinReq) -> ShoutResp:
    group = ctx.server.group("hall")
    group.add(ctx.link)
    return ShoutResp(n=await group.size())


@shout_router.on(ShoutReq)
async def shout(ctx: Context, msg: ShoutReq) -> ShoutResp:
    ctx.push(Shout(n=msg.n), ctx.server.group("hall"))
    return ShoutResp(n=msg.n)


async def test_broadcast_then_reply_arrive_in_that_order(redis_server: RedisServer) -> None:
    async with (
        node(redis_server.url, "a", app_router=shout_router, catalog=test_catalog) as a,
        node(redis_server.url, "b", app_router=shout_router, catalog=test_catalog) as b,
    ):
        seen: list[tuple[str, int]] = []
        remote: list[int] = []
        async with (
            Client("127.0.0.1", a.port, catalog=test_catalog) as ca,
            Client("127.0.0.1", b.port, catalog=test_catalog) as cb,
        ):
            ca.on(Shout, lambda m: seen.append(("push", m.n)))
            cb.on(Shout, lambda m: remote.append(m.n))
            assert (await ca.request(JoinReq())).n == 1
            assert (await cb.request(JoinReq())).n == 2
            await interest_known([a, b], "hall", [a, b])
            for n in range(50):
                resp = await ca.request(ShoutReq(n=n))
                seen.append(("reply", resp.n))
            await until(lambda: len(remote) == 50, what="remote pushes")
        assert seen == [item for n in range(50) for item in (("push", n), ("reply", n))]
        assert remote == list(range(50))


# -- 7. Redis paused during broadcasts ----------------------------------------------


async def test_paused_redis_leaves_local_play_alone_bounds_memory_and_counts_drops(
    redis_server: RedisServer,
) -> None:
    queue = 50
    async with (
        node(redis_server.url, "a", cluster_publish_queue=queue, cluster_timeout=0.5) as a,
        node(redis_server.url, "b", cluster_publish_queue=queue, cluster_timeout=0.5) as b,
    ):
        async with client(a) as sender, client(a) as local, client(b) as far:
            got_local: list[RoomMessage] = []
            got_far: list[RoomMessage] = []
            local.on_room_message(got_local.append)
            far.on_room_message(got_far.append)
            for c, name in ((sender, "s"), (local, "l"), (far, "f")):
                await c.login(name)
                await c.join("p")
            await interest_known([a, b], "room:p", [a, b])
            redis_server.pause()
            try:
                n = 400
                for k in range(n):
                    await sender.say(f"m{k}")
                await until(lambda: len(got_local) == n, what="local deliveries")
                assert [m.text for m in got_local] == [f"m{k}" for k in range(n)]
                assert len(a.cluster.bus.queue) <= queue, "bounded publish queue"
                await until(lambda: a.cluster.stats.dropped > 0, what="counted drops")
            finally:
                redis_server.resume()
            # The broker is back; until the nodes noticed both the pause and the
            # recovery, a message may still be dropped: say until one arrives.
            deadline = time.monotonic() + TIMEOUT
            k = 0
            while not any(m.text.startswith("after") for m in got_far):
                assert time.monotonic() < deadline, (a.cluster.health(), b.cluster.health())
                await sender.say(f"after{k}")
                k += 1
                await asyncio.sleep(0.1)
            texts = [m.text for m in got_far if not m.text.startswith("after")]
            assert len(texts) < 400 and len(set(texts)) == len(texts), "at most once"
            order = [int(t[1:]) for t in texts]
            assert order == sorted(order), "per-origin order"


# -- 8. junk on the cluster channels --------------------------------------------------


async def test_junk_on_cluster_channels_is_ignored_and_counted(
    redis_server: RedisServer,
) -> None:
    async with nodes(redis_server.url, 2) as (a, b):
        async with client(a) as ca, client(b) as cb:
            got: list[RoomMessage] = []
            cb.on_room_message(got.append)
            await seat_ann_and_bob(a, ca, b, cb, "j")
            rng = random.Random(7)
            origin = b"mallory"
            junk = [
                b"",
                b"\x00",
                bytes(rng.randrange(256) for _ in range(64)),
                pack(Kind.GROUP, origin, 1, 1, b"\x00\x00")[:5],  # truncated header
                bytes([VERSION + 1]) + pack(Kind.GROUP, origin, 1, 1, b"")[1:],  # newer version
                pack(Kind.GROUP, origin, 1, 1, b"not a frame"),
                pack(Kind.GROUP, origin, 2, 1, b"\x00\x00\x00\x0b\x00\x00\x00\x09{}"),  # bad length
                pack(Kind.GROUP, origin, 3, 1, b"\x00\x0f\x42\x40\x00\x00\x00\x00"),  # unknown id
                bytes([VERSION, 77, 1]) + b"x" + bytes(16),  # unknown kind
                pack(Kind.KICK, origin, 4, 1, b"\x00"),
                pack(Kind.INTEREST, origin, 0, 1, b"\x09"),
            ]
            channels = [
                f"{PREFIX}:group:room:j",
                f"{PREFIX}:ctl",
                f"{PREFIX}:to:{b.cluster.node_id}",
            ]
            with redis_sync.Redis(port=redis_server.port) as r:
                for data in junk:
                    for channel in channels:
                        r.publish(channel, data)
            expected = len(junk) * len(channels)
            await until(lambda: b.cluster.stats.junk >= expected, what="junk counted")
            await ca.say("still fine")
            await until(lambda: [m.text for m in got] == ["still fine"])
            assert (await cb.echo("alive")) == "alive"
            assert a.cluster.connected and b.cluster.connected


# -- RoomTick: one leader per room, numbers shared ------------------------------------


async def test_room_ticks_come_from_one_node_with_cluster_wide_numbers(
    redis_server: RedisServer,
) -> None:
    async with nodes(redis_server.url, 2, tick_interval=0.1) as (a, b):
        async with client(a) as ca, client(b) as cb:
            ticks_a: list[RoomTick] = []
            ticks_b: list[RoomTick] = []
            ca.on_room_tick(ticks_a.append)
            cb.on_room_tick(ticks_b.append)
            await seat_ann_and_bob(a, ca, b, cb, "clock")
            await until(lambda: any(t.members == 2 for t in ticks_b), what="2 members")
            start = next(t.tick for t in ticks_b if t.members == 2)

            def both_have_ten() -> bool:
                seen_a = [t for t in ticks_a if t.tick >= start]
                seen_b = [t for t in ticks_b if t.tick >= start]
                return min(len(seen_a), len(seen_b)) >= 10

            await until(both_have_ten)
            later_a = [t.tick for t in ticks_a if t.tick >= start][:10]
            later_b = [t.tick for t in ticks_b if t.tick >= start][:10]
            assert later_a == later_b == list(range(start, start + 10)), "one numbering"


# -- 10. the sample game's robots across two nodes, every codec -----------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_robots_across_two_nodes(redis_server: RedisServer, protocol: str) -> None:
    async with nodes(redis_server.url, 2, protocol=protocol) as (a, b):
        report = await run_robots(
            "127.0.0.1",
            [a.port, b.port],
            protocol=protocol,
            robots=8,
            requests=5,
            room_size=4,
            timeout=TIMEOUT,
        )
        assert report.ok, report.failures
        assert report.pushes == 8 * 4
        assert a.cluster.stats.received > 0 and b.cluster.stats.received > 0
