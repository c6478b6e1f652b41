"""The per-link outbound sequence and the bounded buffer of the frames it numbered.

Every frame sent to a logged-in link gets the next sequence number and stays
in the ring until ``resume_buffer`` newer frames (or ``resume_bytes`` of
them) pushed it out. The ring keeps frames while the link is up too, since
the frames in flight when a connection dies are exactly the ones a client
misses. A frame is kept by reference (the same bytes object the link
queues), so the cost per frame is one append and two additions.
"""

from __future__ import annotations

from collections import deque


class Ring:
    """Sequence numbers and the last frames they name, bounded in count and bytes."""

    __slots__ = ("seq", "frames", "size", "max_bytes", "max_count")

    def __init__(self, max_count: int, max_bytes: int) -> None:
        self.seq = 0
        self.frames: deque[bytes] = deque()
        self.size = 0
        self.max_count = max_count
        self.max_bytes = max_bytes

    def record(self, frame: bytes) -> None:
        """Number ``frame`` and keep it; the oldest frames go past either bound."""
        self.seq += 1
        frames = self.frames
        frames.append(frame)
        self.size += len(frame)
        while len(frames) > self.max_count or self.size > self.max_bytes:
            self.size -= len(frames.popleft())

    @property
    def first(self) -> int:
        """The sequence number of the oldest frame still kept (``seq + 1`` when empty)."""
        return self.seq - len(self.frames) + 1

    def after(self, last_seq: int) -> list[bytes] | None:
        """The frames numbered after ``last_seq``, in order; None when some are gone.

        Never part of what was missed: a ``last_seq`` ahead of the count, or one
        whose successors were pushed out, is None as a whole.
        """
        if last_seq > self.seq or last_seq + 1 < self.first:
            return None
        skip = last_seq + 1 - self.first
        frames = self.frames
        return [frames[i] for i in range(skip, len(frames))]
