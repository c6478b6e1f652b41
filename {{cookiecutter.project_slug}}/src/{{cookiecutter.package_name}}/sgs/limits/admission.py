"""Who may open a link: a per-address connection count and a rate of accepts.

Both are checked when the kernel hands over a connection, before any
per-link state exists, so a connection flood costs an accept and a close per
connection and leaves the links already open (and their latency) alone.
"""

from __future__ import annotations

from typing import Any

from .bucket import TokenBucket


def address_of(peer: Any) -> str:
    """The IP of a peername tuple (IPv4 or IPv6); the whole value for anything else."""
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer)


class Admission:
    __slots__ = ("per_ip", "open", "accepts")

    def __init__(self, per_ip: int, accept_rate: float, accept_burst: int, now: float) -> None:
        self.per_ip = per_ip
        self.open: dict[str, int] = {}
        self.accepts = TokenBucket(accept_rate, accept_burst, now) if accept_rate > 0 else None

    def refuse(self, address: str, now: float) -> str | None:
        """Why a new connection from ``address`` is refused, or None (then it is counted)."""
        if self.accepts is not None and not self.accepts.take(1, now):
            return "accept_rate"
        if self.per_ip:
            count = self.open.get(address, 0)
            if count >= self.per_ip:
                return "max_connections_per_ip"
            self.open[address] = count + 1
        return None

    def release(self, address: str) -> None:
        """A link counted by :meth:`refuse` has closed."""
        if self.per_ip:
            count = self.open.get(address, 0) - 1
            if count > 0:
                self.open[address] = count
            else:
                self.open.pop(address, None)
