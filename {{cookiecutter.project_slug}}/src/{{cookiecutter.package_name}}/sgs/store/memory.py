"""``memory://``: a backend in process memory, for tests and throwaway servers.

Values are kept as JSON text, not as the caller's dicts, so the memory store
behaves like the durable ones: a write is a snapshot, later mutations of the
cached state do not leak in, and a value that is not JSON-able fails the same way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from .backend import Backend, Row, dumps, loads
from .errors import FencedError


class MemoryBackend(Backend):
    """Data lives as long as this object; share one instance to simulate two nodes."""

    describe = "memory://"

    def __init__(self) -> None:
        self._rows: dict[str, tuple[str | None, int]] = {}

    async def claim(self, key: str, epoch: int) -> dict[str, Any] | None:
        text, stored = self._rows.get(key, (None, -1))
        if stored > epoch:
            raise FencedError(key, epoch, stored)
        self._rows[key] = (text, epoch)
        return loads(text)

    async def reclaim(
        self, key: str, epoch: int, cached_epoch: int
    ) -> tuple[int, dict[str, Any] | None]:
        text, stored = self._rows.get(key, (None, -1))
        if stored > epoch:
            raise FencedError(key, epoch, stored)
        self._rows[key] = (text, epoch)
        return stored, loads(text) if stored > cached_epoch else None

    async def write(self, batch: Sequence[Row]) -> list[str]:
        encoded = [(key, dumps(data), epoch) for key, data, epoch in batch]  # all or nothing
        fenced: list[str] = []
        for key, text, epoch in encoded:
            if self._rows.get(key, (None, -1))[1] > epoch:
                fenced.append(key)
            else:
                self._rows[key] = (text, epoch)
        return fenced

    async def get(self, key: str) -> tuple[dict[str, Any], int] | None:
        text, epoch = self._rows.get(key, (None, -1))
        data = loads(text)
        return None if data is None else (data, epoch)

    async def items(self) -> AsyncIterator[Row]:
        for key in sorted(self._rows):
            text, epoch = self._rows[key]
            data = loads(text)
            if data is not None:
                yield key, data, epoch

    async def put(self, key: str, data: dict[str, Any], epoch: int) -> None:
        self._rows[key] = (dumps(data), epoch)
