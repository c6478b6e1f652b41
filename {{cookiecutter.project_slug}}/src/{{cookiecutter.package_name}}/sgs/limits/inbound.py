"""The per-link inbound budget: messages a second and bytes a second, each with a burst.

Checked where a read's frames are parsed, before anything is queued for a
logic worker, so a flood costs the parse and nothing else.

* **Bytes** are charged as they arrive. Frames past the byte budget are
  *deferred*, not refused: the link stops reading and hands them on once the
  budget has refilled. A client that sends too much is slowed down (TCP
  back-pressure does the rest), never answered with errors for bytes.
* **Messages** over the budget are not handled. They travel to the worker as
  a :class:`Rejected` batch right behind the accepted ones, so the
  ``Error(rate_limited)`` answers keep the order of the replies (TLV has no
  request id; clients match replies in order), and reading pauses until one
  message fits again.
"""

from __future__ import annotations

from .bucket import TokenBucket

HEADER_SIZE = 8
_INF = float("inf")
Frames = list[tuple[int, bytes]]


class Rejected(list):  # type: ignore[type-arg]
    """Message ids of frames dropped by a rate limit; a marker type in a worker's queue."""

    __slots__ = ()


class InboundLimiter:
    """One link's two buckets; a ``None`` (rate, burst) pair switches that bucket off.

    The read path only spends: ``Link.ingest`` subtracts a read's frames and
    bytes from ``msg_tokens`` and ``byte_tokens`` (plain floats; infinite for
    a bucket that is off) and looks at the clock only when one goes below
    zero. :meth:`settle` then refills from the time elapsed since the last
    settle (capped at the burst) and splits the read exactly. Over any window
    a link still gets at most the burst plus rate x time.
    """

    __slots__ = ("messages", "bytes", "msg_tokens", "byte_tokens")

    def __init__(
        self,
        now: float,
        messages: tuple[float, float] | None,
        bytes_: tuple[float, float] | None,
    ) -> None:
        self.messages = TokenBucket(*messages, now) if messages else None
        self.bytes = TokenBucket(*bytes_, now) if bytes_ else None
        self.msg_tokens = 0.0
        self.byte_tokens = 0.0
        self._publish()

    def _publish(self) -> None:
        """Copy the buckets' tokens to the counters the read path spends."""
        self.msg_tokens = self.messages.tokens if self.messages is not None else _INF
        self.byte_tokens = self.bytes.tokens if self.bytes is not None else _INF

    def settle(
        self, frames: Frames, size: int, now: float
    ) -> tuple[Frames, Rejected | None, Frames | None, float] | None:
        """A counter went below zero after spending ``frames`` and ``size``: decide exactly."""
        if self.messages is not None:
            self.messages.tokens = self.msg_tokens + len(frames)
        if self.bytes is not None:
            self.bytes.tokens = self.byte_tokens + size
        verdict = self.admit(frames, size, now)
        self._publish()
        return verdict

    def count_deferred(self, frames: Frames, now: float) -> tuple[Frames, Rejected | None, float]:
        """Deferred frames, handed on after a pause: their bytes were paid on arrival."""
        if self.messages is not None:
            self.messages.tokens = self.msg_tokens
        verdict = self.count(frames, now)
        self._publish()
        return verdict

    def admit(
        self, frames: Frames, size: int, now: float
    ) -> tuple[Frames, Rejected | None, Frames | None, float] | None:
        """None when the whole read fits (the common case, kept cheap); else
        (handle now, answer rate_limited, defer, seconds to stop reading).

        ``size`` is the read's byte count, charged whole: partial frames pay
        on arrival, so every byte is charged once.
        """
        byte_bucket = self.bytes
        if byte_bucket is not None:
            tokens = byte_bucket.tokens + (now - byte_bucket.stamp) * byte_bucket.rate
            if tokens > byte_bucket.burst:
                tokens = byte_bucket.burst
            byte_bucket.stamp = now
            if tokens < size:
                byte_bucket.tokens = tokens
                return self._split(frames, size, now)
            byte_bucket.tokens = tokens - size
        messages = self.messages
        if messages is not None and frames:
            tokens = messages.tokens + (now - messages.stamp) * messages.rate
            if tokens > messages.burst:
                tokens = messages.burst
            messages.stamp = now
            n = len(frames)
            if tokens < n:
                messages.tokens = tokens
                accepted, rejected, pause = self.count(frames, now)
                return accepted, rejected, None, pause
            messages.tokens = tokens - n
        return None

    def _split(
        self, frames: Frames, size: int, now: float
    ) -> tuple[Frames, Rejected | None, Frames | None, float]:
        """Over the byte budget: the frames that fit go on, the rest wait for the refill."""
        byte_bucket = self.bytes
        assert byte_bucket is not None
        tokens = byte_bucket.tokens
        frames, deferred = _fit(frames, tokens)
        pause = (size - tokens) / byte_bucket.rate
        byte_bucket.tokens = tokens - size
        frames, rejected, wait = self.count(frames, now)
        return frames, rejected, deferred, max(pause, wait)

    def count(self, frames: Frames, now: float) -> tuple[Frames, Rejected | None, float]:
        """The message budget alone: (accepted, rejected ids, seconds to stop reading)."""
        messages = self.messages
        if messages is None or not frames:
            return frames, None, 0.0
        n = len(frames)
        available = messages.refill(now)
        if available >= n:
            messages.tokens = available - n
            return frames, None, 0.0
        allowed = int(available) if available > 0 else 0
        messages.tokens = available - allowed
        rejected = Rejected(msg_id for msg_id, _ in frames[allowed:])
        return frames[:allowed], rejected, messages.wait(1)


def _fit(frames: Frames, budget: float) -> tuple[Frames, Frames | None]:
    """The frames that fit in ``budget`` bytes, in order, and the rest."""
    used = 0
    for k, (_, payload) in enumerate(frames):
        used += len(payload) + HEADER_SIZE
        if used > budget:
            return frames[:k], frames[k:]
    return frames, None
