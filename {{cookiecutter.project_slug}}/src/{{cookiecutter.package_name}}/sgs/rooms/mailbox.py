"""One room's jobs, run one at a time in the order they were posted.

The guarantee a room gives its code: a hook, handler or tick starts only after
the previous one has finished, *including across its awaits*. A job that
awaits (an ``async def`` hook, say) holds the mailbox until it returns, and
what was posted meanwhile waits behind it. So room code never needs a lock,
and no two of its handlers interleave unless the code asks for it: work that
should not hold the room goes to a task of its own (``asyncio.create_task``),
and comes back through :meth:`Room.post` when it must touch the room again.

Cost: a plain job posted to an idle mailbox runs at once, in the caller (one
deque append and pop, no task, no future). Only a job that returns an
awaitable starts a task, which drains the rest of the queue after it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

log = logging.getLogger("sgs.rooms")


class Mailbox:
    """A FIFO of jobs with at most one running; see the module docstring."""

    __slots__ = ("name", "_queue", "_busy", "_task", "_closed")

    def __init__(self, name: str) -> None:
        self.name = name
        self._queue: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        self._busy = False
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def busy(self) -> bool:
        """A job is running (or awaiting) now."""
        return self._busy

    def __len__(self) -> int:
        return len(self._queue)

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` after everything posted before it (at once when idle)."""
        if self._closed:
            return
        self._queue.append((fn, args))
        if not self._busy:
            self._pump()

    def call(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Post ``fn(*args)`` and return a future of its result (awaited when it is one)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self._closed:
            future.set_exception(RuntimeError(f"room {self.name} is gone"))
            return future
        self.post(_settle, future, fn, args)
        return future

    def close(self) -> None:
        """Drop what is queued; a job running now finishes (the caller is usually it)."""
        self._closed = True
        for fn, args in self._queue:
            if fn is _settle and not args[0].done():
                args[0].set_exception(RuntimeError(f"room {self.name} is gone"))
        self._queue.clear()

    def _pump(self) -> None:
        self._busy = True
        queue = self._queue
        while queue:
            fn, args = queue.popleft()
            try:
                result = fn(*args)
            except Exception:
                log.exception("room %s: job %r raised", self.name, fn)
                continue
            if result is not None and hasattr(result, "__await__"):
                self._task = asyncio.get_running_loop().create_task(self._await(result))
                return  # still busy: the task pumps the rest after the await
        self._busy = False

    async def _await(self, awaitable: Any) -> None:
        try:
            await awaitable
        except Exception:
            log.exception("room %s: job raised", self.name)
        self._task = None
        self._pump()


def _settle(future: asyncio.Future[Any], fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    """Run ``fn`` for :meth:`Mailbox.call`: its result or exception goes to ``future``."""
    try:
        result = fn(*args)
    except BaseException as exc:
        if not future.done():
            future.set_exception(exc)
        return None
    if result is not None and hasattr(result, "__await__"):
        return _settle_later(future, result)
    if not future.done():
        future.set_result(result)
    return None


async def _settle_later(future: asyncio.Future[Any], awaitable: Any) -> None:
    try:
        result = await awaitable
    except BaseException as exc:
        if not future.done():
            future.set_exception(exc)
        return
    if not future.done():
        future.set_result(result)
