"""Player state that survives restarts and follows the player between nodes.

``make_store(settings)`` picks the backend from ``store_url``:

- ``memory://``: process memory (tests, throwaway servers);
- ``sqlite:///rel/path.db`` or ``sqlite:////abs/path.db``: the embedded default;
- ``redis://`` / ``rediss://``: clusters (keys under ``<cluster_prefix>:player:``).

The :class:`PlayerStore` in front of it caches each owned player's state,
flushes it write-behind (or group-commits it with ``store_sync = "always"``)
and fences every write with the owner's login epoch.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ..settings import ServerSettings, mask_url, sqlite_path
from .backend import Backend, Row
from .errors import FencedError, StoreConfigError, StoreError, StoreUnavailable
from .memory import MemoryBackend
from .player_store import PlayerStore, StoreStats
from .state import PlayerState

__all__ = [
    "Backend",
    "FencedError",
    "MemoryBackend",
    "PlayerState",
    "PlayerStore",
    "Row",
    "StoreConfigError",
    "StoreError",
    "StoreStats",
    "StoreUnavailable",
    "make_backend",
    "make_store",
]


def make_backend(settings: ServerSettings, *, create: bool = True) -> Backend:
    """The backend ``settings.store_url`` names (not opened yet).

    ``create=False`` (ops commands that only read) makes a missing SQLite file
    an error instead of creating an empty database.
    """
    url = settings.store_url
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        return MemoryBackend()
    if scheme == "sqlite":
        from .sqlite import SqliteBackend

        synchronous = "FULL" if settings.store_sync == "always" else "NORMAL"
        return SqliteBackend(sqlite_path(url), url=url, synchronous=synchronous, create=create)
    if scheme in ("redis", "rediss"):
        from .redis import RedisBackend  # imports the redis package only when used

        return RedisBackend(url, prefix=settings.cluster_prefix, timeout=settings.cluster_timeout)
    raise StoreConfigError(
        f"store_url {mask_url(url)!r}: unknown scheme {scheme!r} "
        "(memory://, sqlite:///path/to/file.db, redis://host:port/db)"
    )


def make_store(settings: ServerSettings) -> PlayerStore:
    """The PlayerStore the settings describe; call ``await store.start()`` before use."""
    return PlayerStore(
        make_backend(settings),
        flush_interval=settings.store_flush_interval,
        sync=settings.store_sync,
        max_dirty=settings.store_max_dirty,
        # A cluster keeps states it handed off for two leases, so a broker that
        # loses its data meanwhile gets them back (see PlayerStore.write_back).
        retain=2 * settings.cluster_lease if settings.cluster_url else 0.0,
    )
