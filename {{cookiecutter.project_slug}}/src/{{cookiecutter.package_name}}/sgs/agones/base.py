"""The Agones contract the server calls, and the stand-alone implementation.

The server calls ``start()`` once it listens (Agones may send players from
then on) and ``stop()`` after its graceful drain (Agones may delete the pod
from then on). Neither may raise or block the game: a missing or failing
sidecar is logged and retried, never fatal.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any

#: ``fn(gameserver)``: the GameServer object (the REST gateway's JSON) that became Allocated.
AllocatedHook = Callable[[dict[str, Any]], Awaitable[None] | None]


class Agones(ABC):
    """This process's GameServer, as far as the game needs to know it."""

    #: The last GameServer state the sidecar reported ("Ready", "Allocated", ...); "" unknown.
    state: str = ""

    @abstractmethod
    async def start(self) -> None:
        """The server listens: mark it Ready and start health pings (returns at once)."""

    @abstractmethod
    async def stop(self) -> None:
        """The server has drained: tell Agones to shut the GameServer down (bounded in time)."""

    @abstractmethod
    def on_allocated(self, fn: AllocatedHook) -> AllocatedHook:
        """Call ``fn(gameserver)`` when an allocation (or the server itself) allocates it."""

    @property
    def allocated(self) -> bool:
        """Agones will not remove this GameServer in a fleet update or scale-down."""
        return self.state == "Allocated"


class LocalAgones(Agones):
    """``agones = false``: no sidecar; nothing is sent and the hooks never run."""

    def __init__(self) -> None:
        self._hooks: list[AllocatedHook] = []

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def on_allocated(self, fn: AllocatedHook) -> AllocatedHook:
        self._hooks.append(fn)
        return fn
