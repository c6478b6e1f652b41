"""Rooms on one node, alone (LocalDirectory) or as a cluster node (the Redis directory).

Every test runs real servers on 127.0.0.1 with real clients; the room type is
``roomkit.Lab``, whose hooks record what they saw.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from roomkit import (
    Lab,
    LabCmd,
    LabNote,
    LabReq,
    LabResp,
    game_catalog,
    lab_client,
    lab_rooms,
    lab_server,
)
from testkit import free_port, until
from wskit import ws_peer

from {{ cookiecutter.package_name }}.sgs import (
    RemoteError,
    get_codec,
)
from {{ cookiecutter.package_name }}.sgs.protocol import (
    PROTOCOLS,
)
from {{ cookiecutter.package_name }}.sgs.rooms import (
    CreateRoom,
    JoinById,
    JoinOrCreate,
    LeaveRoom,
    ListRooms,
    RoomClosed,
    RoomJoined,
    RoomLeft,
    RoomList,
    manager_of,
)
from {{ cookiecutter.package_name }}.sgs.rooms.directory import (
    CREATE,
    WAIT,
)

CODECS = pytest.mark.parametrize("protocol", PROTOCOLS)


@pytest.fixture(params=["local", "redis"])
def broker(request: pytest.FixtureRequest) -> dict[str, object]:
    """Settings for one node alone (LocalDirectory), or a cluster node (the Redis directory)."""
    if request.param == "local":
        return {}
    redis = request.getfixturevalue("redis_server")
    return {"cluster_url": redis.url, "cluster_lease": 1.5, "store_url": "memory://"}


T = 5.0


def opts(**values: object) -> str:
    return json.dumps(values)


async def error_code(call) -> str:
    with pytest.raises(RemoteError) as info:
        await call
    return info.value.error.code


@CODECS
async def test_join_or_create_fills_rooms_of_max_clients(
    protocol: str, broker: dict[str, object]
) -> None:
    async with lab_server(protocol=protocol, **broker) as server:
        clients = [await lab_client(server, protocol).connect() for _ in range(6)]
        joined = await asyncio.gather(
            *(c.request(JoinOrCreate(room_type="lab"), timeout=T) for c in clients)
        )
        by_room: dict[str, int] = {}
        for answer in joined:
            assert isinstance(answer, RoomJoined) and answer.room_type == "lab"
            by_room[answer.room_id] = by_room.get(answer.room_id, 0) + 1
        assert sorted(by_room.values()) == [2, 2, 2]
        listing = await clients[0].request(ListRooms(room_type="lab"), timeout=T)
        assert isinstance(listing, RoomList)
        assert sorted((r.room_id, r.clients, r.max_clients) for r in listing.rooms) == sorted(
            (room_id, 2, 2) for room_id in by_room
        )
        assert all(r.owner == server.cluster.node_id for r in listing.rooms)
        # Room messages reach the room of the sender and are answered there.
        assert await clients[0].request(LabReq(text="hi"), timeout=T) == LabResp(text="hi")
        for c in clients:
            await c.close()


@CODECS
async def test_every_refusal_code(protocol: str, broker: dict[str, object]) -> None:
    async with lab_server(protocol=protocol, seat_reservation_timeout=0.4, **broker) as server:
        a, b, c, d = [await lab_client(server, protocol).connect() for _ in range(4)]
        assert await error_code(a.request(JoinOrCreate(room_type="nope"), timeout=T)) == (
            "no_such_room"
        )
        assert await error_code(a.request(JoinById(room_id="missing"), timeout=T)) == (
            "no_such_room"
        )
        assert await error_code(a.request(LabReq(text="x"), timeout=T)) == "not_in_room"
        # join_refused: on_join raised HandlerError; the seat is given back.
        joined = await a.request(CreateRoom(room_type="lab"), timeout=T)
        room_id = joined.room_id
        refused = b.request(JoinById(room_id=room_id, options=opts(deny=True)), timeout=T)
        assert await error_code(refused) == "join_refused"
        # room_full: b takes the second seat, c finds none.
        await b.request(JoinById(room_id=room_id), timeout=T)
        assert await error_code(c.request(JoinById(room_id=room_id), timeout=T)) == "room_full"
        # room_locked: a locked room is answered room_locked, and JoinOrCreate skips it.
        await b.request(LeaveRoom(), timeout=T)
        assert await a.request(LabCmd(cmd="lock"), timeout=T) == LabResp(text="lock")
        assert await error_code(c.request(JoinById(room_id=room_id), timeout=T)) == "room_locked"
        other = await c.request(JoinOrCreate(room_type="lab"), timeout=T)
        assert other.room_id != room_id
        await a.request(LabCmd(cmd="unlock"), timeout=T)
        assert (await d.request(JoinOrCreate(room_type="lab"), timeout=T)).room_id in (
            room_id,
            other.room_id,
        )
        # seat_expired: d's seat waits behind a slow join longer than the reservation.
        slow = await a.request(CreateRoom(room_type="lab", options=opts(max=3)), timeout=T)
        await a.request(LeaveRoom(), timeout=T)
        slow_join = asyncio.ensure_future(
            b.request(JoinById(room_id=slow.room_id, options=opts(slow_join=1.0)), timeout=T)
        )
        await asyncio.sleep(0.1)
        late = c.request(JoinById(room_id=slow.room_id), timeout=T)
        assert await error_code(late) == "seat_expired"
        assert (await slow_join).room_id == slow.room_id
        for client in (a, b, c, d):
            await client.close()


@CODECS
async def test_private_room_is_never_listed_nor_matched_but_joins_by_id(
    protocol: str,
    broker: dict[str, object],
) -> None:
    async with lab_server(protocol=protocol, **broker) as server:
        a, b, c = [await lab_client(server, protocol).connect() for _ in range(3)]
        hidden = await a.request(CreateRoom(room_type="lab", options=opts(private=True)), timeout=T)
        listing = await b.request(ListRooms(), timeout=T)
        assert listing.rooms == []
        matched = await b.request(JoinOrCreate(room_type="lab"), timeout=T)
        assert matched.room_id != hidden.room_id
        assert [r.room_id for r in (await c.request(ListRooms(), timeout=T)).rooms] == [
            matched.room_id
        ]
        assert (await c.request(JoinById(room_id=hidden.room_id), timeout=T)).room_id == (
            hidden.room_id
        )
        # Going private later takes a listed room off the listing.
        await b.request(LabCmd(cmd="private"), timeout=T)
        assert (await c.request(ListRooms(), timeout=T)).rooms == []
        for client in (a, b, c):
            await client.close()


@CODECS
async def test_filters_match_metadata(protocol: str, broker: dict[str, object]) -> None:
    async with lab_server(protocol=protocol, **broker) as server:
        a, b, c = [await lab_client(server, protocol).connect() for _ in range(3)]
        red = await a.request(
            CreateRoom(room_type="lab", options=opts(meta={"team": "red"})), timeout=T
        )
        blue = await b.request(JoinOrCreate(room_type="lab", filters=opts(team="blue")), timeout=T)
        assert blue.room_id != red.room_id  # no blue room yet: one was created
        again = await c.request(JoinOrCreate(room_type="lab", filters=opts(team="red")), timeout=T)
        assert again.room_id == red.room_id and again.metadata == '{"team":"red"}'
        listing = await c.request(ListRooms(room_type="lab", filters=opts(team="red")), timeout=T)
        assert [r.room_id for r in listing.rooms] == [red.room_id]
        assert await error_code(c.request(ListRooms(filters="[1]"), timeout=T)) == "bad_request"
        for client in (a, b, c):
            await client.close()


@CODECS
async def test_seat_expires_frees_the_seat_and_is_used_once(
    protocol: str, broker: dict[str, object]
) -> None:
    async with lab_server(protocol=protocol, seat_reservation_timeout=0.3, **broker) as server:
        manager = manager_of(server)
        directory = manager.directory
        a, b = [await lab_client(server, protocol).connect() for _ in range(2)]
        created = await a.request(CreateRoom(room_type="lab", options=opts(max=3)), timeout=T)
        room_id = created.room_id
        used = await directory.reserve_in(room_id, manager.seat_timeout)
        spare = await directory.reserve_in(room_id, manager.seat_timeout)
        assert await error_code(b.request(JoinById(room_id=room_id), timeout=T)) == "room_full"
        assert await directory.consume(used)
        assert not await directory.consume(used)  # a seat is used once
        await asyncio.sleep(0.4)  # the spare seat was never used: it stops counting
        assert (await b.request(JoinById(room_id=room_id), timeout=T)).room_id == room_id
        assert not await directory.consume(spare)
        await a.close()
        await b.close()


@CODECS
async def test_reserved_seat_keeps_an_empty_room_until_it_expires_then_disposes(
    protocol: str,
    broker: dict[str, object],
) -> None:
    async with lab_server(protocol=protocol, seat_reservation_timeout=0.5, **broker) as server:
        manager = manager_of(server)
        a = await lab_client(server, protocol).connect()
        room_id = (await a.request(CreateRoom(room_type="lab"), timeout=T)).room_id
        await manager.directory.reserve_in(room_id, manager.seat_timeout)
        await a.request(LeaveRoom(), timeout=T)
        await asyncio.sleep(0.3)  # past empty_grace (0.2), within the seat's 0.5 s
        assert room_id in lab_rooms(server)
        await until(lambda: room_id not in lab_rooms(server))
        assert Lab.log[room_id][-1] == ("dispose",)
        assert (await a.request(ListRooms(), timeout=T)).rooms == []
        await a.close()


@CODECS
async def test_on_leave_consented_and_dispose_after_grace(protocol: str) -> None:
    async with lab_server(protocol=protocol) as server:
        a, b = [await lab_client(server, protocol).connect() for _ in range(2)]
        room_id = (await a.request(JoinOrCreate(room_type="lab"), timeout=T)).room_id
        assert (await b.request(JoinOrCreate(room_type="lab"), timeout=T)).room_id == room_id
        names = [m.name for m in lab_rooms(server)[room_id].clients]
        assert await a.request(LeaveRoom(), timeout=T) == RoomLeft(room_id=room_id)
        assert await error_code(a.request(LeaveRoom(), timeout=T)) == "not_in_room"
        await b.close()  # the link drops: consented is False
        await until(lambda: room_id not in lab_rooms(server))
        events = Lab.log[room_id]
        assert ("leave", names[0], True) in events
        assert ("leave", names[1], False) in events
        assert events[-1] == ("dispose",)
        await a.close()


async def test_room_turn_serializes_handlers_across_awaits_and_keeps_member_order() -> None:
    """The guarantee: a room's hooks and handlers never interleave, even across awaits."""
    async with lab_server() as server:
        a, b = [await lab_client(server, "json").connect() for _ in range(2)]
        room_id = (await a.request(JoinOrCreate(room_type="lab"), timeout=T)).room_id
        await b.request(JoinOrCreate(room_type="lab"), timeout=T)
        sends = [
            a.request(LabReq(text=f"a{i}", delay=0.02 * (i % 3)), timeout=T) for i in range(10)
        ]
        sends += [b.request(LabReq(text=f"b{i}", delay=0.01), timeout=T) for i in range(10)]
        await asyncio.gather(*sends)
        trace = [e for e in Lab.log[room_id] if e[0] in ("enter", "exit")]
        assert len(trace) == 40
        for enter, leave in zip(trace[::2], trace[1::2], strict=True):
            assert enter[0] == "enter" and leave == ("exit", enter[1])
        texts = [e[1] for e in trace[::2]]
        assert [t for t in texts if t[0] == "a"] == [f"a{i}" for i in range(10)]
        assert [t for t in texts if t[0] == "b"] == [f"b{i}" for i in range(10)]
        await a.close()
        await b.close()


