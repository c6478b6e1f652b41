"""The fuzz targets: bytes in; a bug is any exception other than the typed refusals.

* ``tlv``: the frame decoder, fed in arbitrary pieces. Frames it returns must
  re-encode to exactly the bytes consumed; an oversized header must become a
  ``FrameTooLargeError``, never anything else.
* ``reader``: the link's I/O-free inbound reader (TLV parse plus the message
  and byte budgets), fed pieces at a moving clock. Every frame comes out
  once, in stream order, as a frame to handle, a refused id, or one still
  deferred; the handled ones never beat the budget (burst + rate x time).
* ``json``, ``protobuf``, ``msgpack``, ``bson``: each codec's decode path for
  every message type of the game's catalogue, both the per-type fast decoder
  the router uses and the full path. A value decodes to a message that
  re-encodes and decodes to itself, or is refused with a ``ProtocolError``.
* ``inbound``: the whole inbound path of the sample game: bytes into a link,
  frames to the router, decode, middleware, handlers, replies. Nothing may
  escape a handler or a worker (the framework logs those as crashes; here
  they fail the target), and the link is cleaned up afterwards.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from {{ cookiecutter.package_name }}.app import create_server
from {{ cookiecutter.package_name }}.messages import catalog
from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.sgs.connector import (
    HEADER_SIZE,
    FrameDecoder,
    encode_frame,
)
from {{ cookiecutter.package_name }}.sgs.errors import (
    FrameTooLargeError,
    ProtocolError,
)
from {{ cookiecutter.package_name }}.sgs.limits import (
    InboundLimiter,
)
from {{ cookiecutter.package_name }}.sgs.protocol import (
    PROTOCOLS,
    get_codec,
)
from {{ cookiecutter.package_name }}.sgs.reader import (
    InboundReader,
)
from {{ cookiecutter.package_name }}.sgs.testing import stand_in_link

Target = Callable[[bytes], None]

PACKAGE = create_server.__module__.split(".")[0]  # the game's loggers
MESSAGE_TYPES = sorted(catalog, key=lambda cls: cls.__msg_id__ or 0)
CODECS = list(PROTOCOLS)  # the first input byte picks one


def tlv(data: bytes) -> None:
    if len(data) < 3:
        return
    limit = int.from_bytes(data[:2], "big")  # 0-65535: oversized headers are common
    cuts = data[2]
    stream = data[3:]
    decoder = FrameDecoder(limit)
    frames = []
    step = (cuts % 17) + 1
    for start in range(0, len(stream), step):
        frames += decoder.feed(stream[start : start + step])
    consumed = b"".join(encode_frame(msg_id, value) for msg_id, value in frames)
    assert stream.startswith(consumed), "frames must re-encode to the bytes they came from"
    rest = len(stream) - len(consumed)
    if decoder.error is not None:
        assert isinstance(decoder.error, FrameTooLargeError)
        assert decoder.error.length > limit
    else:
        assert decoder.pending == rest, "every byte is a frame or the held tail"
        assert (
            rest < HEADER_SIZE
            or int.from_bytes(stream[len(consumed) + 4 : len(consumed) + 8], "big") + HEADER_SIZE
            > rest
        )


def reader(data: bytes) -> None:
    """Header: max frame size (2 bytes), message rate and burst, byte rate and burst (one
    byte each, 0 = that budget off), piece size, clock step; then the stream."""
    if len(data) < 8:
        return
    limit = int.from_bytes(data[:2], "big")
    msg_rate, msg_burst, byte_rate, byte_burst, step, tick = data[2:8]
    stream = data[8:]
    messages = (float(msg_rate), float(msg_burst)) if msg_rate and msg_burst else None
    bytes_ = (byte_rate * 16.0, byte_burst * 64.0) if byte_rate and byte_burst else None
    now = 1000.0
    reader = InboundReader(limit, InboundLimiter(now, messages, bytes_))
    expected = FrameDecoder(limit).feed(stream)
    handled: list[tuple[int, bytes]] = []
    order: list[int] = []  # ids as they came out: handled and refused, in stream order
    piece = step % 23 + 1
    for start in range(0, len(stream), piece):
        now += tick / 1000.0
        frames, refused, pause, broken = reader.feed(stream[start : start + piece], now)
        assert pause >= 0.0 and pause != float("inf")
        handled += frames
        order += [msg_id for msg_id, _ in frames] + list(refused or ())
        if pause:  # the link would stop reading this long, then release what waits
            now += pause
            frames, refused, _ = reader.release(now)
            handled += frames
            order += [msg_id for msg_id, _ in frames] + list(refused or ())
        if broken is not None:
            assert isinstance(broken, FrameTooLargeError) and broken.length > limit
            break
    waiting = [msg_id for msg_id, _ in reader.deferred or ()]
    assert order + waiting == [msg_id for msg_id, _ in expected], "a frame lost or reordered"
    assert all(frame in expected for frame in handled)
    if messages is not None:
        elapsed = now - 1000.0
        assert len(handled) <= messages[1] + messages[0] * elapsed + 1e-6, "over the budget"


def _codec_target(name: str) -> Target:
    codec = get_codec(name, catalog)
    fast = {cls: codec.fast_decoder(cls) for cls in MESSAGE_TYPES}

    def target(data: bytes) -> None:
        if not data:
            return
        cls = MESSAGE_TYPES[data[0] % len(MESSAGE_TYPES)]
        payload = data[1:]
        msg_id = cls.__msg_id__
        assert msg_id is not None
        try:
            quick = fast[cls](payload)
        except Exception:
            quick = None  # the router then takes the full path, as here
        try:
            msg = codec.decode(msg_id, payload)
        except ProtocolError:
            assert quick is None, "the fast decoder accepted what the codec refuses"
            return
        assert type(msg) is cls
        if quick is not None:
            assert quick == msg, "fast and full decode disagree"
        again = codec.decode(msg_id, codec.encode(msg))
        assert again == msg, "decode(encode(m)) != m"

    target.__name__ = name
    return target


class _Crashes(logging.Handler):
    """Collects what the framework logs as a crash: an exception escaped a handler or worker."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(record)


