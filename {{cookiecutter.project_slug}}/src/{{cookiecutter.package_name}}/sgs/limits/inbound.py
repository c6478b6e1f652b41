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

import functools

HEADER_SIZE = 8
_INF = float("inf")
Frames = list[tuple[int, bytes]]


class Rejected(list):  # type: ignore[type-arg]
    """Message ids of frames dropped by a rate limit; a marker type in a worker's queue."""

    __slots__ = ()


class _Shape:
    """The rates and bursts every link of a server shares (rate 0: that bucket is off)."""

    __slots__ = ("msg_rate", "msg_burst", "byte_rate", "byte_burst")

    def __init__(self, messages: tuple[float, float] | None, bytes_: tuple[float, float] | None):
        for pair in (messages, bytes_):
            if pair is not None and (pair[0] <= 0 or pair[1] <= 0):
                raise ValueError("a token bucket needs a positive rate and burst")
        self.msg_rate, self.msg_burst = (messages[0], float(messages[1])) if messages else (0, _INF)
        self.byte_rate, self.byte_burst = (bytes_[0], float(bytes_[1])) if bytes_ else (0, _INF)


@functools.lru_cache(maxsize=16)
def _shape(messages: tuple[float, float] | None, bytes_: tuple[float, float] | None) -> _Shape:
    return _Shape(messages, bytes_)


class InboundLimiter:
    """One link's two token buckets; a ``None`` (rate, burst) pair switches that bucket off.

    The read path only spends: ``Link.ingest`` subtracts a read's frames and
    bytes from ``msg_tokens`` and ``byte_tokens`` (plain floats; infinite for
    a bucket that is off) and looks at the clock only when one goes below
    zero. :meth:`settle` then gives the read back, refills from the time
    elapsed since each bucket's stamp (capped at the burst) and splits the
    read exactly. Over any window a link still gets at most the burst plus
    rate x time.

    Rates and bursts live in a :class:`_Shape` shared by every link with the
    same settings; a link holds its two token counts and two stamps only
    (an idle link with limits on costs about 150 bytes, not 300).
    """

    __slots__ = ("shape", "msg_tokens", "byte_tokens", "msg_stamp", "byte_stamp")

    def __init__(
        self,
        now: float,
        messages: tuple[float, float] | None,
        bytes_: tuple[float, float] | None,
    ) -> None:
        shape = self.shape = _shape(messages, bytes_)
        self.msg_tokens = shape.msg_burst
        self.byte_tokens = shape.byte_burst
        self.msg_stamp = now
        self.byte_stamp = now

    def settle(
        self, frames: Frames, size: int, now: float
    ) -> tuple[Frames, Rejected | None, Frames | None, float] | None:
        """A counter went below zero after spending ``frames`` and ``size``: decide exactly."""
        self.msg_tokens += len(frames)
        self.byte_tokens += size
        return self.admit(frames, size, now)

    def count_deferred(self, frames: Frames, now: float) -> tuple[Frames, Rejected | None, float]:
        """Deferred frames, handed on after a pause: their bytes were paid on arrival."""
        return self.count(frames, now)

    def admit(
        self, frames: Frames, size: int, now: float
    ) -> tuple[Frames, Rejected | None, Frames | None, float] | None:
        """None when the whole read fits (the common case, kept cheap); else
        (handle now, answer rate_limited, defer, seconds to stop reading).

        ``size`` is the read's byte count, charged whole: partial frames pay
        on arrival, so every byte is charged once.
        """
        shape = self.shape
        if shape.byte_rate:
            tokens = self.byte_tokens + (now - self.byte_stamp) * shape.byte_rate
            if tokens > shape.byte_burst:
                tokens = shape.byte_burst
            self.byte_stamp = now
            if tokens < size:
                self.byte_tokens = tokens
                return self._split(frames, size, now)
            self.byte_tokens = tokens - size
        if shape.msg_rate and frames:
            tokens = self.msg_tokens + (now - self.msg_stamp) * shape.msg_rate
            if tokens > shape.msg_burst:
                tokens = shape.msg_burst
            self.msg_stamp = now
            n = len(frames)
            if tokens < n:
                self.msg_tokens = tokens
                accepted, rejected, pause = self.count(frames, now)
                return accepted, rejected, None, pause
            self.msg_tokens = tokens - n
        return None

    def _split(
        self, frames: Frames, size: int, now: float
    ) -> tuple[Frames, Rejected | None, Frames | None, float]:
        """Over the byte budget: the frames that fit go on, the rest wait for the refill."""
        tokens = self.byte_tokens
        frames, deferred = _fit(frames, tokens)
        pause = (size - tokens) / self.shape.byte_rate
        self.byte_tokens = tokens - size
        frames, rejected, wait = self.count(frames, now)
        return frames, rejected, deferred, max(pause, wait)

    def count(self, frames: Frames, now: float) -> tuple[Frames, Rejected | None, float]:
        """The message budget alone: (accepted, rejected ids, seconds to stop reading)."""
        shape = self.shape
        if not shape.msg_rate or not frames:
            return frames, None, 0.0
        n = len(frames)
        elapsed = now - self.msg_stamp
        if elapsed > 0:
            self.msg_stamp = now
            tokens = self.msg_tokens + elapsed * shape.msg_rate
            self.msg_tokens = tokens if tokens < shape.msg_burst else shape.msg_burst
        available = self.msg_tokens
        if available >= n:
            self.msg_tokens = available - n
            return frames, None, 0.0
        allowed = int(available) if available > 0 else 0
        self.msg_tokens = available - allowed
        rejected = Rejected(msg_id for msg_id, _ in frames[allowed:])
        missing = 1 - self.msg_tokens
        return frames[:allowed], rejected, (missing / shape.msg_rate if missing > 0 else 0.0)


def _fit(frames: Frames, budget: float) -> tuple[Frames, Frames | None]:
    """The frames that fit in ``budget`` bytes, in order, and the rest."""
    used = 0
    for k, (_, payload) in enumerate(frames):
        used += len(payload) + HEADER_SIZE
        if used > budget:
            return frames[:k], frames[k:]
    return frames, None
