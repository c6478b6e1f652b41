"""The faults a Redis deployment produces, driven through Redis's own commands.

``CLIENT PAUSE`` is what a fork for a snapshot of a big dataset looks like
from outside; ``CLIENT KILL TYPE pubsub`` is what Redis does to a subscriber
past ``client-output-buffer-limit pubsub``; ``SHUTDOWN NOSAVE`` plus a
restart on the same port is a broker that comes back empty. Every command
runs on a fresh connection in a thread, so the harness's event loop (its
clients and proxies) never blocks on a broker the test itself paused.
"""

from __future__ import annotations

import asyncio

import redis as redis_sync
from redis.exceptions import ConnectionError as RedisConnectionError

from redis_server import RedisServer

ADMIN_TIMEOUT = 5.0


class Broker:
    """Fault commands for one :class:`RedisServer`."""

    def __init__(self, server: RedisServer) -> None:
        self.server = server

    def _call(self, *args: str | int) -> object:
        with redis_sync.Redis(
            port=self.server.port, socket_timeout=ADMIN_TIMEOUT, socket_connect_timeout=2.0
        ) as r:
            return r.execute_command(*args)

    async def command(self, *args: str | int) -> object:
        return await asyncio.to_thread(self._call, *args)

    async def pause(self, seconds: float) -> None:
        """``CLIENT PAUSE <ms> ALL``: every client's commands wait; Redis resumes by itself."""
        await self.command("CLIENT", "PAUSE", int(seconds * 1000), "ALL")

    async def kill_clients(self, kind: str) -> int:
        """``CLIENT KILL TYPE <kind>`` (pubsub or normal); the number of connections cut."""
        return int(await self.command("CLIENT", "KILL", "TYPE", kind))  # type: ignore[call-overload]

    async def restart_empty(self) -> None:
        """``SHUTDOWN NOSAVE``, then a new redis-server on the same port with no data."""
        try:
            await self.command("SHUTDOWN", "NOSAVE")
        except RedisConnectionError:
            pass  # the server closes the connection as it exits: the expected answer
        proc = self.server.proc
        if proc is not None:
            await asyncio.to_thread(proc.wait, 10)
        await asyncio.to_thread(self.server.start)
