"""MessagePack through msgspec; the map keys are the field names."""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from ..message import Catalog, Message
from .base import Codec, DecoderCache, typed_frame_encoder


class MsgpackCodec(Codec):
    name = "msgpack"

    def __init__(self, catalog: Catalog) -> None:
        super().__init__(catalog)
        self._encode = msgspec.msgpack.Encoder().encode
        self._decoders = DecoderCache(
            lambda cls: msgspec.msgpack.Decoder(cls, strict=False).decode, catalog
        )

    def frame_encoder(self, cls: type[Message] | None) -> Callable[[Message], bytes]:
        if cls is None or cls.__msg_id__ is None:
            return self.encode_frame
        return typed_frame_encoder(cls, self._encode, self.encode_frame)

    def encode_value(self, msg: Message) -> bytes:
        return self._encode(msg)

    def decode_value(self, cls: type[Message], data: bytes) -> Message:
        if not data:  # go-sgs peers send an empty value for field-less messages
            return msgspec.convert({}, cls)
        return self._decoders[cls](data)

    def fast_decoder(self, cls: type[Message]) -> Callable[[bytes], Message]:
        return self._decoders[cls]
