"""TLV framing (``msg_id u32 BE | length u32 BE | value``), sans I/O.

The decoder only turns bytes into frames, so every split and coalescing of a
TCP stream can be property-tested without a socket, and the same object serves
the server links and the client.
"""

from __future__ import annotations

import struct

from .errors import FrameTooLargeError

HEADER = struct.Struct(">II")
HEADER_SIZE = HEADER.size
encode_header = HEADER.pack

Frame = tuple[int, bytes]


def encode_frame(msg_id: int, value: bytes) -> bytes:
    """One frame as a single bytes object (one copy of the value)."""
    return HEADER.pack(msg_id, len(value)) + value


#: The tail of a decoder holding no partial frame, shared by every idle link (56 bytes
#: a link saved). Never mutated: only a non-empty tail grows in place.
_NO_TAIL = bytearray()


class FrameDecoder:
    """Incremental TLV parser.

    The fast path parses straight out of the bytes a read delivered; only the
    tail of an incomplete frame is kept, in a bytearray that grows in place, so
    a large frame arriving in many reads costs linear, not quadratic, copying.
    A header announcing more than ``max_frame_size`` sets :attr:`error` from the
    header alone, before anything is allocated for the value; the decoder then
    refuses further input because the stream can no longer be resynchronised.
    """

    __slots__ = ("max_frame_size", "_tail", "_need", "error")

    def __init__(self, max_frame_size: int) -> None:
        self.max_frame_size = max_frame_size
        self._tail = _NO_TAIL
        self._need = 0  # bytes the tail must reach before a frame can complete
        self.error: FrameTooLargeError | None = None

    @property
    def pending(self) -> int:
        """Bytes held from an incomplete frame (non-zero at EOF means truncation)."""
        return len(self._tail)

    def feed(self, data: bytes) -> list[Frame]:
        """Frames completed by ``data``, in stream order.

        After an oversized header, the frames before it are still returned and
        :attr:`error` is set; the caller answers and closes.
        """
        if self.error is not None:
            return []
        tail = self._tail
        if tail:
            tail += data
            if len(tail) < self._need:
                return []
            buf = bytes(tail)  # one copy; every slice below is then a plain bytes slice
        else:
            buf = data
        frames: list[Frame] = []
        append = frames.append
        unpack = HEADER.unpack_from
        limit = self.max_frame_size
        size = len(buf)
        off = 0
        need = 0
        while size - off >= HEADER_SIZE:
            msg_id, length = unpack(buf, off)
            if length > limit:
                self.error = FrameTooLargeError(msg_id, length, limit)
                self._tail = _NO_TAIL
                self._need = 0
                return frames
            end = off + HEADER_SIZE + length
            if end > size:
                need = end - off
                break
            append((msg_id, buf[off + HEADER_SIZE : end]))
            off = end
        if off == size:
            if tail:
                self._tail = _NO_TAIL
        elif off or not tail:
            self._tail = bytearray(buf[off:])
        self._need = need if need else HEADER_SIZE
        return frames
