"""Many deadlines of one length on one timer: a queue of time slots, not a handle each.

A per-link ``loop.call_later`` costs a timer handle, its arguments and often
a closure: about 900 bytes a link, for a deadline that almost never fires
(the sample game's ``auth_timeout``: a player logs in long before it). Every
deadline here has the same length, so they expire in the order they were
added: :class:`Deadlines` appends each key (a link id, an int the link
already holds) to the newest slot of ``step`` seconds and keeps one timer
for the oldest slot. A deadline fires at most ``step`` late and never early,
and costs one list entry (8 bytes). Nothing is cancelled: the callback
decides whether the deadline still matters (is the link open, logged in?).
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable, Hashable


class Deadlines:
    """``fire(key)`` about ``delay`` seconds after each :meth:`add` (at most ``step`` late)."""

    __slots__ = ("delay", "step", "fire", "slots", "handle", "loop")

    def __init__(
        self, delay: float, fire: Callable[[Hashable], None], step: float | None = None
    ) -> None:
        if delay <= 0:
            raise ValueError("a deadline needs a positive delay")
        self.delay = delay
        # Late by at most a sixteenth of the delay, within 50 ms and 1 s.
        self.step = step if step is not None else min(max(delay / 16, 0.05), 1.0)
        self.fire = fire
        self.slots: deque[tuple[int, list[Hashable]]] = deque()
        self.handle: asyncio.TimerHandle | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def __len__(self) -> int:
        return sum(len(keys) for _, keys in self.slots)

    def add(self, key: Hashable) -> None:
        """Start ``key``'s deadline now (on the event loop's thread)."""
        loop = self.loop
        if loop is None:
            loop = self.loop = asyncio.get_running_loop()
        slot = math.ceil((loop.time() + self.delay) / self.step)
        slots = self.slots
        if slots and slots[-1][0] == slot:
            slots[-1][1].append(key)
            return
        slots.append((slot, [key]))
        if self.handle is None:
            self.handle = loop.call_at(slot * self.step, self._expire)

    def close(self) -> None:
        """Forget every pending deadline (the server stops)."""
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
        self.slots.clear()

    def _expire(self) -> None:
        loop = self.loop
        assert loop is not None
        self.handle = None
        now = loop.time()
        slots = self.slots
        while slots and slots[0][0] * self.step <= now:
            _, keys = slots.popleft()
            for key in keys:
                self.fire(key)
        if slots and self.handle is None:
            self.handle = loop.call_at(slots[0][0] * self.step, self._expire)
