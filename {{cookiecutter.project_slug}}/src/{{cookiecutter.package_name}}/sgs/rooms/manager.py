"""One server's rooms: placement, joins and leaves, the listing, disposal.

The manager is what the matchmaking handlers call. It asks its
:class:`~.directory.Directory` for a seat (or the right to create a room),
creates rooms on this node, and runs every join, leave and dispose in the
room's own turn (its mailbox), so a room's hooks never overlap.

Joins, step by step: leave the link's current room (``consented=True``);
reserve a seat (``JoinOrCreate``: a fitting room or a claim to create one,
``CreateRoom``: a new room, ``JoinById``: that room); in the room's turn,
consume the seat (``seat_expired`` when it was not used in time, or already
used), add the member, run ``on_join`` (a ``HandlerError`` there removes the
member again and answers ``join_refused``), then send ``RoomJoined`` and only
then add the link to the room's group, so the joiner's first room message is
its ``RoomJoined``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import TYPE_CHECKING, Any

from ..errors import HandlerError
from ..message import Message
from .directory import CREATE, Directory, LocalDirectory, Seat
from .messages import (
    JOIN_REFUSED,
    NO_SUCH_ROOM,
    SEAT_EXPIRED,
    RoomInfo,
    RoomJoined,
)
from .room import Member, Room, dump_object, parse_object

if TYPE_CHECKING:
    from ..framework import Server
    from ..link import Link

log = logging.getLogger("sgs.rooms")

#: Key of the manager in ``server.state``.
STATE_KEY = "sgs.rooms"
#: Group name prefix of a room's members (framework groups span the cluster).
GROUP_PREFIX = "sgs.room:"


class RoomManager:
    """This server's rooms; see the module docstring."""

    def __init__(self, server: Server, types: dict[str, type[Room]]) -> None:
        self.server = server
        self.types = types
        self.rooms: dict[str, Room] = {}
        self.joined: dict[int, tuple[Room, Member]] = {}  # link id -> its room and member
        self.directory: Directory = LocalDirectory(server.settings.node_id)
        self._disposals: dict[str, asyncio.TimerHandle] = {}
        settings = server.settings
        self.seat_timeout: float = settings.seat_reservation_timeout
        self.empty_grace: float = settings.empty_grace
        server.on_disconnect(self._link_closed)
        server.on_stop(self._stop)
        # Expired seats free their rooms for disposal: looked at a few times a timeout.
        server.every(max(0.05, min(1.0, self.seat_timeout / 4)), self._sweep)

    # -- matchmaking requests ---------------------------------------------------

    async def join_or_create(self, link: Link, room_type: str, options: str, filters: str) -> None:
        cls = self._type(room_type)
        opts = parse_object(options, "options")
        wanted = parse_object(filters, "filters")
        self.leave(link, consented=True)
        claim = f"{cls.name}:{dump_object(wanted)}"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.seat_timeout
        while True:
            got = await self.directory.reserve(cls.name, wanted, claim, self.seat_timeout)
            if isinstance(got, Seat):
                return await self._take(link, got, opts)
            if got == CREATE:
                try:
                    seat = await self._create(cls, opts)
                finally:
                    self.directory.release_claim(claim)
                return await self._take(link, seat, opts)
            left = deadline - loop.time()
            if left <= 0:
                raise HandlerError(SEAT_EXPIRED, "no seat within seat_reservation_timeout")
            await self.directory.wait_claim(claim, left)

    async def create(self, link: Link, room_type: str, options: str) -> None:
        cls = self._type(room_type)
        opts = parse_object(options, "options")
        self.leave(link, consented=True)
        seat = await self._create(cls, opts)
        await self._take(link, seat, opts)

    async def join_by_id(self, link: Link, room_id: str, options: str) -> None:
        opts = parse_object(options, "options")
        self.leave(link, consented=True)
        seat = await self.directory.reserve_in(room_id, self.seat_timeout)
        await self._take(link, seat, opts)

    async def list_rooms(self, room_type: str, filters: str) -> list[RoomInfo]:
        return await self.directory.rooms(room_type, parse_object(filters, "filters"))

    def leave(self, link: Link, consented: bool) -> str | None:
        """Take ``link`` out of its room (``on_leave`` runs in the room's turn); its room id."""
        entry = self.joined.pop(link.id, None)
        if entry is None:
            return None
        room, member = entry
        room.group.discard(link)
        room.mailbox.post(self._leave_job, room, member, consented)
        return room.room_id

    def room_of(self, link: Link) -> Room | None:
        entry = self.joined.get(link.id)
        return entry[0] if entry is not None else None

    def deliver(self, link: Link, msg: Message, msg_id: int) -> None:
        """A member's message for its room: queued in the room's turn (run now when idle)."""
        entry = self.joined.get(link.id)
        if entry is None:
            raise HandlerError("not_in_room", f"join a room before sending {type(msg).__name__}")
        room, member = entry
        handler = room._routes.get(type(msg))
        if handler is None:
            raise HandlerError(
                "no_handler", f"{room.name} rooms do not handle {type(msg).__name__}"
            )
        room.mailbox.post(room._handle, handler, member, msg, msg_id)

    def send(self, player: Member, msg: Message) -> bool:
        link = player.link
        return link.send(msg) if link is not None else False

    def publish(self, room: Room) -> None:
        self.directory.publish(room.info())

    # -- creation, joins, leaves ------------------------------------------------

    def _type(self, room_type: str) -> type[Room]:
        cls = self.types.get(room_type)
        if cls is None:
            raise HandlerError(NO_SUCH_ROOM, f"no room type {room_type!r}")
        return cls

    async def _create(self, cls: type[Room], options: dict[str, Any]) -> Seat:
        """Make a room of ``cls`` on this node, run ``on_create``, list it with one seat."""
        from .mailbox import Mailbox

        room = cls()
        room.room_id = self._new_id()
        room.server = self.server
        room.manager = self
        room.mailbox = Mailbox(f"{cls.name}:{room.room_id}")
        room.group = self.server.group(GROUP_PREFIX + room.room_id)
        self.rooms[room.room_id] = room
        try:
            await room.mailbox.call(room.on_create, options)
        except BaseException:
            self.rooms.pop(room.room_id, None)
            room.disposed = True
            room.mailbox.close()
            raise
        seat = await self.directory.created(room.info(), self.seat_timeout)
        room._start_ticks()
        log.debug("room %s (%s) created", room.room_id, cls.name)
        return seat

    def _new_id(self) -> str:
        while True:
            room_id = secrets.token_urlsafe(6)
            if room_id not in self.rooms:
                return room_id

    async def _take(self, link: Link, seat: Seat, options: dict[str, Any]) -> None:
        """Use ``seat`` for ``link``: the join runs in the room's turn."""
        room = self.rooms.get(seat.room_id)
        if room is None or room.disposed:
            self.directory.release_seat(seat)
            raise HandlerError(NO_SUCH_ROOM, f"room {seat.room_id!r} is gone")
        player = self.server.player_of(link)
        name = player.key if player is not None else str(link.id)
        member = Member(f"{self.server.settings.node_id}.{link.id}", name, seat.owner, link)
        await room.mailbox.call(self._join_job, room, member, seat, options)

    async def _join_job(
        self, room: Room, member: Member, seat: Seat, options: dict[str, Any]
    ) -> None:
        if room.disposed:
            raise HandlerError(NO_SUCH_ROOM, f"room {room.room_id!r} is gone")
        if not await self.directory.consume(seat):
            self._maybe_dispose(room)
            raise HandlerError(SEAT_EXPIRED, "the seat was not used within its reservation")
        self._cancel_disposal(room)
        room.members[member.id] = member
        try:
            result = room.on_join(member, options)
            if result is not None and hasattr(result, "__await__"):
                await result
        except HandlerError as exc:
            self._refused(room, member)
            raise HandlerError(JOIN_REFUSED, exc.message) from None
        except Exception:
            log.exception("room %s (%s): on_join raised", room.room_id, room.name)
            self._refused(room, member)
            raise HandlerError(JOIN_REFUSED, "the room failed to admit the player") from None
        link = member.link
        assert link is not None
        if not link.is_open:  # the link dropped while it waited
            del room.members[member.id]
            self.publish(room)
            await _maybe_await(room.on_leave(member, False))
            self._maybe_dispose(room)
            return
        self.joined[link.id] = (room, member)
        self.publish(room)
        link.send(
            RoomJoined(
                room_id=room.room_id,
                room_type=room.name,
                clients=len(room.members),
                max_clients=room.max_clients or 0,
                metadata=dump_object(room.metadata),
            )
        )
        room.group.add(link, label=member.name)

    def _refused(self, room: Room, member: Member) -> None:
        room.members.pop(member.id, None)
        self.publish(room)
        self._maybe_dispose(room)

    async def _leave_job(self, room: Room, member: Member, consented: bool) -> None:
        if room.members.pop(member.id, None) is None:
            return
        self.publish(room)
        try:
            await _maybe_await(room.on_leave(member, consented))
        except Exception:
            log.exception("room %s (%s): on_leave raised", room.room_id, room.name)
        self._maybe_dispose(room)

    def _link_closed(self, link: Link) -> None:
        self.leave(link, consented=False)

    # -- disposal ---------------------------------------------------------------

    def _maybe_dispose(self, room: Room) -> None:
        """Empty and auto_dispose: dispose after the grace period unless someone comes."""
        if room.disposed or room.members or not room.auto_dispose:
            return
        if room.room_id in self._disposals:
            return
        grace = room.empty_grace if room.empty_grace is not None else self.empty_grace
        loop = asyncio.get_running_loop()
        self._disposals[room.room_id] = loop.call_later(
            grace, room.mailbox.post, self._dispose_if_empty, room
        )

    def _cancel_disposal(self, room: Room) -> None:
        handle = self._disposals.pop(room.room_id, None)
        if handle is not None:
            handle.cancel()

    async def _dispose_if_empty(self, room: Room) -> None:
        self._disposals.pop(room.room_id, None)
        if room.disposed or room.members:
            return
        if await self.directory.has_seats(room.room_id):
            return  # a seat is on its way; the sweep looks again when it expires
        await self._dispose(room)

    async def close_room(self, room: Room, reason: str) -> None:
        """``room.disconnect``: RoomClosed to every member, ``on_leave(consented=False)``, dispose."""
        if room.disposed:
            return
        notice = room.closed_notice(reason)
        for member in room.clients:
            del room.members[member.id]
            link = member.link
            if link is not None:
                if self.joined.get(link.id, (None,))[0] is room:
                    del self.joined[link.id]
                room.group.discard(link)
            self.send(member, notice)
            try:
                await _maybe_await(room.on_leave(member, False))
            except Exception:
                log.exception("room %s (%s): on_leave raised", room.room_id, room.name)
        await self._dispose(room)

    async def _dispose(self, room: Room) -> None:
        room.disposed = True
        room._stop_ticks()
        self._cancel_disposal(room)
        self.directory.remove(room.room_id)
        try:
            await _maybe_await(room.on_dispose())
        except Exception:
            log.exception("room %s (%s): on_dispose raised", room.room_id, room.name)
        self.rooms.pop(room.room_id, None)
        room.mailbox.close()
        log.debug("room %s (%s) disposed", room.room_id, room.name)

    def _sweep(self) -> None:
        """Rooms whose last seat expired become disposable (timer on a logic worker)."""
        for room in list(self.rooms.values()):
            if not room.members and room.room_id not in self._disposals:
                self._maybe_dispose(room)

    async def _stop(self, server: Server) -> None:
        """Server stop: every room closes (members get RoomClosed) before links close."""
        closing = [
            room.mailbox.call(self.close_room, room, "server shutdown")
            for room in list(self.rooms.values())
        ]
        if closing:
            await asyncio.gather(*closing, return_exceptions=True)


async def _maybe_await(result: Any) -> Any:
    if result is not None and hasattr(result, "__await__"):
        return await result
    return result


def manager_of(server: Server) -> RoomManager:
    manager: RoomManager | None = server.state.get(STATE_KEY)
    if manager is None:
        raise HandlerError("no_rooms", "this server offers no rooms")
    return manager
