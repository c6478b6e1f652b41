"""One player's state: a dict that knows when it changed.

Handlers read and change it in memory (no database round trip per request);
every change bumps a version number, and the store flushes the versions it
has not yet made durable. Nested changes (``state["bag"].append(x)``) are
invisible to the mapping, so the handler calls :meth:`PlayerState.touch`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from typing import Any


class PlayerState(MutableMapping[str, Any]):
    """``key``'s JSON-able data, owned at ``epoch`` by this node."""

    __slots__ = ("_durable", "_notify", "_version", "data", "epoch", "key")

    def __init__(
        self,
        key: str,
        epoch: int,
        data: dict[str, Any] | None = None,
        notify: Callable[[PlayerState], None] | None = None,
    ) -> None:
        self.key = key
        self.epoch = epoch
        self.data: dict[str, Any] = data if data is not None else {}
        self._version = 0  # bumped by every change
        self._durable = 0  # the highest version known to be in the backend
        self._notify = notify  # the owning store; None once evicted or fenced

    # -- MutableMapping -----------------------------------------------------
    def __getitem__(self, name: str) -> Any:
        return self.data[name]

    def __setitem__(self, name: str, value: Any) -> None:
        self.data[name] = value
        self.touch()

    def __delitem__(self, name: str) -> None:
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
        """Mark the state changed; call it after mutating a nested value in place."""
        self._version += 1
        if self._notify is not None:
            self._notify(self)

    @property
    def dirty(self) -> bool:
        """True while some change is not yet durable."""
        return self._version != self._durable

    @property
    def attached(self) -> bool:
        """False once the store evicted or fenced it: changes then go nowhere."""
        return self._notify is not None
