"""The sample game's arena (a room type on sgs/rooms), end to end on one node."""

from __future__ import annotations

import asyncio

import bson
import msgspec
import pytest

from testkit import until

from {{ cookiecutter.package_name }}.client import (
    GameClient,
)
from {{ cookiecutter.package_name }}.handlers import (
    router,
    setup,
)
from {{ cookiecutter.package_name }}.messages import (
    ArenaState,
    JoinOrCreate,
    LoginReq,
    MoveReq,
    RoomClosed,
    RoomJoined,
    RoomMessage,
    catalog,
)
from {{ cookiecutter.package_name }}.settings import (
    Settings,
)
from {{ cookiecutter.package_name }}.sgs import (
    Client,
    DecodeError,
    RemoteError,
    get_codec,
)
from {{ cookiecutter.package_name }}.sgs.protocol import (
    PROTOCOLS,
)
from {{ cookiecutter.package_name }}.sgs.rooms import (
    manager_of,
)
from {{ cookiecutter.package_name }}.sgs.testing import (
    running_server,
)

T = 5.0


async def player(port: int, protocol: str, name: str) -> tuple[Client, list[ArenaState]]:
    client = await Client("127.0.0.1", port, protocol=protocol, catalog=catalog).connect()
    states: list[ArenaState] = []
    client.on(ArenaState, states.append)
    await client.request(LoginReq(account_id=name), timeout=T)
    return client, states


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_arena_applies_inputs_in_order_and_every_member_gets_every_tick(
    protocol: str,
) -> None:
    settings = Settings(store_url="memory://", arena_max_players=2, ws_port=0)
    async with running_server(router, setup=setup, settings=settings, protocol=protocol) as server:
        (a, a_states), (b, b_states) = [
            await player(server.port, protocol, name) for name in ("ann", "bob")
        ]
        joined = [await c.request(JoinOrCreate(room_type="arena"), timeout=T) for c in (a, b)]
        assert all(isinstance(j, RoomJoined) for j in joined)
        assert joined[0].room_id == joined[1].room_id and joined[1].clients == 2
        assert joined[1].max_clients == 2
        for seq in range(1, 41):
            await a.send(MoveReq(direction="right" if seq % 2 else "down", seq=seq))
            await asyncio.sleep(0.01)  # about 5 inputs a tick: well under the queue's bound
        deadline = asyncio.get_running_loop().time() + T
        while asyncio.get_running_loop().time() < deadline:
            if b_states and _seq_of(b_states[-1], "ann") == 40:
                break
            await asyncio.sleep(0.02)
        for states in (a_states, b_states):
            seqs = [_seq_of(s, "ann") for s in states if _seq_of(s, "ann") is not None]
            assert seqs == sorted(seqs) and seqs[-1] == 40  # applied in order, all of them
        ticks_b = [s.tick for s in b_states]
        assert ticks_b == list(range(ticks_b[0], ticks_b[0] + len(ticks_b)))  # none missed
        # A third player finds the arena full and gets one of its own.
        c, _ = await player(server.port, protocol, "cid")
        third = await c.request(JoinOrCreate(room_type="arena"), timeout=T)
        assert third.room_id != joined[0].room_id
        d, _ = await player(server.port, protocol, "dan")  # in no room: refused
        with pytest.raises(RemoteError) as info:
            await d.request(MoveReq(direction="up"), timeout=T, reply=RoomJoined)
        assert info.value.error.code == "not_in_room"
        for client in (a, b, c, d):
            await client.close()


def _seq_of(state: ArenaState, name: str) -> int | None:
    for p in state.players:
        if p.name == name:
            return p.seq
    return None


async def test_game_client_match_methods() -> None:
    settings = Settings(store_url="memory://", ws_port=0)
    async with running_server(router, setup=setup, settings=settings) as server:
        host = GameClient("127.0.0.1", server.port, protocol=settings.protocol, timeout=T)
        guest = GameClient("127.0.0.1", server.port, protocol=settings.protocol, timeout=T)
        closed: list[RoomClosed] = []
        states: list[ArenaState] = []
        guest.on_room_closed(closed.append)
        guest.on_arena_state(states.append)
        async with host, guest:
            await host.login("host")
            await guest.login("guest")
            made = await host.create_room("arena", {"mode": "duel"})
            assert made.metadata == '{"mode":"duel"}' and made.max_clients == 8
            rows = await guest.list_rooms("arena", {"mode": "duel"})
            assert [(r.room_id, r.clients) for r in rows] == [(made.room_id, 1)]
            assert await guest.list_rooms("arena", {"mode": "ffa"}) == []
            assert (await guest.join_by_id(made.room_id)).clients == 2
            await guest.move("down", 1)
            while not any(p.seq == 1 for s in states for p in s.players if p.name == "guest"):
                await asyncio.sleep(0.02)
            assert (await host.leave_room()).room_id == made.room_id
            again = await host.join_or_create("arena", filters={"mode": "duel"})
            assert again.room_id == made.room_id
        assert closed == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_direction_outside_the_literal_is_refused_by_every_decoder(protocol: str) -> None:
    """MoveReq.direction is a Literal: every decoder, fast paths too, refuses other strings."""
    wrong = {"direction": "sideways"}
    value = {
        "json": msgspec.json.encode(wrong),
        "msgpack": msgspec.msgpack.encode(wrong),
        "bson": bson.encode(wrong),
        "protobuf": b"",  # an absent string field is "", which is not a direction either
    }[protocol]
    codec = get_codec(protocol, catalog)
    with pytest.raises(DecodeError):
        codec.decode(MoveReq.__msg_id__, value)
    with pytest.raises(Exception):  # noqa: B017 - any refusal; the worker then asks decode()
        codec.fast_decoder(MoveReq)(value)


async def test_a_player_chats_and_plays_at_once_chat_is_a_room_type() -> None:
    """Chat (ids 11-17) is the shared ``chat`` room type: a link is in a chat room and a match."""
    settings = Settings(store_url="memory://", ws_port=0)
    async with running_server(router, setup=setup, settings=settings) as server:
        a = GameClient("127.0.0.1", server.port, protocol=settings.protocol, timeout=T)
        b = GameClient("127.0.0.1", server.port, protocol=settings.protocol, timeout=T)
        said: list[RoomMessage] = []
        states: list[ArenaState] = []
        b.on_room_message(said.append)
        a.on_arena_state(states.append)
        async with a, b:
            await a.login("ann")
            await b.login("bob")
            assert (await a.join("lobby")).members == ["ann"]
            match = await a.join_or_create("arena")
            assert (await b.join("lobby")).members == ["ann", "bob"]
            chat = manager_of(server).shared_rooms("chat")
            assert [(r.room_id, r.name, len(r.clients)) for r in chat] == [("lobby", "chat", 2)]
            await a.say("hi")  # to the chat room
            await a.move("up", 7)  # to the match
            while not said or not any(p.seq == 7 for s in states for p in s.players):
                await asyncio.sleep(0.02)
            assert said == [RoomMessage(room="lobby", sender="ann", text="hi")]
            assert (await a.leave()).room == "lobby"  # LeaveRoomReq leaves the chat room
            assert (await a.leave_room()).room_id == match.room_id  # LeaveRoom the match
            with pytest.raises(RemoteError) as info:
                await a.join_or_create("chat")  # joined by name, never matchmade
            assert info.value.error.code == "no_such_room"
            await until(
                lambda: [len(r.clients) for r in manager_of(server).shared_rooms("chat")] == [1]
            )
