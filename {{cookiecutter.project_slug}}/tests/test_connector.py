"""The TLV connector, without sockets: any split of a stream gives the same frames."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from {{ cookiecutter.package_name }}.sgs import (
    FrameDecoder,
    FrameTooLargeError,
    encode_frame,
)

LIMIT = 4096
frames_st = st.lists(
    st.tuples(st.integers(0, 2**32 - 1), st.binary(max_size=600)), min_size=0, max_size=30
)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in points:
        pieces.append(data[last:p])
        last = p
    pieces.append(data[last:])
    return pieces


@settings(max_examples=300, deadline=None)
@given(frames=frames_st, cuts=st.lists(st.integers(0, 10**6), max_size=40))
def test_any_split_gives_the_same_frames(frames: list[tuple[int, bytes]], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(i, v) for i, v in frames)
    decoder = FrameDecoder(LIMIT)
    got: list[tuple[int, bytes]] = []
    for piece in split(stream, cuts):
        got += decoder.feed(piece)
    assert got == frames
    assert decoder.pending == 0
    assert decoder.error is None


@settings(max_examples=100, deadline=None)
@given(frames=frames_st)
def test_byte_by_byte(frames: list[tuple[int, bytes]]) -> None:
    stream = b"".join(encode_frame(i, v) for i, v in frames)
    decoder = FrameDecoder(LIMIT)
    got = [f for i in range(len(stream)) for f in decoder.feed(stream[i : i + 1])]
    assert got == frames


def test_zero_length_values_are_frames() -> None:
    decoder = FrameDecoder(LIMIT)
    assert decoder.feed(encode_frame(5, b"") * 3) == [(5, b"")] * 3


def test_value_of_exactly_the_limit_is_accepted() -> None:
    decoder = FrameDecoder(LIMIT)
    assert decoder.feed(encode_frame(1, b"x" * LIMIT)) == [(1, b"x" * LIMIT)]


def test_oversized_length_is_rejected_from_the_header_alone() -> None:
    decoder = FrameDecoder(LIMIT)
    before = encode_frame(3, b"ok")
    header = (7).to_bytes(4, "big") + (2**31).to_bytes(4, "big")
    frames = decoder.feed(before + header)  # no value bytes at all follow the header
    assert frames == [(3, b"ok")]
    assert isinstance(decoder.error, FrameTooLargeError)
    assert decoder.error.msg_id == 7 and decoder.error.length == 2**31
    assert decoder.pending == 0  # nothing was kept, let alone allocated, for the value
    assert decoder.feed(encode_frame(1, b"later")) == []  # the stream cannot resync


def test_oversized_header_split_across_reads() -> None:
    decoder = FrameDecoder(LIMIT)
    header = (9).to_bytes(4, "big") + (LIMIT + 1).to_bytes(4, "big")
    assert decoder.feed(header[:5]) == []
    assert decoder.error is None
    assert decoder.feed(header[5:]) == []
    assert decoder.error is not None and decoder.error.length == LIMIT + 1


def test_truncated_header_at_eof_is_pending() -> None:
    decoder = FrameDecoder(LIMIT)
    assert decoder.feed(b"\x00\x00\x00") == []
    assert decoder.pending == 3


def test_truncated_value_at_eof_is_pending() -> None:
    decoder = FrameDecoder(LIMIT)
    data = encode_frame(1, b"abcdef")
    assert decoder.feed(data[:-2]) == []
    assert decoder.pending == len(data) - 2
    assert decoder.feed(data[-2:]) == [(1, b"abcdef")]
    assert decoder.pending == 0


def test_large_frame_in_many_reads() -> None:
    value = bytes(range(256)) * 4096  # 1 MiB
    decoder = FrameDecoder(len(value))
    data = encode_frame(2, value) + encode_frame(3, b"tail")
    got: list[tuple[int, bytes]] = []
    for off in range(0, len(data), 1000):
        got += decoder.feed(data[off : off + 1000])
    assert got == [(2, value), (3, b"tail")]


def test_idle_decoders_share_one_empty_tail_and_never_write_to_it() -> None:
    """An idle link's decoder holds no buffer of its own; a partial frame gets a fresh one."""
    a, b = FrameDecoder(1024), FrameDecoder(1024)
    assert a._tail is b._tail and not a._tail
    whole = encode_frame(5, b"abc")
    assert a.feed(whole[:4]) == [] and a.pending == 4
    assert b.pending == 0 and not b._tail, "a partial frame on one link leaked into another"
    assert a.feed(whole[4:] + whole) == [(5, b"abc"), (5, b"abc")]
    assert a.pending == 0 and a._tail is b._tail
    assert FrameDecoder(1024)._tail == bytearray()
