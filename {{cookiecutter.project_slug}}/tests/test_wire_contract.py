"""The wire contract, driven with raw TLV + JSON bytes over a socket (no client stub).

This is what a go-sgs robot, or a client written in any other language, sees:
if one of these tests needs changing, deployed clients break.
"""

from __future__ import annotations

import asyncio
import functools
import json
import struct
from typing import Any

import pytest

from {{ cookiecutter.package_name }} import (
    messages,
)
from {{ cookiecutter.package_name }}.handlers import (
    router,
    setup,
)
from {{ cookiecutter.package_name }}.sgs.message import (
    field_types,
)
from {{ cookiecutter.package_name }}.sgs.protocol import (
    render_proto,
)
from {{ cookiecutter.package_name }}.sgs.settings import (
    ResourceModel,
)
from {{ cookiecutter.package_name }}.sgs.testing import (
    running_server,
)

HEADER = struct.Struct(">II")
TIMEOUT = 5.0
MODELS = pytest.mark.parametrize("model", [m.value for m in ResourceModel])

#: id -> (name, field names in declaration order): the message catalogue in README.md.
CONTRACT: dict[int, tuple[str, list[str]]] = {
    1: ("LoginReq", ["account_id"]),
    2: ("LoginResp", ["user"]),
    3: ("BusinessReq", ["key", "value1", "value2"]),
    4: ("BusinessResp", ["key", "result"]),
    5: ("LogoutReq", []),
    6: ("LogoutResp", []),
    7: ("PingReq", ["client_time_ms"]),
    8: ("PongResp", ["client_time_ms", "server_time_ms"]),
    9: ("EchoReq", ["text"]),
    10: ("EchoResp", ["text"]),
    11: ("JoinRoomReq", ["room"]),
    12: ("JoinRoomResp", ["room", "members"]),
    13: ("SayReq", ["text"]),
    14: ("RoomMessage", ["room", "sender", "text"]),
    15: ("LeaveRoomReq", []),
    16: ("LeaveRoomResp", ["room"]),
    17: ("RoomTick", ["room", "tick", "members"]),
    18: ("RoomJoined", ["room_id", "room_type", "clients", "max_clients", "metadata"]),
    19: ("JoinOrCreate", ["room_type", "options", "filters"]),
    20: ("CreateRoom", ["room_type", "options"]),
    21: ("JoinById", ["room_id", "options"]),
    22: ("RoomLeft", ["room_id"]),
    23: ("LeaveRoom", []),
    24: ("RoomList", ["rooms"]),
    25: ("ListRooms", ["room_type", "filters"]),
    26: ("RoomClosed", ["room_id", "reason"]),
    27: ("MoveReq", ["direction", "seq"]),
    28: ("ArenaState", ["room_id", "tick", "players"]),
    99: ("Error", ["code", "message", "msg_id"]),
}


