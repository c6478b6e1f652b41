"""Cluster correctness under faults, unit by unit, over a real redis-server.

Each test drives one part of the cluster (or two nodes in this process) into
a fault that production Redis deployments see (a pause longer than the
timeout, dropped pub/sub connections, a restart without data, a node reaped
while alive) and checks the invariant it must keep: one owner per account,
no acknowledged state lost, no resurrection, no ghost member, no deaf node.
The process-level fault suite (SIGSTOP, a black-hole proxy, seeded
schedules) is tests/test_cluster_faults.py and tests/chaos/.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis as redis_sync
import redis.asyncio as aioredis

from redis_server import RedisServer
from test_cluster import PREFIX, TIMEOUT, client, node
from testkit import until

from {{ cookiecutter.package_name }}.handlers import (
    router,
)
from {{ cookiecutter.package_name }}.messages import (
    Error,
)
from {{ cookiecutter.package_name }}.sgs import (
    RemoteError,
    Server,
)
from {{ cookiecutter.package_name }}.sgs.cluster import (
    scripts,
)
from {{ cookiecutter.package_name }}.sgs.cluster.base import (
    BindRefused,
    BindResult,
    ClusterStats,
)
from {{ cookiecutter.package_name }}.sgs.cluster.bus import (
    CommandBus,
    OutcomeUnknown,
)
from {{ cookiecutter.package_name }}.sgs.cluster.dispatch import (
    Dispatch,
    Handlers,
)
from {{ cookiecutter.package_name }}.sgs.cluster.envelope import (
    Kind,
    pack,
)
from {{ cookiecutter.package_name }}.sgs.cluster.keys import (
    Keys,
)
from {{ cookiecutter.package_name }}.sgs.cluster.listener import (
    Listener,
)
from {{ cookiecutter.package_name }}.sgs.cluster.redis import (
    RedisCluster,
)
from {{ cookiecutter.package_name }}.sgs.cluster.stall import (
    StallGuard,
)
from {{ cookiecutter.package_name }}.sgs.store import (
    MemoryBackend,
)
from {{ cookiecutter.package_name }}.sgs.store.player_store import (
    PlayerStore,
)
from {{ cookiecutter.package_name }}.sgs.store.redis import (
    RedisBackend,
)
from {{ cookiecutter.package_name }}.sgs.testing import (
    running_server,
)

LEASE = 2.0


def raw(redis_server: RedisServer) -> redis_sync.Redis:
    return redis_sync.Redis(port=redis_server.port)


@contextlib.asynccontextmanager
async def bus_on(redis_server: RedisServer, **kw: Any) -> AsyncIterator[CommandBus]:
    """A command bus alone, with its writer task, on its own connection."""
    conn = aioredis.Redis.from_url(redis_server.url, socket_timeout=5.0)
    failures: list[BaseException] = []
    bus = CommandBus(
        conn,
        limit=kw.pop("limit", 100),
        timeout=kw.pop("timeout", 1.0),
        io_timeout=kw.pop("io_timeout", 2.0),
        on_failure=failures.append,
        stats=ClusterStats(),
    )
    bus.up = True
    writer = asyncio.ensure_future(bus.writer())
    try:
        yield bus
    finally:
        writer.cancel()
        with contextlib.suppress(BaseException):
            await writer
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(conn.aclose(), 2.0)


def bind_elsewhere(r: redis_sync.Redis, key: str, node_name: str) -> int:
    """Bind ``key`` to ``node_name`` with the cluster's own BIND script (as another node would)."""
    k = Keys(PREFIX)
    keys = [k.bind(key), k.epoch(key), k.node_binds(node_name), k.run]
    epoch, *_ = r.eval(scripts.BIND, len(keys), *keys, PREFIX, node_name, "x.1", key, "run")
    return int(epoch)


# -- the ordered bus: unknown is not no ------------------------------------------------


async def test_bus_keeps_order_and_a_paused_broker_makes_the_outcome_unknown(
    redis_server: RedisServer,
) -> None:
    async with bus_on(redis_server, timeout=0.3) as bus:
        replies = await asyncio.gather(
            *(bus.call(lambda pipe, i=i: (pipe.rpush("order", i), 1)[1]) for i in range(50))
        )
        assert replies == list(range(1, 51)), "one queue, one order"
        with raw(redis_server) as r:
            r.execute_command("CLIENT", "PAUSE", "1500", "ALL")
        with pytest.raises(OutcomeUnknown):
            await bus.call(lambda pipe: (pipe.set("late", "1"), 1)[1])
        # The command was sent: it runs once the pause ends.
        with raw(redis_server) as r:
            await until(lambda: r.get("late") == b"1", what="the late command to run")


# -- the subscriber never goes deaf quietly --------------------------------------------


