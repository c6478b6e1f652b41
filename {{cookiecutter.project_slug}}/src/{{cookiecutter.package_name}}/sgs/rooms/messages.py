"""The matchmaking wire messages: join or create a room, leave it, list rooms.

Ids 18-26 follow the sample game's catalogue (1-17) and belong to the
framework, as PingReq/PongResp/Error (7, 8, 99) do: a game that serves rooms
speaks them unchanged, and every codec, the ``.proto`` file and the browser
catalogue carry them from these declarations.

``options``, ``filters`` and ``metadata`` travel as JSON object text (``""``
is the empty object): protobuf has no free-form map of any value, and a
string carries the same thing in all four codecs. The framework parses and
bounds them (:func:`.room.parse_object`), so a handler only sees dicts.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from ..message import Message

#: Room types and ids are short names.
Name = Annotated[str, msgspec.Meta(max_length=64)]
#: JSON object text: options for a new room or a join, filters on metadata.
JsonText = Annotated[str, msgspec.Meta(max_length=4096)]


class RoomJoined(Message, msg_id=18):
    """The answer to every join: the same fields whichever node owns the room."""

    room_id: str
    room_type: str
    clients: int = 0
    max_clients: int = 0
    metadata: str = ""


class JoinOrCreate(Message, msg_id=19, reply=RoomJoined):
    """Join a listed, unlocked room of ``room_type`` whose metadata matches ``filters``
    and has a free seat, or create one with ``options``."""

    room_type: Name
    options: JsonText = ""
    filters: JsonText = ""


class CreateRoom(Message, msg_id=20, reply=RoomJoined):
    """Always create a new room (a private one too, when ``options`` asks for it)."""

    room_type: Name
    options: JsonText = ""


class JoinById(Message, msg_id=21, reply=RoomJoined):
    """Join one room by its id, listed or private; refused when full or locked."""

    room_id: Name
    options: JsonText = ""


class RoomLeft(Message, msg_id=22):
    room_id: str


class LeaveRoom(Message, msg_id=23, reply=RoomLeft):
    """Leave the current room: the room's ``on_leave`` sees ``consented=True``."""


class RoomInfo(Message):
    """One row of the room listing (nested in RoomList, never alone)."""

    room_id: str
    room_type: str
    clients: int = 0
    max_clients: int = 0
    metadata: str = ""
    locked: bool = False
    private: bool = False
    owner: str = ""


class RoomList(Message, msg_id=24):
    rooms: list[RoomInfo]


class ListRooms(Message, msg_id=25, reply=RoomList):
    """Listed rooms of ``room_type`` (all types when empty) matching ``filters``;
    private rooms are never listed."""

    room_type: Annotated[str, msgspec.Meta(max_length=64)] = ""
    filters: JsonText = ""


class RoomClosed(Message, msg_id=26):
    """Pushed to a member whose room went away (disposed, disconnected, its owner died)."""

    room_id: str
    reason: str = ""


#: The Error codes a join can be answered with.
class RoomPresence(Message, msg_id=31):
    """A member's connection dropped (``status="dropped"``) or came back (``"resumed"``).

    Pushed to the other members of the member's rooms while it is held for
    resumption (``resume_window``): its seat stays, it has not left.
    """

    room_id: str
    name: str
    status: str


ROOM_FULL = "room_full"
ROOM_LOCKED = "room_locked"
NO_SUCH_ROOM = "no_such_room"
JOIN_REFUSED = "join_refused"
SEAT_EXPIRED = "seat_expired"
