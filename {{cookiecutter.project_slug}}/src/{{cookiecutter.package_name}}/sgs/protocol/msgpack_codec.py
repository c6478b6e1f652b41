"""MessagePack through msgspec; the map keys are the field names."""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from ..message import Catalog, Message
from .base import Codec, typed_frame_encoder


class MsgpackCodec(Codec):
    name = "msgpack"

    def __init__(self, catalog: Catalog) -> None:
        super().__init__(catalog)
        self._encode = msgspec.msgpack.Encoder().encode
        self._decoders: dict[type[Message], Callable[[bytes], Message]] = {}
        for cls in catalog:
            self._decoder(cls)

    def frame_encoder(self, cls: type[Message] | None) -> Callable[[Message], bytes]:
        if cls is None or cls.__msg_id__ is None:
            return self.encode_frame
        return typed_frame_encoder(cls, self._encode, self.encode_frame)

    def encode_value(self, msg: Message) -> bytes:
        return self._encode(msg)

    def decode_value(self, cls: type[Message], data: bytes) -> Message:
        if not data:  # go-sgs peers send an empty value for field-less messages
            return msgspec.convert({}, cls)
        return self._decoder(cls)(data)

    def fast_decoder(self, cls: type[Message]) -> Callable[[bytes], Message]:
        return self._decoder(cls)

    def _decoder(self, cls: type[Message]) -> Callable[[bytes], Message]:
        """One msgspec decoder per type, built once (a router may route a type from
        outside the catalogue: it gets its decoder on first use)."""
        decode = self._decoders.get(cls)
        if decode is None:
            decode = self._decoders[cls] = msgspec.msgpack.Decoder(cls, strict=False).decode
        return decode