@contextlib.asynccontextmanager
async def listener_on(
    redis_server: RedisServer, heard: list[tuple[str, Any]], checks: list[bool]
) -> AsyncIterator[Listener]:
    conn = aioredis.Redis.from_url(redis_server.url, socket_keepalive=True)
    up = asyncio.Event()
    up.set()
    listener = Listener(
        conn,
        channels={"t:ctl"},
        heartbeat=0.2,
        io_timeout=1.0,
        up=up,
        on_message=lambda channel, data: heard.append((channel, data)),
        on_subscribed=lambda channel: None,
        on_subscribed_all=checks.append,
    )
    tasks = [asyncio.ensure_future(listener.run()), asyncio.ensure_future(listener.sync())]
    try:
        yield listener
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(conn.aclose(), 2.0)


async def test_listener_resubscribes_after_client_kill_pubsub_and_rechecks(
    redis_server: RedisServer,
) -> None:
    heard: list[tuple[str, Any]] = []
    checks: list[bool] = []
    async with listener_on(redis_server, heard, checks) as listener:
        await until(lambda: listener.listening, what="subscribed")
        assert checks == [True]
        with raw(redis_server) as r:
            r.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
            await until(lambda: checks == [True, False], what="a re-check after resubscribing")
            await until(lambda: listener.listening, what="listening again")
            r.publish("t:ctl", b"after")
        await until(lambda: ("t:ctl", b"after") in heard, what="messages flow again")
        assert listener.reconnects == 1


async def test_listener_notices_a_silent_broker_within_its_io_timeout(
    redis_server: RedisServer,
) -> None:
    """A broker that answers nothing (CLIENT PAUSE: a half-open peer looks the same)."""
    heard: list[tuple[str, Any]] = []
    checks: list[bool] = []
    async with listener_on(redis_server, heard, checks) as listener:
        await until(lambda: listener.listening, what="subscribed")
        with raw(redis_server) as r:
            r.execute_command("CLIENT", "PAUSE", "4000", "ALL")
        started = time.monotonic()
        await until(lambda: not listener.listening, what="the listener to notice")
        assert time.monotonic() - started < 3.0, "io_timeout (1 s) plus one heartbeat"
        await until(lambda: listener.listening, timeout=15, what="listening again")
        assert checks[-1] is False, "re-checked what it may have missed"


# -- dispatch prunes its per-origin sequence table -------------------------------------


def test_dispatch_counts_gaps_and_forgets_origins_that_are_gone() -> None:
    stats = ClusterStats()
    got: list[bytes] = []
    handlers = Handlers(
        group=lambda name, frame: got.append(frame),
        push=lambda key, frame: None,
        kick=lambda key, epoch, node: None,
        released=lambda key, epoch: None,
        interest=lambda joined, node, group: None,
        known_message=lambda msg_id: msg_id == 7,
    )
    d = Dispatch(node_id="me", group_prefix="p:group:", stats=stats, handlers=handlers)
    frame = (7).to_bytes(4, "big") + (2).to_bytes(4, "big") + b"{}"
    for origin, seq in (("a", 1), ("a", 2), ("a", 4), ("b", 1)):
        d.on_message("p:group:g", pack(Kind.GROUP, origin.encode(), seq, 1, frame))
    assert len(got) == 4 and stats.gaps == 1
    d.forget_origin("a")
    assert d.last == {"p:group:g": {"b": (1, 1)}}
    d.forget_origins({"c"})
    assert d.last == {}


# -- one owner: a binding lost while its KICK was missed --------------------------------


async def test_a_node_that_missed_the_kick_replaces_its_link_within_a_lease(
    redis_server: RedisServer,
) -> None:
    """Another node took the account and no KICK arrived: validation finds it."""
    async with node(redis_server.url, "a", cluster_lease=LEASE) as a:
        async with client(a) as c:
            errors: list[Error] = []
            c.on_error(errors.append)
            await c.login("alice")
            with raw(redis_server) as r:
                bind_elsewhere(r, "alice", "silent-node")  # no lease: nobody kicks
            started = time.monotonic()
            await c.wait_closed(TIMEOUT)
            assert time.monotonic() - started < LEASE + 1.0 + 0.5
            assert [e.code for e in errors] == ["replaced"]
        assert "alice" not in a.bindings.players
        assert a.store.get("alice") is None, "the lost owner's cached state is evicted"
        assert a.cluster.ownership.lost >= 1


async def test_a_binding_only_the_reaper_removed_is_taken_back(
    redis_server: RedisServer,
) -> None:
    """A node reaped while alive (a long pause) keeps an account nobody else took."""
    async with node(redis_server.url, "a", cluster_lease=LEASE) as a:
        async with client(a) as c:
            await c.login("bea")
            node_id = a.cluster.node_id
            with raw(redis_server) as r:
                k = Keys(PREFIX)
                r.delete(k.bind("bea"))  # what REAP does to a paused node's bindings
                await until(
                    lambda: r.hget(k.bind("bea"), "node") == node_id.encode(),
                    what="the binding to be taken back",
                )
            assert (await c.business(1, 2, 3)).result == 5
            assert not c.closed


# -- no resurrection: a login reads the newest stored state ------------------------------


