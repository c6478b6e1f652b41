"""The game's message catalogue: the wire contract clients in any language rely on.

Ids and field names are public. Ids 1-6 and their JSON field names match the
go-sgs example, so a go-sgs robot speaking TLV + JSON can log in and do
business against this server. Renaming a field or reusing an id breaks every
deployed client: add new messages with new ids instead.

Replies are declared before the requests that name them (``reply=``), so
``Client.request`` knows which message answers which request. PingReq (7),
PongResp (8) and Error (99) are spoken by the framework itself and are only
re-exported here.

| id | message       | fields                                   | reply |
|----|---------------|------------------------------------------|-------|
| 1  | LoginReq      | account_id: str                          | 2     |
| 2  | LoginResp     | user: {account_id: str, counter: int}    |       |
| 3  | BusinessReq   | key: int, value1: int, value2: int       | 4     |
| 4  | BusinessResp  | key: int, result: int                    |       |
| 5  | LogoutReq     | (none)                                   | 6, then the link closes |
| 6  | LogoutResp    | (none)                                   |       |
| 7  | PingReq       | client_time_ms: int (optional)           | 8     |
| 8  | PongResp      | client_time_ms: int, server_time_ms: int |       |
| 9  | EchoReq       | text: str                                | 10    |
| 10 | EchoResp      | text: str                                |       |
| 11 | JoinRoomReq   | room: str                                | 12    |
| 12 | JoinRoomResp  | room: str, members: list[str]            |       |
| 13 | SayReq        | text: str                                | 14 pushed to the whole room |
| 14 | RoomMessage   | room: str, sender: str, text: str        |       |
| 15 | LeaveRoomReq  | (none)                                   | 16    |
| 16 | LeaveRoomResp | room: str                                |       |
| 17 | RoomTick      | room: str, tick: int, members: int       | pushed once a second |
| 18-26 | matchmaking (the framework's, `sgs/rooms/messages.py`): RoomJoined, JoinOrCreate, CreateRoom, JoinById, RoomLeft, LeaveRoom, RoomList, ListRooms, RoomClosed | | |
| 27 | MoveReq       | direction: str, seq: int                 | none: applied at the arena's next tick |
| 28 | ArenaState    | room_id: str, tick: int, players: list[ArenaPlayer] | pushed every arena tick |
| 29 | ResumeResp    | recovered: bool, token: str, seq: int, replayed: int | uncounted: sets the client's count |
| 30 | ResumeReq     | token: str, last_seq: int                | 29, then the replayed frames |
| 31 | RoomPresence  | room_id: str, name: str, status: str     | pushed: a member dropped / resumed |
| 99 | Error         | code: str, message: str, msg_id: int     | for a failed request |
"""

from __future__ import annotations

from typing import Literal

from .sgs import Message, default_catalog
from .sgs.builtins import Error, PingReq, PongResp
from .sgs.resume import ResumeReq, ResumeResp
from .sgs.rooms.messages import (
    CreateRoom,
    JoinById,
    JoinOrCreate,
    LeaveRoom,
    ListRooms,
    RoomClosed,
    RoomInfo,
    RoomJoined,
    RoomLeft,
    RoomList,
    RoomPresence,
)

__all__ = [
    "ArenaPlayer",
    "ArenaState",
    "CreateRoom",
    "JoinById",
    "JoinOrCreate",
    "LeaveRoom",
    "ListRooms",
    "MoveReq",
    "RoomClosed",
    "RoomInfo",
    "RoomJoined",
    "RoomLeft",
    "RoomList",
    "RoomPresence",
    "ResumeReq",
    "ResumeResp",
    "BusinessReq",
    "BusinessResp",
    "EchoReq",
    "EchoResp",
    "Error",
    "JoinRoomReq",
    "JoinRoomResp",
    "LeaveRoomReq",
    "LeaveRoomResp",
    "LoginReq",
    "LoginResp",
    "LogoutReq",
    "LogoutResp",
    "PingReq",
    "PongResp",
    "RoomMessage",
    "RoomTick",
    "SayReq",
    "User",
    "catalog",
]


class User(Message):
    """A player as the server reports it; nested inside LoginResp (no msg_id: never alone)."""

    account_id: str
    counter: int = 0


# --- go-sgs compatible: ids 1-6 -------------------------------------------


class LoginResp(Message, msg_id=2):
    user: User


class LoginReq(Message, msg_id=1, reply=LoginResp):
    account_id: str


class BusinessResp(Message, msg_id=4):
    key: int
    result: int


class BusinessReq(Message, msg_id=3, reply=BusinessResp):
    """``result = value1 + value2``; each request increments the user's counter."""

    key: int
    value1: int
    value2: int


class LogoutResp(Message, msg_id=6):
    pass


class LogoutReq(Message, msg_id=5, reply=LogoutResp):
    """Answered by LogoutResp, after which the server closes the link."""


# --- echo ----------------------------------------------------------------


class EchoResp(Message, msg_id=10):
    text: str


class EchoReq(Message, msg_id=9, reply=EchoResp):
    text: str


# --- rooms -----------------------------------------------------------------


class JoinRoomResp(Message, msg_id=12):
    room: str
    members: list[str]


class JoinRoomReq(Message, msg_id=11, reply=JoinRoomResp):
    room: str


class RoomMessage(Message, msg_id=14):
    """Pushed to every member of a room, the sender included."""

    room: str
    sender: str
    text: str


class SayReq(Message, msg_id=13):
    """No direct reply: the answer is the RoomMessage every member receives."""

    text: str


class LeaveRoomResp(Message, msg_id=16):
    room: str


class LeaveRoomReq(Message, msg_id=15, reply=LeaveRoomResp):
    pass


class RoomTick(Message, msg_id=17):
    """Pushed by the server once a second to every non-empty room."""

    room: str
    tick: int
    members: int


# --- arena: a real-time match on the rooms API (sgs/rooms) ----------------


class MoveReq(Message, msg_id=27):
    """One input: a step in ``direction``, applied by the room's owner at its next tick.

    ``seq`` is the client's own counter; ArenaState echoes the last one applied
    per player, so a client sees its inputs were taken in order.
    """

    direction: Literal["up", "down", "left", "right"]
    seq: int = 0


class ArenaPlayer(Message):
    """One player's place on the field (nested in ArenaState)."""

    name: str
    x: int
    y: int
    seq: int = 0


class ArenaState(Message, msg_id=28):
    """Pushed to every member at every arena tick: the whole field (full state)."""

    room_id: str
    tick: int
    players: list[ArenaPlayer]


#: The catalogue the server and the client are built with. Declaring a Message
#: subclass with ``msg_id`` registers it in the framework's default catalogue,
#: which already holds the built-ins (7, 8, 99).
catalog = default_catalog
