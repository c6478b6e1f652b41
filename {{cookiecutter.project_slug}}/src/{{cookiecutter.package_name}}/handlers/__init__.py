"""The sample game: every handler and middleware, and the server-side setup.

``router`` is what the app serves; ``setup(server)`` adds what a router
cannot carry: the state, the disconnect hook and the RoomTick timer. To add a
feature, write a module with its own ``Router``, include it below, and declare
its messages in ``messages.py``.
"""

from __future__ import annotations

import functools

from ..messages import SayReq
from ..sgs import Link, Router, Server
from ..sgs.middleware import timing_middleware
from ..sgs.resume import router as resume_router
from ..sgs.rooms import Rooms
from . import arena, auth, business, echo, rooms
from .state import GameState, state_of

__all__ = ["ROOM_TICK_INTERVAL", "GameState", "room_types", "router", "setup", "state_of"]

#: Seconds between two RoomTick pushes.
ROOM_TICK_INTERVAL = 1.0

# Open to anonymous links: log in and out, echo (and PingReq, answered by the
# framework itself).
public = Router()
public.include(auth.router)
public.include(echo.router)
# ResumeReq: arm resumption after a login, or resume a dropped player (sgs/resume).
public.include(resume_router)

# Everything else needs a login. Layers run in the order they are added, the
# first one outermost: warn about slow calls (the worker times them, the
# rejected ones too), then keep anonymous links out (a check: one plain call).
# Handlers that never await are plain ``def``: no coroutine per message.
members = Router()
members.use(timing_middleware())
members.use(auth.require_login)
members.include(business.router)
members.include(rooms.router)
# Matches with a lifecycle (sgs/rooms): JoinOrCreate & co, and each room type's messages.
room_types = Rooms(arena.Arena, rooms.Chat)
# Chat is what scripts flood first: each link may say chat_rate_limit messages
# a second (chat_rate_burst at once); more are answered Error(rate_limited).
room_types.router.limit(SayReq, per_second="chat_rate_limit", burst="chat_rate_burst")
members.include(room_types.router)

router = Router()
router.include(public)
router.include(members)


def setup(server: Server, *, tick_interval: float = ROOM_TICK_INTERVAL) -> None:
    """Attach the game to ``server``: state, hooks (connect: the login clock), RoomTick timer.

    ``tick_interval`` exists for tests, which cannot wait a second per tick.
    """
    state_of(server)

    async def on_disconnect(link: Link) -> None:
        auth.forget(server, link)

    server.on_disconnect(on_disconnect)
    clock = auth.login_clock(server)
    if clock is not None:
        server.on_connect(lambda link: clock.add(link.id))
        server.on_stop(lambda _: clock.close())
    server.on_replaced(functools.partial(auth.replaced, server))
    server.resumer.on_snapshot(functools.partial(auth.snapshot, server))
    server.every(tick_interval, functools.partial(rooms.tick_rooms, server))
    room_types.attach(server)
