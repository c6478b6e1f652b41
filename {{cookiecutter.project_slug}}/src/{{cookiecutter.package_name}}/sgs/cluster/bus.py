"""The ordered command bus: every command and publish of one node, in one queue.

One queue, drained by one writer task as pipelines on one connection, keeps
this node's publishes in order (per-origin order) and puts a membership
change before the count a handler asks for right after it. The queue is
bounded: past ``limit`` items new ones are refused (deliveries counted as
dropped), so a paused broker costs bounded memory. A failed pipeline fails
every waiter with :class:`ClusterDown` and reports the failure once; the
owner (the lease keeper) reconnects.

Drivable alone: give it a ``redis.asyncio.Redis`` client and call
:meth:`CommandBus.call` / :meth:`CommandBus.enqueue`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError

from . import scripts
from .base import ClusterStats

#: A queued item: (adds its commands to a pipeline and returns how many,
#: future for the reply or None, 1 if it is a delivery that counts as
#: dropped when lost).
Item = tuple[Callable[[Any], int], "asyncio.Future[Any] | None", int]

BATCH = 512
BROKER_ERRORS = (RedisError, OSError, asyncio.TimeoutError, ConnectionError)


class ClusterDown(Exception):
    """The broker cannot be asked right now (down, paused or the queue is full)."""


class OutcomeUnknown(ClusterDown):
    """A command was sent, and no answer came in time: it may still run."""


def why(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def text(value: Any) -> str:
    """A Redis reply (bytes) as text."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes | bytearray) else str(value)


class Abandoner:
    """Bounded awaits of client calls that may hang as long as a frozen broker."""

    def __init__(self) -> None:
        self._abandoned: set[asyncio.Task[Any]] = set()

    async def bounded(self, coro: Any, timeout: float) -> Any:
        """Await ``coro`` for at most ``timeout`` seconds, then leave it behind.

        Not ``asyncio.wait_for``: that waits for the cancelled call to unwind,
        and a client call cancelled while the broker is frozen (SIGSTOP) can
        take as long to unwind as the freeze lasts. The abandoned call is
        cancelled and finishes on its own; its connection is not reused.
        """
        task = asyncio.ensure_future(coro)
        try:
            done, _ = await asyncio.wait({task}, timeout=timeout)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if not done:
            task.cancel()
            self._abandoned.add(task)
            task.add_done_callback(self._done)
            raise TimeoutError(f"no answer from the broker within {timeout:g}s")
        return task.result()

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._abandoned.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: an abandoned call's failure is expected


class CommandBus:
    """One node's ordered queue of commands to the broker (see the module docstring)."""

    def __init__(
        self,
        client: Any,
        *,
        limit: int,
        timeout: float,
        io_timeout: float,
        on_failure: Callable[[BaseException], None],
        stats: ClusterStats,
        bounded: Abandoner | None = None,
    ) -> None:
        self.client = client
        self.limit = limit
        self.timeout = timeout  # a caller's wait
        self.io_timeout = io_timeout  # one pipeline's wait before the broker counts as lost
        self.on_failure = on_failure
        self.up = False  # set by the owner once the broker answered
        self.stats = stats  # published / dropped deliveries are counted here
        self.queue: deque[Item] = deque()
        self._wake = asyncio.Event()
        self._bounded = bounded or Abandoner()
        self.scripts = {
            name: client.register_script(getattr(scripts, name)) for name in scripts.ALL
        }

    # -- what callers use ----------------------------------------------------

    def eval(self, pipe: Any, name: str, keys: list[str], args: list[Any]) -> int:
        """Queue script ``name`` on ``pipe`` (the pipeline loads it first if Redis lacks it)."""
        script = self.scripts[name]
        pipe.scripts.add(script)
        pipe.evalsha(script.sha, len(keys), *keys, *args)
        return 1

    async def run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """Run a script now on the bus's connection, outside the queue (keeper, start, stop)."""
        return await self.scripts[name](keys=keys, args=args, client=self.client)

    def enqueue(self, add: Callable[[Any], int], fut: Any = None, delivery: int = 0) -> bool:
        """Queue ``add``; False (and ``fut`` failed) when the broker is down or the queue full."""
        if not self.up or len(self.queue) >= self.limit:
            if delivery:
                self.stats.dropped += 1
            if fut is not None and not fut.done():
                fut.set_exception(ClusterDown("broker unavailable or queue full"))
            return False
        self.queue.append((add, fut, delivery))
        if not self._wake.is_set():
            self._wake.set()
        return True

    async def call(self, add: Callable[[Any], int]) -> Any:
        """Run ``add``'s commands in order: the reply (a list if it added several), or ClusterDown.

        :class:`OutcomeUnknown` when the command was queued and no answer came
        within ``timeout``: it may still run, and the caller must reconcile.
        """
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if not self.enqueue(add, fut):
            fut.exception()
            raise ClusterDown("broker unavailable or queue full")
        try:
            return await asyncio.wait_for(asyncio.shield(fut), self.timeout)
        except TimeoutError:
            fut.add_done_callback(_retrieve)
            raise OutcomeUnknown("the broker did not answer within cluster_timeout") from None
        except ClusterDown:
            raise
        except BROKER_ERRORS as exc:
            raise ClusterDown(why(exc)) from exc

    def fail_all(self, exc: BaseException) -> None:
        """The broker is gone: fail every queued waiter, count lost deliveries."""
        queue = self.queue
        self.stats.dropped += sum(item[2] for item in queue)
        for _, fut, _ in queue:
            if fut is not None and not fut.done():
                fut.set_exception(ClusterDown(why(exc)))
        queue.clear()

    async def drain(self, timeout: float) -> None:
        """Wait (bounded) until the queue is empty (graceful stop)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.queue and self.up and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)

    # -- the writer task -----------------------------------------------------

    async def writer(self) -> None:
        queue = self.queue
        while True:
            if not queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [queue.popleft() for _ in range(min(len(queue), BATCH))]
            pipe = self.client.pipeline(transaction=False)
            counts = [add(pipe) for add, _, _ in batch]
            try:
                results = await self._bounded.bounded(
                    pipe.execute(raise_on_error=False), self.io_timeout
                )
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                self.stats.dropped += sum(item[2] for item in batch)
                for _, fut, _ in batch:
                    if fut is not None and not fut.done():
                        fut.set_exception(OutcomeUnknown(why(exc)))
                self.fail_all(exc)
                self.on_failure(exc)
                continue
            at = 0
            for (_, fut, delivery), count in zip(batch, counts, strict=True):
                replies = results[at : at + count]
                at += count
                error = next((r for r in replies if isinstance(r, Exception)), None)
                if delivery:
                    if error is not None:
                        self.stats.dropped += 1
                    else:
                        self.stats.published += 1
                if fut is not None and not fut.done():
                    if error is not None:
                        fut.set_exception(ClusterDown(str(error)))
                    else:
                        fut.set_result(replies[0] if count == 1 else replies)


def _retrieve(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()
