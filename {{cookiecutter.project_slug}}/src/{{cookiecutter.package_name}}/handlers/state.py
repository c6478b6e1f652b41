"""Game state owned by one server: counters, who is online, the rooms.

It lives in ``server.state`` (the framework's per-server dict) rather than in
module globals, so two servers in one process (tests start many) never see
each other's players.
Every handler and timer runs on the server's event loop, so plain dicts are
safe: nothing here is touched from another thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..sgs import Group, Link, Server

#: Key of the game state in ``server.state``.
STATE_KEY = "game"

#: Session keys a logged-in link carries.
ACCOUNT_KEY = "account_id"
ROOM_KEY = "room"


@dataclass
class Room:
    """A chat room: the framework group plus the room's own tick count."""

    group: Group
    ticks: int = 0


@dataclass
class GameState:
    """Everything the sample game remembers while the process lives."""

    #: BusinessReq count per account; survives reconnects within the process.
    counters: dict[str, int] = field(default_factory=dict)
    #: The one link currently logged in per account (a newer login replaces it).
    online: dict[str, Link] = field(default_factory=dict)
    #: Rooms that have (or recently had) members, by name.
    rooms: dict[str, Room] = field(default_factory=dict)

    def room(self, server: Server, name: str) -> Room:
        """The room called ``name``, created on first use."""
        room = self.rooms.get(name)
        if room is None:
            room = self.rooms[name] = Room(server.group(f"room:{name}"))
        return room


def state_of(server: Server) -> GameState:
    """The server's game state, created the first time a handler asks."""
    state = server.state.get(STATE_KEY)
    if state is None:
        state = server.state[STATE_KEY] = GameState()
    return state


def account_of(link: Link) -> str | None:
    """The account logged in on ``link``, or None."""
    session: dict[str, Any] = link.session
    return session.get(ACCOUNT_KEY)
