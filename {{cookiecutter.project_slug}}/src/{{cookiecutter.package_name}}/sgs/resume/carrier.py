"""The holder's side of a relayed resume: a link standing for a connection on another node.

A :class:`RelayedLink` is an ordinary :class:`~..link.Link` whose transport is
a :class:`RelayTransport`: what the link writes goes over the cluster bus to
the node that owns the connection, which writes it there. So a remote carrier
is numbered into the player's ring, flushed, closed and finalized exactly
as a local carrier is (the send path does not know the difference, and a
link that is not relayed pays nothing for it). Its inbound frames are posted
to its logic worker as they arrive from the bus (:mod:`.relay`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ..link import Link
from ..outcomes import CloseReason, reason_label
from .wire import Close, Kick, Op, Out

#: The Close reason of a relay the holder gave up (the connection's node closes it).
LOST = CloseReason.LOCAL.value


class RelayedLink(Link):
    """A carrier whose connection is on another node (``transport`` is a RelayTransport)."""

    __slots__ = ()
    transport_name = "relay"


class RelayTransport:
    """What a relayed carrier writes to: Out operations, numbered, to the connection's node.

    An Out the bus could not take is a hole the connection must not write
    past: the carrier ends at once (its player is held again) and the
    connection's node sees the gap in the numbers and closes the connection,
    so the client resumes from what it really received.
    """

    __slots__ = ("node", "relay", "link", "n", "closing", "_send", "_forget")

    def __init__(
        self,
        node: str,
        relay: str,
        send: Callable[[str, Op], bool],
        forget: Callable[[RelayTransport], None],
    ) -> None:
        self.node = node
        self.relay = relay
        self.link: Link | None = None
        self.n = 0
        self.closing = False
        self._send = send
        self._forget = forget

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return (f"relay:{self.node}", 0) if name == "peername" else default

    def write(self, data: bytes) -> None:
        if self.closing:
            return
        self.n += 1
        if not self._send(self.node, Out(self.relay, self.n, bytes(data))):
            self._end(LOST)  # tried: should it arrive, the connection closes without waiting

    def close(self) -> None:
        if not self.closing:
            link = self.link
            self._end(reason_label(link.close_reason if link is not None else None))

    abort = close

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        """Nothing to pause here: the connection's node reads, and the bus is bounded."""

    def resume_reading(self) -> None:
        """See :meth:`pause_reading`."""

    def kick(self, message: str) -> None:
        """A newer resume took the player: the connection's node answers ``Error(replaced)``."""
        if not self.closing:
            self._send(self.node, Kick(self.relay, message))
            self._end(None)

    def gone(self) -> None:
        """The connection ended on its node: the carrier's connection is lost."""
        if not self.closing:
            self._end(None)

    def drop(self) -> None:
        """The connection's node left the live set: lost here, and closed there if it still runs.

        Closing it there (a false alarm: a broker hiccup) makes its client
        resume, instead of waiting on a connection nobody writes to any more.
        """
        if not self.closing:
            self._end(LOST)

    def _end(self, reason: str | None) -> None:
        self.closing = True
        self._forget(self)
        if reason is not None:
            self._send(self.node, Close(self.relay, reason))
        if self.link is not None:
            asyncio.get_running_loop().call_soon(self.link.connection_lost, None)