async def test_a_login_after_losing_ownership_reads_the_newer_owners_state(
    redis_server: RedisServer,
) -> None:
    """A paused node brings back old state: here the pause is a forced reap of node A."""
    async with (
        node(redis_server.url, "a", cluster_lease=LEASE) as a,
        node(redis_server.url, "b", cluster_lease=LEASE) as b,
    ):
        async with client(a) as first:
            await first.login("alice")
            for _ in range(3):
                await first.business(1, 1, 1)
            await until(lambda: not a.store.get("alice").dirty, what="a flush")
            # A is reaped as after a pause past its lease (its lease, bindings gone).
            with raw(redis_server) as r:
                k = Keys(PREFIX)
                node_id = a.cluster.node_id
                r.eval(
                    scripts.REAP,
                    5,
                    k.lease(node_id),
                    k.nodes,
                    k.node_groups(node_id),
                    k.node_binds(node_id),
                    k.groups,
                    PREFIX,
                    node_id,
                    "1",
                    "60000",
                )
            async with client(b) as second:
                assert (await second.login("alice")).counter == 3
                for _ in range(5):
                    await second.business(1, 1, 1)
                await until(lambda: not b.store.get("alice").dirty, what="B's flush")
                await first.wait_closed(TIMEOUT)
                async with client(a) as third:
                    user = await third.login("alice")
                    assert user.counter == 8, "no resurrection of A's cached 3"
                    await second.wait_closed(TIMEOUT)
        stored = await a.store.backend.get("alice")
        assert stored is not None and stored[0]["counter"] == 8


async def test_reclaim_returns_the_stored_state_only_when_it_is_newer(
    redis_server: RedisServer,
) -> None:
    for backend in (MemoryBackend(), RedisBackend(redis_server.url, prefix="t")):
        await backend.open()
        try:
            assert await backend.claim("k", 10) is None
            await backend.write([("k", {"n": 1}, 10)])
            assert await backend.reclaim("k", 11, 10) == (10, None), "the cache is current"
            await backend.claim("k", 20)  # another owner
            await backend.write([("k", {"n": 2}, 20)])
            assert await backend.reclaim("k", 21, 11) == (20, {"n": 2}), "the cache is stale"
            assert await backend.reclaim("new", 5, 4) == (-1, None), "nothing stored"
        finally:
            await backend.close()


# -- a fenced write is never acknowledged ------------------------------------------------


async def test_a_fenced_commit_tells_the_bindings_before_the_waiters_settle() -> None:
    backend = MemoryBackend()
    store = PlayerStore(backend, flush_interval=60.0, sync="always", max_dirty=100)
    await store.start()
    order: list[str] = []
    store.on_fenced = lambda key, epoch: order.append(f"fenced {key} {epoch}")
    try:
        state = await store.load("k", 10)
        await backend.claim("k", 20)  # a newer owner claimed the player
        state["n"] = 1
        commit = asyncio.ensure_future(store.commit())
        commit.add_done_callback(lambda _: order.append("settled"))
        await commit
        assert order == ["fenced k 10", "settled"]
        assert store.get("k") is None, "the fenced state is dropped"
    finally:
        await store.stop(1.0)


async def test_store_sync_always_never_acknowledges_a_fenced_write(
    redis_server: RedisServer,
) -> None:
    async with node(redis_server.url, "a", cluster_lease=LEASE, store_sync="always") as a:
        async with client(a) as c:
            errors: list[Error] = []
            c.on_error(errors.append)
            await c.login("carl")
            assert (await c.business(1, 1, 1)).result == 2
            with raw(redis_server) as r:  # a newer owner claims the state in the store
                r.hset(f"{PREFIX}:player:carl", "epoch", str(a.bindings.players["carl"].epoch + 1))
            with pytest.raises((RemoteError, ConnectionError, asyncio.TimeoutError, EOFError)):
                await asyncio.wait_for(c.business(1, 1, 1), TIMEOUT)
            await c.wait_closed(TIMEOUT)
            assert "replaced" in [e.code for e in errors]
        stored = await a.store.backend.get("carl")
        assert stored is not None and stored[0]["counter"] == 1, "the refused write stayed out"


async def test_a_held_reply_is_never_sent_when_a_relogin_here_finds_its_change_fenced(
    redis_server: RedisServer,
) -> None:
    """The older link was replaced before its commit ended: its reply must still not go."""
    async with node(redis_server.url, "a", cluster_lease=LEASE, store_sync="always") as a:
        async with client(a) as old, client(a) as new:
            errors: list[Error] = []
            old.on_error(errors.append)
            await old.login("cleo")
            assert (await old.business(1, 1, 1)).result == 2
            epoch = a.bindings.players["cleo"].epoch
            async with a.store._batch_lock:  # the flush is held back, as a slow disk would
                pending = asyncio.ensure_future(old.business(1, 1, 1))
                await until(lambda: a.store.unsaved, TIMEOUT, "the older link's change")
                with raw(redis_server) as r:  # another node owned cleo since and stored this
                    r.hset(f"{PREFIX}:player:cleo", "epoch", str(epoch + 1))
                user = await new.login("cleo")  # relogin here: the stored state wins
                assert user.counter == 1
            with pytest.raises((RemoteError, ConnectionError, asyncio.TimeoutError, EOFError)):
                await asyncio.wait_for(pending, TIMEOUT)  # never acknowledged
            await old.wait_closed(TIMEOUT)
            assert "replaced" in [e.code for e in errors]
            assert (await new.business(1, 1, 1)).result == 2
        stored = await a.store.backend.get("cleo")
        assert stored is not None and stored[0]["counter"] == 2


