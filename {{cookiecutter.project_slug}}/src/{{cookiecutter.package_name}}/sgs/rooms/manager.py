"""One server's rooms: placement, joins and leaves, the listing, disposal, other nodes.

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

Placement: a new room is created on the node of the player who asked for it
(the caller's node). Players reach nodes through the load balancer or
SO_REUSEPORT, which already spreads them evenly, so rooms spread the same way,
and creation needs no round trip to another node.

In a cluster, a seat may be in a room another node owns. The member's node
then sends the seat to the owner (:mod:`.remote` ``Join``), the owner runs the
join in the room's turn and answers ``Joined``; afterwards the member's node
forwards its messages (``Msg``, in order) and its leave, and the owner's
``room.send`` comes back as ``Send``; broadcasts travel through the room's
group, which spans the nodes. A member's node checks every half lease that
the owners of its members' rooms are alive; a dead owner's members get
``RoomClosed("owner lost")``, and an owner drops the members of a dead node
(``on_leave`` with ``consented=False``).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from ..errors import HandlerError
from ..message import Message
from . import remote
from .directory import CREATE, Directory, LocalDirectory, Seat
from .mailbox import Mailbox
from .messages import (
    JOIN_REFUSED,
    NO_SUCH_ROOM,
    SEAT_EXPIRED,
    RoomClosed,
    RoomInfo,
    RoomJoined,
    RoomPresence,
)
from .room import Member, Room, dump_object, parse_object

if TYPE_CHECKING:
    from ..framework import Server
    from ..link import Link

#: RoomPresence statuses.
DROPPED = "dropped"
RESUMED = "resumed"

log = logging.getLogger("sgs.rooms")

#: Key of the manager in ``server.state``.
STATE_KEY = "sgs.rooms"
#: Group name prefix of a room's members (framework groups span the cluster).
GROUP_PREFIX = "sgs.room:"
#: Successive rooms' tick phases step by the golden ratio's fraction: evenly spread.
PHASE_STEP = 0.6180339887
#: RoomClosed reason when the room's owner node died.
OWNER_LOST = "owner lost"


@dataclass(slots=True)
class Membership:
    """A link of this node in a room: the room itself when it is here, else its owner."""

    room_id: str
    owner: str
    member: Member
    room: Room | None
    room_type: str


class RoomManager:
    """This server's rooms; see the module docstring."""

    def __init__(self, server: Server, types: dict[str, type[Room]]) -> None:
        self.server = server
        self.types = types
        self.rooms: dict[str, Room] = {}
        self.joined: dict[int, Membership] = {}  # link id -> its room
        self.remote_members: dict[str, tuple[Room, Member]] = {}  # members on other nodes
        self.shared: dict[tuple[str, str], Room] = {}  # (type, name) -> this node's instance
        self.shared_joined: dict[int, Membership] = {}  # link id -> its shared room
        self.directory: Directory = LocalDirectory(server.settings.node_id)
        self._disposals: dict[str, asyncio.TimerHandle] = {}
        self._requests: dict[int, asyncio.Future[remote.Joined]] = {}
        self._req = itertools.count(1)
        self._phase = 0.0  # tick phase of the last room made (see Room._start_ticks)
        settings = server.settings
        self.seat_timeout: float = settings.seat_reservation_timeout
        self.empty_grace: float = settings.empty_grace
        server.on_start(self._start)
        server.on_disconnect(self._link_closed)
        server.resumer.on_drop(functools.partial(self._presence, status=DROPPED))
        server.resumer.on_resume(functools.partial(self._presence, status=RESUMED))
        server.on_stop(self._stop)
        # Expired seats free their rooms for disposal: looked at a few times a timeout.
        server.every(max(0.05, min(1.0, self.seat_timeout / 4)), self._sweep)

    @property
    def node(self) -> str:
        return self.server.cluster.node_id

    async def _start(self, server: Server) -> None:
        """The cluster exists now: rooms in the broker when there is one."""
        cluster = server.cluster
        if cluster.is_local:
            return
        from .broker import BrokerDirectory

        self.directory = BrokerDirectory(cluster, list(self.types))  # type: ignore[arg-type]
        cluster.on_room = self._on_room
        server.every(max(0.1, server.settings.cluster_lease / 2), self._check_nodes)

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
        joined = self.joined.pop(link.id, None)
        if joined is None:
            return None
        self.server.group(self._group_name(joined)).discard(link)
        room = joined.room
        if room is not None:
            room.mailbox.post(self._leave_job, room, joined.member, consented)
        else:
            self._tell(joined.owner, remote.Leave(joined.room_id, joined.member.id, consented))
        return joined.room_id

    def _group_name(self, joined: Membership) -> str:
        cls = self.types.get(joined.room_type)
        return (cls.group_prefix if cls is not None else GROUP_PREFIX) + joined.room_id

    def room_of(self, link: Link) -> Room | None:
        joined = self.joined.get(link.id)
        return joined.room if joined is not None else None

    def rooms_of(self, link: Link) -> list[tuple[str, str]]:
        """``(room_type, room_id)`` of the match and the shared room ``link`` is in (snapshots)."""
        return [
            (joined.room_type, joined.room_id)
            for joined in (self.joined.get(link.id), self.shared_joined.get(link.id))
            if joined is not None
        ]

    def deliver(self, link: Link, msg: Message, msg_id: int) -> None:
        """A member's message for its room: queued in the room's turn, or sent to its owner."""
        joined = self.joined.get(link.id)
        if joined is None or type(msg) not in self.types[joined.room_type]._routes:
            shared = self.shared_joined.get(link.id)
            if shared is not None and shared.room is not None:
                self._post_message(shared.room, shared.member, msg, msg_id)
                return
        if joined is None:
            raise HandlerError("not_in_room", f"join a room before sending {type(msg).__name__}")
        room = joined.room
        if room is None:
            frame = self.server.codec.encode_frame(msg)
            self._tell(joined.owner, remote.Msg(joined.room_id, joined.member.id, frame))
            return
        self._post_message(room, joined.member, msg, msg_id)

    def _post_message(self, room: Room, member: Member, msg: Message, msg_id: int) -> None:
        handler = room._routes.get(type(msg))
        if handler is None:
            raise HandlerError(
                "no_handler", f"{room.name} rooms do not handle {type(msg).__name__}"
            )
        room.mailbox.post(room._handle, handler, member, msg, msg_id)

    def send(self, player: Member, msg: Message) -> bool:
        link = player.link
        if link is not None:
            return link.send(msg)
        return self.send_frame(player, self.server.codec.encode_frame(msg))

    def fail(self, player: Member, code: str, message: str, msg_id: int) -> None:
        """Answer ``Error(code)`` to ``player`` through the outcome service of its own node,
        so ``sgs_errors`` counts a room's refusals wherever the member is connected."""
        link = player.link
        if link is not None:
            self.server.outcomes.error(link, code, message, msg_id)
        else:
            self._tell(player.node, remote.Fail(player.id, code, message, msg_id))

    def send_frame(self, player: Member, frame: bytes) -> bool:
        link = player.link
        if link is not None:
            return link.write_frame(frame)
        return self._tell(player.node, remote.Send(player.id, frame))

    def publish(self, room: Room) -> None:
        self.directory.publish(room.info())

    def _tell(self, node: str, op: remote.Op) -> bool:
        return self.server.cluster.room_send(node, remote.pack(op))

    # -- shared rooms (no owner: an instance per node, joined by name) --------------

    async def join_shared(
        self, link: Link, room_type: str, name: str, options: dict[str, Any] | None = None
    ) -> Room:
        """Put ``link`` in the shared room ``name`` of ``room_type`` (leaving its current one).

        The instance on this node is made on first use (``on_create``) and
        disposed when its last local member leaves (after ``empty_grace``).
        """
        cls = self.types.get(room_type)
        if cls is None or not cls.shared:
            raise HandlerError(NO_SUCH_ROOM, f"no shared room type {room_type!r}")
        current = self.shared_joined.get(link.id)
        if current is not None and current.room_type == room_type and current.room_id == name:
            assert current.room is not None
            return current.room
        self.leave_shared(link, consented=True)
        opts = options or {}
        room = self.shared.get((room_type, name))
        if room is None or room.disposed:
            room = cls()
            room.room_id = name
            room.server = self.server
            room.manager = self
            room.mailbox = Mailbox(f"{room_type}:{name}")
            room.group = self.server.group(cls.group_prefix + name)
            self.shared[(room_type, name)] = room
            room.mailbox.post(room.on_create, opts)
            room.mailbox.post(room._start_ticks, 0.0)
        player = self.server.player_of(link)
        member = Member(
            f"{self.node}.{link.id}", player.key if player else str(link.id), self.node, link
        )
        await room.mailbox.call(self._shared_join_job, room, member, opts)
        return room

    async def _shared_join_job(self, room: Room, member: Member, options: dict[str, Any]) -> None:
        if room.disposed:
            raise HandlerError(NO_SUCH_ROOM, f"room {room.room_id!r} is gone")
        self._cancel_disposal(room)
        room.members[member.id] = member
        try:
            await _maybe_await(room.on_join(member, options))
        except HandlerError as exc:
            room.members.pop(member.id, None)
            self._maybe_dispose(room)
            raise HandlerError(JOIN_REFUSED, exc.message) from None
        link = member.link
        assert link is not None
        if not link.is_open:
            room.members.pop(member.id, None)
            await _maybe_await(room.on_leave(member, False))
            self._maybe_dispose(room)
            return
        self.shared_joined[link.id] = Membership(room.room_id, self.node, member, room, room.name)
        room.group.add(link, label=member.name)

    def leave_shared(self, link: Link, consented: bool) -> str | None:
        """Take ``link`` out of its shared room; the room's name, or None."""
        joined = self.shared_joined.pop(link.id, None)
        if joined is None or joined.room is None:
            return None
        joined.room.group.discard(link)
        joined.room.mailbox.post(self._leave_job, joined.room, joined.member, consented)
        return joined.room_id

    def shared_rooms(self, room_type: str) -> list[Room]:
        """This node's instances of a shared type."""
        return [r for (t, _), r in self.shared.items() if t == room_type and not r.disposed]

    # -- creation, joins, leaves ------------------------------------------------

    def _type(self, room_type: str) -> type[Room]:
        cls = self.types.get(room_type)
        if cls is None or cls.shared:
            raise HandlerError(NO_SUCH_ROOM, f"no room type {room_type!r} to matchmake")
        return cls

    async def _create(self, cls: type[Room], options: dict[str, Any]) -> Seat:
        """Make a room of ``cls`` on this node, run ``on_create``, list it with one seat."""
        room = cls()
        room.room_id = self._new_id()
        room.server = self.server
        room.manager = self
        room.mailbox = Mailbox(f"{cls.name}:{room.room_id}")
        room.group = self.server.group(cls.group_prefix + room.room_id)
        self.rooms[room.room_id] = room
        try:
            await room.mailbox.call(room.on_create, options)
            seat = await self.directory.created(room.info(), self.seat_timeout)
        except BaseException:
            self.rooms.pop(room.room_id, None)
            room.disposed = True
            room.mailbox.close()
            raise
        self._phase = (self._phase + PHASE_STEP) % 1.0
        room._start_ticks(self._phase)
        log.debug("room %s (%s) created", room.room_id, cls.name)
        return seat

    def _new_id(self) -> str:
        while True:
            room_id = secrets.token_urlsafe(6)
            if room_id not in self.rooms:
                return room_id

    async def _take(self, link: Link, seat: Seat, options: dict[str, Any]) -> None:
        """Use ``seat`` for ``link``: the join runs in the room's turn, here or on its owner."""
        player = self.server.player_of(link)
        name = player.key if player is not None else str(link.id)
        member = Member(f"{self.node}.{link.id}", name, self.node, link)
        if seat.owner != self.node:
            return await self._take_remote(link, member, seat, options)
        room = self.rooms.get(seat.room_id)
        if room is None or room.disposed:
            self.directory.release_seat(seat)
            raise HandlerError(NO_SUCH_ROOM, f"room {seat.room_id!r} is gone")
        await room.mailbox.call(self._join_job, room, member, seat, options, self._local_joined)

    def _local_joined(self, room: Room, member: Member) -> None:
        link = member.link
        assert link is not None
        self.joined[link.id] = Membership(room.room_id, self.node, member, room, room.name)
        link.send(self._joined_message(room))
        room.group.add(link, label=member.name)

    @staticmethod
    def _joined_message(room: Room) -> RoomJoined:
        return RoomJoined(
            room_id=room.room_id,
            room_type=room.name,
            clients=len(room.members),
            max_clients=room.max_clients or 0,
            metadata=dump_object(room.metadata),
        )

    async def _join_job(
        self,
        room: Room,
        member: Member,
        seat: Seat,
        options: dict[str, Any],
        joined: Any,
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
        if link is not None and not link.is_open:  # the link dropped while it waited
            del room.members[member.id]
            self.publish(room)
            await _maybe_await(room.on_leave(member, False))
            self._maybe_dispose(room)
            return
        self.publish(room)
        joined(room, member)

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

    def _presence(self, link: Link, status: str) -> None:
        """``link``'s player dropped or resumed: its rooms run the hook, the others are told."""
        for joined in (self.joined.get(link.id), self.shared_joined.get(link.id)):
            if joined is not None and joined.room is not None:
                joined.room.mailbox.post(self._presence_job, joined.room, joined.member, status)

    async def _presence_job(self, room: Room, member: Member, status: str) -> None:
        if member.id not in room.members:
            return
        hook = room.on_drop if status == DROPPED else room.on_resume
        try:
            await _maybe_await(hook(member))
        except Exception:
            log.exception("room %s (%s): on_%s raised", room.room_id, room.name, status[:-2])
        notice = RoomPresence(room_id=room.room_id, name=member.name, status=status)
        room.broadcast(notice, except_=member)

    def _link_closed(self, link: Link) -> None:
        self.leave(link, consented=False)
        self.leave_shared(link, consented=False)

    # -- members on other nodes ---------------------------------------------------

    async def _take_remote(
        self, link: Link, member: Member, seat: Seat, options: dict[str, Any]
    ) -> None:
        """The seat is in another node's room: ask the owner to run the join."""
        req = next(self._req)
        future: asyncio.Future[remote.Joined] = asyncio.get_running_loop().create_future()
        self._requests[req] = future
        op = remote.Join(
            req, seat.room_id, seat.seat_id, member.id, member.name, dump_object(options)
        )
        try:
            if not self._tell(seat.owner, op):
                self.directory.release_seat(seat)
                raise HandlerError("cluster_unavailable", "the room's owner cannot be reached")
            timeout = self.seat_timeout + self.server.settings.cluster_timeout
            try:
                answer = await asyncio.wait_for(future, timeout)
            except TimeoutError:
                self._tell(seat.owner, remote.Leave(seat.room_id, member.id, False))
                raise HandlerError(SEAT_EXPIRED, "the room's owner did not answer") from None
        finally:
            self._requests.pop(req, None)
        if answer.code:
            raise HandlerError(answer.code, answer.message)
        if not link.is_open:
            self._tell(seat.owner, remote.Leave(seat.room_id, member.id, False))
            return
        self.joined[link.id] = Membership(seat.room_id, seat.owner, member, None, answer.room_type)
        link.write_frame(answer.frame)
        self.server.group(self.types[answer.room_type].group_prefix + seat.room_id).add(
            link, label=member.name
        )

    def _on_room(self, origin: str, body: bytes) -> None:
        """A room operation from another node (the cluster's listener calls this)."""
        try:
            op = remote.unpack(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self.server.cluster.stats.junk += 1
            return
        if isinstance(op, remote.Msg):
            self._remote_msg(op)
        elif isinstance(op, remote.Send):
            self._remote_send(op)
        elif isinstance(op, remote.Join):
            self._remote_join(origin, op)
        elif isinstance(op, remote.Joined):
            future = self._requests.get(op.req)
            if future is not None and not future.done():
                future.set_result(op)
        elif isinstance(op, remote.Leave):
            entry = self.remote_members.pop(op.member_id, None)
            if entry is not None and entry[0].room_id == op.room_id:
                entry[0].mailbox.post(self._leave_job, entry[0], entry[1], op.consented)
        elif isinstance(op, remote.Fail):
            link = self._member_link(op.member_id)
            if link is not None:
                self.server.outcomes.error(link, op.code, op.message, op.msg_id)
        elif isinstance(op, remote.Closed):
            self._remote_closed(op)

    def _remote_join(self, origin: str, op: remote.Join) -> None:
        room = self.rooms.get(op.room_id)
        if room is None or room.disposed:
            self._tell(origin, remote.Joined(op.req, NO_SUCH_ROOM, "the room is gone", b"", ""))
            return
        member = Member(op.member_id, op.name, origin, None)
        seat = Seat(op.room_id, op.seat_id, self.node, 0.0)
        room.mailbox.post(self._remote_join_job, room, member, seat, op.options, origin, op.req)

    async def _remote_join_job(
        self, room: Room, member: Member, seat: Seat, options: str, origin: str, req: int
    ) -> None:
        def joined(room: Room, member: Member) -> None:
            self.remote_members[member.id] = (room, member)
            frame = self.server.codec.encode_frame(self._joined_message(room))
            self._tell(origin, remote.Joined(req, "", "", frame, room.name))

        try:
            opts = parse_object(options, "options")
            await self._join_job(room, member, seat, opts, joined)
        except HandlerError as exc:
            self._tell(origin, remote.Joined(req, exc.code, exc.message, b"", ""))

    def _remote_msg(self, op: remote.Msg) -> None:
        entry = self.remote_members.get(op.member_id)
        if entry is None or entry[0].room_id != op.room_id:
            return  # left meanwhile
        room, member = entry
        frame = op.frame
        msg_id = int.from_bytes(frame[:4], "big")
        try:
            msg = self.server.codec.decode(msg_id, frame[8:])
        except Exception:
            self.server.cluster.stats.junk += 1
            return
        try:
            self._post_message(room, member, msg, msg_id)
        except HandlerError as exc:
            self.fail(member, exc.code, exc.message, msg_id)

    def _member_link(self, member_id: str, room_id: str | None = None) -> Link | None:
        link_id = remote.link_id_of(member_id)
        joined = self.joined.get(link_id) if link_id is not None else None
        if joined is None or joined.member.id != member_id:
            return None
        if room_id is not None and joined.room_id != room_id:
            return None
        return joined.member.link

    def _remote_send(self, op: remote.Send) -> None:
        link = self._member_link(op.member_id)
        if link is not None:
            link.write_frame(op.frame)

    def _remote_closed(self, op: remote.Closed) -> None:
        link = self._member_link(op.member_id, op.room_id)
        if link is not None:
            self._closed_here(link, op.room_id, op.reason)

    def _closed_here(self, link: Link, room_id: str, reason: str) -> None:
        """This node's link is out of a room another node owned: RoomClosed."""
        joined = self.joined.pop(link.id, None)
        if joined is not None:
            self.server.group(self._group_name(joined)).discard(link)
        link.send(RoomClosed(room_id=room_id, reason=reason))

    async def _check_nodes(self) -> None:
        """Every half lease: close memberships in rooms of dead owners, drop dead members."""
        cluster = self.server.cluster
        away = [j for j in self.joined.values() if j.room is None]
        if not (away or self.remote_members) or not cluster.connected:
            return
        live = set(await cluster.nodes())
        if not cluster.connected:
            return  # nodes() fell back to this node alone: no verdict
        for joined in away:
            link = joined.member.link
            if joined.owner not in live and link is not None:
                if self.joined.get(link.id) is joined:
                    log.info("room %s: owner %s lost", joined.room_id, joined.owner)
                    self._closed_here(link, joined.room_id, OWNER_LOST)
        for member_id, (room, member) in list(self.remote_members.items()):
            if member.node not in live:
                del self.remote_members[member_id]
                room.mailbox.post(self._leave_job, room, member, False)

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
        try:
            if not room.shared and await self.directory.has_seats(room.room_id):
                return  # a seat is on its way; the sweep looks again when it expires
        except HandlerError:
            return  # the broker does not answer: look again at the next sweep
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
                table = self.shared_joined if room.shared else self.joined
                joined = table.get(link.id)
                if joined is not None and joined.room is room:
                    del table[link.id]
                room.group.discard(link)
                if not room.shared:  # shared rooms (chat) predate RoomClosed: their clients
                    link.send(notice)  # may not know it; they see the link close
            else:
                self.remote_members.pop(member.id, None)
                self._tell(member.node, remote.Closed(room.room_id, member.id, reason))
            try:
                await _maybe_await(room.on_leave(member, False))
            except Exception:
                log.exception("room %s (%s): on_leave raised", room.room_id, room.name)
        await self._dispose(room)

    async def _dispose(self, room: Room) -> None:
        room.disposed = True
        room._stop_ticks()
        self._cancel_disposal(room)
        if not room.shared:
            self.directory.remove(room.room_id, room.name, self.node)
        try:
            await _maybe_await(room.on_dispose())
        except Exception:
            log.exception("room %s (%s): on_dispose raised", room.room_id, room.name)
        if room.shared:
            if self.shared.get((room.name, room.room_id)) is room:
                del self.shared[(room.name, room.room_id)]
        else:
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
            for room in [*self.rooms.values(), *self.shared.values()]
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
