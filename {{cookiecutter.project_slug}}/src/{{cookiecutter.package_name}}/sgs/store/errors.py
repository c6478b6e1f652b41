"""The store's typed errors: callers branch on the kind of failure, not on its text."""

from __future__ import annotations

from ..errors import SgsError


class StoreError(SgsError):
    """Base of every error the player-state store raises on purpose."""


class StoreConfigError(StoreError):
    """``store_url`` cannot be used (bad URL, unwritable path, locked or corrupt file).

    Raised by ``PlayerStore.start()`` so a misconfigured server stops at start-up
    with one clear line naming the setting and the path, never a traceback.
    """


class StoreUnavailable(StoreError):
    """The store cannot serve right now (backend down, or too many unflushed states).

    A login that meets it is refused with a clear ``Error``; nothing is lost,
    because the states already in memory stay there and keep being retried.
    """


class FencedError(StoreError):
    """A claim or write carried an epoch older than the stored owner's epoch.

    A newer login (on this node or another) owns the player now; the stale
    owner must not overwrite what the newer one wrote.
    """

    def __init__(self, key: str, epoch: int, stored_epoch: int | None = None) -> None:
        newer = f" (stored epoch {stored_epoch})" if stored_epoch is not None else ""
        super().__init__(f"player {key!r}: epoch {epoch} is older than the owner's{newer}")
        self.key = key
        self.epoch = epoch
        self.stored_epoch = stored_epoch