# -- a second login here does not skip the first one's hand-over -------------------------


async def test_a_second_login_here_waits_for_the_hand_over_the_first_one_asked_for(
    redis_server: RedisServer,
) -> None:
    """B holds ivy with unflushed changes; two logins on A: only the first KICKs B.

    The second login's BIND finds the first (on A, itself waiting for B's
    hand-over). Loading then would read the state B has not flushed yet, and
    fence B's flush: it must wait for the same hand-over.
    """
    slow = {"cluster_lease": LEASE, "store_flush_interval": 60.0}
    async with node(redis_server.url, "a", **slow) as a, node(redis_server.url, "b", **slow) as b:
        async with client(b) as holder, client(a) as first, client(a) as second:
            await holder.login("ivy")
            for _ in range(4):
                await holder.business(1, 1, 1)  # write-behind: not flushed yet
            async with b.store._batch_lock:  # B's flush is slow (a busy disk, say)
                one = asyncio.ensure_future(first.login("ivy"))
                await until(lambda: "ivy" not in b.bindings.players, what="B to get the KICK")
                two = asyncio.ensure_future(second.login("ivy"))
                await asyncio.sleep(0.3)
                assert not two.done(), "the second login loaded before B handed ivy over"
            results = await asyncio.gather(one, two, return_exceptions=True)
        seen = [u.counter for u in results if not isinstance(u, BaseException)]
        assert seen and all(c == 4 for c in seen), results
        assert a.store.stats.fenced == 0 and b.store.stats.fenced == 0


async def test_a_relogin_here_that_cannot_load_flushes_the_older_state_before_freeing_it(
    redis_server: RedisServer,
) -> None:
    """The relogin replaced the older link, then its load failed: the key is not left free

    while this node still holds the older login's unflushed changes: they are
    flushed first, as at a logout, so the next login elsewhere sees them.
    """
    slow = {"cluster_lease": LEASE, "store_flush_interval": 60.0}
    async with node(redis_server.url, "a", **slow) as a, node(redis_server.url, "b", **slow) as b:
        async with client(a) as older, client(a) as again, client(b) as elsewhere:
            await older.login("kit")
            for _ in range(3):
                await older.business(1, 1, 1)  # write-behind: not flushed yet
            backend = a.store.backend
            real = backend.reclaim

            async def dropped(*args: Any) -> Any:  # the store's connection was killed
                backend.reclaim = real
                raise ConnectionError("Connection closed by server.")

            backend.reclaim = dropped
            with pytest.raises(RemoteError) as refused:
                await again.login("kit")
            assert refused.value.error.code == "store_unavailable"
            user = await elsewhere.login("kit")
            assert user.counter == 3
        assert a.store.stats.fenced == 0


# -- unknown is not no: a bind the broker did not confirm ---------------------------------


async def test_a_login_during_a_broker_pause_is_refused_and_leaves_one_owner(
    redis_server: RedisServer,
) -> None:
    """A slow broker makes two owners: no, the bind timed out, so the login is refused."""
    async with (
        node(redis_server.url, "a", cluster_lease=LEASE) as a,
        node(redis_server.url, "b", cluster_lease=LEASE) as b,
    ):
        async with client(a) as first, client(b) as second:
            await first.login("dora")
            with raw(redis_server) as r:
                r.execute_command("CLIENT", "PAUSE", "1800", "ALL")
            with pytest.raises(RemoteError) as refused:
                await second.login("dora")
            assert refused.value.error.code == "cluster_unavailable"
            await asyncio.sleep(LEASE + 1.5)  # past the pause and one validation
            with pytest.raises((RemoteError, ConnectionError)):
                await second.business(1, 1, 1)  # the refused login never serves dora
            if not first.closed:  # the late bind, withdrawn, gave her back to A
                assert (await first.business(1, 1, 1)).result == 2
            with raw(redis_server) as r:
                holder = r.hget(f"{PREFIX}:bind:dora", "node")
            assert holder in (None, a.cluster.node_id.encode())
            assert b.cluster.ownership.refused == 1


def withdraw(r: redis_sync.Redis, key: str, node_name: str, link: str) -> int:
    """The WITHDRAW a node queues behind a BIND whose answer never came."""
    k = Keys(PREFIX)
    keys = [k.bind(key), k.epoch(key), k.node_binds(node_name)]
    return int(r.eval(scripts.WITHDRAW, len(keys), *keys, PREFIX, node_name, link, key, "60000"))