class RawPeer:
    """A socket speaking TLV + JSON by hand, like a client in another language."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int) -> RawPeer:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    def send(self, msg_id: int, value: dict[str, Any] | bytes) -> None:
        data = value if isinstance(value, bytes) else json.dumps(value).encode()
        self.writer.write(HEADER.pack(msg_id, len(data)) + data)

    async def recv(self) -> tuple[int, Any]:
        header = await asyncio.wait_for(self.reader.readexactly(HEADER.size), TIMEOUT)
        msg_id, length = HEADER.unpack(header)
        value = await asyncio.wait_for(self.reader.readexactly(length), TIMEOUT)
        return msg_id, json.loads(value)

    async def recv_skipping_ticks(self) -> tuple[int, Any]:
        while True:
            msg_id, value = await self.recv()
            if msg_id != 17:
                return msg_id, value

    async def at_eof(self) -> bool:
        return await asyncio.wait_for(self.reader.read(1), TIMEOUT) == b""

    def close(self) -> None:
        self.writer.close()


def test_catalogue_ids_and_field_names() -> None:
    declared = {
        cls.__msg_id__: (cls.__name__, list(field_types(cls)))
        for cls in messages.catalog
        if cls.__msg_id__ in CONTRACT
    }
    assert declared == CONTRACT
    assert list(field_types(messages.User)) == ["account_id", "counter"]
    for msg_id, (name, _) in CONTRACT.items():
        assert getattr(messages, name).__msg_id__ == msg_id


def test_replies_are_declared() -> None:
    pairs = {
        messages.LoginReq: messages.LoginResp,
        messages.BusinessReq: messages.BusinessResp,
        messages.LogoutReq: messages.LogoutResp,
        messages.PingReq: messages.PongResp,
        messages.EchoReq: messages.EchoResp,
        messages.JoinRoomReq: messages.JoinRoomResp,
        messages.LeaveRoomReq: messages.LeaveRoomResp,
        messages.JoinOrCreate: messages.RoomJoined,
        messages.CreateRoom: messages.RoomJoined,
        messages.JoinById: messages.RoomJoined,
        messages.LeaveRoom: messages.RoomLeft,
        messages.ListRooms: messages.RoomList,
    }
    for request, reply in pairs.items():
        assert request.__reply__ is reply


def test_protobuf_schema_field_numbers() -> None:
    """Protobuf clients rely on field numbers: they follow declaration order."""
    proto = render_proto(messages.catalog, "game")
    assert "message User {\n  string account_id = 1;\n  int64 counter = 2;\n}" in proto
    assert "// msg_id = 2\nmessage LoginResp {\n  User user = 1;\n}" in proto
    assert (
        "message BusinessReq {\n  int64 key = 1;\n  int64 value1 = 2;\n  int64 value2 = 3;\n}"
        in (proto)
    )
    assert "message JoinRoomResp {\n  string room = 1;\n  repeated string members = 2;\n}" in proto


@MODELS
async def test_go_sgs_login_business_logout(model: str) -> None:
    async with running_server(router, setup=setup, protocol="json", resource_model=model) as server:
        peer = await RawPeer.connect(server.port)
        try:
            peer.send(1, {"account_id": "gopher"})
            assert await peer.recv() == (2, {"user": {"account_id": "gopher", "counter": 0}})
            # pipelined: three requests in one write, replies in request order
            for key in (10, 11, 12):
                peer.send(3, {"key": key, "value1": key, "value2": 100})
            for key in (10, 11, 12):
                assert await peer.recv() == (4, {"key": key, "result": key + 100})
            peer.send(5, b"")  # go-sgs sends an empty value for a field-less message
            assert await peer.recv() == (6, {})
            assert await peer.at_eof(), "the server closes the link after LogoutResp"
        finally:
            peer.close()
        peer = await RawPeer.connect(server.port)
        try:
            peer.send(1, {"account_id": "gopher"})
            assert await peer.recv() == (2, {"user": {"account_id": "gopher", "counter": 3}})
        finally:
            peer.close()


@MODELS
async def test_errors_name_the_failed_request(model: str) -> None:
    async with running_server(router, setup=setup, protocol="json", resource_model=model) as server:
        peer = await RawPeer.connect(server.port)
        try:
            for msg_id, value in (
                (3, {"key": 1, "value1": 1, "value2": 1}),
                (11, {"room": "r"}),
                (13, {"text": "hi"}),
            ):
                peer.send(msg_id, value)
                reply_id, error = await peer.recv()
                assert reply_id == 99
                assert set(error) == {"code", "message", "msg_id"}
                assert (error["code"], error["msg_id"]) == ("not_logged_in", msg_id)
            peer.send(9, {"text": "still open"})
            assert await peer.recv() == (10, {"text": "still open"})
            peer.send(7, {"client_time_ms": 42})
            pong_id, pong = await peer.recv()
            assert pong_id == 8 and pong["client_time_ms"] == 42 and pong["server_time_ms"] > 0
        finally:
            peer.close()


@MODELS
async def test_room_json_shapes(model: str) -> None:
    fast_ticks = functools.partial(setup, tick_interval=0.02)
    async with running_server(
        router, setup=fast_ticks, protocol="json", resource_model=model
    ) as server:
        peer = await RawPeer.connect(server.port)
        try:
            peer.send(1, {"account_id": "raw"})
            await peer.recv()
            peer.send(11, {"room": "lobby"})
            assert await peer.recv_skipping_ticks() == (12, {"room": "lobby", "members": ["raw"]})
            peer.send(13, {"text": "hello"})
            said = {"room": "lobby", "sender": "raw", "text": "hello"}
            assert await peer.recv_skipping_ticks() == (14, said)
            msg_id, tick = await peer.recv()
            while msg_id != 17:
                msg_id, tick = await peer.recv()
            assert set(tick) == {"room", "tick", "members"}
            assert (tick["room"], tick["members"]) == ("lobby", 1) and tick["tick"] >= 1
            peer.send(15, b"{}")
            assert await peer.recv_skipping_ticks() == (16, {"room": "lobby"})
        finally:
            peer.close()
