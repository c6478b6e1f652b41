"""Rooms: matches with a lifecycle, a tick and a router of their own, and matchmaking.

See :mod:`.room` for the Room API, :mod:`.mailbox` for the one-at-a-time
guarantee, :mod:`.directory` for placement and seats, :mod:`.manager` for
joins, leaves and disposal, :mod:`.service` for wiring them into a game, and
:mod:`.messages` for the wire (ids 18-26).
"""

from .directory import Directory, LocalDirectory, Seat
from .mailbox import Mailbox
from .manager import RoomManager, manager_of
from .messages import (
    JOIN_REFUSED,
    NO_SUCH_ROOM,
    ROOM_FULL,
    ROOM_LOCKED,
    SEAT_EXPIRED,
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
from .room import Member, Room
from .service import Rooms

__all__ = [
    "JOIN_REFUSED",
    "NO_SUCH_ROOM",
    "ROOM_FULL",
    "ROOM_LOCKED",
    "SEAT_EXPIRED",
    "CreateRoom",
    "Directory",
    "JoinById",
    "JoinOrCreate",
    "LeaveRoom",
    "ListRooms",
    "LocalDirectory",
    "Mailbox",
    "Member",
    "Room",
    "RoomClosed",
    "RoomInfo",
    "RoomJoined",
    "RoomLeft",
    "RoomList",
    "RoomPresence",
    "RoomManager",
    "Rooms",
    "Seat",
    "manager_of",
]