def late_bind(r: redis_sync.Redis, key: str, node_name: str, link: str) -> int:
    k = Keys(PREFIX)
    keys = [k.bind(key), k.epoch(key), k.node_binds(node_name), k.run]
    epoch, *_ = r.eval(scripts.BIND, len(keys), *keys, PREFIX, node_name, link, key, "run")
    return int(epoch)


def test_a_withdrawn_late_bind_gives_the_account_back_to_the_live_holder_it_displaced(
    redis_server: RedisServer,
) -> None:
    """Two refused logins on B ran late over A's binding: withdrawn, the key is A's again."""
    k = Keys(PREFIX)
    with raw(redis_server) as r:
        r.set(f"{PREFIX}:node:A", "1")  # A is alive: its lease key exists
        held = bind_elsewhere(r, "kai", "A")
        late_bind(r, "kai", "B", "b.1")
        late_bind(r, "kai", "B", "b.2")  # a second refused login on B, before b.1's withdrawal
        assert withdraw(r, "kai", "B", "b.1") == 0  # not b.1's any more: untouched
        assert withdraw(r, "kai", "B", "b.2") == 2  # given back
        assert r.hmget(k.bind("kai"), "node", "link", "epoch") == [b"A", b"x.1", str(held).encode()]
        assert r.sismember(k.node_binds("A"), "kai") and not r.sismember(k.node_binds("B"), "kai")
        assert withdraw(r, "kai", "B", "b.2") == 0  # once only

        # The displaced holder died meanwhile: nobody to give it back to, the key is free.
        r.delete(f"{PREFIX}:node:A")
        late_bind(r, "kai", "B", "b.3")
        assert withdraw(r, "kai", "B", "b.3") == 1
        assert not r.exists(k.bind("kai")) and not r.sismember(k.node_binds("B"), "kai")

        # An account nobody held: a late bind's withdrawal leaves it unbound.
        late_bind(r, "lea", "B", "b.4")
        assert withdraw(r, "lea", "B", "b.4") == 1
        assert not r.exists(k.bind("lea"))


async def test_a_refused_login_during_a_broker_pause_leaves_unflushed_changes_with_the_holder(
    redis_server: RedisServer,
) -> None:
    """B's login times out in a pause and its BIND runs late: A's unflushed updates survive.

    Write-behind, nothing flushed yet: were the key left free, B's next login
    would load the older stored state and A's flush would then be fenced,
    losing four acknowledged updates.
    """
    async with (
        node(redis_server.url, "a", cluster_lease=LEASE, store_flush_interval=60.0) as a,
        node(redis_server.url, "b", cluster_lease=LEASE) as b,
    ):
        k = Keys(PREFIX)
        async with client(a) as first, client(b) as second, client(b) as third:
            await first.login("cleo")
            for _ in range(4):
                await first.business(1, 1, 1)
            assert a.store.get("cleo").dirty, "write-behind: nothing flushed yet"
            with raw(redis_server) as r:
                before = r.get(k.epoch("cleo"))
                r.execute_command("CLIENT", "PAUSE", "1500", "ALL")
                with pytest.raises(RemoteError) as refused:
                    await second.login("cleo")
                assert refused.value.error.code == "cluster_unavailable"
                # After the pause the late BIND runs (it takes a new epoch), then its withdrawal.
                await until(lambda: r.get(k.epoch("cleo")) != before, what="the late BIND")
                b_id = b.cluster.node_id.encode()
                await until(lambda: r.hget(k.bind("cleo"), "node") != b_id, what="the withdrawal")
                holder = r.hget(k.bind("cleo"), "node")
            assert holder == a.cluster.node_id.encode(), "the late bind left the key free"
            assert (await third.login("cleo")).counter == 4, "A handed its changes over"
            await first.wait_closed(TIMEOUT)


# -- broker data loss: every owner writes back ---------------------------------------------


async def test_redis_restarted_empty_keeps_an_online_players_state(
    redis_server: RedisServer,
) -> None:
    """Redis restarted empty forgets online players: no, the owner writes back."""
    async with (
        node(redis_server.url, "a", cluster_lease=LEASE) as a,
        node(redis_server.url, "b", cluster_lease=LEASE) as b,
    ):
        async with client(a) as first:
            await first.login("erin")
            for _ in range(5):
                await first.business(1, 1, 1)
            await until(lambda: not a.store.get("erin").dirty, what="a flush")
            redis_server.restart()  # empty: persistence is off
            await until(
                lambda: a.cluster.stats.broker_resets >= 1 and a.cluster.connected,
                what="A to notice the data loss",
            )
            await until(lambda: b.cluster.connected, what="B back")
            async with client(b) as second:
                deadline = time.monotonic() + TIMEOUT
                while True:  # logins during the reconnect may be refused: retry
                    try:
                        user = await second.login("erin")
                        break
                    except RemoteError as exc:
                        assert exc.error.code in ("cluster_unavailable", "store_unavailable")
                        assert time.monotonic() < deadline
                        await asyncio.sleep(0.2)
                assert user.counter == 5
                await first.wait_closed(TIMEOUT)