async def test_ticks_never_interleave_with_an_awaiting_handler() -> None:
    async with lab_server() as server:
        a = await lab_client(server, "json").connect()
        room_id = await a.request(CreateRoom(room_type="lab", options=opts(tick=50)), timeout=T)
        room_id = room_id.room_id
        await a.request(LabReq(text="long", delay=0.3), timeout=T)
        await asyncio.sleep(0.1)
        events = Lab.log[room_id]
        enter = events.index(("enter", "long"))
        assert events[enter + 1] == ("exit", "long")  # no tick ran while it awaited
        ticks = [e[1] for e in events if e[0] == "tick"]
        assert len(ticks) >= 5 and max(ticks) >= 0.25  # the tick after it saw the long dt
        await a.close()


async def test_broadcast_send_metadata_and_disconnect() -> None:
    async with lab_server() as server:
        a, b = [await lab_client(server, "json").connect() for _ in range(2)]
        notes: dict[str, list[str]] = {"a": [], "b": []}
        closed: list[RoomClosed] = []
        a.on(LabNote, lambda m: notes["a"].append(m.text))
        b.on(LabNote, lambda m: notes["b"].append(m.text))
        b.on(RoomClosed, closed.append)
        room_id = (await a.request(JoinOrCreate(room_type="lab"), timeout=T)).room_id
        await b.request(JoinOrCreate(room_type="lab"), timeout=T)
        await a.request(LabCmd(cmd="shout:hello"), timeout=T)  # everyone but the sender
        await a.request(LabCmd(cmd="whisper:psst"), timeout=T)  # the sender alone
        await a.request(LabCmd(cmd="meta:map=dust"), timeout=T)
        listing = await b.request(ListRooms(filters=opts(map="dust")), timeout=T)
        assert [r.room_id for r in listing.rooms] == [room_id]
        await until(lambda: "hello" in notes["b"])
        assert "hello" not in notes["a"] and "psst" in notes["a"] and "psst" not in notes["b"]
        a.send_nowait(LabCmd(cmd="disconnect:game over"))
        await until(lambda: closed)
        assert closed == [RoomClosed(room_id=room_id, reason="game over")]
        await until(lambda: room_id not in lab_rooms(server))
        assert ("dispose",) == Lab.log[room_id][-1]
        assert await error_code(b.request(LabReq(text="x"), timeout=T)) == "not_in_room"
        await a.close()
        await b.close()


