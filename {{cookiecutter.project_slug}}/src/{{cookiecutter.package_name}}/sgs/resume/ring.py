"""The per-link outbound sequence and the bounded buffer of the frames it numbered.

Frames are numbered as they leave: each flush of a link's send queue adds its
joined bytes as one chunk (``first seq``, frame count, bytes), so an armed
link pays a few operations per write, not per frame, and keeps the bytes it
wrote anyway instead of one object per frame. A frame the link could not
write (its connection dropped) is numbered and kept on its own. Chunks go
from the oldest once the ring holds more than ``resume_buffer`` frames or
``resume_buffer_bytes`` bytes: both are hard bounds. The ring keeps frames
while the link is up too, since the frames in flight when a connection dies
are exactly the ones a client misses. Replay splits the kept chunks back into
TLV frames (rare: only on a resume).
"""

from __future__ import annotations

import struct
from collections import deque

_HEADER = struct.Struct(">II")


class Ring:
    """Sequence numbers and the last frames they name, bounded in count and bytes."""

    __slots__ = ("seq", "chunks", "count", "size", "max_bytes", "max_count")

    def __init__(self, max_count: int, max_bytes: int) -> None:
        self.seq = 0
        self.chunks: deque[tuple[int, int, bytes]] = deque()
        self.count = 0
        self.size = 0
        self.max_count = max_count
        self.max_bytes = max_bytes

    def add(self, data: bytes, n: int) -> None:
        """Number the ``n`` whole TLV frames of ``data`` and keep them."""
        self.chunks.append((self.seq + 1, n, data))
        self.seq += n
        self.count += n
        self.size += len(data)
        if self.count > self.max_count or self.size > self.max_bytes:
            self._trim()

    def record(self, frame: bytes) -> None:
        """Number one frame and keep it."""
        self.add(frame, 1)

    def _trim(self) -> None:
        chunks = self.chunks
        while chunks and (self.count > self.max_count or self.size > self.max_bytes):
            _, n, data = chunks.popleft()
            self.count -= n
            self.size -= len(data)

    @property
    def first(self) -> int:
        """The sequence number of the oldest frame still kept (``seq + 1`` when empty)."""
        return self.seq - self.count + 1

    def after(self, last_seq: int) -> list[bytes] | None:
        """The frames numbered after ``last_seq``, in order; None when some are gone.

        Never part of what was missed: a ``last_seq`` ahead of the count, or one
        whose successors were pushed out, is None as a whole.
        """
        if last_seq > self.seq or last_seq + 1 < self.first:
            return None
        out: list[bytes] = []
        for start, n, data in self.chunks:
            if start + n - 1 <= last_seq:
                continue
            frames = split(data) if n > 1 else [data]
            out += frames[max(0, last_seq + 1 - start) :]
        return out


def split(data: bytes) -> list[bytes]:
    """The TLV frames of ``data`` (whole frames, as a link wrote them)."""
    frames = []
    offset = 0
    view = memoryview(data)
    while offset < len(data):
        _, length = _HEADER.unpack_from(data, offset)
        end = offset + _HEADER.size + length
        frames.append(bytes(view[offset:end]))
        offset = end
    return frames
