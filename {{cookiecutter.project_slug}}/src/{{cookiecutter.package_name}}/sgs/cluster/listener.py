"""The subscriber: one pub/sub connection whose channels follow what the node wants.

It never goes deaf quietly. Redis cuts a subscriber that falls behind
(``client-output-buffer-limit pubsub``), ``CLIENT KILL TYPE pubsub`` does the
same, and a half-open TCP connection (a black-holed peer) delivers nothing
and reports no error. So the listener sends a PING whenever it heard nothing
for a ``heartbeat`` and gives the connection up when no answer of any kind
came within ``io_timeout`` (TCP keepalive is on as well). After every
(re)subscription it calls ``on_subscribed_all`` so the node re-checks what it
may have missed meanwhile (its bindings, other nodes' interest); while it is
not subscribed :attr:`Listener.listening` is False and ``/readyz`` says not
ready.

Drivable alone: give it a ``redis.asyncio.Redis`` client and callbacks.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any

from .bus import Abandoner, text, why

log = logging.getLogger("sgs.cluster")

BACKOFF_MAX = 5.0


class Listener:
    """Reads one pub/sub connection; see the module docstring."""

    def __init__(
        self,
        client: Any,
        *,
        channels: set[str],
        heartbeat: float,
        io_timeout: float,
        up: asyncio.Event,
        on_message: Callable[[str, Any], None],
        on_subscribed: Callable[[str], None],
        on_subscribed_all: Callable[[bool], None],
        bounded: Abandoner | None = None,
    ) -> None:
        self.client = client
        self.wanted = set(channels)
        self.subscribed: set[str] = set()
        self.heartbeat = heartbeat
        self.io_timeout = io_timeout
        self.up = up
        self.on_message = on_message
        self.on_subscribed = on_subscribed
        self.on_subscribed_all = on_subscribed_all
        self.listening = False  # subscribed and heard from within io_timeout
        self.reconnects = 0
        self.pubsub: Any = None
        self._changed = asyncio.Event()
        self._bounded = bounded or Abandoner()
        self._kill = asyncio.Event()

    def want(self, channel: str, wanted: bool) -> None:
        if wanted:
            self.wanted.add(channel)
        else:
            self.wanted.discard(channel)
        self._changed.set()

    def drop_connection(self) -> None:
        """Give the current connection up and resubscribe (a caller saw it fail)."""
        self._kill.set()

    async def sync(self) -> None:
        """Make the connection's channels follow :attr:`wanted` (a task)."""
        while True:
            await self._changed.wait()
            self._changed.clear()
            pubsub = self.pubsub
            if pubsub is None:
                continue
            add = self.wanted - self.subscribed
            drop = self.subscribed - self.wanted
            try:
                if add:
                    await self._bounded.bounded(pubsub.subscribe(*add), self.io_timeout)
                    self.subscribed |= add
                if drop:
                    await self._bounded.bounded(pubsub.unsubscribe(*drop), self.io_timeout)
                    self.subscribed -= drop
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                log.debug("subscription change failed (%s); resubscribing", exc)
                self._kill.set()

    async def run(self) -> None:
        """Subscribe, read, check health; reconnect with backoff and jitter (a task)."""
        backoff = 0.1
        first = True
        loop = asyncio.get_running_loop()
        while True:
            if not self.up.is_set():
                await self.up.wait()
            pubsub = self.client.pubsub()
            self._kill.clear()
            try:
                channels = set(self.wanted)
                await self._bounded.bounded(pubsub.subscribe(*channels), self.io_timeout)
                self.pubsub = pubsub
                self.subscribed = channels
                self._changed.set()
                heard = loop.time()
                pinged = heard
                checked = False
                while not self._kill.is_set():
                    # Awaited directly, not through a task: with data buffered it
                    # returns without a trip through the event loop, so a busy
                    # node drains its backlog instead of one message per loop
                    # turn. Its own timeout bounds the wait for silence.
                    message = await pubsub.get_message(timeout=min(1.0, self.heartbeat))
                    now = loop.time()
                    if message is not None:
                        heard = now
                        kind = message.get("type")
                        if kind == "message":
                            self.on_message(text(message["channel"]), message["data"])
                        elif kind == "subscribe":
                            self.on_subscribed(text(message["channel"]))
                        if not checked:
                            # Redis answered the SUBSCRIBE: from now on nothing sent
                            # to us is missed, so what was missed before is checked.
                            checked = True
                            self.listening = True
                            if not first:
                                self.reconnects += 1
                            self.on_subscribed_all(first)
                            first = False
                            backoff = 0.1
                        continue
                    if now - heard > self.io_timeout:
                        raise TimeoutError(
                            f"no answer on the pub/sub connection for {now - heard:.1f}s"
                        )
                    if now - pinged >= self.heartbeat:
                        pinged = now
                        await self._bounded.bounded(pubsub.ping(), self.io_timeout)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                log.warning("cluster listener lost its connection (%s); resubscribing", why(exc))
            finally:
                self.listening = False
                self.pubsub = None
                self.subscribed = set()
                await quietly(pubsub.aclose())
            await asyncio.sleep(backoff * random.uniform(0.5, 1.5))
            backoff = min(backoff * 2, BACKOFF_MAX)


async def quietly(coro: Any) -> None:
    try:
        await asyncio.wait_for(coro, 2.0)
    except BaseException:  # closing a connection that is already broken
        pass
