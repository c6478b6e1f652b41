"""Chat rooms, as a ``chat`` room type on the framework's rooms (``sgs/rooms``).

The wire is unchanged since go-sgs-era clients: JoinRoomReq (11) puts the link
in the chat room of that name (leaving its current one) and answers the
members, SayReq (13) pushes a RoomMessage (14) to every member, the sender
included, LeaveRoomReq (15) leaves, and RoomTick (17) comes once a second.

``Chat`` is a *shared* room type: unlimited, no tick, no owner. Each node with
members holds an instance of the room, named by its name; the room's hooks
and handlers run one at a time on the member's node, and its broadcasts go
through the group ``room:<name>``, which spans the cluster, so every member
sees one sender's messages in the order they were said, and a room outlives
any node. A link is in at most one chat room (and, beside it, one match).

RoomTick is sent once per room per interval for the whole cluster: the node
that leads the room (``server.cluster.lead``) sends it to every member, and
the tick numbers are the cluster's, so they never diverge between nodes and
go on when the leading node dies and another takes over.
"""

from __future__ import annotations

import asyncio
from typing import Any

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
from ..sgs.rooms import Member, Room, manager_of

router = Router()

MAX_ROOM_LEN = 64
MAX_TEXT_LEN = 1024
#: The room type's name.
CHAT = "chat"


class Chat(Room, name=CHAT):
    """A free-form chat room: anyone joins by name, nothing limits it."""

    shared = True
    group_prefix = "room:"  # the group name chat rooms always had
    max_clients = None
    tick_rate = None
    empty_grace = 0.0  # the instance goes with its last local member, as the group did


@Chat.on(SayReq)
def say(room: Chat, player: Member, msg: SayReq) -> None:
    """Push a RoomMessage to every member of the room, the sender included."""
    if len(msg.text) > MAX_TEXT_LEN:
        raise HandlerError("too_long", f"text is limited to {MAX_TEXT_LEN} characters")
    room.broadcast(RoomMessage(room=room.room_id, sender=player.name, text=msg.text))


@router.on(JoinRoomReq)
async def join_room(ctx: Context, msg: JoinRoomReq) -> JoinRoomResp:
    """Put the link in the chat room ``msg.room`` (leaving its current one); list the members."""
    if not msg.room or len(msg.room) > MAX_ROOM_LEN:
        raise HandlerError("bad_room", f"room must be 1-{MAX_ROOM_LEN} characters")
    room = await manager_of(ctx.server).join_shared(ctx.link, CHAT, msg.room)
    return JoinRoomResp(room=msg.room, members=sorted(await room.group.labels()))


@router.on(LeaveRoomReq)
def leave(ctx: Context, msg: LeaveRoomReq) -> LeaveRoomResp:
    """Take the link out of its chat room."""
    room_name = leave_room(ctx.server, ctx.link)
    if room_name is None:
        raise HandlerError("not_in_room", "not in a room")
    return LeaveRoomResp(room=room_name)


def leave_room(server: Server, link: Link) -> str | None:
    """Remove ``link`` from its chat room, if any; return the room's name."""
    manager: Any = server.state.get("sgs.rooms")
    return manager.leave_shared(link, consented=True) if manager is not None else None


async def tick_rooms(server: Server) -> None:
    """Push RoomTick to every non-empty chat room this node leads.

    Runs on a logic worker (``server.every``), never beside the handlers. The
    cluster questions for all rooms go out together (one round trip to the
    broker, not one per room).
    """
    manager: Any = server.state.get("sgs.rooms")
    rooms = [r for r in manager.shared_rooms(CHAT) if r.members] if manager is not None else []
    if not rooms:
        return
    numbers = await asyncio.gather(*(server.cluster.lead(f"tick:{r.room_id}") for r in rooms))
    led = [(room, n) for room, n in zip(rooms, numbers, strict=True) if n]
    sizes = await asyncio.gather(*(room.group.size() for room, _ in led))
    for (room, number), members in zip(led, sizes, strict=True):
        room.group.broadcast(RoomTick(room=room.room_id, tick=number, members=members))
