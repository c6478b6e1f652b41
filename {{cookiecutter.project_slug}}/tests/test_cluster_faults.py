"""Five cluster failures found under faults, each as it was found: two `serve` nodes, one redis-server.

Every test starts two real ``serve`` processes (lease 3 s, everything else
default, the sample game) on one real ``redis-server``, breaks something the
way a production Redis deployment does, and asserts the cluster's guarantee
through the public client only: one owner per account, no acknowledged state
lost, a login sees the newest state, room members equal the links in the room.
The fault-injection suite (tests/chaos, ``make chaos``) looks for the same
violations under random schedules; these are the known ones, fixed in place.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

import pytest
import uvloop

from chaos.broker import Broker
from chaos.procs import Node
from chaos.run import wait_ready
from redis_server import RedisServer

from {{ cookiecutter.package_name }}.client import GameClient
from {{ cookiecutter.package_name }}.sgs.errors import RemoteError

LEASE = 3.0
TIMEOUT = 2.0  # cluster_timeout's default
FLUSH = 2.5  # more than store_flush_interval (1 s, the default): the state is in the store
REAPED = LEASE + 1.0 + 2.0  # a lease, a reaper cycle, slack for a loaded machine
GRACE = LEASE + TIMEOUT + 1.5  # what the one-owner guarantee allows, plus slack
REQUEST_TIMEOUT = 10.0

pytestmark = pytest.mark.timeout(240)


def run(scenario: Coroutine[Any, Any, None], limit: float = 180.0) -> None:
    """Run ``scenario`` on uvloop, bounded (these outlast the async tests' 60 s bound)."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(asyncio.wait_for(scenario, limit))


@contextlib.asynccontextmanager
async def two_nodes(
    redis: RedisServer, workdir: Path, lease: float = LEASE
) -> AsyncIterator[tuple[Node, Node]]:
    nodes = [Node(name, workdir, cluster_url=redis.url, cluster_lease=str(lease)) for name in "ab"]
    try:
        await asyncio.gather(*(node.start() for node in nodes))
        await wait_ready(nodes)
        yield nodes[0], nodes[1]
    finally:
        for node in nodes:
            node.terminate()


async def player(node: Node, account: str) -> tuple[GameClient, int]:
    """A client logged in as ``account`` on ``node``, and the counter its login saw.

    ``store_unavailable`` says "try again": a client does, for a few seconds.
    """
    client = await GameClient("127.0.0.1", node.port, timeout=REQUEST_TIMEOUT).connect()
    deadline = time.monotonic() + REQUEST_TIMEOUT
    while True:
        try:
            user = await client.login(account)
        except RemoteError as exc:
            if exc.code != "store_unavailable" or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
            continue
        return client, user.counter


async def business(client: GameClient, times: int) -> None:
    for k in range(times):
        resp = await client.business(k, k, 1)
        assert resp.result == k + 1


async def serves(client: GameClient) -> bool:
    """Does this link still act as its account (a business request acknowledged)?"""
    try:
        await client.business(0, 1, 1)
    except (RemoteError, ConnectionError, TimeoutError):
        return False
    return True


async def newer_login_is_the_one_owner(old: GameClient, new: GameClient, acked: bool) -> None:
    """After a lease plus cluster_timeout: at most one link serves; the newer one if acked."""
    served = [name for name, c in (("old", old), ("new", new)) if await serves(c)]
    if acked:
        assert served == ["new"], f"links serving alice: {served} (both: two owners)"
        assert old.closed, "the replaced link was never closed"
    else:
        assert len(served) <= 1, f"links serving alice: {served}"


def test_a_paused_node_does_not_bring_back_old_state(redis_server: RedisServer, tmp_path: Path):
    """Failure 1: A paused past its lease must not serve (or flush) its old copy of alice."""

    async def scenario() -> None:
        async with two_nodes(redis_server, tmp_path) as (a, b):
            first, counter = await player(a, "alice")
            assert counter == 0
            await business(first, 3)
            await asyncio.sleep(FLUSH)
            a.pause()
            await asyncio.sleep(REAPED)
            second, counter = await player(b, "alice")
            assert counter == 3
            await business(second, 5)
            await asyncio.sleep(FLUSH)
            a.resume()
            # A's old link is told Error(replaced) and closed.
            await first.wait_closed(GRACE)
            await second.close()
            await asyncio.sleep(FLUSH)
            again, counter = await player(a, "alice")
            assert counter == 8, f"a login on A saw counter {counter}: 5 acknowledged updates lost"
            await again.close()
            await asyncio.sleep(FLUSH)
            last, counter = await player(b, "alice")
            assert counter == 8, f"A's flush wrote an old counter over B's: {counter}"
            await last.close()

    run(scenario())


def test_a_node_waking_from_a_pause_answers_no_buffered_request(
    redis_server: RedisServer, tmp_path: Path
):
    """The pause window: requests buffered in A's socket while it was stopped past its lease.

    Write-behind (the default store_sync): A wakes with alice's requests
    already in its socket. Were they answered before A's first ownership
    check, they would be acknowledged for a state B owns now (two owners for
    a moment, acknowledged writes lost). A re-validates first, so none is
    answered as a success; its link is told replaced; the stored state is B's.
    """

    async def scenario() -> None:
        async with two_nodes(redis_server, tmp_path) as (a, b):
            # A long request timeout: the buffered requests wait out the pause.
            first = await GameClient("127.0.0.1", a.port, timeout=120.0).connect()
            assert (await first.login("alice")).counter == 0
            await business(first, 2)
            await asyncio.sleep(FLUSH)
            a.pause()
            buffered = [asyncio.ensure_future(first.business(k, k, 1)) for k in range(5)]
            await asyncio.sleep(REAPED)
            second, counter = await player(b, "alice")
            assert counter == 2
            await business(second, 3)
            a.resume()
            results = await asyncio.wait_for(
                asyncio.gather(*buffered, return_exceptions=True), GRACE
            )
            served = [r for r in results if not isinstance(r, BaseException)]
            assert not served, (
                f"A answered {len(served)} of 5 requests as alice after B's login was acked"
            )
            # The link learns why: Error(replaced), then the close (the client
            # fails its pending requests with that reason).
            assert any("replaced" in str(r) for r in results), results
            await first.wait_closed(GRACE)
            await second.close()
            await asyncio.sleep(FLUSH)
            last, counter = await player(b, "alice")
            assert counter == 5, f"the stored counter is {counter}, not B's 5"
            await last.close()

    run(scenario())


def test_a_slow_broker_does_not_make_two_owners(redis_server: RedisServer, tmp_path: Path):
    """Failure 2: Redis paused 3 s (a fork) while alice logs in on B.

    Here with the default lease (5 s): a 3 s pause then outlasts
    cluster_timeout (B's bind gives up waiting while Redis will still run
    it) and no lease expires, so nothing but the bind itself can settle who
    owns alice. With a 3 s lease a 3 s pause may or may not expire the
    leases, and a lost lease happens to repair the binding: a coin toss.
    """
    lease = 5.0

    async def scenario() -> None:
        async with two_nodes(redis_server, tmp_path, lease) as (a, b):
            old, _ = await player(a, "alice")
            await Broker(redis_server).pause(3.0)  # CLIENT PAUSE 3000 ALL
            new = await GameClient("127.0.0.1", b.port, timeout=REQUEST_TIMEOUT).connect()
            try:
                await new.login("alice")
                acked = True
            except (RemoteError, ConnectionError):
                acked = False  # refusing a login whose bind is unknown is allowed
            await asyncio.sleep(lease + TIMEOUT + 1.5)
            await newer_login_is_the_one_owner(old, new, acked)
            await old.close()
            await new.close()

    run(scenario())


def test_a_lost_kick_does_not_make_two_owners(redis_server: RedisServer, tmp_path: Path):
    """Failure 3: Redis drops the pub/sub connections as alice logs in on B."""

    async def scenario() -> None:
        async with two_nodes(redis_server, tmp_path) as (a, b):
            old, _ = await player(a, "alice")
            broker = Broker(redis_server)
            await broker.kill_clients("pubsub")  # CLIENT KILL TYPE pubsub

            async def keep_cutting() -> None:
                end = time.monotonic() + 0.5
                while time.monotonic() < end:
                    await broker.kill_clients("pubsub")
                    await asyncio.sleep(0.05)

            cutting = asyncio.ensure_future(keep_cutting())
            new = await GameClient("127.0.0.1", b.port, timeout=REQUEST_TIMEOUT).connect()
            try:
                await new.login("alice")
                acked = True
            except (RemoteError, ConnectionError):
                acked = False
            await cutting
            await asyncio.sleep(GRACE)
            await newer_login_is_the_one_owner(old, new, acked)
            await old.close()
            await new.close()

    run(scenario())


def test_redis_restarted_empty_does_not_forget_online_players(
    redis_server: RedisServer, tmp_path: Path
):
    """Failure 4: alice online on A (counter 5, flushed); Redis restarts without its data."""

    async def scenario() -> None:
        async with two_nodes(redis_server, tmp_path) as (a, b):
            online, _ = await player(a, "alice")
            await business(online, 5)
            await asyncio.sleep(FLUSH)
            await Broker(redis_server).restart_empty()  # SHUTDOWN NOSAVE, same port
            await asyncio.sleep(LEASE)
            await wait_ready([a, b])  # both nodes re-registered
            elsewhere, counter = await player(b, "alice")
            assert counter == 5, f"alice logged in on B with counter {counter}, not 5"
            await elsewhere.close()
            await online.close()

    run(scenario())


def test_a_leave_during_an_outage_leaves_no_ghost(redis_server: RedisServer, tmp_path: Path):
    """Failure 5: alice leaves room x while Redis is paused past the lease."""

    async def scenario() -> None:
        async with two_nodes(redis_server, tmp_path) as (a, b):
            alice, _ = await player(a, "alice")
            assert (await alice.join("x")).members == ["alice"]
            pause = LEASE + 2.0
            await Broker(redis_server).pause(pause)
            paused_at = time.monotonic()
            await asyncio.sleep(1.5)
            assert (await alice.leave()).room == "x"  # answered locally
            await asyncio.sleep(max(0.0, paused_at + pause - time.monotonic()))
            await asyncio.sleep(REAPED)  # recovered: within a lease plus a reaper cycle
            bob, _ = await player(b, "bob")
            members = (await bob.join("x")).members
            deadline = time.monotonic() + 5.0  # slack for a loaded machine
            while members != ["bob"] and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                members = (await bob.join("x")).members
            assert members == ["bob"], f"room x lists {members}: alice left it during the outage"
            await alice.close()
            await bob.close()

    run(scenario())