async def test_logins_racing_a_broker_data_loss_wait_for_the_old_owners_write_back(
    redis_server: RedisServer,
) -> None:
    """Two logins on A right after Redis came back empty: neither loads before B wrote back.

    B held erin last (logged out, its state kept for write-back). The first
    login on A finds nobody and waits the rest of a lease; the second finds
    the first (on A, itself waiting) and must wait too: that is no owner.
    """
    async with (
        node(redis_server.url, "a", cluster_lease=LEASE) as a,
        node(redis_server.url, "b", cluster_lease=LEASE) as b,
    ):
        async with client(b) as before:
            await before.login("erin")
            for _ in range(5):
                await before.business(1, 1, 1)
            await before.logout()
        await until(lambda: b.store.get("erin") is None, what="B to flush and evict erin")
        async with client(a) as first, client(a) as second:
            async with b.store._batch_lock:  # B's write-back is slow (a busy disk, say)
                redis_server.restart()  # empty: persistence is off
                for n in (a, b):
                    await until(
                        lambda n=n: n.cluster.stats.broker_resets >= 1 and n.cluster.connected,
                        what=f"{n.cluster.node_id} to notice the data loss",
                    )
                await store_answers(a)
                logins = asyncio.gather(
                    first.login("erin"), second.login("erin"), return_exceptions=True
                )
                await asyncio.sleep(0.5)  # well within the lease both logins wait
            results = await logins
        seen = [u.counter for u in results if not isinstance(u, BaseException)]
        assert seen and all(c == 5 for c in seen), results


