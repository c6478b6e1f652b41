"""The real Agones implementation: the SDK sidecar's REST gateway on localhost.

What is sent, and when:

- ``Ready`` once the server listens (``start``), retried with backoff and
  jitter until the sidecar takes it: the sidecar may start after the server.
  Before it, the label ``protocol`` (an allocation can select servers by codec).
- ``Health`` every ``agones_health_interval`` seconds from an event-loop timer,
  so a blocked loop stops the pings and Agones marks the GameServer Unhealthy.
  At most one ping is in flight; a slow or failing sidecar is logged once per
  failure streak and never stops the game.
- The ``players`` counter (Counters, beta in Agones, on by default) follows
  the number of open links, sent at a health tick when it changed.
- ``Allocate`` when players are connected while the GameServer is only Ready:
  Agones removes Ready servers in fleet updates and scale-downs, never
  Allocated ones, so a server with players protects itself.
- ``WatchGameServer`` keeps :attr:`state` current (reconnecting with backoff);
  the ``on_allocated`` hooks run on a logic worker when it turns Allocated.
- ``Shutdown`` after the graceful drain (``stop``), retried for at most
  ``SHUTDOWN_TIMEOUT`` seconds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from ..logs import RateLimitedLog
from .base import Agones, AllocatedHook
from .http import SdkError, request, stream_lines

if TYPE_CHECKING:
    from ..framework import Server

log = logging.getLogger("sgs.agones")

SDK_HOST = "127.0.0.1"  # the sidecar listens on localhost of the pod
CALL_TIMEOUT = 2.0
FIRST_BACKOFF = 0.1
MAX_BACKOFF = 5.0
SHUTDOWN_TIMEOUT = 5.0
PLAYERS_COUNTER = "players"
DEFAULT_SDK_PORT = 9358
PORT_ENV = "AGONES_SDK_HTTP_PORT"


def sdk_port(configured: int) -> int:
    """``agones_sdk_port``, else the port Agones gives the pod in the environment, else 9358."""
    if configured:
        return configured
    text = os.environ.get(PORT_ENV, "").strip()
    if text.isdigit() and 0 < int(text) < 65536:
        return int(text)
    if text:
        log.warning("Agones: %s=%r is not a port; using %d", PORT_ENV, text, DEFAULT_SDK_PORT)
    return DEFAULT_SDK_PORT


def backoff(delay: float) -> tuple[float, float]:
    """(this wait with +-20% jitter, the next delay): doubling up to MAX_BACKOFF."""
    return delay * random.uniform(0.8, 1.2), min(delay * 2, MAX_BACKOFF)


class SdkAgones(Agones):
    """``agones = true``: Ready, Health, counters, Allocate, watch and Shutdown over REST."""

    def __init__(self, server: Server) -> None:
        s = server.settings
        self.server = server
        self.host = SDK_HOST
        self.port = sdk_port(s.agones_sdk_port)
        self.interval = s.agones_health_interval
        self.state = ""
        self.ready = False  # the sidecar took Ready
        self.gameserver: dict[str, Any] = {}  # the last GameServer the sidecar reported
        self.counts: dict[str, int] = {}  # calls that succeeded, by name
        self.failures: dict[str, int] = {}  # calls that failed, by name
        self._hooks: list[AllocatedHook] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._tick_handle: asyncio.TimerHandle | None = None
        self._health_call: asyncio.Task[Any] | None = None
        self._players_call: asyncio.Task[Any] | None = None
        self._players_sent: int | None = None
        self._counter_missing = False
        self._allocating = False
        self._stopping = False
        self._streaks: dict[str, int] = {}  # consecutive failures of each call
        self._watch_lines = 0  # GameServers the watch delivered (see _read_gameserver)
        self._log = RateLimitedLog(log, per_second=2)

    # -- the contract -------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        log.info(
            "Agones: SDK sidecar at %s:%d, health every %gs", self.host, self.port, self.interval
        )
        self._spawn(self._become_ready())
        self._spawn(self._watch())
        self._tick_handle = loop.call_soon(self._tick)

    async def stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.allocated:
            log.warning(
                "Agones: shutting down while Allocated; its players were drained "
                "(clients that reconnect need a new allocation)"
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SHUTDOWN_TIMEOUT
        delay = FIRST_BACKOFF
        while True:
            left = deadline - loop.time()
            timeout = max(0.1, min(CALL_TIMEOUT, left))
            if await self._call("POST", "/shutdown", {}, "shutdown", timeout) is not None:
                log.info("Agones: Shutdown sent after the drain")
                return
            wait, delay = backoff(delay)
            if deadline - loop.time() <= wait:
                log.error(
                    "Agones: Shutdown not delivered within %gs; exiting anyway", SHUTDOWN_TIMEOUT
                )
                return
            await asyncio.sleep(wait)

    def on_allocated(self, fn: AllocatedHook) -> AllocatedHook:
        self._hooks.append(fn)
        return fn

    # -- the calls ------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        name: str,
        timeout: float = CALL_TIMEOUT,
    ) -> bytes | None:
        """One REST call; the body on success, None (logged once per failure streak) otherwise."""
        data = None if body is None else json.dumps(body).encode()
        try:
            answer = await request(self.host, self.port, method, path, data, timeout)
        except SdkError as exc:
            self._failed(name, exc)
            if exc.status == 404 and name == "players":
                self._counter_missing = True
                log.warning(
                    "Agones: no counter %r in the GameServer spec; player counts are not sent",
                    PLAYERS_COUNTER,
                )
            return None
        self._worked(name)
        return answer

    def _failed(self, name: str, exc: Exception) -> None:
        """Counted each time, logged once per streak: a late sidecar costs one line per call."""
        self.failures[name] = self.failures.get(name, 0) + 1
        streak = self._streaks.get(name, 0)
        self._streaks[name] = streak + 1
        if streak == 0:
            log.warning("Agones: %s failed (retrying quietly): %s", name, exc)

    def _worked(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1
        streak = self._streaks.pop(name, 0)
        if streak:
            log.info("Agones: %s works again after %d failed attempts", name, streak)

    async def _become_ready(self) -> None:
        """Label, then Ready, until the sidecar takes it; then read the GameServer once."""
        protocol = self.server.settings.protocol
        labelled = False
        delay = FIRST_BACKOFF
        while not self._stopping:
            if not labelled:
                label = {"key": "protocol", "value": protocol}
                labelled = await self._call("PUT", "/metadata/label", label, "label") is not None
            if await self._call("POST", "/ready", {}, "ready") is not None:
                self.ready = True
                log.info("Agones: GameServer marked Ready")
                await self._read_gameserver()
                return
            wait, delay = backoff(delay)
            await asyncio.sleep(wait)

    def _tick(self) -> None:
        """On the event loop every interval: a blocked loop sends nothing."""
        if self._stopping:
            return
        if self._health_call is None or self._health_call.done():
            self._health_call = self._spawn(self._call("POST", "/health", {}, "health"))
        if self.ready:
            self._sync_players()
            if self.state == "Ready" and self.server.links and not self._allocating:
                self._allocating = True
                self._spawn(self._allocate())
        loop = asyncio.get_running_loop()
        self._tick_handle = loop.call_later(self.interval, self._tick)

    def _sync_players(self) -> None:
        count = len(self.server.links)
        if self._counter_missing or count == self._players_sent:
            return
        if self._players_call is not None and not self._players_call.done():
            return
        self._players_call = self._spawn(self._send_players(count))

    async def _send_players(self, count: int) -> None:
        path = f"/v1beta1/counters/{PLAYERS_COUNTER}"
        if await self._call("PATCH", path, {"count": str(count)}, "players") is not None:
            self._players_sent = count

    async def _allocate(self) -> None:
        try:
            if "allocate" not in self._streaks:  # once, not at every failed retry
                log.info("Agones: players are connected to a Ready GameServer; allocating it")
            if await self._call("POST", "/allocate", {}, "allocate") is not None:
                await self._read_gameserver()
        finally:
            self._allocating = False

    async def _read_gameserver(self) -> None:
        """GET /gameserver, kept only if the watch said nothing while it was under way.

        The answer is a snapshot taken when the sidecar served it; a watch line that
        arrived meanwhile may be newer (an allocation right after Ready), and the
        stale snapshot must not turn ``Allocated`` back into ``Ready``: nothing would
        correct it, since the watch only speaks on a change. When the watch spoke,
        it is at least as new, and it speaks again for any later change.
        """
        lines = self._watch_lines
        current = await self._call("GET", "/gameserver", None, "gameserver")
        if current is not None and self._watch_lines == lines:
            self._update(current)

    # -- the watch ----------------------------------------------------------------

    async def _watch(self) -> None:
        delay = FIRST_BACKOFF
        while not self._stopping:
            try:
                async for line in stream_lines(
                    self.host, self.port, "/watch/gameserver", CALL_TIMEOUT
                ):
                    if delay != FIRST_BACKOFF or "watch" in self._streaks:
                        delay = FIRST_BACKOFF
                        self._worked("watch")
                    self._watch_lines += 1
                    self._update(line)
                raise SdkError("the stream ended")
            except SdkError as exc:
                self._failed("watch", exc)
            wait, delay = backoff(delay)
            await asyncio.sleep(wait)

    def _update(self, data: bytes) -> None:
        """A GameServer from GET /gameserver or one watch line ({"result": ...})."""
        try:
            message = json.loads(data)
        except ValueError:
            self._log.warning("Agones: not JSON from the sidecar: %r", data[:80])
            return
        if not isinstance(message, dict):
            return
        if "error" in message:
            self._log.warning("Agones: watch error: %s", message["error"])
            return
        gameserver = message.get("result", message)
        if not isinstance(gameserver, dict):
            return
        status = gameserver.get("status")
        state = status.get("state", "") if isinstance(status, dict) else ""
        self.gameserver = gameserver
        if not state or state == self.state:
            return
        was, self.state = self.state, state
        log.info("Agones: GameServer is %s (was %s)", state, was or "unknown")
        if state == "Allocated" and was != "Allocated":
            for hook in self._hooks:
                self.server.post(lambda hook=hook: hook(gameserver))

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
