"""Game state owned by one server (the chat rooms and matches are the framework's rooms).

It lives in ``server.state`` (the framework's per-server dict) rather than in
module globals, so two servers in one process (tests start many) never see
each other's players.
Every handler and timer runs on the server's event loop, so plain dicts are
safe: nothing here is touched from another thread.

What belongs to a player rather than to this process (the business counter)
is in the player's state, which the framework's store keeps durable and
hands from node to node with the login: ``player_of(link).state``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..sgs import Link, Player, Server

#: Key of the game state in ``server.state``.
STATE_KEY = "game"

#: Session keys a logged-in link carries.
ACCOUNT_KEY = "account_id"
PLAYER_KEY = "player"

#: The player-state field the business handler counts in.
COUNTER = "counter"


@dataclass
class GameState:
    """What the sample game keeps in this process beside its rooms (nothing yet: a place
    for a game's own per-server tables)."""

    notes: dict[str, Any] = field(default_factory=dict)


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


def player_of(link: Link) -> Player:
    """The logged-in player of ``link`` (the login check guarantees one)."""
    player: Player = link.session[PLAYER_KEY]
    return player
