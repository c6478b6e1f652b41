"""The storage contract every backend (memory, SQLite, Redis) fulfils.

The contract is deliberately tiny: an epoch-fenced claim at login, an
epoch-fenced batch write for flushes, and plain get/items/put for the ops
command. Everything clever (caching, batching, retries) lives once in
:class:`~.player_store.PlayerStore`, so a new backend is a small file.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from typing import Any

Row = tuple[str, dict[str, Any], int]


class Backend(ABC):
    """Durable storage of ``key -> (data, epoch)``; one instance per process."""

    #: Human-readable location (path or masked URL) for log lines and errors.
    describe: str = ""

    async def open(self) -> None:  # noqa: B027  (optional hook)
        """Connect or open files; raise StoreConfigError when the config is unusable."""

    async def close(self) -> None:  # noqa: B027  (optional hook)
        """Release connections and threads; safe to call twice."""

    @abstractmethod
    async def claim(self, key: str, epoch: int) -> dict[str, Any] | None:
        """Atomically take ownership of ``key`` at ``epoch`` and return its data.

        A stored epoch greater than ``epoch`` raises FencedError (a newer login
        owns the player); otherwise ``epoch`` is stored, so a stale owner's later
        writes are refused, and the data is returned (None for a new player).
        """

    async def reclaim(
        self, key: str, epoch: int, cached_epoch: int
    ) -> tuple[int, dict[str, Any] | None]:
        """Claim ``key`` at ``epoch`` for a node that holds it cached at ``cached_epoch``.

        Returns the epoch stored before the claim (-1: none) and, only when
        that is newer than ``cached_epoch`` (another owner wrote since), the
        stored data. FencedError as :meth:`claim`. This default reads, then
        claims; backends that can do both atomically override it.
        """
        row = await self.get(key)
        await self.claim(key, epoch)
        if row is None:
            return -1, None
        data, stored = row
        return stored, data if stored > cached_epoch else None

    @abstractmethod
    async def write(self, batch: Sequence[Row]) -> list[str]:
        """Write ``(key, data, epoch)`` rows in ONE transaction; return the fenced keys.

        A row whose stored epoch is greater than its own is not written (a newer
        owner has the player): its key is returned instead of raising, so one
        stale row never sinks the batch.
        """

    @abstractmethod
    async def get(self, key: str) -> tuple[dict[str, Any], int] | None:
        """The stored data and epoch of ``key``; None when it was never written."""

    @abstractmethod
    def items(self) -> AsyncIterator[Row]:
        """Every stored ``(key, data, epoch)``, for export."""

    @abstractmethod
    async def put(self, key: str, data: dict[str, Any], epoch: int) -> None:
        """Store ``data`` and ``epoch`` unconditionally (import, restore)."""


def dumps(data: dict[str, Any]) -> str:
    """The one JSON encoding every backend stores: compact, UTF-8 kept as is."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def loads(text: str | bytes | None) -> dict[str, Any] | None:
    """Inverse of :func:`dumps`; None (no data stored yet) stays None."""
    if text is None or text == b"" or text == "":
        return None
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"stored state is a JSON {type(value).__name__}, not an object")
    return value
