"""Chat rooms: join, say, leave, and the periodic RoomTick.

A room is a framework Group, so one broadcast reaches every member, on this
node and (in a cluster) on every other, and every member sees one sender's
messages in the order they were said. A link is in at most one room; joining
another leaves the first. Links that close leave their group by themselves;
the tick forgets rooms that became empty here.

RoomTick is sent once per room per interval for the whole cluster: the node
that leads the room (``server.cluster.lead``) sends it to every member, and
the tick numbers are the cluster's, so they never diverge between nodes and
go on when the leading node dies and another takes over.
"""

from __future__ import annotations

import asyncio

from ..messages import (
    JoinRoomReq,
    JoinRoomResp,
    LeaveRoomReq,
    LeaveRoomResp,
    RoomMessage,
    RoomTick,
    SayReq,
)
from ..sgs import Context, HandlerError, Link, Router, Server
from .state import ACCOUNT_KEY, ROOM_KEY, GameState, Room, state_of

router = Router()
# Chat is what scripts flood first: each link may say chat_rate_limit messages
# a second (chat_rate_burst at once); more are answered Error(rate_limited).
router.limit(SayReq, per_second="chat_rate_limit", burst="chat_rate_burst")

MAX_ROOM_LEN = 64
MAX_TEXT_LEN = 1024


@router.on(JoinRoomReq)
async def join_room(ctx: Context, msg: JoinRoomReq) -> JoinRoomResp:
    """Put the link in ``msg.room`` (leaving its current room) and list the members."""
    if not msg.room or len(msg.room) > MAX_ROOM_LEN:
        raise HandlerError("bad_room", f"room must be 1-{MAX_ROOM_LEN} characters")
    state = state_of(ctx.server)
    if ctx.session.get(ROOM_KEY) != msg.room:
        leave_room(state, ctx.link)
        state.room(ctx.server, msg.room).group.add(ctx.link, label=ctx.session[ACCOUNT_KEY])
        ctx.session[ROOM_KEY] = msg.room
    room = state.rooms[msg.room]
    return JoinRoomResp(room=msg.room, members=await members_of(room))


@router.on(SayReq)
def say(ctx: Context, msg: SayReq) -> None:
    """Push a RoomMessage to every member of the sender's room, the sender included."""
    room_name = ctx.session.get(ROOM_KEY)
    if room_name is None:
        raise HandlerError("not_in_room", "join a room before saying anything")
    if len(msg.text) > MAX_TEXT_LEN:
        raise HandlerError("too_long", f"text is limited to {MAX_TEXT_LEN} characters")
    room = state_of(ctx.server).rooms[room_name]
    said = RoomMessage(room=room_name, sender=ctx.session[ACCOUNT_KEY], text=msg.text)
    ctx.push(said, room.group)


@router.on(LeaveRoomReq)
def leave(ctx: Context, msg: LeaveRoomReq) -> LeaveRoomResp:
    """Take the link out of its room."""
    room_name = leave_room(state_of(ctx.server), ctx.link)
    if room_name is None:
        raise HandlerError("not_in_room", "not in a room")
    return LeaveRoomResp(room=room_name)


def leave_room(state: GameState, link: Link) -> str | None:
    """Remove ``link`` from its room, if any; return the room's name."""
    room_name: str | None = link.session.pop(ROOM_KEY, None)
    room = state.rooms.get(room_name) if room_name is not None else None
    if room is not None:
        room.group.discard(link)
    return room_name


async def members_of(room: Room) -> list[str]:
    """Account ids of the room's members on every node, in a stable (sorted) order."""
    return sorted(await room.group.labels())


async def tick_rooms(server: Server) -> None:
    """Push RoomTick to every non-empty room this node leads; forget rooms nobody is in here.

    Runs on a logic worker (``server.every``), never beside the handlers, so
    it sees the rooms in a consistent state. The cluster questions for all
    rooms go out together (one round trip to the broker, not one per room).
    """
    state = state_of(server)
    for name, room in list(state.rooms.items()):
        if len(room.group) == 0:
            del state.rooms[name]
    rooms = list(state.rooms.items())
    if not rooms:
        return
    numbers = await asyncio.gather(*(server.cluster.lead(f"tick:{name}") for name, _ in rooms))
    led = [(name, room, n) for (name, room), n in zip(rooms, numbers, strict=True) if n]
    sizes = await asyncio.gather(*(room.group.size() for _, room, _ in led))
    for (name, room, number), members in zip(led, sizes, strict=True):
        room.ticks = number
        room.group.broadcast(RoomTick(room=name, tick=number, members=members))