async def test_server_stop_closes_rooms_with_room_closed() -> None:
    closed: list[RoomClosed] = []
    async with lab_server() as server:
        a = await lab_client(server, "json").connect()
        a.on(RoomClosed, closed.append)
        room_id = (await a.request(JoinOrCreate(room_type="lab"), timeout=T)).room_id
    await until(lambda: closed)
    assert closed == [RoomClosed(room_id=room_id, reason="server shutdown")]
    await a.close()


async def test_concurrent_join_or_create_claims_one_creation_per_filter() -> None:
    async with lab_server() as server:
        directory = manager_of(server).directory
        assert await directory.reserve("lab", {}, "lab:", 1.0) == CREATE
        assert await directory.reserve("lab", {}, "lab:", 1.0) == WAIT
        assert await directory.reserve("lab", {"x": 1}, 'lab:{"x":1}', 1.0) == CREATE
        directory.release_claim("lab:")
        assert await directory.reserve("lab", {}, "lab:", 1.0) == CREATE


@CODECS
async def test_tcp_and_websocket_members_in_one_match(protocol: str) -> None:
    async with lab_server(protocol=protocol, ws_port=free_port()) as server:
        codec = get_codec(protocol, game_catalog)
        tcp = await lab_client(server, protocol).connect()
        notes: list[str] = []
        tcp.on(LabNote, lambda m: notes.append(m.text))
        room_id = (await tcp.request(JoinOrCreate(room_type="lab"), timeout=T)).room_id
        ws = await ws_peer(server.ws_port)
        ws.send(codec.encode_frame(JoinOrCreate(room_type="lab")))
        frames = await ws.frames(1)
        joined = codec.decode(frames[0][0], frames[0][1])
        assert joined == RoomJoined(room_id=room_id, room_type="lab", clients=2, max_clients=2)
        ws.send(codec.encode_frame(LabCmd(cmd="shout:from ws")))
        await until(lambda: "from ws" in notes)
        await tcp.request(LabCmd(cmd="shout:from tcp"), timeout=T)
        got = []
        while not any(isinstance(m, LabNote) and m.text == "from tcp" for m in got):
            got += [codec.decode(i, v) for i, v in await ws.frames(1)]
        await tcp.close()
        ws.transport.disconnect()


