"""What the hot path touches when metrics are on: plain ints and floats on small objects.

Prometheus objects (locks, label lookups) never appear on the hot path. A
logic worker adds to a :class:`TypeMeter` per message it handled and to its
:class:`WorkerUsage` per pass; the collector reads both at scrape time.
"""

from __future__ import annotations

import math
from bisect import bisect_left

#: Upper bounds (seconds) of the handler latency histogram: 50 us to 10 s.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class TypeMeter:
    """Frames handled and their latency for one message type (one router table entry).

    A logic worker times a pass over one read in runs of consecutive messages
    of one type and calls :meth:`observe` once per run: the sum is exact, the
    count is exact, and the buckets place each message at its run's average
    (decode, handler and encode included). That keeps the clock and the
    ``bisect`` off the per-message path; a slow message inside a run of fast
    ones moves the run's average, not a bucket of its own.

    ``buckets[i]`` counts the messages whose (run's average) latency was at
    most ``LATENCY_BUCKETS[i]`` and above the bound before it; the last slot
    is +Inf. The count is the sum of the buckets.
    """

    __slots__ = ("name", "msg_id", "buckets", "seconds", "decode_errors", "slow")

    def __init__(self, name: str, msg_id: int, slow: float = math.inf) -> None:
        self.name = name
        self.msg_id = msg_id
        # timing_middleware's threshold in seconds: a run over it is logged.
        self.slow = slow
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.seconds = 0.0
        self.decode_errors = 0  # frames of this type the codec could not decode

    def observe(self, seconds: float, n: int) -> None:
        """``n`` messages of this type took ``seconds`` together."""
        self.seconds += seconds
        self.buckets[bisect_left(LATENCY_BUCKETS, seconds / n)] += n

    @property
    def count(self) -> int:
        return sum(self.buckets)

    def cumulative(self) -> list[tuple[str, int]]:
        """Prometheus buckets: (upper bound as text, count at or below it)."""
        out: list[tuple[str, int]] = []
        total = 0
        for bound, n in zip((*LATENCY_BUCKETS, float("inf")), self.buckets, strict=True):
            total += n
            out.append(("+Inf" if bound == float("inf") else repr(bound), total))
        return out


class WorkerUsage:
    """Seconds a logic worker (or all per-link workers together) spent handling frames."""

    __slots__ = ("busy_seconds",)

    def __init__(self) -> None:
        self.busy_seconds = 0.0
