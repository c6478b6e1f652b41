"""The inbound reader: one link's bytes in; frames, refused ids, a pause and a broken stream out.

The first half of the inbound path, with no I/O and no clock of its own: the
TLV parse (:class:`~.connector.FrameDecoder`) and the link's inbound budget
(:class:`~.limits.InboundLimiter`) in one object, so every split of a stream,
every budget and every oversized header can be driven by a test or the
fuzzer with ``feed(data, now)`` and checked without a socket or a server.
The second half is the dispatcher (frames to handlers, replies out); the
link only moves what this returns to its logic worker and obeys the pause.

What ``feed`` returns, in stream order:

* ``frames``: to hand to the logic worker now;
* ``refused``: ids of frames over the message budget (answered
  ``Error(rate_limited)`` in their place), or None;
* ``pause``: seconds to stop reading (0.0: keep reading); frames past the
  byte budget wait inside the reader until :meth:`InboundReader.release`;
* ``broken``: the :class:`~.errors.FrameTooLargeError` that ended the
  stream, or None. Frames before it are still returned.
"""

from __future__ import annotations

from time import monotonic

from .connector import Frame, FrameDecoder
from .errors import FrameTooLargeError
from .limits import InboundLimiter, Rejected

Frames = list[Frame]
#: (frames, refused ids, seconds to pause reading, the error that broke the stream)
Read = tuple[Frames, Rejected | None, float, FrameTooLargeError | None]


class InboundReader:
    """One link's parse and budget; ``now`` None reads the clock only when a budget bites."""

    __slots__ = ("decoder", "limiter", "deferred")

    def __init__(self, max_frame_size: int, limiter: InboundLimiter | None = None) -> None:
        self.decoder = FrameDecoder(max_frame_size)
        self.limiter = limiter
        self.deferred: Frames | None = None  # frames past the byte budget, in order

    @property
    def pending(self) -> int:
        """Bytes of a frame begun and not finished (the frame timeout watches this)."""
        return self.decoder.pending

    @property
    def broken(self) -> FrameTooLargeError | None:
        return self.decoder.error

    def feed(self, data: bytes, now: float | None = None) -> Read:
        """The outcome of one read of ``data`` at ``now`` (see the module doc)."""
        decoder = self.decoder
        frames = decoder.feed(data)
        limiter = self.limiter
        if limiter is None:
            return frames, None, 0.0, decoder.error
        if self.deferred is not None:  # frames wait for the budget: keep their order
            self.deferred.extend(frames)
            frames = []
        size = len(data)
        # Spend without the clock; settle exactly only when a counter goes below zero.
        limiter.msg_tokens -= len(frames)
        limiter.byte_tokens -= size
        if limiter.msg_tokens >= 0 and limiter.byte_tokens >= 0:
            return frames, None, 0.0, decoder.error
        verdict = limiter.settle(frames, size, monotonic() if now is None else now)
        if verdict is None:
            return frames, None, 0.0, decoder.error
        frames, refused, deferred, pause = verdict
        if deferred:
            if self.deferred is None:
                self.deferred = deferred
            else:
                self.deferred.extend(deferred)
        return frames, refused, pause, decoder.error

    def release(self, now: float | None = None) -> tuple[Frames, Rejected | None, float]:
        """After a pause: the deferred frames the message budget lets through, the refused
        ones, and how long to pause again (their bytes were paid on arrival)."""
        deferred = self.deferred
        if deferred is None or self.limiter is None:
            return [], None, 0.0
        self.deferred = None
        return self.limiter.count_deferred(deferred, monotonic() if now is None else now)