async def test_rooms_made_together_tick_at_spread_phases() -> None:
    """Ticks of rooms created in one burst are spread over the interval, not one burst."""
    async with lab_server() as server:
        clients = [await lab_client(server, "json").connect() for _ in range(4)]
        for c in clients:
            await c.request(CreateRoom(room_type="lab", options=opts(tick=10)), timeout=T)
        phases = sorted(room.tick_phase for room in lab_rooms(server).values())
        gaps = [b - a for a, b in zip(phases, phases[1:], strict=False)]
        gaps.append(phases[0] + 1.0 - phases[-1])
        assert min(gaps) > 0.1  # no two of four rooms within a tenth of the interval
        for c in clients:
            await c.close()


async def test_a_room_handlers_refusal_is_an_error_counted_by_the_outcome_service(
    broker: dict[str, object],
) -> None:
    """Room handlers answer through the outcome service, so sgs_errors counts them."""
    async with lab_server(**broker) as server:
        a = await lab_client(server, "json").connect()
        await a.request(CreateRoom(room_type="lab"), timeout=T)
        before = server.stats.errors.get("bad_cmd", 0)
        assert await error_code(a.request(LabCmd(cmd="bogus"), timeout=T)) == "bad_cmd"
        assert server.stats.errors.get("bad_cmd", 0) == before + 1
        await a.close()
