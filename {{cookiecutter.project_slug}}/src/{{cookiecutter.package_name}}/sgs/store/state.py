"""One player's state: a dict that knows when it changed.

Handlers read and change it in memory (no database round trip per request);
every change bumps a version number, and the store flushes the versions it
has not yet made durable. Nested changes (``state["bag"].append(x)``) are
invisible to the mapping, so the handler calls :meth:`PlayerState.touch`.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

from ..errors import HandlerError


class PlayerState(MutableMapping[str, Any]):
    """``key``'s JSON-able data, owned at ``epoch`` by this node."""

    __slots__ = ("_durable", "_dirty", "_version", "data", "epoch", "key")

    def __init__(
        self,
        key: str,
        epoch: int,
        data: dict[str, Any] | None = None,
        dirty: set[str] | None = None,
    ) -> None:
        self.key = key
        self.epoch = epoch
        self.data: dict[str, Any] = data if data is not None else {}
        self._version = 0  # bumped by every change
        self._durable = 0  # the highest version known to be in the backend
        # The owning store's set of dirty keys; None once evicted or fenced.
        # A set, not a callback: a change costs one set.add, on every request.
        self._dirty = dirty

    # -- MutableMapping -----------------------------------------------------
    def __getitem__(self, name: str) -> Any:
        return self.data[name]

    def __setitem__(self, name: str, value: Any) -> None:
        dirty = self._dirty
        if dirty is None:
            raise _detached(self.key)
        self.data[name] = value
        self._version += 1  # touch(), inlined: this runs on most requests
        dirty.add(self.key)

    # Straight to the dict: MutableMapping's generic versions go through
    # __getitem__ and an exception for a missing key.
    def get(self, name: str, default: Any = None) -> Any:
        return self.data.get(name, default)

    def __contains__(self, name: object) -> bool:
        return name in self.data

    def __delitem__(self, name: str) -> None:
        if self._dirty is None:
            raise _detached(self.key)
        del self.data[name]
        self.touch()

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        return f"PlayerState({self.key!r}, epoch={self.epoch}, dirty={self.dirty}, {self.data!r})"

    # -- change tracking ----------------------------------------------------
    def touch(self) -> None:
        """Mark the state changed; call it after mutating a nested value in place.

        Raises ``HandlerError("replaced")`` once the store let go of the state
        (another login owns the player now): a change that can never be made
        durable must not be answered as a success.
        """
        if self._dirty is None:
            raise _detached(self.key)
        self._version += 1
        self._dirty.add(self.key)

    @property
    def dirty(self) -> bool:
        """True while some change is not yet durable."""
        return self._version != self._durable

    @property
    def version(self) -> int:
        """Bumped by every change; a flush records the version it wrote."""
        return self._version

    def stored(self, version: int) -> None:
        """The backend holds ``version`` of this state now (the store's flush tells it)."""
        if version > self._durable:
            self._durable = version

    def detach(self) -> None:
        """The store let go of this state: later changes raise instead of going nowhere."""
        self._dirty = None

    @property
    def attached(self) -> bool:
        """False once the store evicted or fenced it: changes then go nowhere."""
        return self._dirty is not None

    @property
    def lost(self) -> bool:
        """The store let go of it with changes never made durable (a newer owner fenced it).

        A reply that acknowledged one of those changes must never be sent:
        ``store_sync = "always"`` checks this once the commit is done.
        """
        return self._dirty is None and self._version != self._durable


def _detached(key: str) -> HandlerError:
    return HandlerError("replaced", f"{key}: this state is no longer owned here")
