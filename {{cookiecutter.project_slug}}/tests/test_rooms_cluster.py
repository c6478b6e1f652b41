"""Rooms across nodes: two real ``serve`` processes and a real redis-server.

Placement is one script in Redis, so concurrent JoinOrCreate from both nodes
never overfill nor duplicate a room; a member on one node plays in a room
owned by the other; a killed owner's members get RoomClosed and its rooms
leave the listing.
"""

from __future__ import annotations

import asyncio
import collections
import time
from pathlib import Path

import pytest
import redis as redis_sync

from chaos.procs import Node
from redis_server import RedisServer

from {{ cookiecutter.package_name }}.messages import (
    ArenaState,
    JoinById,
    JoinOrCreate,
    ListRooms,
    LoginReq,
    MoveReq,
    RoomClosed,
    RoomJoined,
    catalog,
)
from {{ cookiecutter.package_name }}.sgs import (
    Client,
)
from {{ cookiecutter.package_name }}.sgs.protocol import (
    PROTOCOLS,
)

LEASE = 1.5
T = 15.0


async def nodes(redis_server: RedisServer, tmp_path: Path, **settings: str) -> list[Node]:
    common = {
        "cluster_url": redis_server.url,
        "cluster_lease": str(LEASE),
        "store_url": "memory://",
        "arena_max_players": "2",
        **settings,
    }
    return list(
        await asyncio.gather(
            *(Node(name, tmp_path, **common).start() for name in ("node-a", "node-b"))
        )
    )


async def player(node: Node, name: str, protocol: str = "json") -> Client:
    client = Client("127.0.0.1", node.port, protocol=protocol, catalog=catalog)
    await client.connect(retries=5)
    await client.request(LoginReq(account_id=name), timeout=T)
    return client


async def listing(client: Client) -> list:
    return (await client.request(ListRooms(room_type="arena"), timeout=T)).rooms


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_hundred_concurrent_join_or_create_make_fifty_rooms_of_two(
    redis_server: RedisServer, tmp_path: Path, protocol: str
) -> None:
    a, b = await nodes(redis_server, tmp_path, protocol=protocol)
    clients: list[Client] = []
    try:
        clients = list(
            await asyncio.gather(*(player((a, b)[i % 2], f"p{i}", protocol) for i in range(100)))
        )
        answers = await asyncio.gather(
            *(c.request(JoinOrCreate(room_type="arena"), timeout=T) for c in clients),
            return_exceptions=True,
        )
        failed = [x for x in answers if not isinstance(x, RoomJoined)]
        assert failed == []
        sizes = collections.Counter(x.room_id for x in answers)
        assert len(sizes) == 50 and set(sizes.values()) == {2}
        assert all(x.max_clients == 2 and x.clients <= 2 for x in answers)
        deadline = time.monotonic() + T
        while True:  # the listing follows every join (published on the owner's bus)
            rows = await listing(clients[0])
            if len(rows) == 50 and all(r.clients == 2 for r in rows):
                break
            assert time.monotonic() < deadline, rows
            await asyncio.sleep(0.1)
        assert {r.room_id for r in rows} == set(sizes)
        assert {r.owner for r in rows} == {"node-a", "node-b"}  # created on the callers' nodes
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
        a.terminate()
        b.terminate()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_members_on_two_nodes_play_one_arena_in_order(
    redis_server: RedisServer, tmp_path: Path, protocol: str
) -> None:
    a, b = await nodes(redis_server, tmp_path, protocol=protocol)
    try:
        near, far = await player(a, "near", protocol), await player(b, "far", protocol)
        states: dict[str, list[ArenaState]] = {"near": [], "far": []}
        near.on(ArenaState, states["near"].append)
        far.on(ArenaState, states["far"].append)
        room = await near.request(JoinOrCreate(room_type="arena"), timeout=T)
        joined = await far.request(JoinOrCreate(room_type="arena"), timeout=T)
        assert joined.room_id == room.room_id and joined.clients == 2
        for seq in range(1, 31):
            await far.send(MoveReq(direction="left" if seq % 3 else "up", seq=seq))
            await asyncio.sleep(0.01)
        deadline = time.monotonic() + T
        while not (states["near"] and _seq(states["near"][-1], "far") == 30):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        for who, got in states.items():
            seqs = [_seq(s, "far") for s in got]
            assert seqs == sorted(seqs), who  # the far member's inputs applied in order
            ticks = [s.tick for s in got]
            assert ticks == list(range(ticks[0], ticks[0] + len(ticks))), who  # none missed
        await near.close()
        await far.close()
    finally:
        a.terminate()
        b.terminate()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_owner_killed_members_elsewhere_get_room_closed_and_listing_is_cleaned(
    redis_server: RedisServer, tmp_path: Path, protocol: str
) -> None:
    a, b = await nodes(redis_server, tmp_path, protocol=protocol)
    try:
        owner_side = await player(a, "owner-side", protocol)
        far = await player(b, "far", protocol)
        closed: list[RoomClosed] = []
        far.on(RoomClosed, closed.append)
        room = await owner_side.request(JoinOrCreate(room_type="arena"), timeout=T)
        await far.request(JoinById(room_id=room.room_id), timeout=T)
        assert [r.room_id for r in await listing(far)] == [room.room_id]
        killed = time.monotonic()
        a.kill()
        while not closed:
            assert time.monotonic() - killed < 2 * LEASE + 2.0, "no RoomClosed"
            await asyncio.sleep(0.05)
        assert closed == [RoomClosed(room_id=room.room_id, reason="owner lost")]
        assert await listing(far) == []  # not listed: its owner's lease is gone
        with redis_sync.Redis(port=redis_server.port) as r:
            while r.exists(f"sgs:room:{room.room_id}"):  # the reaper drops its keys
                assert time.monotonic() - killed < 2 * LEASE + 3.0, "room keys not reaped"
                await asyncio.sleep(0.05)
        # The far player is free to play elsewhere at once.
        again = await far.request(JoinOrCreate(room_type="arena"), timeout=T)
        assert again.room_id != room.room_id
        await far.close()
    finally:
        a.terminate()
        b.terminate()


def _seq(state: ArenaState, name: str) -> int:
    for p in state.players:
        if p.name == name:
            return p.seq
    pytest.fail(f"{name} missing from {state}")
