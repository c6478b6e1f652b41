"""The directory in the cluster's Redis: one listing and one seat table for every node.

Each placement decision is one Lua script (``cluster/scripts.py``: ROOM_RESERVE,
ROOM_RESERVE_IN, ROOM_CREATED, ROOM_CONSUME, ...) on the node's ordered
command bus, so it is atomic across the cluster: two nodes can never give the
last seat of a room to two players, and only one caller per (type, filters)
creates a room while the others wait for it. Seats expire on the broker's
clock. A room whose owner's lease is gone is neither picked nor listed, and
the reaper deletes it with the rest of the dead node's keys, so a dead
owner's rooms leave the listing within a lease (and its keys within a lease
plus a reaper cycle).

When the broker does not answer, matchmaking is refused
(``cluster_unavailable``): a seat the cluster cannot confirm is a seat two
players might get.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ..errors import HandlerError
from .directory import CREATE, WAIT, Directory, Seat, new_seat_id
from .messages import RoomInfo
from .room import dump_object

if TYPE_CHECKING:
    from ..cluster.redis import RedisCluster

#: How often a caller waiting for another's room creation looks again.
CLAIM_POLL = 0.02


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class BrokerDirectory(Directory):
    """The Redis directory; ``types`` are the game's room types (ListRooms of any type)."""

    def __init__(self, cluster: RedisCluster, types: list[str]) -> None:
        self.cluster = cluster
        self.keys = cluster.keys
        self.bus = cluster.bus
        self.types = types

    async def _call(self, name: str, keys: list[str], args: list[Any]) -> Any:
        from ..cluster.bus import ClusterDown, OutcomeUnknown

        try:
            return await self.bus.call(lambda pipe: self.bus.eval(pipe, name, keys, args))
        except (ClusterDown, OutcomeUnknown) as exc:
            raise HandlerError(
                "cluster_unavailable", f"the cluster broker did not answer: {exc}"
            ) from None

    def _send(self, name: str, keys: list[str], args: list[Any]) -> None:
        self.bus.enqueue(lambda pipe: self.bus.eval(pipe, name, keys, args))

    async def reserve(
        self, room_type: str, filters: dict[str, Any], claim: str, timeout: float
    ) -> Seat | str:
        k = self.keys
        seat_id = new_seat_id()
        ms = int(timeout * 1000)
        got = await self._call(
            "ROOM_RESERVE",
            [k.rooms_of(room_type), k.room_claim(claim)],
            [k.prefix, dump_object(filters), seat_id, ms, ms, self.cluster.node_id],
        )
        what = _text(got[0])
        if what == "seat":
            return Seat(_text(got[1]), seat_id, _text(got[2]), int(got[3]) / 1000)
        return CREATE if what == "create" else WAIT

    async def reserve_in(self, room_id: str, timeout: float) -> Seat:
        k = self.keys
        seat_id = new_seat_id()
        got = await self._call(
            "ROOM_RESERVE_IN",
            [k.room(room_id), k.room_seats(room_id)],
            [k.prefix, seat_id, int(timeout * 1000)],
        )
        what = _text(got[0])
        if what != "seat":
            raise HandlerError(what, f"room {room_id!r}: {what.replace('_', ' ')}")
        return Seat(room_id, seat_id, _text(got[1]), int(got[2]) / 1000)

    async def created(self, info: RoomInfo, timeout: float) -> Seat:
        k = self.keys
        seat_id = new_seat_id()
        room_id = info.room_id
        expiry = await self._call(
            "ROOM_CREATED",
            [
                k.room(room_id),
                k.room_seats(room_id),
                k.rooms_of(info.room_type),
                k.node_rooms(info.owner),
                k.room_seq,
            ],
            [
                room_id,
                info.room_type,
                info.max_clients,
                info.metadata,
                int(info.locked),
                int(info.private),
                info.owner,
                seat_id,
                int(timeout * 1000),
            ],
        )
        return Seat(room_id, seat_id, info.owner, int(expiry) / 1000)

    def release_claim(self, claim: str) -> None:
        key = self.keys.room_claim(claim)
        self.bus.enqueue(lambda pipe: (pipe.delete(key), 1)[1])

    async def wait_claim(self, claim: str, timeout: float) -> None:
        await asyncio.sleep(min(CLAIM_POLL, timeout))

    async def consume(self, seat: Seat) -> bool:
        k = self.keys
        got = await self._call(
            "ROOM_CONSUME", [k.room(seat.room_id), k.room_seats(seat.room_id)], [seat.seat_id]
        )
        return bool(int(got))

    def release_seat(self, seat: Seat) -> None:
        key, field = self.keys.room_seats(seat.room_id), seat.seat_id
        self.bus.enqueue(lambda pipe: (pipe.hdel(key, field), 1)[1])

    def publish(self, info: RoomInfo) -> None:
        self._send(
            "ROOM_PUBLISH",
            [self.keys.room(info.room_id)],
            [info.clients, info.max_clients, info.metadata, int(info.locked), int(info.private)],
        )

    def remove(self, room_id: str, room_type: str = "", owner: str = "") -> None:
        k = self.keys
        self._send(
            "ROOM_REMOVE",
            [
                k.room(room_id),
                k.room_seats(room_id),
                k.rooms_of(room_type),
                k.node_rooms(owner or self.cluster.node_id),
            ],
            [room_id],
        )

    async def has_seats(self, room_id: str) -> bool:
        return bool(int(await self._call("ROOM_SEATS", [self.keys.room_seats(room_id)], [])))

    async def rooms(self, room_type: str, filters: dict[str, Any]) -> list[RoomInfo]:
        k = self.keys
        out: list[RoomInfo] = []
        for name in [room_type] if room_type else self.types:
            rows = await self._call(
                "ROOM_LIST", [k.rooms_of(name)], [k.prefix, dump_object(filters)]
            )
            for row in rows:
                room_id, clients, max_, meta, locked, private, owner = (_text(v) for v in row)
                out.append(
                    RoomInfo(
                        room_id=room_id,
                        room_type=name,
                        clients=int(clients),
                        max_clients=int(max_),
                        metadata=meta,
                        locked=locked == "1",
                        private=private == "1",
                        owner=owner,
                    )
                )
        return out
