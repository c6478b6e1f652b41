"""A test room type ("lab") whose hooks record what happened, and helpers around it.

Its messages live in a catalogue of their own (merged with the game's for the
server), so they never enter the game's wire contract.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from {{ cookiecutter.package_name }} import (
    messages,
)
from {{ cookiecutter.package_name }}.sgs import (
    Catalog,
    Client,
    HandlerError,
    Message,
    Server,
)
from {{ cookiecutter.package_name }}.sgs.rooms import (
    Member,
    Room,
    Rooms,
    manager_of,
)
from {{ cookiecutter.package_name }}.sgs.testing import (
    running_server,
)

catalog = Catalog()
TIMEOUT = 5.0


class LabResp(Message, msg_id=1202, catalog=catalog):
    text: str


class LabReq(Message, msg_id=1201, reply=LabResp, catalog=catalog):
    """Answered in the room's turn; ``delay`` > 0 makes the handler await that long."""

    text: str
    delay: float = 0.0


class LabCmd(Message, msg_id=1203, reply=LabResp, catalog=catalog):
    """lock, unlock, private, meta:<key>=<value>, disconnect:<reason>, shout:<text>."""

    cmd: str


class LabNote(Message, msg_id=1204, catalog=catalog):
    text: str


class Lab(Room, name="lab"):
    """Records every hook in ``events``; options: deny, slow_join, private, meta."""

    max_clients = 2
    tick_rate = None
    empty_grace = 0.2
    #: Every Lab instance's events, by room id (instances go away on dispose).
    log: dict[str, list[tuple[Any, ...]]] = {}

    def on_create(self, options: dict[str, Any]) -> None:
        self.events = self.log.setdefault(self.room_id, [])
        self.events.append(("create", options))
        if options.get("private"):
            self.private = True
        if "max" in options:
            self.max_clients = int(options["max"])
        if options.get("meta"):
            self.set_metadata(options["meta"])
        if options.get("tick"):
            self.tick_rate = float(options["tick"])

    async def on_join(self, player: Member, options: dict[str, Any]) -> None:
        if options.get("deny"):
            raise HandlerError("nope", "players named deny stay out")
        if options.get("slow_join"):
            await asyncio.sleep(float(options["slow_join"]))
        self.events.append(("join", player.name))
        self.broadcast(LabNote(text=f"joined {player.name}"))

    def on_leave(self, player: Member, consented: bool) -> None:
        self.events.append(("leave", player.name, consented))

    def on_tick(self, dt: float) -> None:
        self.events.append(("tick", dt))

    def on_dispose(self) -> None:
        self.events.append(("dispose",))


@Lab.on(LabReq)
async def lab_req(room: Lab, player: Member, msg: LabReq) -> LabResp:
    room.events.append(("enter", msg.text))
    if msg.delay:
        await asyncio.sleep(msg.delay)
    room.events.append(("exit", msg.text))
    return LabResp(text=msg.text)


@Lab.on(LabCmd)
def lab_cmd(room: Lab, player: Member, msg: LabCmd) -> LabResp | None:
    cmd, _, arg = msg.cmd.partition(":")
    if cmd == "lock":
        room.lock()
    elif cmd == "unlock":
        room.unlock()
    elif cmd == "private":
        room.private = True
    elif cmd == "meta":
        key, _, value = arg.partition("=")
        room.set_metadata({key: value})
    elif cmd == "disconnect":
        room.disconnect(arg)
        return None
    elif cmd == "shout":
        room.broadcast(LabNote(text=arg), except_=player)
    elif cmd == "whisper":
        room.send(player, LabNote(text=arg))
    else:
        raise HandlerError("bad_cmd", msg.cmd)
    return LabResp(text=msg.cmd)


rooms = Rooms(Lab)
game_catalog = messages.catalog.merged(catalog)


@contextlib.asynccontextmanager
async def lab_server(**settings: Any) -> AsyncIterator[Server]:
    settings.setdefault("protocol", "json")
    async with running_server(
        rooms.router, catalog=game_catalog, setup=rooms.attach, **settings
    ) as server:
        yield server


def lab_client(server: Server, protocol: str) -> Client:
    return Client("127.0.0.1", server.port, protocol=protocol, catalog=game_catalog)


def lab_rooms(server: Server) -> dict[str, Room]:
    return manager_of(server).rooms
