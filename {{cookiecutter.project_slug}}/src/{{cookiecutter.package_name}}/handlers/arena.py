"""The arena: a real-time match on the framework's rooms (``sgs/rooms``).

Up to ``arena_max_players`` players walk a small grid. A ``MoveReq`` is not
applied when it arrives: the room queues it, and at each tick
(``arena_tick_rate``, 20 Hz by default) the owner applies every queued input
in arrival order, one cell per input, then broadcasts the whole field
(``ArenaState``). Players join with ``JoinOrCreate("arena")``; the room
lives on one node and its members may be on any.
"""

from __future__ import annotations

import random
from typing import Any

from ..messages import ArenaPlayer, ArenaState, MoveReq
from ..sgs.rooms import Member, Room

#: The field is SIZE x SIZE cells; positions are clamped to it.
SIZE = 32
STEPS = {"up": (0, -1), "down": (0, 1), "left": (-1, 0), "right": (1, 0)}


class Arena(Room, name="arena"):
    """One match; its state is the members' ``data`` (x, y, queued inputs, last seq)."""

    max_clients = 8
    tick_rate = 20.0

    def on_create(self, options: dict[str, Any]) -> None:
        settings = self.server.settings
        self.max_clients = getattr(settings, "arena_max_players", type(self).max_clients)
        self.tick_rate = getattr(settings, "arena_tick_rate", type(self).tick_rate)
        self.ticks = 0
        self.rng = random.Random(self.room_id)
        self.set_metadata({"mode": options.get("mode", "ffa")})

    def on_join(self, player: Member, options: dict[str, Any]) -> None:
        player.data.update(x=self.rng.randrange(SIZE), y=self.rng.randrange(SIZE), seq=0, inputs=[])

    def on_tick(self, dt: float) -> None:
        self.ticks += 1
        players = []
        for member in self.members.values():
            data = member.data
            x, y = data["x"], data["y"]
            for direction, seq in data["inputs"]:
                dx, dy = STEPS[direction]
                x = min(SIZE - 1, max(0, x + dx))
                y = min(SIZE - 1, max(0, y + dy))
                data["seq"] = seq
            data["inputs"].clear()
            data["x"], data["y"] = x, y
            players.append(ArenaPlayer(name=member.name, x=x, y=y, seq=data["seq"]))
        if players:
            self.broadcast(ArenaState(room_id=self.room_id, tick=self.ticks, players=players))


#: Inputs a player may queue between two ticks; more are dropped (a flood buys nothing).
MAX_QUEUED_INPUTS = 16


@Arena.on(MoveReq)
def move(room: Arena, player: Member, msg: MoveReq) -> None:
    """Queue the input for the next tick (in the room's turn, so in arrival order)."""
    inputs = player.data["inputs"]
    if len(inputs) < MAX_QUEUED_INPUTS:
        inputs.append((msg.direction, msg.seq))
