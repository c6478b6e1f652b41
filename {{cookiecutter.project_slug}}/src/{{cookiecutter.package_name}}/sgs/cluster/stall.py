"""The stall check: a node answers a bound account only while it knows it still owns it.

Nobody can take a node's accounts while its lease holds: a newer login asks
the live owner to let go (KICK) and is refused if it does not, and the
reaper removes a node's bindings only after its lease expired. So a lease
refresh that was *sent* at ``t`` and found the lease held proves ownership
of everything the node holds until ``t + cluster_lease`` (less a margin).

The keeper moves :attr:`StallGuard.until` forward after every successful
round. A request of a bound account that arrives past it comes from a
node whose loop stalled (a SIGSTOP, a GC or swap storm) or that cannot
reach the broker: the request is held until the keeper's next round has
re-validated what the node holds (:meth:`StallGuard.verify`), and its link
is answered ``Error(replaced)`` if ownership was lost meanwhile. Without
this, a node waking from a pause past its lease answers the requests
buffered in its sockets before its first check runs.

The clock is the event loop's (``loop.time()``, monotonic): it keeps
counting while the process is stopped, so the first read after a pause
finds the deadline passed. The steady-state cost is one clock read and one
float compare per read of a link.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

#: Share of the lease kept as a margin (clock rates, the reply still being written).
MARGIN = 0.1


class StallGuard:
    """This node's "ownership verified until" deadline (see the module docstring)."""

    __slots__ = ("until", "clock", "lease", "_next", "_nudge", "_down", "checks")

    def __init__(self, lease: float, nudge: Callable[[], None]) -> None:
        self.until = float("-inf")  # nothing verified before the first registration
        self.clock = asyncio.get_running_loop().time
        self.lease = lease * (1.0 - MARGIN)
        self._next: asyncio.Future[None] | None = None
        self._nudge = nudge  # wake the keeper now instead of at its next heartbeat
        # A wait timed out and no round succeeded since: the broker is out of
        # reach, and later stalled reads fail at once instead of each holding
        # its worker for the whole timeout.
        self._down = False
        self.checks = 0  # requests that had to wait for a re-validation

    def renewed(self, sent_at: float) -> None:
        """The keeper confirmed the lease (and the bindings) with a round sent at ``sent_at``."""
        until = sent_at + self.lease
        if until > self.until:
            self.until = until
        self._down = False
        waiter = self._next
        if waiter is not None:
            self._next = None
            if not waiter.done():
                waiter.set_result(None)

    async def verify(self, timeout: float) -> bool:
        """Wait for a round that started after now; False when none completes within ``timeout``.

        Many stalled links share one round (one refresh and, when the lease
        was lost, one validation of every binding): each waits on the same
        future. Once a wait timed out, later ones answer False at once until
        a round succeeds again.
        """
        self.checks += 1
        clock = self.clock
        deadline = clock() + timeout
        while clock() >= self.until:
            left = deadline - clock()
            if left <= 0 or self._down:
                self._nudge()
                return False
            if self._next is None:
                self._next = asyncio.get_running_loop().create_future()
            waiter = self._next
            self._nudge()
            try:
                await asyncio.wait_for(asyncio.shield(waiter), left)
            except TimeoutError:
                self._down = True
                return False
        return True
