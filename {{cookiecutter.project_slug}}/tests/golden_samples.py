"""The messages the golden-bytes test encodes: every catalogue message, with edge values.

Each sample is built through the public constructors only (keyword arguments,
nested messages as instances), so the same list works for any message layer.
The labels are the keys of ``golden_frames.FRAMES``: never rename one.
"""

from __future__ import annotations

from typing import Any

import fwkit

from {{ cookiecutter.package_name }} import messages as m

#: Strings a codec could escape or encode differently: non-ASCII, quotes,
#: backslashes, control characters, a character outside the BMP.
TRICKY = 'h\u00e9llo "q" \\ \t\n\x01 \u2713 \U0001f3b2 </script>'
#: Bytes whose standard base64 holds "+" and "/" (url-safe base64 differs).
BLOB = b"\xfb\xff\xbf\x00\x01"


def samples() -> list[tuple[str, str, Any]]:
    """(label, catalogue, message) for every message of both catalogues."""
    game: list[tuple[str, Any]] = [
        ("LoginReq", m.LoginReq(account_id="player-1")),
        ("LoginReq.tricky", m.LoginReq(account_id=TRICKY)),
        ("LoginResp", m.LoginResp(user=m.User(account_id="player-1", counter=3))),
        ("LoginResp.default", m.LoginResp(user=m.User(account_id=""))),
        ("BusinessReq", m.BusinessReq(key=7, value1=40, value2=2)),
        ("BusinessReq.wide", m.BusinessReq(key=-1, value1=2**31, value2=-(2**63))),
        ("BusinessResp", m.BusinessResp(key=7, result=42)),
        ("BusinessResp.wide", m.BusinessResp(key=2**63 - 1, result=-(2**31) - 1)),
        ("LogoutReq", m.LogoutReq()),
        ("LogoutResp", m.LogoutResp()),
        ("PingReq", m.PingReq(client_time_ms=1_700_000_000_123)),
        ("PingReq.default", m.PingReq()),
        ("PongResp", m.PongResp(client_time_ms=1, server_time_ms=1_700_000_000_456)),
        ("PongResp.default", m.PongResp()),
        ("EchoReq", m.EchoReq(text="hello")),
        ("EchoReq.empty", m.EchoReq(text="")),
        ("EchoReq.tricky", m.EchoReq(text=TRICKY)),
        ("EchoResp", m.EchoResp(text="hello")),
        ("EchoResp.long", m.EchoResp(text="x" * 300)),
        ("JoinRoomReq", m.JoinRoomReq(room="lobby")),
        ("JoinRoomResp", m.JoinRoomResp(room="lobby", members=["a", "b", TRICKY])),
        ("JoinRoomResp.empty", m.JoinRoomResp(room="", members=[])),
        ("SayReq", m.SayReq(text="hi all")),
        ("RoomMessage", m.RoomMessage(room="lobby", sender="a", text=TRICKY)),
        ("LeaveRoomReq", m.LeaveRoomReq()),
        ("LeaveRoomResp", m.LeaveRoomResp(room="lobby")),
        ("RoomTick", m.RoomTick(room="lobby", tick=12, members=2)),
        ("RoomTick.zero", m.RoomTick(room="", tick=0, members=0)),
        (
            "RoomJoined",
            m.RoomJoined(
                room_id="r1", room_type="arena", clients=2, max_clients=8, metadata='{"mode":"ffa"}'
            ),
        ),
        ("RoomJoined.default", m.RoomJoined(room_id="", room_type="")),
        ("JoinOrCreate", m.JoinOrCreate(room_type="arena", options='{"mode":"ffa"}', filters="{}")),
        ("JoinOrCreate.default", m.JoinOrCreate(room_type="arena")),
        ("CreateRoom", m.CreateRoom(room_type="chat", options=TRICKY)),
        ("JoinById", m.JoinById(room_id="r1", options="")),
        ("RoomLeft", m.RoomLeft(room_id="r1")),
        ("LeaveRoom", m.LeaveRoom()),
        (
            "RoomList",
            m.RoomList(
                rooms=[
                    m.RoomInfo(
                        room_id="r1",
                        room_type="arena",
                        clients=1,
                        max_clients=8,
                        metadata='{"mode":"ffa"}',
                        locked=True,
                        private=False,
                        owner="node-a",
                    ),
                    m.RoomInfo(room_id="r2", room_type="chat"),
                ]
            ),
        ),
        ("RoomList.empty", m.RoomList(rooms=[])),
        ("ListRooms", m.ListRooms(room_type="arena", filters='{"mode":"ffa"}')),
        ("ListRooms.default", m.ListRooms()),
        ("RoomClosed", m.RoomClosed(room_id="r1", reason="owner node lost")),
        ("MoveReq", m.MoveReq(direction="left", seq=2**40)),
        ("MoveReq.default", m.MoveReq(direction="up")),
        (
            "ArenaState",
            m.ArenaState(
                room_id="r1",
                tick=7,
                players=[
                    m.ArenaPlayer(name="a", x=0, y=31, seq=3),
                    m.ArenaPlayer(name=TRICKY, x=5, y=5),
                ],
            ),
        ),
        ("ArenaState.empty", m.ArenaState(room_id="", tick=0, players=[])),
        (
            "ResumeResp",
            m.ResumeResp(recovered=True, token="dG9rZW4=", seq=2**40, replayed=20),
        ),
        ("ResumeResp.default", m.ResumeResp()),
        ("ResumeReq", m.ResumeReq(token="dG9rZW4=", last_seq=512)),
        ("ResumeReq.default", m.ResumeReq()),
        ("RoomPresence", m.RoomPresence(room_id="r1", name=TRICKY, status="dropped")),
        ("Error", m.Error(code="decode_error", message="bad value", msg_id=9)),
        ("Error.default", m.Error(code="rate_limited")),
    ]
    bag = fwkit.Bag(
        owner="o",
        items=[fwkit.Item(name="sword", qty=1), fwkit.Item(name=TRICKY, qty=-5)],
        tags=["x", "y"],
        note="fragile",
        weight=2.5,
        sealed=True,
        blob=BLOB,
    )
    framework: list[tuple[str, Any]] = [
        ("fw.EchoReq", fwkit.EchoReq(seq=1, text="a")),
        ("fw.EchoResp", fwkit.EchoResp(seq=2**40, text=TRICKY)),
        ("fw.SlowReq", fwkit.SlowReq(seq=3, delay=0.25)),
        ("fw.SlowReq.pad", fwkit.SlowReq(seq=3, delay=1e-3, pad="p")),
        ("fw.BoomReq", fwkit.BoomReq()),
        ("fw.DenyReq", fwkit.DenyReq()),
        ("fw.Bag", bag),
        ("fw.Bag.default", fwkit.Bag(owner="", items=[], tags=[])),
        ("fw.Bag.floats", fwkit.Bag(owner="f", items=[], tags=[], weight=-1234.5678)),
        ("fw.BagReq", fwkit.BagReq(bag=bag)),
        ("fw.KickReq", fwkit.KickReq()),
    ]
    return [(label, "game", msg) for label, msg in game] + [
        (label, "framework-tests", msg) for label, msg in framework
    ]
