"""The rooms a game offers, as a router (matchmaking + every room message) and per-server state.

::

    rooms = Rooms(Arena, Chat)
    router.include(rooms.router)   # JoinOrCreate, CreateRoom, JoinById, LeaveRoom, ListRooms,
                                   # and each type's own messages (@Arena.on(MoveReq))
    rooms.attach(server)           # in the game's setup: this server's RoomManager

A room message is routed by the link's current room: the route is a plain
function that hands the message to the room's turn, so a member's messages
reach its room in the order it sent them. A link is in at most one matchmade
room and one shared room (chat): a message goes to its match when the match's
type handles it, else to its shared room; ``not_in_room`` when it has neither,
``no_handler`` when its room's type does not handle the message.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..context import Context
from ..errors import HandlerError
from ..message import Message
from ..router import Router
from .manager import STATE_KEY, RoomManager, manager_of
from .messages import (
    CreateRoom,
    JoinById,
    JoinOrCreate,
    LeaveRoom,
    ListRooms,
    RoomLeft,
    RoomList,
)
from .room import Room

if TYPE_CHECKING:
    from ..framework import Server


class Rooms:
    """The room types of a game; see the module docstring."""

    def __init__(self, *types: type[Room]) -> None:
        self.types: dict[str, type[Room]] = {}
        for cls in types:
            if not cls.name:
                raise TypeError(f"{cls.__qualname__} has no name (class X(Room, name='x'))")
            if cls.name in self.types:
                raise ValueError(f"two room types are named {cls.name!r}")
            self.types[cls.name] = cls
        self._router: Router | None = None

    @property
    def router(self) -> Router:
        """Matchmaking handlers and a route per message type any room type handles.

        Built on first use, after the room types declared their handlers.
        """
        if self._router is None:
            self._router = _build_router(self.types.values())
        return self._router

    def attach(self, server: Server) -> RoomManager:
        """Give ``server`` its RoomManager (once; call it from the game's setup)."""
        manager: RoomManager | None = server.state.get(STATE_KEY)
        if manager is None:
            manager = server.state[STATE_KEY] = RoomManager(server, self.types)
        return manager


def _build_router(types: Iterable[type[Room]]) -> Router:
    router = Router()

    @router.on(JoinOrCreate)
    async def join_or_create(ctx: Context, msg: JoinOrCreate) -> None:
        await manager_of(ctx.server).join_or_create(
            ctx.link, msg.room_type, msg.options, msg.filters
        )  # RoomJoined is sent in the room's turn, before any broadcast reaches the link

    @router.on(CreateRoom)
    async def create_room(ctx: Context, msg: CreateRoom) -> None:
        await manager_of(ctx.server).create(ctx.link, msg.room_type, msg.options)

    @router.on(JoinById)
    async def join_by_id(ctx: Context, msg: JoinById) -> None:
        await manager_of(ctx.server).join_by_id(ctx.link, msg.room_id, msg.options)

    @router.on(LeaveRoom)
    def leave_room(ctx: Context, msg: LeaveRoom) -> RoomLeft:
        room_id = manager_of(ctx.server).leave(ctx.link, consented=True)
        if room_id is None:
            raise HandlerError("not_in_room", "not in a room")
        return RoomLeft(room_id=room_id)

    @router.on(ListRooms)
    async def list_rooms(ctx: Context, msg: ListRooms) -> RoomList:
        rooms = await manager_of(ctx.server).list_rooms(msg.room_type, msg.filters)
        return RoomList(rooms=rooms)

    handled: set[type[Message]] = set()
    for cls in types:
        handled.update(cls._routes)
    for msg_type in sorted(handled, key=lambda t: t.__msg_id__ or 0):
        router.on(msg_type)(_room_route)
    return router


def _room_route(ctx: Context, msg: Message) -> None:
    """A member's message for its room (a plain route: no coroutine per message)."""
    manager_of(ctx.server).deliver(ctx.link, msg, ctx.msg_id)
