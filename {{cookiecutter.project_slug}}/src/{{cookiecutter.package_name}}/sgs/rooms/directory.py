"""The room listing and the seats: where placement decisions are made.

A :class:`Directory` answers the one question matchmaking must answer
atomically: *which room gets this player?* ``reserve`` picks a listed,
unlocked, public room of the type whose metadata matches the filters and
that has a free seat, counting reserved seats as taken, and reserves one; or,
when there is none, grants the right to create one to exactly one caller per
(type, filters), and tells the others to wait for that room. A seat expires
after ``seat_reservation_timeout``; the owner turns it into a client with
``consume``, once.

:class:`LocalDirectory` is the single node's (plain dicts: everything runs on
one event loop, so each method is atomic by construction). The cluster's
implementation keeps the same table in the broker behind one script.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from ..errors import HandlerError
from .messages import NO_SUCH_ROOM, ROOM_FULL, ROOM_LOCKED, RoomInfo
from .room import matches, parse_object

#: ``reserve`` outcomes that are not a seat.
CREATE = "create"  # no room fits: this caller creates one (it holds the claim)
WAIT = "wait"  # another caller is creating a room for these filters


@dataclass(frozen=True, slots=True)
class Seat:
    """A reserved place in a room, valid until ``expires`` (the directory's clock)."""

    room_id: str
    seat_id: str
    owner: str
    expires: float


@dataclass
class Entry:
    """One listed room with its reservations."""

    info: RoomInfo
    metadata: dict[str, Any]
    seats: dict[str, float] = field(default_factory=dict)  # seat id -> expiry

    def taken(self, now: float) -> int:
        return self.info.clients + sum(1 for expiry in self.seats.values() if expiry > now)

    def has_room(self, now: float) -> bool:
        cap = self.info.max_clients
        return cap <= 0 or self.taken(now) < cap


def new_seat_id() -> str:
    return secrets.token_urlsafe(9)


class Directory(ABC):
    """The placement contract; see the module docstring."""

    @abstractmethod
    async def reserve(
        self, room_type: str, filters: dict[str, Any], claim: str, timeout: float
    ) -> Seat | str:
        """A seat in a fitting room, or CREATE (caller holds ``claim``), or WAIT."""

    @abstractmethod
    async def reserve_in(self, room_id: str, timeout: float) -> Seat:
        """A seat in ``room_id``; HandlerError ``no_such_room``/``room_locked``/``room_full``."""

    @abstractmethod
    async def created(self, info: RoomInfo, timeout: float) -> Seat:
        """List a new room with one seat reserved for its creator."""

    @abstractmethod
    def release_claim(self, claim: str) -> None:
        """The creation under ``claim`` ended (made or failed): waiters look again."""

    @abstractmethod
    async def wait_claim(self, claim: str, timeout: float) -> None:
        """Return when ``claim`` is released (or after ``timeout``)."""

    @abstractmethod
    async def consume(self, seat: Seat) -> bool:
        """Turn ``seat`` into a client, once; False when it expired or was used."""

    @abstractmethod
    def release_seat(self, seat: Seat) -> None:
        """Give an unused seat back (the join failed before consuming it)."""

    @abstractmethod
    def publish(self, info: RoomInfo) -> None:
        """The owner's room changed: update its row (never waits)."""

    @abstractmethod
    def remove(self, room_id: str, room_type: str = "", owner: str = "") -> None:
        """The room is gone: drop its row and its seats."""

    @abstractmethod
    async def has_seats(self, room_id: str) -> bool:
        """Reservations not yet expired for ``room_id``."""

    @abstractmethod
    async def rooms(self, room_type: str, filters: dict[str, Any]) -> list[RoomInfo]:
        """Listed (non-private) rooms of ``room_type`` (any type when empty) matching ``filters``."""


class LocalDirectory(Directory):
    """The single node's directory: dicts on the event loop's clock."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.entries: dict[str, Entry] = {}
        self.claims: dict[str, asyncio.Event] = {}
        self._order = itertools.count()

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    async def reserve(
        self, room_type: str, filters: dict[str, Any], claim: str, timeout: float
    ) -> Seat | str:
        now = self._now()
        for room_id, entry in self.entries.items():  # creation order: the oldest fitting room
            info = entry.info
            if (
                info.room_type == room_type
                and not info.locked
                and not info.private
                and matches(entry.metadata, filters)
                and entry.has_room(now)
            ):
                return self._seat(room_id, entry, now + timeout)
        if claim in self.claims:
            return WAIT
        self.claims[claim] = asyncio.Event()
        return CREATE

    async def reserve_in(self, room_id: str, timeout: float) -> Seat:
        entry = self.entries.get(room_id)
        if entry is None:
            raise HandlerError(NO_SUCH_ROOM, f"no room {room_id!r}")
        if entry.info.locked:
            raise HandlerError(ROOM_LOCKED, f"room {room_id!r} is locked")
        now = self._now()
        if not entry.has_room(now):
            raise HandlerError(ROOM_FULL, f"room {room_id!r} is full")
        return self._seat(room_id, entry, now + timeout)

    async def created(self, info: RoomInfo, timeout: float) -> Seat:
        entry = self.entries[info.room_id] = Entry(info, parse_object(info.metadata, "metadata"))
        return self._seat(info.room_id, entry, self._now() + timeout)

    def _seat(self, room_id: str, entry: Entry, expires: float) -> Seat:
        seat_id = new_seat_id()
        entry.seats[seat_id] = expires
        return Seat(room_id, seat_id, entry.info.owner or self.node, expires)

    def release_claim(self, claim: str) -> None:
        event = self.claims.pop(claim, None)
        if event is not None:
            event.set()

    async def wait_claim(self, claim: str, timeout: float) -> None:
        event = self.claims.get(claim)
        if event is None:
            return
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            pass

    async def consume(self, seat: Seat) -> bool:
        entry = self.entries.get(seat.room_id)
        if entry is None:
            return False
        expires = entry.seats.pop(seat.seat_id, None)
        if expires is None or expires <= self._now():
            return False
        entry.info.clients += 1
        return True

    def release_seat(self, seat: Seat) -> None:
        entry = self.entries.get(seat.room_id)
        if entry is not None:
            entry.seats.pop(seat.seat_id, None)

    def publish(self, info: RoomInfo) -> None:
        entry = self.entries.get(info.room_id)
        if entry is None:
            return  # not listed yet (being created) or gone
        entry.info = info
        entry.metadata = parse_object(info.metadata, "metadata")

    def remove(self, room_id: str, room_type: str = "", owner: str = "") -> None:
        self.entries.pop(room_id, None)

    async def has_seats(self, room_id: str) -> bool:
        entry = self.entries.get(room_id)
        if entry is None:
            return False
        now = self._now()
        for seat_id, expiry in list(entry.seats.items()):
            if expiry <= now:
                del entry.seats[seat_id]
        return bool(entry.seats)

    async def rooms(self, room_type: str, filters: dict[str, Any]) -> list[RoomInfo]:
        return [
            entry.info
            for entry in self.entries.values()
            if not entry.info.private
            and (not room_type or entry.info.room_type == room_type)
            and matches(entry.metadata, filters)
        ]
