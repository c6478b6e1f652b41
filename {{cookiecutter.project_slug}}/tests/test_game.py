"""The sample game end to end over real sockets, under every protocol and resource model."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator

import pytest

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
    RemoteError,
    Server,
)
from {{ cookiecutter.package_name }}.sgs.protocol import PROTOCOLS
from {{ cookiecutter.package_name }}.sgs.settings import ResourceModel
from {{ cookiecutter.package_name }}.sgs.testing import running_server

MATRIX = pytest.mark.parametrize(
    ("protocol", "model"),
    [pytest.param(p, m.value, id=f"{p}-{m.value}") for p in PROTOCOLS for m in ResourceModel],
)
TIMEOUT = 5.0


@contextlib.asynccontextmanager
async def game_server(
    protocol: str, model: str, tick_interval: float = 1.0
) -> AsyncIterator[Server]:
    """The sample game on 127.0.0.1, two logic workers so links spread over them."""
    async with running_server(
        router,
        setup=functools.partial(setup, tick_interval=tick_interval),
        protocol=protocol,
        resource_model=model,
        logic_workers=2,
        send_workers=2,
    ) as server:
        yield server


def client_for(server: Server, protocol: str) -> GameClient:
    return GameClient("127.0.0.1", server.port, protocol=protocol, timeout=TIMEOUT)


@MATRIX
async def test_robot_flow(protocol: str, model: str) -> None:
    async with game_server(protocol, model) as server:
        report = await run_robots(
            "127.0.0.1", server.port, protocol=protocol, robots=5, requests=4, room_size=3, seed=1
        )
    assert report.failures == []
    assert report.ok
    # login + 4 business + join + logout per robot
    assert report.requests == 5 * (1 + 4 + 2)
    # rooms of 3 and 2 robots: each robot hears every room-mate once
    assert report.pushes == 3 * 3 + 2 * 2
    assert 0 < report.percentile(50) <= report.percentile(99) <= report.percentile(100)


@MATRIX
async def test_room_broadcast_every_member_once_in_order(protocol: str, model: str) -> None:
    async with game_server(protocol, model, tick_interval=60.0) as server:
        clients = [client_for(server, protocol) for _ in range(3)]
        heard: list[list[RoomMessage]] = [[] for _ in clients]
        async with contextlib.AsyncExitStack() as stack:
            for i, client in enumerate(clients):
                await stack.enter_async_context(client)
                client.on_room_message(heard[i].append)
                await client.login(f"member-{i}")
                joined = await client.join("hall")
                assert joined.members == sorted(f"member-{j}" for j in range(i + 1))
            lines = 5

            async def chatter(i: int, client: GameClient) -> None:
                for n in range(lines):
                    await client.say(f"{i}:{n}")

            await asyncio.gather(*(chatter(i, client) for i, client in enumerate(clients)))
            total = lines * len(clients)
            await until(lambda: all(len(h) == total for h in heard))
            # A round trip after the last push: anything duplicated would be here by now.
            for client in clients:
                await client.echo("sync")
        for h in heard:
            assert len(h) == total
            assert all(msg.room == "hall" for msg in h)
            assert h == heard[0], "every member sees the room's messages in the same order"
            for i in range(len(clients)):
                from_i = [msg.text for msg in h if msg.sender == f"member-{i}"]
                assert from_i == [f"{i}:{n}" for n in range(lines)]


@MATRIX
async def test_room_ticks_arrive_on_schedule(protocol: str, model: str) -> None:
    interval = 0.05
    async with game_server(protocol, model, tick_interval=interval) as server:
        async with client_for(server, protocol) as alice, client_for(server, protocol) as bob:
            ticks: list[tuple[float, RoomTick]] = []
            alice.on_room_tick(lambda msg: ticks.append((time.monotonic(), msg)))
            await alice.login("alice")
            await alice.join("clock")
            await until(lambda: len(ticks) >= 4)
            await bob.login("bob")
            await bob.join("clock")
            seen = len(ticks)
            await until(lambda: any(t.members == 2 for _, t in ticks[seen:]))
        numbers = [t.tick for _, t in ticks]
        assert numbers == list(range(1, len(numbers) + 1)), "one tick per interval, none skipped"
        assert all(t.room == "clock" for _, t in ticks)
        assert [t.members for _, t in ticks[:4]] == [1, 1, 1, 1]
        gaps = [b - a for (a, _), (b, _) in zip(ticks[:3], ticks[1:4], strict=True)]
        # a loaded machine may stall the loop (the timer then skips): generous upper bound
        assert interval * 0.5 < sum(gaps) / len(gaps) < interval * 8


@MATRIX
async def test_empty_room_gets_no_ticks(protocol: str, model: str) -> None:
    server_cm = game_server(protocol, model, tick_interval=0.02)
    async with server_cm as server, client_for(server, protocol) as alice:
        ticks: list[RoomTick] = []
        alice.on_room_tick(ticks.append)
        await alice.login("alice")
        await alice.join("quiet")
        await until(lambda: len(ticks) >= 1)
        assert (await alice.leave()).room == "quiet"
        await alice.echo("sync")
        count = len(ticks)
        await asyncio.sleep(0.1)
        assert len(ticks) == count


@MATRIX
async def test_business_and_rooms_need_login(protocol: str, model: str) -> None:
    async with game_server(protocol, model) as server, client_for(server, protocol) as client:
        assert await client.echo("anyone") == "anyone"
        assert (await client.ping()).server_time_ms > 0
        for request, msg_id in (
            (client.business(1, 2, 3), 3),
            (client.join("hall"), 11),
            (client.leave(), 15),
        ):
            with pytest.raises(RemoteError) as info:
                await request
            assert info.value.error.code == "not_logged_in"
            assert info.value.error.msg_id == msg_id
        user = await client.login("late")
        assert user.counter == 0
        assert (await client.business(1, 2, 3)).result == 5


@MATRIX
async def test_logout_closes_link_after_reply(protocol: str, model: str) -> None:
    async with game_server(protocol, model) as server:
        async with client_for(server, protocol) as client:
            await client.login("leaver")
            await client.join("hall")
            await client.logout()  # returns only after LogoutResp arrived and the link closed
            assert client.closed
        await until(lambda: not server.links)


@MATRIX
async def test_counter_survives_reconnect(protocol: str, model: str) -> None:
    async with game_server(protocol, model) as server:
        async with client_for(server, protocol) as first:
            assert (await first.login("returning")).counter == 0
            for key in range(3):
                resp = await first.business(key, key, 10)
                assert (resp.key, resp.result) == (key, key + 10)
            await first.logout()
        async with client_for(server, protocol) as second:
            assert (await second.login("returning")).counter == 3
            await second.business(9, 1, 1)
        # a dropped connection (no logout) keeps the counter too
        async with client_for(server, protocol) as third:
            assert (await third.login("returning")).counter == 4


@MATRIX
async def test_same_account_newer_login_replaces_older_link(protocol: str, model: str) -> None:
    async with game_server(protocol, model) as server:
        async with client_for(server, protocol) as old, client_for(server, protocol) as new:
            notices: list[Error] = []
            old.on_error(notices.append)
            await old.login("twin")
            await old.join("hall")
            await old.business(1, 1, 1)
            assert (await new.login("twin")).counter == 1
            await old.wait_closed(TIMEOUT)
            assert [(e.code, e.msg_id) for e in notices] == [("replaced", 0)]
            with pytest.raises(ConnectionError):
                await old.business(2, 2, 2)
            await new.business(3, 3, 3)
            joined = await new.join("hall")
            assert joined.members == ["twin"], "the replaced link left its room"
            await new.logout()
        async with client_for(server, protocol) as again:
            assert (await again.login("twin")).counter == 2
