"""The Room base class: one match, its members, its hooks, its router and its tick.

A room type is a subclass named on the class line::

    class Arena(Room, name="arena"):
        max_clients = 8
        tick_rate = 20.0

        def on_join(self, player, options): ...
        def on_tick(self, dt): ...

    @Arena.on(MoveReq)
    def move(room: Arena, player: Member, msg: MoveReq) -> None: ...

An instance lives on one node (its owner) and runs every hook, handler and
tick through its :class:`~.mailbox.Mailbox`, one at a time. Hooks and
handlers may be plain functions or ``async def``; an async one holds the room
until it returns. What a room sends goes through a framework group named
after the room, so members on any node receive it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import msgspec

from ..errors import HandlerError
from ..message import Message
from .mailbox import Mailbox
from .messages import RoomClosed, RoomInfo

if TYPE_CHECKING:
    from ..framework import Server
    from ..group import Group
    from ..link import Link
    from .manager import RoomManager

log = logging.getLogger("sgs.rooms")

ROOM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
#: Handler of a room message: ``(room, player, msg) -> reply | None`` (or a coroutine of it).
RoomHandler = Callable[[Any, "Member", Any], Any]
H = TypeVar("H", bound=RoomHandler)


class Member:
    """A player in a room, as the room's hooks and handlers see it.

    ``id`` is unique in the cluster (``<node>.<link id>``); ``name`` is the
    account the link is bound to (``server.bind``), or the link id when it is
    not logged in; ``link`` is the link on this node. ``data`` is the room's
    own per-player state (position, score...), dropped when the player leaves.
    """

    __slots__ = ("id", "name", "node", "link", "data")

    def __init__(self, id: str, name: str, node: str, link: Link | None) -> None:
        self.id = id
        self.name = name
        self.node = node
        self.link = link
        self.data: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"Member({self.id!r}, {self.name!r})"


class Room:
    """Base of every room type; see the module docstring.

    A link is in at most one matchmade room and one shared room at a time.
    Class attributes a type sets: ``max_clients`` (None: unlimited),
    ``tick_rate`` (Hz; None: no tick), ``auto_dispose`` (dispose once empty
    for ``empty_grace`` seconds; None: the server's ``empty_grace`` setting).
    """

    name: ClassVar[str] = ""
    max_clients: ClassVar[int | None] = None
    tick_rate: ClassVar[float | None] = None
    auto_dispose: ClassVar[bool] = True
    empty_grace: ClassVar[float | None] = None
    keep_lateness: ClassVar[bool] = False
    #: A shared room type (chat) has no owner: an instance on every node with
    #: members, named by the game (its id is the name), joined by name with
    #: ``RoomManager.join_shared``; no seats, no listing, unlimited. Its hooks
    #: and handlers run one at a time on the member's node, and its broadcasts
    #: span the nodes through its group, as the named groups it replaces did.
    shared: ClassVar[bool] = False
    #: Prefix of the room's group name (the group carries its broadcasts).
    group_prefix: ClassVar[str] = "sgs.room:"
    _routes: ClassVar[dict[type[Message], RoomHandler]] = {}

    def __init_subclass__(cls, name: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if name is not None:
            if not ROOM_NAME.match(name):
                raise TypeError(f"{cls.__qualname__}: room type name {name!r} is not a short name")
            cls.name = name
        cls._routes = dict(cls._routes)  # a subclass inherits its base's handlers

    @classmethod
    def on(cls, msg_type: type[Message]) -> Callable[[H], H]:
        """Route ``msg_type`` from this room's members to ``handler(room, player, msg)``.

        A returned message is sent to that player; ``HandlerError`` answers
        ``Error(code, message, msg_id)`` to that player alone.
        """
        if msg_type.__msg_id__ is None:
            raise TypeError(f"{msg_type.__qualname__} has no msg_id; it cannot be routed")

        def register(handler: H) -> H:
            if msg_type in cls._routes:
                raise ValueError(f"{cls.__qualname__} already handles {msg_type.__qualname__}")
            cls._routes[msg_type] = handler
            return handler

        return register

    # -- state the framework sets ---------------------------------------------

    def __init__(self) -> None:
        self.room_id = ""
        self.server: Server = None  # type: ignore[assignment]
        self.manager: RoomManager = None  # type: ignore[assignment]
        self.metadata: dict[str, Any] = {}
        self.locked = False
        self._private = False
        self.members: dict[str, Member] = {}  # join order
        self.disposed = False
        self.created_at = time.time()
        self.mailbox: Mailbox = None  # type: ignore[assignment]
        self.group: Group = None  # type: ignore[assignment]
        self._tick: asyncio.TimerHandle | None = None
        self._tick_next = 0.0
        self._tick_last = 0.0
        self._tick_pending = False
        self.tick_phase = 0.0
        #: Ticks that came while the previous one still waited for the room's turn.
        self.ticks_merged = 0
        #: Lateness of each tick (seconds after its due time), kept when the type's
        #: ``keep_lateness`` is on (the arena bench turns it on).
        self.tick_lateness: list[float] = []

    # -- hooks: override what the type needs (plain or async) -----------------

    def on_create(self, options: dict[str, Any]) -> Any:
        """The room was made for ``options``; raise ``HandlerError`` to refuse creating it."""

    def on_join(self, player: Member, options: dict[str, Any]) -> Any:
        """``player`` takes a seat; raise ``HandlerError`` to refuse (``join_refused``)."""

    def on_leave(self, player: Member, consented: bool) -> Any:
        """``player`` left: ``consented`` is True for LeaveRoom, False when its link dropped."""

    def on_drop(self, player: Member) -> Any:
        """``player``'s connection dropped; its seat is held for ``resume_window`` seconds.

        ``on_resume`` follows when it comes back in time, ``on_leave(player,
        consented=False)`` when the window passed.
        """

    def on_resume(self, player: Member) -> Any:
        """``player`` resumed within the window: the same member, the same seat."""

    def on_tick(self, dt: float) -> Any:
        """Called ``tick_rate`` times a second; ``dt`` is the time since the previous tick."""

    def on_dispose(self) -> Any:
        """The room is going away; its members are already gone."""

    # -- what room code calls ---------------------------------------------------

    @property
    def clients(self) -> list[Member]:
        """The members, in join order."""
        return list(self.members.values())

    @property
    def private(self) -> bool:
        """A private room is never listed and never picked by JoinOrCreate; JoinById works."""
        return self._private

    @private.setter
    def private(self, value: bool) -> None:
        self._private = bool(value)
        self._changed()

    def lock(self) -> None:
        """JoinOrCreate skips a locked room and JoinById is answered ``room_locked``."""
        self.locked = True
        self._changed()

    def unlock(self) -> None:
        self.locked = False
        self._changed()

    def set_metadata(self, values: dict[str, Any]) -> None:
        """Merge ``values`` into the listed metadata (what ListRooms and filters see)."""
        self.metadata.update(values)
        self._changed()

    def broadcast(self, msg: Message, except_: Member | None = None) -> int:
        """Send ``msg`` to every member (but ``except_``), on every node; encoded once."""
        if except_ is not None and except_.link is None:  # on another node: one by one
            frame = self.server.codec.encode_frame(msg)
            for member in list(self.members.values()):
                if member is not except_:
                    self.manager.send_frame(member, frame)
            return len(self.members) - 1
        exclude = except_.link if except_ is not None else None
        return self.group.broadcast(msg, exclude=exclude)

    def send(self, player: Member, msg: Message) -> bool:
        """Send ``msg`` to one member."""
        return self.manager.send(player, msg)

    def disconnect(self, reason: str = "disconnected") -> None:
        """Close the room: every member gets ``RoomClosed(reason)`` and leaves, then dispose."""
        self.mailbox.post(self.manager.close_room, self, reason)

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` in this room's turn (from a task of its own, say)."""
        self.mailbox.post(fn, *args)

    def info(self) -> RoomInfo:
        """This room as a row of the listing."""
        return RoomInfo(
            room_id=self.room_id,
            room_type=self.name,
            clients=len(self.members),
            max_clients=self.max_clients or 0,
            metadata=dump_object(self.metadata),
            locked=self.locked,
            private=self._private,
            owner=self.server.cluster.node_id if self.server is not None else "",
        )

    def _changed(self) -> None:
        if self.manager is not None and not self.disposed:
            self.manager.publish(self)

    # -- the framework's side ---------------------------------------------------

    def _start_ticks(self, phase: float = 0.0) -> None:
        """Tick from now, shifted by ``phase`` (a fraction of the interval).

        The manager gives each room its own phase, so rooms made at the same
        moment do not all tick in the same loop iteration: their work spreads
        over the interval instead of arriving as one burst that makes the last
        of them late.
        """
        if not self.tick_rate:
            return
        loop = asyncio.get_running_loop()
        self.tick_phase = phase
        self._tick_last = self._tick_next = loop.time() + phase / self.tick_rate
        self._tick = loop.call_at(self._tick_next, self._fire_tick)

    def _schedule_tick(self, loop: asyncio.AbstractEventLoop) -> None:
        assert self.tick_rate
        self._tick_next += 1.0 / self.tick_rate
        now = loop.time()
        if self._tick_next <= now:  # a stalled loop skips ticks instead of bursting
            self._tick_next = now + 1.0 / self.tick_rate
        self._tick = loop.call_at(self._tick_next, self._fire_tick)

    def _fire_tick(self) -> None:
        if self.disposed:
            return
        loop = asyncio.get_running_loop()
        if self.keep_lateness:  # the precise clock: the loop's may be cached, in whole ms
            self.tick_lateness.append(time.monotonic() - self._tick_next)
        self._schedule_tick(loop)
        if self._tick_pending:  # the room is still busy: merge ticks, dt will say how long
            self.ticks_merged += 1
            return
        self._tick_pending = True
        self.mailbox.post(self._run_tick)

    def _run_tick(self) -> Any:
        self._tick_pending = False
        now = asyncio.get_running_loop().time()
        dt = now - self._tick_last
        self._tick_last = now
        return self.on_tick(dt)

    def _stop_ticks(self) -> None:
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None

    def _handle(self, handler: RoomHandler, player: Member, msg: Message, msg_id: int) -> Any:
        """Run a member's message in the room's turn; its reply or Error goes to the member."""
        if player.id not in self.members:
            return None  # left while the message waited
        try:
            result = handler(self, player, msg)
        except HandlerError as exc:
            self.manager.fail(player, exc.code, exc.message, msg_id)
            return None
        except Exception:
            log.exception("room %s (%s): handler %r raised", self.room_id, self.name, handler)
            self.manager.fail(player, "internal", "internal error", msg_id)
            return None
        if result is not None and hasattr(result, "__await__"):
            return self._handle_later(result, player, msg_id)
        if result is not None:
            self.send(player, result)
        return None

    async def _handle_later(self, awaitable: Any, player: Member, msg_id: int) -> None:
        try:
            result = await awaitable
        except HandlerError as exc:
            self.manager.fail(player, exc.code, exc.message, msg_id)
            return
        except Exception:
            log.exception("room %s (%s): handler raised", self.room_id, self.name)
            self.manager.fail(player, "internal", "internal error", msg_id)
            return
        if result is not None:
            self.send(player, result)

    def closed_notice(self, reason: str) -> RoomClosed:
        return RoomClosed(room_id=self.room_id, reason=reason)


#: Bound of an options/filters/metadata object, in bytes of JSON text.
MAX_OBJECT_TEXT = 4096
_decode_object = msgspec.json.Decoder(dict[str, Any])
_encode = msgspec.json.Encoder()


def parse_object(text: str, what: str) -> dict[str, Any]:
    """JSON object text from the wire as a dict; ``""`` is ``{}``; anything else refused."""
    if not text:
        return {}
    try:
        return _decode_object.decode(text)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise HandlerError("bad_request", f"{what} must be a JSON object: {exc}") from None


def dump_object(value: dict[str, Any]) -> str:
    """A dict as compact JSON object text (keys sorted, so equal dicts are equal text)."""
    if not value:
        return ""
    return _encode.encode(dict(sorted(value.items()))).decode()


def matches(metadata: dict[str, Any], filters: dict[str, Any]) -> bool:
    """Every filter key is in ``metadata`` with an equal value."""
    return all(key in metadata and metadata[key] == value for key, value in filters.items())