class _Inbound:
    """One started sample-game server per codec, on a private event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.crashes = _Crashes()
        logging.getLogger("sgs").addHandler(self.crashes)
        logging.getLogger(PACKAGE).addHandler(self.crashes)
        self.servers = {}
        for name in CODECS:
            settings = Settings(
                host="127.0.0.1",
                port=0,
                protocol=name,
                store_url="memory://",
                log_level="CRITICAL",
                max_frame_size=4096,
                rate_limit_messages=0,
                chat_rate_limit=0,
                auth_timeout=0,
                metrics_port=0,  # no HTTP port: another server may hold the default
            )
            server = create_server(settings)
            self.loop.run_until_complete(server.start())
            self.servers[name] = server

    def __call__(self, data: bytes) -> None:
        if len(data) < 2:
            return
        server = self.servers[CODECS[data[0] % len(CODECS)]]
        step = (data[1] % 64) + 1
        stream = data[2:]
        self.loop.run_until_complete(self._feed(server, stream, step))
        if self.crashes.records:
            record = self.crashes.records[0]
            self.crashes.records.clear()
            raise AssertionError(f"crash on the inbound path: {record.getMessage()}")

    async def _feed(self, server: Any, stream: bytes, step: int) -> None:
        link, _ = stand_in_link(server)
        for start in range(0, len(stream), step):
            link.data_received(stream[start : start + step])
        link.connection_lost(None)
        deadline = self.loop.time() + 5.0  # the worker handles what came, then finalizes
        while not (link.finalized and link.id not in server.links):
            if self.loop.time() > deadline:
                raise AssertionError("the link was never cleaned up")
            await asyncio.sleep(0 if link.worker is None or link.worker.idle else 0.001)

    def close(self) -> None:
        for server in self.servers.values():
            self.loop.run_until_complete(server.stop())
        self.loop.close()
        logging.getLogger("sgs").removeHandler(self.crashes)
        logging.getLogger(PACKAGE).removeHandler(self.crashes)


def inbound(data: bytes) -> None:
    global _inbound
    if _inbound is None:
        _inbound = _Inbound()
    _inbound(data)


def close() -> None:
    """Stop the inbound target's servers (tests replaying the corpus call this)."""
    global _inbound
    if _inbound is not None:
        _inbound.close()
        _inbound = None


_inbound: _Inbound | None = None

TARGETS: dict[str, Target] = {
    "tlv": tlv,
    "reader": reader,
    **{name: _codec_target(name) for name in CODECS},
    "inbound": inbound,
}
