"""``redis://``: player state in Redis, for clusters where any node may own a player.

One hash per player, ``<prefix>:player:<key>`` with fields ``data`` (JSON text)
and ``epoch``. The epoch check and the write happen in one Lua script, so a
stale owner can never overwrite a newer owner's state between a read and a
write; a flush sends its scripts in one MULTI/EXEC pipeline (one transaction).

The client has socket timeouts and no automatic retries: a paused or dead
Redis turns into StoreUnavailable within ``timeout`` seconds, and the
PlayerStore above decides when to try again.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from ..settings import mask_url
from .backend import Backend, Row, dumps, loads
from .errors import FencedError, StoreConfigError, StoreUnavailable

log = logging.getLogger("sgs.store")

# KEYS[1] hash; ARGV[1] epoch -> {1, data or ""} or {0, stored epoch as text}.
# Epochs stay below 2**53, so Lua's doubles compare them exactly; the stored
# text is returned as is (tostring would print 16-digit numbers as 1.7e+15).
CLAIM = """
local raw = redis.call('HGET', KEYS[1], 'epoch')
if raw and tonumber(raw) > tonumber(ARGV[1]) then return {0, raw} end
redis.call('HSET', KEYS[1], 'epoch', ARGV[1])
return {1, redis.call('HGET', KEYS[1], 'data') or ''}
"""

# KEYS[1] hash; ARGV[1] epoch, ARGV[2] cached epoch -> {1, stored epoch text or
# "-1", data or "" (only when stored is newer than cached)} or {0, stored epoch}.
RECLAIM = """
local raw = redis.call('HGET', KEYS[1], 'epoch')
if raw and tonumber(raw) > tonumber(ARGV[1]) then return {0, raw} end
redis.call('HSET', KEYS[1], 'epoch', ARGV[1])
if raw and tonumber(raw) > tonumber(ARGV[2]) then
  return {1, raw, redis.call('HGET', KEYS[1], 'data') or ''}
end
return {1, raw or '-1', ''}
"""

# KEYS[1] hash; ARGV[1] data, ARGV[2] epoch -> 1 written, 0 fenced
WRITE = """
local stored = tonumber(redis.call('HGET', KEYS[1], 'epoch') or '-1')
if stored > tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'data', ARGV[1], 'epoch', ARGV[2])
return 1
"""

_SCAN_COUNT = 500


class RedisBackend(Backend):
    """Player hashes in the Redis at ``url``, under ``<prefix>:player:``."""

    def __init__(self, url: str, *, prefix: str = "sgs", timeout: float = 2.0) -> None:
        self.url = url
        self.prefix = prefix
        self.timeout = timeout
        self.describe = f"redis {mask_url(url)}"
        self._client: Any = None
        self._claim: Any = None
        self._write: Any = None
        self._reclaim: Any = None

    def key(self, player: str) -> str:
        return f"{self.prefix}:player:{player}"

    async def open(self) -> None:
        import redis.asyncio as aioredis  # lazy: a sqlite-only server never imports redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
        from redis.exceptions import AuthenticationError, ResponseError

        try:
            self._client = aioredis.Redis.from_url(
                self.url,
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
                retry=Retry(NoBackoff(), 0),
                decode_responses=False,
            )
        except ValueError as exc:
            raise StoreConfigError(f"store_url {mask_url(self.url)!r}: {exc}") from exc
        self._claim = self._client.register_script(CLAIM)
        self._write = self._client.register_script(WRITE)
        self._reclaim = self._client.register_script(RECLAIM)
        try:
            await self._client.ping()
        except (AuthenticationError, ResponseError) as exc:  # wrong password, ACL: config
            await self.close()
            raise StoreConfigError(
                f"store_url {mask_url(self.url)!r}: Redis refused us: {exc}"
            ) from exc
        except Exception as exc:  # down for now: logins are refused until it is back
            log.warning(
                "%s is not reachable yet (%s); logins will be refused until it answers",
                self.describe,
                exc,
            )

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def _unavailable(self, exc: Exception) -> StoreUnavailable:
        return StoreUnavailable(f"{self.describe}: {type(exc).__name__}: {exc}")

    @property
    def client(self) -> Any:
        if self._client is None:
            raise StoreUnavailable(f"{self.describe} is not open")
        return self._client

    async def claim(self, key: str, epoch: int) -> dict[str, Any] | None:
        from redis.exceptions import RedisError

        try:
            ok, value = await self._claim(keys=[self.key(key)], args=[epoch], client=self.client)
        except RedisError as exc:
            raise self._unavailable(exc) from exc
        if not ok:
            raise FencedError(key, epoch, int(value))
        return loads(value)

    async def reclaim(
        self, key: str, epoch: int, cached_epoch: int
    ) -> tuple[int, dict[str, Any] | None]:
        from redis.exceptions import RedisError

        try:
            reply = await self._reclaim(
                keys=[self.key(key)], args=[epoch, cached_epoch], client=self.client
            )
        except RedisError as exc:
            raise self._unavailable(exc) from exc
        if not reply[0]:
            raise FencedError(key, epoch, int(reply[1]))
        return int(reply[1]), loads(reply[2])

    async def write(self, batch: Sequence[Row]) -> list[str]:
        from redis.exceptions import RedisError

        try:
            async with self.client.pipeline(transaction=True) as pipe:
                for key, data, epoch in batch:
                    await self._write(keys=[self.key(key)], args=[dumps(data), epoch], client=pipe)
                results = await pipe.execute()
        except RedisError as exc:
            raise self._unavailable(exc) from exc
        return [row[0] for row, ok in zip(batch, results, strict=True) if not ok]

    async def get(self, key: str) -> tuple[dict[str, Any], int] | None:
        from redis.exceptions import RedisError

        try:
            text, epoch = await self.client.hmget(self.key(key), "data", "epoch")
        except RedisError as exc:
            raise self._unavailable(exc) from exc
        data = loads(text)
        return None if data is None else (data, int(epoch or 0))

    async def items(self) -> AsyncIterator[Row]:
        from redis.exceptions import RedisError

        head = len(self.key(""))
        try:
            async for name in self.client.scan_iter(match=self.key("*"), count=_SCAN_COUNT):
                text, epoch = await self.client.hmget(name, "data", "epoch")
                data = loads(text)
                if data is not None:
                    yield name.decode()[head:], data, int(epoch or 0)
        except RedisError as exc:
            raise self._unavailable(exc) from exc

    async def put(self, key: str, data: dict[str, Any], epoch: int) -> None:
        from redis.exceptions import RedisError

        try:
            await self.client.hset(self.key(key), mapping={"data": dumps(data), "epoch": epoch})
        except RedisError as exc:
            raise self._unavailable(exc) from exc