async def store_answers(server: Server) -> None:
    """Until the store's Redis client has dropped the connections the restart broke."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            await server.store.backend.get("nobody")
            return
        except Exception:
            assert time.monotonic() < deadline, "the store never reconnected"
            await asyncio.sleep(0.05)


# -- convergence: no ghost after a leave during an outage ----------------------------------


async def test_a_leave_during_an_outage_leaves_no_ghost(redis_server: RedisServer) -> None:
    """A leave during an outage leaves a ghost: no, the resync writes the whole truth."""
    async with (
        node(redis_server.url, "a", cluster_lease=LEASE) as a,
        node(redis_server.url, "b", cluster_lease=LEASE) as b,
    ):
        async with client(a) as ca, client(b) as cb:
            await ca.login("fay")
            await cb.login("gus")
            await ca.join("x")
            redis_server.pause()
            try:
                # Within the lease the node still knows it owns fay: answered
                # locally (past it, the stall check would hold the request).
                await asyncio.sleep(LEASE * 0.3)
                await asyncio.wait_for(ca.leave(), TIMEOUT)
                await asyncio.sleep(LEASE * 0.7 + 0.5)  # the outage outlasts the lease
            finally:
                redis_server.resume()
            await until(lambda: a.cluster.connected and a.cluster.lease_held, what="A back")
            await until(lambda: b.cluster.connected, what="B back")
            with raw(redis_server) as r:
                await until(
                    lambda: r.hlen(f"{PREFIX}:gmembers:room:x") == 0, what="the ghost to go"
                )
            assert (await cb.join("x")).members == ["gus"]


# -- a restart under the same node_id within its lease -------------------------------------


async def test_a_restarted_node_id_drops_its_previous_incarnations_traces(
    redis_server: RedisServer,
) -> None:
    async with node(redis_server.url, "same", cluster_lease=LEASE) as first:
        node_id = first.cluster.node_id
        async with client(first) as c:
            await c.login("hal")
            await c.join("y")
        old = first.cluster.incarnation
    with raw(redis_server) as r:
        # What a crash leaves: the lease still runs, the binding and the
        # membership stay until a reaper would remove them.
        r.set(f"{PREFIX}:node:{node_id}", "{}", px=int(LEASE * 1000))
        r.hset(f"{PREFIX}:bind:ivy", mapping={"node": node_id, "link": f"{old}.99", "epoch": 1})
        r.sadd(f"{PREFIX}:nodebinds:{node_id}", "ivy")
        r.hset(f"{PREFIX}:gmembers:room:y", f"{node_id}/{old}.99", "ivy")
        r.hset(f"{PREFIX}:gnodes:room:y", node_id, 1)
        r.sadd(f"{PREFIX}:nodegroups:{node_id}", "room:y")
    async with running_same(redis_server, node_id) as second:
        assert second.cluster.incarnation != old
        with raw(redis_server) as r:
            assert r.hget(f"{PREFIX}:bind:ivy", "node") is None
            assert r.hlen(f"{PREFIX}:gmembers:room:y") == 0


@contextlib.asynccontextmanager
async def running_same(redis_server: RedisServer, node_id: str) -> AsyncIterator[Server]:
    async with running_server(
        router, cluster_url=redis_server.url, node_id=node_id, cluster_lease=LEASE
    ) as server:
        yield server


# -- pruning: epoch keys expire once nobody holds the account ------------------------------


async def test_an_unbound_accounts_epoch_key_expires(redis_server: RedisServer) -> None:
    async with node(redis_server.url, "a", cluster_lease=LEASE) as a:
        async with client(a) as c:
            await c.login("jon")
            with raw(redis_server) as r:
                assert r.pttl(f"{PREFIX}:epoch:jon") == -1, "held: no expiry"
            await c.logout()
        with raw(redis_server) as r:
            await until(
                lambda: r.pttl(f"{PREFIX}:epoch:jon") > 0, what="the epoch key to get a TTL"
            )
        assert a.bindings.players == {}


# -- a stale KICK changes nothing ------------------------------------------------------


async def test_a_stale_kick_neither_drops_nor_evicts_the_newer_local_login(
    redis_server: RedisServer,
) -> None:
    async with node(redis_server.url, "a", cluster_lease=LEASE) as a:
        async with client(a) as c:
            await c.login("kim")
            await c.business(1, 1, 1)
            player = a.bindings.players["kim"]
            await a.bindings.release_for("kim", player.epoch - 1)  # older than what is held
            assert a.bindings.players.get("kim") is player
            assert a.store.get("kim") is player.state, "the newer state stays cached"
            assert (await c.business(1, 1, 1)).result == 2
            assert not c.closed


async def test_write_back_returns_recently_handed_off_states_and_the_newer_epoch_wins() -> None:
    """A state handed off just before the broker lost its data is written again."""
    backend = MemoryBackend()
    store = PlayerStore(backend, flush_interval=0.05, sync="write_behind", max_dirty=100, retain=30)
    await store.start()
    try:
        state = await store.load("gone", 10)
        state["n"] = 5
        other = await store.load("moved", 10)
        other["n"] = 1
        assert await store.hand_off("gone", 5.0) and await store.hand_off("moved", 5.0)
        assert store.get("gone") is None, "evicted once durable"
        backend._rows.clear()  # the broker restarted empty
        await backend.claim("moved", 20)  # ... and a newer owner already wrote back its own
        await backend.write([("moved", {"n": 2}, 20)])
        assert store.write_back() == 2
        await until(lambda: not store.unsaved, what="the write back")
        assert await backend.get("gone") == ({"n": 5}, 10)
        assert await backend.get("moved") == ({"n": 2}, 20), "the older epoch is fenced"
        assert store.get("gone") is None and store.get("moved") is None
    finally:
        await store.stop(1.0)


# -- pruning: the publisher's own sequence table --------------------------------------------


async def test_the_publishers_sequence_table_forgets_channels_nobody_hears(
    redis_server: RedisServer,
) -> None:
    """Entries of idle channels nobody listens on go; heard or busy ones stay."""
    async with (
        node(redis_server.url, "a", cluster_lease=LEASE) as a,
        node(redis_server.url, "b", cluster_lease=LEASE) as b,
    ):
        cluster = a.cluster
        assert isinstance(cluster, RedisCluster)
        keys = Keys(PREFIX)
        room, to_b, to_gone = keys.group_channel("room:x"), keys.to("b"), keys.to("gone")
        live = {"a", "b"}
        async with client(a) as ca, client(b) as cb:
            await ca.login("amy")
            await cb.login("bob")
            await ca.join("x")
            await cb.join("x")
            await until(lambda: bool(cluster.interest.get("room:x")), what="b's interest in x")
            await ca.say("hi")  # published on x's channel: b has a member there
            frame = bytes(8)
            assert cluster.send_to("b", "bob", frame) and cluster.send_to("gone", "zed", frame)
            await until(lambda: {room, to_b, to_gone} <= cluster._seq.keys(), what="seqs")
            assert cluster.prune_sequences(live) == 0  # all just used: none idle yet
            assert cluster.prune_sequences(live) == 1  # idle and unheard: the gone node's
            assert to_gone not in cluster._seq and {room, to_b} <= cluster._seq.keys()
            await cb.leave()
            await until(lambda: not cluster.interest.get("room:x"), what="b's interest to go")
            assert cluster.prune_sequences(live) == 1  # nobody hears x now
            assert room not in cluster._seq and to_b in cluster._seq
            # A channel used again starts over (no receiver tracks it).
            assert cluster.send_to("gone", "zed", frame)
            assert cluster._seq[to_gone] == 1


# -- the stall check: no answer past the ownership deadline without a new round ------------


async def test_the_stall_guard_counts_only_a_round_sent_after_the_stall() -> None:
    loop = asyncio.get_running_loop()
    nudges: list[float] = []
    guard = StallGuard(1.0, lambda: nudges.append(loop.time()))
    assert guard.clock() >= guard.until  # nothing verified before the first round
    # Nobody answers: False after the timeout, then at once until a round succeeds.
    assert not await guard.verify(0.2)
    assert nudges, "the keeper was not asked for a round"
    started = loop.time()
    assert not await guard.verify(5.0)
    assert loop.time() - started < 0.1
    guard.renewed(loop.time())
    assert guard.clock() < guard.until and await guard.verify(0.1)
    # Past the deadline (a stall): a round sent before it does not count.
    guard.until = loop.time() - 0.01
    waits = [asyncio.ensure_future(guard.verify(5.0)) for _ in range(2)]
    await asyncio.sleep(0.05)
    guard.renewed(loop.time() - 2.0)  # an answer to a round sent before the stall
    await asyncio.sleep(0.05)
    assert not any(w.done() for w in waits)
    guard.renewed(loop.time())  # one round serves every stalled link
    assert await asyncio.gather(*waits) == [True, True]


async def test_a_logged_in_player_is_not_served_once_the_broker_cannot_confirm_ownership(
    redis_server: RedisServer,
) -> None:
    """Past the lease without Redis another node may own the account: no request is run."""
    async with node(redis_server.url, "a", cluster_lease=LEASE) as a:
        async with client(a) as c, client(a) as anonymous:
            await c.login("hal")
            assert (await c.business(1, 1, 1)).result == 2
            redis_server.pause()
            try:
                await asyncio.sleep(LEASE + 0.2)  # past the ownership deadline
                with pytest.raises(RemoteError) as refused:
                    await c.business(1, 2, 2)
                assert refused.value.code == "cluster_unavailable"
                assert await anonymous.echo("hi") == "hi"  # links not logged in are not held
            finally:
                redis_server.resume()
            await until(lambda: a.cluster.lease_held, what="the lease back")
            deadline = time.monotonic() + TIMEOUT
            while True:  # served again once a round succeeded
                try:
                    assert (await c.business(1, 3, 3)).result == 6
                    break
                except RemoteError as exc:
                    assert exc.code == "cluster_unavailable" and time.monotonic() < deadline
                    await asyncio.sleep(0.2)
            assert a.cluster.stall is not None and a.cluster.stall.checks > 0


# -- two logins of one account in flight on one node ---------------------------------------


async def test_a_newer_login_that_fails_after_binding_takes_the_older_one_down_too(
    redis_server: RedisServer,
) -> None:
    """Found by the write-behind chaos tier: the newer BIND replaced the older in Redis.

    The newer login's state load fails (store_unavailable) and unbinds its
    binding; the older login, still loading, must not go on as an owner the
    broker no longer knows (a login elsewhere would not kick it: two owners,
    its acknowledged writes lost).
    """
    async with node(redis_server.url, "a", cluster_lease=LEASE) as a:
        real = a.store.load
        first_in, release = asyncio.Event(), asyncio.Event()
        calls = 0

        async def load(key: str, epoch: int, **kw: Any) -> Any:
            """The first login's load is slow; the second's fails (a store fault)."""
            nonlocal calls
            calls += 1
            if calls == 1:
                first_in.set()
                await release.wait()
                return await real(key, epoch, **kw)
            release.set()
            raise ConnectionError("the store is unreachable")

        a.store.load = load  # type: ignore[method-assign]
        async with client(a) as first, client(a) as second:
            older = asyncio.ensure_future(first.login("ivy"))
            await first_in.wait()
            with pytest.raises(RemoteError) as newer:
                await second.login("ivy")
            assert newer.value.code == "store_unavailable"
            with pytest.raises((RemoteError, ConnectionError)) as lost:
                await older
            assert "replaced" in str(lost.value)
        assert "ivy" not in a.bindings.players


async def test_a_newer_login_whose_bind_outcome_is_unknown_takes_the_older_one_down_too(
    redis_server: RedisServer,
) -> None:
    """The newer BIND ran but its answer was lost (refused, its unbind queued): same outcome."""
    async with node(redis_server.url, "a", cluster_lease=LEASE) as a:
        cluster = a.cluster
        assert isinstance(cluster, RedisCluster)
        real_load, real_bind = a.store.load, cluster.bind
        first_in, release = asyncio.Event(), asyncio.Event()

        async def load(key: str, epoch: int, **kw: Any) -> Any:
            first_in.set()
            await release.wait()  # the older login is still loading
            return await real_load(key, epoch, **kw)

        async def bind(key: str, link: Any) -> BindResult:
            if not first_in.is_set():
                return await real_bind(key, link)
            await real_bind(key, link)  # Redis ran it...
            ownership = cluster.ownership
            ownership._withdraw(key, ownership.link_name(link))  # ...what a refused bind queues
            release.set()
            raise BindRefused("the answer did not come in time")  # ...the node never heard

        a.store.load = load  # type: ignore[method-assign]
        cluster.bind = bind  # type: ignore[method-assign]
        async with client(a) as first, client(a) as second:
            older = asyncio.ensure_future(first.login("jo"))
            await first_in.wait()
            with pytest.raises(RemoteError) as newer:
                await second.login("jo")
            assert newer.value.code == "cluster_unavailable"
            with pytest.raises((RemoteError, ConnectionError)) as lost:
                await older
            assert "replaced" in str(lost.value)
        assert "jo" not in a.bindings.players
